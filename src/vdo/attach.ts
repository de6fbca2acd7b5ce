/**
 * Attaching a volume's machinery to its image: the lock, a fresh runtime with
 * the engine and its buffer classes sized from the options, the controller and
 * its device workers; formatting a new image; and the superblock copies at
 * blocks 0 and 1. Every step that fails gives back what the steps before it
 * took.
 */
import * as fs from 'node:fs';
import { FlashpackError, invalid } from '../errors.js';
import { Engine } from '../engine/engine.js';
import { Controller } from '../nvme/controller.js';
import type { Backend, BackendDescription } from '../nvme/backend.js';
import { Runtime } from '../wasm/runtime.js';
import { SlabPool } from '../shm/slab.js';
import { availableCores } from '../wasm/spawn.js';
import { BlockDevice } from './block-device.js';
import { STAGING_BYTES } from './data-writer.js';
import { PREPARE_JOB_MODULE } from './prepare-job.js';
import { VolumeLock, takeBackend, type LockMode } from './volume-lock.js';
import { EMPTY_PROBE_BYTES, describeHead } from './image-file.js';
import { DEFAULT_CACHE_PAGES, DEFAULT_MAX_INFLIGHT, layoutFor, type OpenOptions, type VolumeOptions } from './volume-options.js';
import {
  BLOCK_BYTES, FORMAT_VERSION_REASON, OLDER_FORMAT_HOWTO, SUPERBLOCK_COPIES, decodeSuperblock, encodeSuperblock, type Superblock,
} from './encodings.js';

/** Staging buffers for gathered data writes (data-writer.ts). */
const STAGING_BUFFERS = 16;
/** Staging buffers faulted in at attach: what an open's background loads take at once. */
const WARM_STAGING_BUFFERS = 2;
/** 4 KiB buffers kept for reuse beyond the pipeline's two per write: reads, dedupe checks, journal and map I/O. */
const KEPT_SPARE_BUFFERS = 256;

/**
 * The buffers a volume of `blockBytes` blocks gets. At 4 KiB one class serves
 * data and metadata: two per write in the pipeline (its data and its
 * compressed form), the block map cache, and room for reads, dedupe checks
 * and journal blocks. Larger blocks get a class of their own, with the
 * default pipeline as deep in bytes as at 4 KiB (512 writes of 4 KiB, 32 of
 * 64 KiB) and its spare room likewise, and a 4 KiB class for the metadata.
 * Sized from the options, so a deep pipeline cannot take the buffers its own
 * writes need to finish.
 */
export interface BufferPlan {
  blockBytes: number;
  /** Writes in the pipeline at most (maxInflight, or its default for the block size). */
  inflight: number;
  /** Buffers of blockBytes. */
  data: number;
  /** Of those, faulted in at attach and kept for reuse. */
  warm: number;
  /** Buffers of 4 KiB beside them (0 at 4 KiB: the data class serves). */
  meta: number;
  /** Data buffers a parked write leaves free for the pipeline and reads (store.ts keepsData). */
  retainFloor: number;
}

export function bufferPlan(opts: OpenOptions, blockBytes: number): BufferPlan {
  const k = blockBytes / BLOCK_BYTES;
  const cachePages = opts.cachePages ?? DEFAULT_CACHE_PAGES;
  const inflight = opts.maxInflight ?? Math.max(1, Math.floor(DEFAULT_MAX_INFLIGHT / k));
  if (k === 1) {
    const data = Math.max(8192, 2 * inflight + cachePages + 2048);
    return { blockBytes, inflight, data, warm: Math.min(data, 2 * inflight + KEPT_SPARE_BUFFERS), meta: 0, retainFloor: 2 * inflight + cachePages + 1024 };
  }
  const spare = Math.max(64, Math.ceil(2048 / k));
  const data = 2 * inflight + spare;
  return { blockBytes, inflight, data, warm: Math.min(data, 2 * inflight + Math.ceil(KEPT_SPARE_BUFFERS / k)), meta: cachePages + 2048, retainFloor: 2 * inflight + spare / 2 };
}

/**
 * The block size of the volume a backend holds, read from its superblock
 * copies straight from the file or memory before anything is attached (the
 * buffer classes depend on it): the valid copy with the higher generation
 * decides; 4 KiB when neither is valid (the open then fails reading them
 * through the controller, with the reasons). Only sizes the pool: the open
 * checks the superblock it reads against it.
 */
