/**
 * The volume's options, their defaults and their validation, and the
 * geometry a create lays out — all checked before anything touches a file.
 *
 * Default sizing: a new image holds its whole logical size even when nothing
 * compresses or deduplicates (physical = logical + metadata + a spare of up
 * to 1,024 blocks, so a full volume can still be overwritten: a block freed
 * by an overwrite is reused only after the next flush). A smaller
 * `physicalSize` (or backend) makes a thin volume, which relies on data
 * reduction; `Volume.thin` and `stats().thin` say so.
 */
import { FlashpackError, badArgument, describe, invalid } from '../errors.js';
import { DedupeIndex, DEFAULT_INDEX_MEMORY, MIN_INDEX_MEMORY, MAX_INDEX_MEMORY } from './dedupe.js';
import {
  BLOCK_BYTES, BLOCK_BYTES_CHOICES, MAP_ROOT_PAGES, MAX_LOGICAL_BLOCKS, SUPERBLOCK_COPIES, CODECS, dataBlocksOf, refsBlocksFor, type Codec, type Geometry, type WritePolicy,
} from './encodings.js';
import { treePagesFor } from './map-tree.js';
import type { PackerPolicy } from './packer.js';
import type { Runtime } from '../wasm/runtime.js';

export interface VolumeOptions {
  /** Logical size in bytes (a positive multiple of the block size, at most 1 PiB). Required. */
  logicalSize: number;
  /**
   * The volume block in bytes: 4096 (default), 8192, 16384, 32768 or 65536.
   * Each LBA's data is deduplicated, compressed and packed as one block of
   * this size; a write of less is read-modify-write. Larger blocks compress
   * better and need less metadata per byte; smaller ones rewrite less.
   */
  blockBytes?: number;
  /**
   * Physical size in bytes to use on the backend. Default for a new image file:
   * room for the whole logical size with nothing reduced, plus metadata and a
   * spare (see `Volume.sizeFor`); for a backend or block device: all of it.
   * Less than that makes a thin volume.
   */
  physicalSize?: number;
  /** Compression codec, recorded in the superblock (default 'lz4'). */
  codec?: Codec;
  /** Deduplicate (default true). */
  dedupe?: boolean;
  /** 'async' (default): writes are acknowledged when accepted, durable after flush(). 'sync': acknowledged when durable. */
  writePolicy?: WritePolicy;
  /**
   * Dedupe index memory in bytes (default 16 MiB; 64 bytes to 1 GiB, and at
   * most 64 bytes per data block: two entries a block). It lives in the
   * volume's shared memory, where the engine's workers read it. The index is
   * saved at close() in blocks of its own, sized for it, and loaded at open.
   */
  indexMemory?: number;
  /** Recovery journal blocks (default 256 = 1 MiB; 4 to 65,536). */
  journalBlocks?: number;
  /** Data blocks (of blockBytes) per slab (default 8192). */
  slabBlocks?: number;
  /** Format over whatever the path or backend holds (default false: EEXIST unless it is absent or empty). */
  overwrite?: boolean;
}

export interface OpenOptions {
  /** Open without ever writing the image (EROFS for write and discard); other read-only openers may share it. */
  readOnly?: boolean;
  /** Dedupe index memory for this session (default: the saved index's size). Another size starts empty and is not saved. */
  indexMemory?: number;
  /** Block map pages cached (default 1024 = 4 MiB, mapping ~3 GiB of logical space; 2 to 2^20). */
  cachePages?: number;
  /** Engine workers for hashing and compression (default: cores − 1, at least 1; 1 to 64). */
  workers?: number;
  /** Device workers (default: cores − 1, 1 to 4; 1 to 64). */
  ioWorkers?: number;
  /** Packer policy (default 'flashpack'; 'dm-vdo' packs as dm-vdo does). */
  packer?: PackerPolicy;
  /** Writes in the pipeline at once before write() waits (default 512 at 4 KiB blocks, the same bytes at larger ones: 32 at 64 KiB; 1 to 16,384; dm-vdo has 2,048 data_vios). */
  maxInflight?: number;
  /** The runtime whose shared memory the volume uses (default: a fresh one per volume, given back at close). */
  runtime?: Runtime;
  /** File-backend block size for a path (512 or 4096; default 4096). */
  blockSize?: number;
}

