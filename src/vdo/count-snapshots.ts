/**
 * Reference count snapshots (issue 17; dm-vdo persists its reference blocks
 * behind slab journals, this is the simpler equivalent): every checkpoint
 * writes the counts the block map implies — the slab depot's `mapped`
 * counts, which leave out references writes in flight hold — into one of two
 * slots, tagged with the journal head the checkpoint is about to record. An
 * open takes the newest usable snapshot and replays only the journal entries
 * after its tag, adjusting the counts as it goes, so neither a clean nor a
 * dirty open reads the block map to count; a dirty open costs the journal
 * plus one read of the counts. The other slot is read behind the open, to
 * learn which of its count blocks the next checkpoint must write there.
 *
 * Layout: the refs region of encodings.ts, two slots of a header and a byte
 * of count per data block.
 *
 * Invariants:
 * - a snapshot is written before the checkpoint writes any block map page,
 *   so the map on the media never holds a change past the newest valid
 *   snapshot's tag: entries from the tag on change counts by what the map
 *   held before them;
 * - a slot's header is erased (written through) before its counts change and
 *   sealed after they are flushed: a valid header always has its whole
 *   snapshot behind it;
 * - the slot written is never the one holding the newest valid snapshot;
 * - only the last snapshot written (the highest generation) is ever used,
 *   and only when its tag is the journal's head: its checkpoint completed,
 *   so every tree page it counts is named by a parent on the media. A
 *   checkpoint cut short after its snapshot leaves that snapshot newest with
 *   a tag past the head; it may count tree pages no parent names, and the
 *   map pages it went on to write are not in the snapshot before it, so the
 *   open rebuilds the counts from the map tree (as it does when the snapshot
 *   is not whole).
 */
import { assert } from '../assert.js';
import type { SlabPool } from '../shm/slab.js';
import type { WasmExports } from '../wasm/runtime.js';
import type { BlockDevice } from './block-device.js';
import type { SlabDepot } from './slab-depot.js';
import { STAGING_BYTES } from './data-writer.js';
import { crc32c } from '../codec/checksum.js';
import {
  BLOCK_BYTES, COUNTS_MAGIC, COUNTS_PER_BLOCK, COUNTS_PER_SECTOR, REFS_MAGIC, SECTORS_PER_BLOCK, SECTOR_BYTES, SECTOR_HEADER_BYTES,
  SECTOR_VALID, SNAPSHOT_SLOTS, countBlocksFor, dataBlocksOf, getU64, openSector, sealSector, setU64, slotBlocksFor, sectorValidAt, type SectorHeader, type Superblock,
} from './encodings.js';

/** A valid slot header. */
export interface SnapshotHeader {
  slot: number;
  /** Snapshots are numbered as they are written, across opens: the highest is the last one written. */
  generation: number;
  /** The journal head the checkpoint that wrote it recorded (or was about to). */
  tag: number;
  logicalUsed: number;
  mapPages: number;
  /** Data blocks its counts reference (tree pages included); null in a header written before it was recorded. */
  usedBlocks: number | null;
}

const HEAD_LOGICAL = SECTOR_HEADER_BYTES;
const HEAD_PAGES = SECTOR_HEADER_BYTES + 8;
const HEAD_DATA_BLOCKS = SECTOR_HEADER_BYTES + 16;
const HEAD_GENERATION = SECTOR_HEADER_BYTES + 24;
/** usedBlocks + 1 (0: not recorded). */
const HEAD_USED = SECTOR_HEADER_BYTES + 32;


/** Block `at` of `slot` in the refs region. */
export const slotBlock = (sb: Superblock, slot: number, at: number): number => sb.refsStart + slot * slotBlocksFor(sb.physicalBlocks, sb.blockBytes) + at;