export function peekBlockBytes(d: BackendDescription): number {
  const head = new Uint8Array(SUPERBLOCK_COPIES * BLOCK_BYTES);
  if (d.kind === 'fault') return peekBlockBytes(d.inner);
  if (d.kind === 'memory') head.set(new Uint8Array(d.storage, 0, Math.min(head.length, d.storage.byteLength)));
  else {
    try {
      const fd = fs.openSync(d.path, 'r');
      try {
        fs.readSync(fd, head, 0, head.length, 0);
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return BLOCK_BYTES; // the controller's open reports why
    }
  }
  const found = Array.from({ length: SUPERBLOCK_COPIES }, (_, c) => decodeSuperblock(head.subarray(c * BLOCK_BYTES, (c + 1) * BLOCK_BYTES)));
  return newestSuperblock(found)?.blockBytes ?? BLOCK_BYTES;
}

/** The valid copy with the higher generation, or null (decodeSuperblock's results of both copies). */
function newestSuperblock(found: (Superblock | string)[]): Superblock | null {
  let best: Superblock | null = null;
  for (const sb of found) if (typeof sb !== 'string' && (best === null || sb.generation > best.generation)) best = sb;
  return best;
}

/** What an open volume holds on its image: the lock, released at close. */
export interface Hold {
  release(): void;
  /** The image path, or "a volume" for a backend object (for messages). */
  name: string;
}

export interface Attached {
  /** Its workers may still be starting: see engineReady. */
  engine: Engine;
  /** Settles when the engine's workers have started (rejects, the engine closed, when one cannot). */
  engineReady: Promise<void>;
  ctrlr: Controller;
  dev: BlockDevice;
  /** Device-worker spin while writes are not streaming; 0 = leave the controller's setting alone (a core is free). */
  idleSpin: number;
  /** The buffers the pool was made with (for the volume block size it was told). */
  plan: BufferPlan;
}

/**
 * Locks the target for `mode`, makes a path's backend under the lock, and
 * attaches the engine and controller; the lock is released again if any
 * step fails.
 */
export async function holdAndAttach(
  target: string | Backend, mode: LockMode, opts: OpenOptions, fileBackend: (path: string) => Backend, blockBytes?: number,
): Promise<Attached & { hold: Hold }> {
  let hold: Hold;
  if (typeof target === 'string') {
    const lock = VolumeLock.take(target, mode);
    hold = { release: () => lock.release(), name: target };
  } else {
    hold = { release: takeBackend(target, mode), name: 'a volume' };
  }
  try {
    const backend = typeof target === 'string' ? fileBackend(target) : target;
    return { hold, ...(await attach(backend, opts, blockBytes ?? peekBlockBytes(backend.describe()))) };
  } catch (err) {
    hold.release();
    throw err;
  }
}

export async function attach(backend: Backend, opts: OpenOptions, blockBytes: number = BLOCK_BYTES): Promise<Attached> {
  // A volume's pools and queues are carved from a runtime's memory for good; a
  // fresh runtime per volume gives all of it back when the volume is closed.
  const plan = bufferPlan(opts, blockBytes);
  // The main thread, the engine workers and the device workers are all busy during
  // a write stream: with no core to spare, an idle worker that spins only takes
  // time from the thread it waits for (on 2 cores, ingest ran 10–20% faster
  // with workers that park at once). Engine workers only work for writes, so they
  // park at once; device workers park at once while writes stream through the
  // pipeline (SPIN_OFF_WRITES) and spin otherwise, so a read at low queue depth
  // costs no wake-up.
  const cores = await availableCores();
  const workers = opts.workers ?? Math.max(1, cores - 1);
  const ioWorkers = opts.ioWorkers ?? Math.min(4, Math.max(1, cores - 1));
  const oversubscribed = 1 + workers + ioWorkers > cores;
  const rt = opts.runtime ?? new Runtime();
  const classes = plan.meta === 0 ? [{ size: blockBytes, count: plan.data }] : [{ size: BLOCK_BYTES, count: plan.meta }, { size: blockBytes, count: plan.data }];
  const pool = SlabPool.create(rt, [...classes, { size: STAGING_BYTES, count: STAGING_BUFFERS }]);
  // The device workers and the engine's workers start side by side (each takes tens of ms
  // to spawn); the caller waits for the device workers only, and for the engine's when it
  // needs them (an open reads its metadata meanwhile).
  const opening = Controller.open(backend, { runtime: rt, pool, ioWorkers });
  opening.catch(() => {}); // awaited below, after the engine has begun
  let begun: Awaited<ReturnType<typeof Engine.begin>>;
  try {
    begun = await Engine.begin({ runtime: rt, pool, workers, spinIterations: oversubscribed ? 0 : undefined, jobs: [PREPARE_JOB_MODULE] });
  } catch (err) {
    await opening.then((c) => c.close(), () => {});
    throw err;
  }
  const { engine, ready: engineReady } = begun;
  let ctrlr: Controller;
  try {
    ctrlr = await opening;
  } catch (err) {
    await engineReady.then(() => engine.close(), () => {});
    throw err;
  }
  // The main thread allocates and frees every buffer: it reuses the ones it freed
  // last (in the CPU cache, and in pages already faulted in) instead of cycling
  // through the whole pool. Enough for the pipeline's working set, faulted in
  // now rather than by the first writes. (Not while the device workers start:
  // under Deno, with the machine loaded, 2 of 10 `flashpack serve` runs then
  // never completed a write; 0 of 12 with this order. Not yet understood.)
  pool.keepFreed(blockBytes, plan.warm, true);
  if (plan.meta > 0) pool.keepFreed(BLOCK_BYTES, Math.min(plan.meta, KEPT_SPARE_BUFFERS), true);
  // Of the staging buffers, only those an open uses at once (the counts, the index) are
  // faulted in now: the other 14 MiB take ~256 faults each at their first gathered write,
  // not every open and create (10–20 ms of it here).
  pool.keepFreed(STAGING_BYTES, WARM_STAGING_BUFFERS, true);
  pool.keepFreed(STAGING_BYTES, STAGING_BUFFERS);
  return { engine, engineReady, ctrlr, dev: new BlockDevice(ctrlr), idleSpin: oversubscribed ? ctrlr.spinIterations : 0, plan };
}

/** Closes the controller, then the engine once its workers have started (a start that failed closed it already). */
export async function detach(engine: Engine, ctrlr: Controller, engineReady: Promise<void> = Promise.resolve()): Promise<void> {
  await ctrlr.close();
  if (await engineReady.then(() => true, () => false)) await engine.close();
}

/**
 * Formats an attached image for `opts` (checked create options): the
 * physical size against the backend's (EINVAL), a backend that must read as
 * zeroes at its start (`probeBlank`: EEXIST otherwise), the metadata regions
 * zeroed unless the image is a new file (`freshFile`: one hole), both
 * superblock copies written and flushed. Returns the superblock.
 */
export async function formatImage(engine: Engine, dev: BlockDevice, opts: VolumeOptions, freshFile: boolean, probeBlank: boolean): Promise<Superblock> {
  if (opts.physicalSize !== undefined && opts.physicalSize / BLOCK_BYTES > dev.blocks) {
    throw invalid(`Volume.create: physicalSize ${opts.physicalSize} is more than the backend's ${dev.blocks * BLOCK_BYTES} bytes`);
  }
  if (probeBlank) await refuseUnlessBlank(engine, dev);
  const l = layoutFor(opts, opts.physicalSize !== undefined ? opts.physicalSize / BLOCK_BYTES : dev.blocks);
  const sb: Superblock = {
    generation: 1,
    cleanSeq: 0,
    nonce: (crypto.getRandomValues(new Uint32Array(1))[0] | 1) >>> 0,
    logicalBlocks: l.logicalBlocks, physicalBlocks: l.physicalBlocks, journalStart: SUPERBLOCK_COPIES, journalBlocks: l.journalBlocks,
    mapStart: SUPERBLOCK_COPIES + l.journalBlocks, mapPages: l.mapPages, indexStart: l.indexStart, indexBlocks: l.indexBlocks,
    refsStart: l.refsStart, refsBlocks: l.refsBlocks,
    indexMemory: l.indexMemory, dataStart: l.dataStart, slabBlocks: l.slabBlocks, codec: l.codec, dedupe: l.dedupe, writePolicy: l.writePolicy,
    blockBytes: l.blockBytes,
  };
  // Zero the journal, the block map and the index header: an all-zero sector means "never written".
  if (!freshFile) await dev.writeZeroes(SUPERBLOCK_COPIES, sb.dataStart - SUPERBLOCK_COPIES);
  await writeSuperblocks(engine, dev, sb, [0, 1]);
  await dev.flush();
  return sb;
}

/** A backend must read as zeroes at its start (EEXIST otherwise, naming what it holds). */
export async function refuseUnlessBlank(engine: Engine, dev: BlockDevice): Promise<void> {
  const blocks = Math.min(dev.blocks, EMPTY_PROBE_BYTES / BLOCK_BYTES);
  const d = await engine.pool.allocAsync(STAGING_BYTES);
  try {
    await dev.read(0, d, blocks);
    const head = engine.pool.bytes(d, true).slice(0, blocks * BLOCK_BYTES);
    if (!head.every((b) => b === 0)) {
      throw new FlashpackError('EEXIST', `Volume.create: the backend already holds ${describeHead(head)}; pass { overwrite: true } to format over it`);
    }
  } finally {
    engine.pool.free(d);
  }
}

export async function writeSuperblocks(engine: Engine, dev: BlockDevice, sb: Superblock, copies: number[]): Promise<void> {
  const d = engine.pool.alloc(4096);
  try {
    encodeSuperblock(sb, engine.pool.bytes(d, true));
    for (const c of copies) await dev.write(c, d, true);
  } finally {
    engine.pool.free(d);
  }
}

/** Both copies; the valid one with the higher generation. Neither valid: ECORRUPT naming both reasons. */
export async function readSuperblock(engine: Engine, dev: BlockDevice): Promise<Superblock> {
  const d = engine.pool.alloc(4096);
  const found: (Superblock | string)[] = [];
  try {
    for (let c = 0; c < SUPERBLOCK_COPIES; c++) {
      await dev.read(c, d);
      found.push(decodeSuperblock(engine.pool.bytes(d, true)));
    }
  } finally {
    engine.pool.free(d);
  }
  const newest = newestSuperblock(found);
  if (newest === null) {
    const other = found.find((f) => typeof f === 'string' && f.startsWith(FORMAT_VERSION_REASON));
    if (other !== undefined) throw new FlashpackError('ENOTSUP', `volume: superblock of ${other}: to move it to this format, ${OLDER_FORMAT_HOWTO}`);
    throw new FlashpackError('ECORRUPT', `volume: no valid superblock (copy A: ${found[0]}; copy B: ${found[1]})`);
  }
  return newest;
}