export const DEFAULT_JOURNAL_BLOCKS = 256;
export const DEFAULT_SLAB_BLOCKS = 8192;
export const DEFAULT_CACHE_PAGES = 1024;
export const MAX_CACHE_PAGES = 1 << 20;
/**
 * Fragments waiting in the packer's bins hold their pipeline slots, so a
 * shallow pipeline starves the engine: ingest ran ~10% faster at 512 than at
 * 256 (and ~3% faster again at 1,024, for twice the buffers).
 */
export const DEFAULT_MAX_INFLIGHT = 512;
export const MAX_INFLIGHT = 16384;
const MAX_WORKERS = 64;
/** Blocks beyond the logical size in a default image: room for overwrites between flushes. */
export const OVERWRITE_SPARE_BLOCKS = 1024;
/** Logical size limit: 1 PiB (encodings.ts; the block map tree addresses more). */
const MAX_LOGICAL_BYTES = MAX_LOGICAL_BLOCKS * BLOCK_BYTES;

/** Where a create puts everything, in blocks. */
export interface Layout {
  logicalBlocks: number;
  physicalBlocks: number;
  journalBlocks: number;
  mapPages: number;
  indexMemory: number;
  indexBlocks: number;
  indexStart: number;
  refsStart: number;
  refsBlocks: number;
  dataStart: number;
  slabBlocks: number;
  dedupe: boolean;
  codec: Codec;
  writePolicy: WritePolicy;
  blockBytes: number;
}

type Keys<T> = { [K in keyof Required<T>]: true };
const CREATE_KEYS: Keys<VolumeOptions & OpenOptions> = {
  logicalSize: true, blockBytes: true, physicalSize: true, codec: true, dedupe: true, writePolicy: true, indexMemory: true, journalBlocks: true,
  slabBlocks: true, overwrite: true, readOnly: true, cachePages: true, workers: true, ioWorkers: true, packer: true,
  maxInflight: true, runtime: true, blockSize: true,
};

function options<T extends object>(what: string, opts: unknown): T {
  if (opts === undefined) return {} as T;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw badArgument(`${what}: options`, 'an options object', opts);
  for (const k of Object.keys(opts)) {
    if (!(k in CREATE_KEYS)) throw invalid(`${what}: unknown option '${k}' (${describe((opts as Record<string, unknown>)[k])}); known: ${Object.keys(CREATE_KEYS).join(', ')}`);
  }
  return opts as T;
}

function wholeIn(what: string, v: unknown, lo: number, hi: number, unit = ''): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) {
    throw badArgument(what, `a whole number from ${lo.toLocaleString('en')} to ${hi.toLocaleString('en')}${unit}`, v);
  }
  return v;
}

function bytesMultiple(what: string, v: unknown, max: number, unit = BLOCK_BYTES): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v % unit !== 0 || v > max) {
    throw badArgument(what, `a positive multiple of ${unit} bytes up to ${max}`, v);
  }
  return v;
}

function oneOf<T extends string>(what: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) throw badArgument(what, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, v);
  return v as T;
}

function flag(what: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw badArgument(what, 'true or false', v);
  return v;
}

/** The open options, checked (EINVAL naming the option, its type and value). */
export function checkOpenOptions(what: string, raw: unknown): OpenOptions {
  const o = options<OpenOptions & Partial<VolumeOptions>>(what, raw);
  if (what.endsWith('open')) {
    for (const k of ['logicalSize', 'blockBytes', 'physicalSize', 'codec', 'dedupe', 'writePolicy', 'journalBlocks', 'slabBlocks', 'overwrite'] as const) {
      if (o[k] !== undefined) throw invalid(`${what}: option '${k}' is fixed when the volume is created (Volume.create)`);
    }
  }
  if (o.readOnly !== undefined) flag(`${what}: readOnly`, o.readOnly);
  if (o.indexMemory !== undefined) wholeIn(`${what}: indexMemory`, o.indexMemory, MIN_INDEX_MEMORY, MAX_INDEX_MEMORY, ' bytes');
  if (o.cachePages !== undefined) wholeIn(`${what}: cachePages`, o.cachePages, 2, MAX_CACHE_PAGES);
  if (o.workers !== undefined) wholeIn(`${what}: workers`, o.workers, 1, MAX_WORKERS);
  if (o.ioWorkers !== undefined) wholeIn(`${what}: ioWorkers`, o.ioWorkers, 1, MAX_WORKERS);
  if (o.packer !== undefined) oneOf(`${what}: packer`, o.packer, ['flashpack', 'dm-vdo'] as const);
  if (o.maxInflight !== undefined) wholeIn(`${what}: maxInflight`, o.maxInflight, 1, MAX_INFLIGHT);
  if (o.blockSize !== undefined && o.blockSize !== 512 && o.blockSize !== 4096) throw badArgument(`${what}: blockSize`, '512 or 4096', o.blockSize);
  if (o.runtime !== undefined && (o.runtime === null || typeof o.runtime !== 'object' || typeof (o.runtime as { reserve?: unknown }).reserve !== 'function')) {
    throw badArgument(`${what}: runtime`, 'a Runtime', o.runtime);
  }
  return o;
}