/** Slot `slot`'s header decoded from `b` (4 KiB), if valid for this volume; else null. */
export function decodeSnapshotHeader(b: Uint8Array, sb: Superblock, slot: number): SnapshotHeader | null {
  const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
  if (openSector(b, 0, REFS_MAGIC, sb.nonce, h) !== SECTOR_VALID || h.aux !== slot) return null;
  const v = new DataView(b.buffer, b.byteOffset, SECTOR_BYTES);
  if (getU64(v, HEAD_DATA_BLOCKS) !== dataBlocksOf(sb)) return null;
  const used = getU64(v, HEAD_USED);
  return {
    slot, generation: getU64(v, HEAD_GENERATION), tag: h.key, logicalUsed: getU64(v, HEAD_LOGICAL), mapPages: getU64(v, HEAD_PAGES),
    usedBlocks: used === 0 ? null : used - 1,
  };
}

/**
 * What decodeCountBlocks does to the bytes at byte offsets of `mem`: the
 * CRC-32C of the sector at `p` as it stands (sectorValidAt zeroed its CRC
 * field), and a move of `len` bytes from `src` to `dst` (which may overlap).
 * A volume runs both in WASM on its shared memory, `mem` a view of all of it;
 * `check` works on plain arrays.
 */
export interface SectorOps {
  crc(mem: Uint8Array, p: number): number;
  move(mem: Uint8Array, dst: number, src: number, len: number): void;
}

/** SectorOps for a volume: its runtime's kernels, in place. */
export function wasmSectorOps(wasm: WasmExports): SectorOps {
  return {
    crc: (_mem, p) => wasm.crc32c(p, SECTOR_BYTES, 0),
    move: (_mem, dst, src, len) => wasm.copyBytes(dst, src, len),
  };
}

/** SectorOps for bytes anywhere (the process runtime's kernel over a copy; copyWithin): `check`'s. */
export const plainSectorOps: SectorOps = {
  crc: (mem, p) => crc32c(mem.subarray(p, p + SECTOR_BYTES)),
  move: (mem, dst, src, len) => void mem.copyWithin(dst, src, src + len),
};

/**
 * The counts of the `n` count blocks of a slot at byte `at` of `mem`, blocks
 * k, k + 1, …, decoded into `counts` (block j at j × COUNTS_PER_BLOCK): false
 * if a sector is not this slot's, in its place, or whole. The same checks as
 * openSector's, without its per-sector views and copies: an open decodes a
 * byte per physical block this way before the first write (139,000 sectors
 * at 256 GiB), and the views were most of it. The bytes are scratch
 * afterwards: each sector's counts move down over the headers before them,
 * so the run leaves `mem` in one copy (out of shared memory, a copy per
 * sector cost more than the CRC).
 */
export function decodeCountBlocks(mem: Uint8Array, at: number, n: number, sb: Superblock, slot: number, k: number, counts: Uint8Array, ops: SectorOps): boolean {
  const first = k * COUNTS_PER_BLOCK;
  const crcOf = (p: number): number => ops.crc(mem, p);
  // Where the next sector's counts go: never past its own header, so no sector is overwritten before it is checked.
  let out = at;
  for (let i = 0; i < n; i++) {
    for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
      const from = (k + i) * COUNTS_PER_BLOCK + s * COUNTS_PER_SECTOR;
      if (from >= counts.length) break;
      const p = at + (i * SECTORS_PER_BLOCK + s) * SECTOR_BYTES;
      if (!sectorValidAt(mem, p, COUNTS_MAGIC, sb.nonce, s, (k + i) * SECTORS_PER_BLOCK + s, slot, crcOf)) return false;
      const m = Math.min(COUNTS_PER_SECTOR, counts.length - from);
      ops.move(mem, out, p + SECTOR_HEADER_BYTES, m);
      out += m;
    }
  }
  counts.set(mem.subarray(at, out), first);
  return true;
}

export class CountSnapshots {
  private readonly sb: Superblock;
  private readonly dev: BlockDevice;
  private readonly pool: SlabPool;
  private readonly depot: SlabDepot;
  /** The CRC and moves of count sectors in the shared memory, in place. */
  private readonly ops: SectorOps;
  /** The slot holding the newest valid snapshot, or −1. */
  private newest = -1;
  /** The generation of the last snapshot written (or found at open). */
  private generation = 0;
  /** The open's comparison of the slots it did not load (opened()), until it is done. */
  private compared: Promise<void> | null = null;