/** The create options, checked; `logicalSize` is required. */
/** A new logical size for resize: a whole number of `blockBytes` blocks up to 1 PiB (EINVAL naming the value otherwise). */
export function checkResizeSize(what: string, v: unknown, blockBytes: number): number {
  return bytesMultiple(what, v, MAX_LOGICAL_BYTES, blockBytes);
}

export function checkCreateOptions(raw: unknown): VolumeOptions & OpenOptions {
  const what = 'Volume.create';
  if (raw === undefined) throw invalid(`${what}: options.logicalSize is required (the volume's size in bytes, a multiple of the block size), got no options`);
  const o = checkOpenOptions(what, raw) as VolumeOptions & OpenOptions;
  if (o.blockBytes !== undefined && !BLOCK_BYTES_CHOICES.includes(o.blockBytes)) {
    throw badArgument(`${what}: blockBytes`, `one of ${BLOCK_BYTES_CHOICES.join(', ')}`, o.blockBytes);
  }
  if (o.logicalSize === undefined) throw invalid(`${what}: options.logicalSize is required (the volume's size in bytes, a multiple of the block size)`);
  bytesMultiple(`${what}: logicalSize`, o.logicalSize, MAX_LOGICAL_BYTES, o.blockBytes ?? BLOCK_BYTES);
  if (o.physicalSize !== undefined) bytesMultiple(`${what}: physicalSize`, o.physicalSize, 2 ** 32 * BLOCK_BYTES);
  if (o.codec !== undefined) oneOf(`${what}: codec`, o.codec, CODECS);
  if (o.dedupe !== undefined) flag(`${what}: dedupe`, o.dedupe);
  if (o.writePolicy !== undefined) oneOf(`${what}: writePolicy`, o.writePolicy, ['async', 'sync'] as const);
  if (o.journalBlocks !== undefined) wholeIn(`${what}: journalBlocks`, o.journalBlocks, 4, 65536);
  if (o.slabBlocks !== undefined) wholeIn(`${what}: slabBlocks`, o.slabBlocks, 1, 2 ** 31);
  if (o.overwrite !== undefined) flag(`${what}: overwrite`, o.overwrite);
  if (o.readOnly === true) throw invalid(`${what}: readOnly cannot create a volume`);
  return o;
}

/**
 * The layout of a new volume on `physicalBlocks` (undefined: the default
 * image size for the logical size). ENOSPC when the metadata leaves no data
 * block, naming the minimum.
 */