  /** `wasm` is the runtime of the pool's memory: its CRC-32C kernel checks count sectors where they were read. */
  constructor(sb: Superblock, dev: BlockDevice, pool: SlabPool, depot: SlabDepot, wasm: WasmExports) {
    this.sb = sb;
    this.dev = dev;
    this.pool = pool;
    this.depot = depot;
    this.ops = wasmSectorOps(wasm);
  }

  /** The valid slot headers (open). */
  async headers(): Promise<SnapshotHeader[]> {
    const buf = await this.pool.allocAsync(BLOCK_BYTES);
    const out: SnapshotHeader[] = [];
    try {
      for (let slot = 0; slot < SNAPSHOT_SLOTS; slot++) {
        await this.dev.read(slotBlock(this.sb, slot, 0), buf);
        const h = decodeSnapshotHeader(this.pool.bytes(buf, true).subarray(0, BLOCK_BYTES), this.sb, slot);
        if (h !== null) out.push(h);
      }
    } finally {
      this.pool.free(buf);
    }
    return out;
  }

  /** The counts of `h`'s slot, a byte per data block, if every sector is whole; else null. */
  async read(h: SnapshotHeader): Promise<Uint8Array | null> {
    const counts = new Uint8Array(this.depot.dataBlocks);
    const blocks = countBlocksFor(counts.length);
    const run = STAGING_BYTES / BLOCK_BYTES;
    const buf = await this.pool.allocAsync(STAGING_BYTES);
    try {
      for (let k = 0; k < blocks; k += run) {
        const n = Math.min(run, blocks - k);
        await this.dev.read(slotBlock(this.sb, h.slot, 1 + k), buf, n);
        // A view of the whole memory, made after the read (the memory may have grown meanwhile): addresses are offsets.
        const mem = new Uint8Array(this.pool.memory.buffer);
        if (!decodeCountBlocks(mem, this.pool.bufferOf(buf), n, this.sb, h.slot, k, counts, this.ops)) return null;
      }
    } finally {
      this.pool.free(buf);
    }
    return counts;
  }

  /**
   * Open, once the depot's counts are whole: the newest snapshot is `slot`'s
   * (−1: none usable; else the depot loaded its counts), and each count block of
   * each slot is marked to be written where what the slot holds differs from
   * the counts (a slot without a valid header: every block), so the next
   * checkpoints write only that. A slot not loaded is read and compared in
   * the background (the open does not wait for it); the next write() does.
   */
  opened(slot: number, headers: SnapshotHeader[]): void {
    this.newest = slot;
    for (const h of headers) this.generation = Math.max(this.generation, h.generation);
    const pending: Promise<void>[] = [];
    for (let s = 0; s < SNAPSHOT_SLOTS; s++) {
      const h = headers.find((x) => x.slot === s);
      if (h === undefined) this.depot.mappedDirty(s).fill(1);
      // The depot loaded these counts (loadCounts marked every block unchanged); what a replay changed since is marked.
      else if (s === slot) continue;
      else pending.push(this.read(h).then((held) => this.markChanged(s, held), () => this.markChanged(s, null)));
    }
    this.compared = pending.length === 0 ? null : Promise.all(pending).then(() => {});
  }

  /** Settles when the open's comparison of the slots it did not load is done. */
  get comparing(): Promise<void> {
    return this.compared ?? Promise.resolve();
  }

  /**
   * The refs region moved (the physical size grew, resize.ts; the superblock
   * names the new place, whose slot headers are zeroed): no slot holds a
   * snapshot, so the next checkpoint writes every count block. The caller
   * awaited `comparing` first.
   */
  moved(): void {
    this.compared = null;
    this.newest = -1;
    for (let s = 0; s < SNAPSHOT_SLOTS; s++) this.depot.markAllMappedDirty(s);
  }