export function layoutFor(o: VolumeOptions, physicalBlocks?: number): Layout {
  const blockBytes = o.blockBytes ?? BLOCK_BYTES;
  /** PBNs per data block: the data region starts aligned to it. */
  const k = blockBytes / BLOCK_BYTES;
  const logicalBlocks = o.logicalSize / blockBytes;
  const journalBlocks = o.journalBlocks ?? DEFAULT_JOURNAL_BLOCKS;
  const dedupe = o.dedupe ?? true;
  // The block map region holds the tree's root; its other pages come from the data region as they are needed.
  const mapPages = MAP_ROOT_PAGES;
  // The index is saved at close into blocks of its own. More than 64 bytes of it per data
  // block (two entries a block) never helps: a block is indexed once.
  const indexMemoryFor = (physical: number): number => (dedupe ? Math.max(MIN_INDEX_MEMORY, Math.min(o.indexMemory ?? DEFAULT_INDEX_MEMORY, Math.ceil((64 * physical) / k))) : 0);
  const indexBlocksFor = (memory: number): number => (dedupe ? 1 + Math.ceil(DedupeIndex.imageBytes(memory) / BLOCK_BYTES) : 0);
  const metadataFor = (physical: number): number =>
    SUPERBLOCK_COPIES + journalBlocks + mapPages + indexBlocksFor(indexMemoryFor(physical)) + refsBlocksFor(physical, blockBytes) + (k - 1);
  const physical = physicalBlocks ?? defaultPhysical(logicalBlocks, k, (p) => metadataFor(p) + k * treePagesFor(logicalBlocks));
  const indexMemory = indexMemoryFor(physical);
  const indexBlocks = indexBlocksFor(indexMemory);
  const indexStart = SUPERBLOCK_COPIES + journalBlocks + mapPages;
  const refsStart = indexStart + indexBlocks;
  const refsBlocks = refsBlocksFor(physical, blockBytes);
  const dataStart = Math.ceil((refsStart + refsBlocks) / k) * k;
  if (dataStart + k > physical) {
    throw new FlashpackError(
      'ENOSPC',
      `volume: ${physical} physical blocks (${physical * BLOCK_BYTES} bytes) cannot hold ${dataStart} blocks of metadata (journal ${journalBlocks}, block map ${mapPages}, index ${indexBlocks}, reference counts ${refsBlocks}) and any data; at least ${(dataStart + k) * BLOCK_BYTES} bytes are needed`,
    );
  }
  if (physical >= 2 ** 32) {
    throw invalid(`volume: ${physical} physical blocks is more than the 2^32 − 1 a block map entry can address${physicalBlocks === undefined ? ' (the default image holds the whole logical size; pass a smaller physicalSize for a thin volume)' : ''}`);
  }
  return {
    logicalBlocks, physicalBlocks: physical, journalBlocks, mapPages, indexMemory, indexBlocks, indexStart, refsStart, refsBlocks, dataStart, dedupe, blockBytes,
    slabBlocks: Math.min(o.slabBlocks ?? DEFAULT_SLAB_BLOCKS, Math.floor((physical - dataStart) / k)),
    codec: o.codec ?? 'lz4',
    writePolicy: o.writePolicy ?? 'async',
  };
}

/** Room for the whole logical size with nothing reduced, a spare, and the metadata (which grows with the physical size, the index up to its cap); in 4 KiB blocks. */
function defaultPhysical(logicalBlocks: number, k: number, metadataFor: (physical: number) => number): number {
  // The spare holds as many bytes at any block size (1,024 blocks of 4 KiB).
  const want = k * (logicalBlocks + Math.min(Math.max(16, OVERWRITE_SPARE_BLOCKS / k), logicalBlocks));
  let physical = want + metadataFor(want);
  for (let i = 0; i < 16; i++) {
    const next = want + metadataFor(physical);
    if (next <= physical) break;
    physical = next;
  }
  return physical;
}

/** Whether a layout can fail to hold its whole logical size with nothing reduced. */
export function isThin(g: Geometry): boolean {
  return dataBlocksOf(g) < g.logicalBlocks + treePagesFor(g.logicalBlocks);
}

/** Bytes as a Uint8Array view (no copy): any ArrayBufferView or ArrayBuffer; EINVAL otherwise. */
export function bytesOf(what: string, data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && data instanceof SharedArrayBuffer)) return new Uint8Array(data);
  throw badArgument(what, 'an ArrayBufferView (Uint8Array, Buffer, DataView, …) or an ArrayBuffer', data);
}

/** A byte range inside a volume of `size` bytes: offset and length whole numbers ≥ 0, offset + length ≤ size. */
export function checkRange(what: string, offset: unknown, length: unknown, size: number): void {
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw badArgument(`${what}: offset`, 'a whole number of bytes ≥ 0', offset);
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) throw badArgument(`${what}: length`, 'a whole number of bytes ≥ 0', length);
  if (offset + length > size) throw invalid(`${what}: ${length} bytes at offset ${offset} reach past the end of the ${size}-byte volume`);
}

/** The target argument: a path string, or a Backend object. */
export function checkTarget(what: string, target: unknown): void {
  if (typeof target === 'string') {
    if (target.length === 0) throw badArgument(`${what}: target`, 'a file path or an nvme backend', target);
    return;
  }
  const b = target as { describe?: unknown; blocks?: unknown } | null;
  if (b === null || typeof b !== 'object' || typeof b.describe !== 'function' || typeof b.blocks !== 'number') {
    throw badArgument(`${what}: target`, 'a file path or an nvme backend (FileBackend, MemoryBackend, FaultBackend)', target);
  }
}