  /** Marks each count block of `slot` that differs from what it holds (null: unreadable, so every block). Synchronous: no mapping moves a count meanwhile. */
  private markChanged(slot: number, held: Uint8Array | null): void {
    const dirty = this.depot.mappedDirty(slot);
    if (held === null) {
      dirty.fill(1);
      return;
    }
    const mapped = this.depot.mappedCounts();
    // Four counts at a time where both arrays allow it (COUNTS_PER_BLOCK is a multiple of 4).
    const aligned = held.byteOffset % 4 === 0 && mapped.byteOffset % 4 === 0;
    const a = aligned ? new Uint32Array(held.buffer, held.byteOffset, held.length >>> 2) : null;
    const b = aligned ? new Uint32Array(mapped.buffer, mapped.byteOffset, mapped.length >>> 2) : null;
    for (let k = 0; k < dirty.length; k++) {
      const from = k * COUNTS_PER_BLOCK;
      const to = Math.min(mapped.length, from + COUNTS_PER_BLOCK);
      let i = from;
      let same = true;
      if (a !== null && b !== null) {
        const end = to >>> 2;
        let w = from >>> 2;
        while (w < end && a[w] === b[w]) w++;
        same = w === end;
        i = end * 4;
      }
      for (; i < to && same; i++) same = held[i] === mapped[i];
      dirty[k] = same ? 0 : 1;
    }
  }

  /**
   * Checkpoint step, before any block map page is written: the depot's mapped
   * counts, tagged `tag`, into the slot not holding the newest snapshot.
   */
  async write(tag: number, logicalUsed: number): Promise<void> {
    if (this.compared !== null) {
      await this.compared;
      this.compared = null;
    }
    assert(this.depot.countsKnown, 'count snapshot: written before the counts were loaded');
    const slot = this.newest === 0 ? 1 : 0;
    const buf = await this.pool.allocAsync(STAGING_BYTES);
    try {
      const b = this.pool.bytes(buf, true);
      // The header goes first, through the cache: a crash from here on finds this slot unusable.
      b.fill(0, 0, BLOCK_BYTES);
      await this.dev.write(slotBlock(this.sb, slot, 0), buf, true, 1);
      try {
        await this.writeCounts(slot, buf);
      } catch (err) {
        this.depot.markAllMappedDirty(slot);
        throw err;
      }
      await this.dev.flush();
      const head = this.pool.bytes(buf, true).subarray(0, BLOCK_BYTES);
      head.fill(0);
      const v = new DataView(head.buffer, head.byteOffset, SECTOR_BYTES);
      setU64(v, HEAD_LOGICAL, logicalUsed);
      setU64(v, HEAD_PAGES, this.depot.mapPages);
      setU64(v, HEAD_DATA_BLOCKS, this.depot.dataBlocks);
      setU64(v, HEAD_GENERATION, this.generation + 1);
      setU64(v, HEAD_USED, this.depot.mappedUsedBlocks + 1);
      sealSector(head, 0, REFS_MAGIC, this.sb.nonce, { index: 0, count: 0, key: tag, aux: slot });
      await this.dev.write(slotBlock(this.sb, slot, 0), buf, true, 1);
      this.newest = slot;
      this.generation++;
    } finally {
      this.pool.free(buf);
    }
  }

  /** Writes every count block of `slot` changed since the slot was last written, runs of consecutive blocks at a time. */
  private async writeCounts(slot: number, buf: number): Promise<void> {
    const dirty = this.depot.mappedDirty(slot);
    const mapped = this.depot.mappedCounts();
    const run = STAGING_BYTES / BLOCK_BYTES;
    let k = 0;
    while (k < dirty.length) {
      if (dirty[k] === 0) {
        k++;
        continue;
      }
      let n = 0;
      const b = this.pool.bytes(buf, true);
      while (k + n < dirty.length && n < run && dirty[k + n] !== 0) {
        const blk = b.subarray(n * BLOCK_BYTES, (n + 1) * BLOCK_BYTES);
        blk.fill(0);
        for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
          const from = (k + n) * COUNTS_PER_BLOCK + s * COUNTS_PER_SECTOR;
          if (from < mapped.length) blk.set(mapped.subarray(from, Math.min(mapped.length, from + COUNTS_PER_SECTOR)), s * SECTOR_BYTES + SECTOR_HEADER_BYTES);
          sealSector(blk, s, COUNTS_MAGIC, this.sb.nonce, { index: s, count: 0, key: (k + n) * SECTORS_PER_BLOCK + s, aux: slot });
        }
        dirty[k + n] = 0;
        n++;
      }
      await this.dev.write(slotBlock(this.sb, slot, 1 + k), buf, false, n);
      k += n;
    }
  }
}
