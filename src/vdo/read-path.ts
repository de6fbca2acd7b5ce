/**
 * The volume's read path (dm-vdo's read data_vio): a logical range to bytes.
 * What a read returns, in order of precedence: a write or discard accepted and
 * not yet mapped (`pendingInto`), else the block map's mapping —
 * unmapped or the zero block reads as zeroes, an uncompressed block as itself,
 * a packed slot decoded.
 *
 * Invariants:
 * - A read holds `inFlight` from the moment it reads a mapping until the
 *   device read of the block it names has completed: the volume releases freed
 *   blocks for reuse only when no read is in flight, so no read sees a block
 *   that was freed and rewritten after its mapping was read.
 * - Every buffer taken from the pool is freed exactly once, on success and on
 *   error; the block decode buffer is taken before a staging buffer when a read
 *   must wait for them (the order the data writer takes them in).
 * - No byte of a stored block reaches a caller unless its data check (bits of
 *   the XXH3-128 of the logical block, after any decoding) equals the one the
 *   block map recorded with the mapping: a mismatch is ECORRUPT naming LBA and
 *   PBN, counted in `checkFailures`, and the read returns nothing.
 * - A whole aligned block whose map page is cached (a one-block random read) and a
 *   read of many blocks each cost one promise: device reads complete into
 *   callbacks, not one async frame per block.
 */
import { FlashpackError, hex32 } from '../errors.js';
import type { SlabPool } from '../shm/slab.js';
import type { Runtime } from '../wasm/runtime.js';
import { decompressRegion } from '../codec/lz4.js';
import { inflateRegion } from '../codec/deflate.js';
import type { BlockDevice } from './block-device.js';
import { STAGING_BYTES } from './data-writer.js';
import { pbnOf, stateOf, type BlockMap } from './block-map.js';
import type { LogicalZone } from './logical-zone.js';
import { BLOCK_BYTES, MAP_ENTRIES_PER_PAGE, MAP_ENTRIES_PER_SECTOR, STATE_COMPRESSED_BASE, STATE_UNCOMPRESSED, STATE_UNMAPPED, ZERO_PBN, packedFragment, type Codec } from './encodings.js';

const NO_BYTES = new Uint8Array(0);

/** Reads of at least this many blocks gather their device reads (gathered()); shorter ones go block by block. */
const READ_GATHER_BLOCKS_MIN = 4;
/** Consecutive PBNs (4 KiB) one gathered device read covers: a staging buffer. */
const READ_RUN_PBNS_MAX = STAGING_BYTES / BLOCK_BYTES;

/** What the read path needs of the volume. */
export interface ReadSources {
  map: BlockMap;
  pool: SlabPool;
  dev: BlockDevice;
  runtime: Runtime;
  codec: Codec;
  /** A view of the whole shared memory (never detached: it only grows). */
  mem: Uint8Array;
  /** Writes and discards issued and not yet mapped: a read sees them first (pendingInto). */
  zone: LogicalZone;
  /** A block of shared memory a fragment waiting in the packer is decoded into (used and done with synchronously). */
  scratchAt: number;
  /** The volume block: an LBA's bytes; a data block is blockBytes / 4 KiB PBNs. */
  blockBytes: number;
}

/** A stored block that failed verification during a scrub. */
export interface BadBlock {
  lba: number;
  pbn: number;
  /** The packed slot, or -1 for an uncompressed block. */
  slot: number;
  /** Why: the check that failed, the decode error, or the device error. */
  reason: string;
}

/** What a scrub of a range found: blocks verified and the ones that failed. */
export interface ScrubTally {
  checked: number;
  bad: BadBlock[];
}

/** One device read of consecutive PBNs for a gathered read: the blocks of `order[from, to)` are stored there. */
interface Run {
  g: Gather;
  pbn: number;
  /** PBNs read (4 KiB each). */
  blocks: number;
  from: number;
  to: number;
  buf: number;
  plain: number;
}

/** A read of many blocks in flight: runs issued as buffers allow, one promise for all of them. */
interface Gather {
  first: number;
  offset: number;
  length: number;
  out: Uint8Array;
  /** Mapping of block first + k, or -1 (nothing to read: zeroes, or a pending write already copied). */
  maps: Float64Array;
  /** The data check recorded with maps[k]. */
  checks: Uint32Array;
  /** A scrub's findings: a block that fails is recorded here and the others go on; null for a read, which fails whole. */
  tally: ScrubTally | null;
  /** Indexes into maps with something to read, by PBN. */
  order: number[];
  runs: Run[];
  next: number;
  inFlight: number;
  waiting: boolean;
  failure: unknown;
  resolve: (out: Uint8Array) => void;
  reject: (err: unknown) => void;
}

/** A one-block read of blockNow() whose device read is out; records are reused, so such a read makes no closure of its own. */
class BlockRead {
  lba = 0;
  mapping = 0;
  check = 0;
  buf = -1;
  plain = -1;
  out: Uint8Array | null = null;
  resolve: ((out: Uint8Array) => void) | null = null;
  reject: ((err: unknown) => void) | null = null;
}

export class ReadPath {
  private readonly s: ReadSources;
  /** The volume block's bytes and PBNs. */
  private readonly bb: number;
  private readonly k: number;
  /** Reads holding a mapping whose device read has not completed (see the module header); the volume's dedupe advice reads hold it too. */
  inFlight = 0;
  /** Stored blocks whose bytes failed their data check (or did not decode) when read. */
  checkFailures = 0;
  /** BlockRead records not in use (as many as such reads were ever out at once). */
  private readonly spareReads: BlockRead[] = [];
  /** The record whose promise is being made (promiseOf hands it to the one executor). */
  private making: BlockRead | null = null;
  private readonly executor = (resolve: (out: Uint8Array) => void, reject: (err: unknown) => void): void => {
    const r = this.making as BlockRead;
    r.resolve = resolve;
    r.reject = reject;
  };

  constructor(sources: ReadSources) {
    this.s = sources;
    this.bb = sources.blockBytes;
    this.k = sources.blockBytes / BLOCK_BYTES;
  }

  /**
   * Copies what block `lba` reads as before its mapping is consulted — a
   * pending write's bytes [within, within + n), or nothing for a pending
   * discard (`out` starts zeroed) — to out[dst …]; false if neither.
   */
  private pendingInto(lba: number, out: Uint8Array, dst: number, within: number, n: number): boolean {
    const p = this.s.zone.pendingAt(lba);
    if (p === null) return false;
    if (p === 'zero') return true;
    const mem = this.s.mem;
    if (p.desc >= 0) {
      const at = this.s.pool.bufferOf(p.desc) + within;
      out.set(mem.subarray(at, at + n), dst);
    } else if (p.arenaAt >= 0) {
      // Parked in the packer: only its compressed bytes are kept (fragment-arena.ts).
      const at = this.s.scratchAt;
      const why = this.decodeFragmentAt(p.arenaAt, p.size, at);
      if (why !== null) throw new FlashpackError('EINTERNAL', `volume: LBA ${lba} waiting in the packer does not decode: ${why}`);
      out.set(mem.subarray(at + within, at + within + n), dst);
    }
    return true;
  }

  /** `length` bytes at `offset` (already checked against the volume). */
  read(offset: number, length: number): Promise<Uint8Array> {
    const bb = this.bb;
    if (length === bb && offset % bb === 0) {
      let now: Promise<Uint8Array> | null;
      try {
        now = this.blockNow(offset / bb);
      } catch (err) {
        return Promise.reject(err); // a map sector that fails its checksum
      }
      if (now !== null) return now;
    }
    const first = Math.floor(offset / bb);
    const blocks = length === 0 ? 0 : Math.floor((offset + length - 1) / bb) - first + 1;
    if (blocks >= READ_GATHER_BLOCKS_MIN) return this.gathered(offset, length, null);
    return this.byBlock(offset, length);
  }

  /** Reads block `lba` and copies its bytes [within, within + n) to out[dst …] (`out` starts zeroed). */
  async into(lba: number, out: Uint8Array, dst: number, within: number, n: number): Promise<void> {
    const { map, pool, dev } = this.s;
    if (this.pendingInto(lba, out, dst, within, n)) return;
    this.inFlight++;
    try {
      const page = await map.page(lba);
      let m: number;
      let check: number;
      try {
        m = map.get(page, lba);
        check = map.checkOf(page, lba);
      } finally {
        map.unpin(page);
      }
      // A write or discard accepted while the page loaded is newer than the mapping.
      if (this.pendingInto(lba, out, dst, within, n)) return;
      const pbn = pbnOf(m);
      const state = stateOf(m);
      if (state === STATE_UNMAPPED || pbn === ZERO_PBN) return;
      const buf = await pool.allocAsync(this.bb);
      let plain = -1;
      try {
        await dev.read(pbn, buf, this.k);
        if (state !== STATE_UNCOMPRESSED) {
          plain = pool.tryAlloc(this.bb);
          if (plain < 0) plain = await pool.allocAsync(this.bb);
        }
        this.copyBlock(lba, m, check, pool.bufferOf(buf), plain, out, dst, within, n);
      } finally {
        pool.free(buf);
        if (plain >= 0) pool.free(plain);
      }
    } finally {
      this.inFlight--;
    }
  }

  /**
   * Decodes slot `slot` of the packed block at byte address `at` of the shared
   * memory into buffer `into` (a pool descriptor): null, or why it does not
   * decode to a whole block.
   */
  decodeSlotAt(at: number, slot: number, into: number): string | null {
    const range = packedFragment(this.s.mem.subarray(at, at + this.bb), slot);
    if (typeof range === 'string') return range;
    return this.decodeFragmentAt(at + range[0], range[1] - range[0], this.s.pool.bufferOf(into));
  }

  /**
   * Decodes the `size` compressed bytes at byte address `from` into the block
   * at byte address `to` (a packed slot, or a fragment waiting in the arena):
   * null, or why they do not decode to exactly a block.
   */
  decodeFragmentAt(from: number, size: number, to: number): string | null {
    const rt = this.s.runtime;
    let n: number;
    try {
      n = this.s.codec === 'deflate'
        ? inflateRegion(rt, rt.inflateScratch, from, size, to, this.bb, 0)
        : decompressRegion(rt, from, size, to, this.bb, rt.ctx);
    } catch (err) {
      return (err as Error).message;
    }
    return n === this.bb ? null : `fragment decodes to ${n} bytes, not ${this.bb}`;
  }

  /**
   * Copies bytes [within, within + n) of block `lba`, stored as mapping `m` at
   * byte address `at` of the shared memory, to out[dst …]: as they are, or a
   * packed slot decoded into buffer `plain` first; either way only once the
   * logical block matches `check` (ECORRUPT if it does not, or does not decode).
   */
  private copyBlock(lba: number, m: number, check: number, at: number, plain: number, out: Uint8Array, dst: number, within: number, n: number): void {
    const from = this.verified(lba, m, check, at, plain);
    out.set(this.s.mem.subarray(from + within, from + within + n), dst);
  }

  /**
   * The byte address of block `lba`'s logical bytes, stored as mapping `m` at
   * byte address `at` (a packed slot is decoded into buffer `plain`), once it
   * has matched `check`; ECORRUPT naming LBA, PBN and slot otherwise.
   */
  private verified(lba: number, m: number, check: number, at: number, plain: number): number {
    let from = at;
    const state = stateOf(m);
    let why: string | null = null;
    if (state !== STATE_UNCOMPRESSED) {
      why = this.decodeSlotAt(at, state - STATE_COMPRESSED_BASE, plain);
      from = this.s.pool.bufferOf(plain);
    }
    if (why === null) {
      const rt = this.s.runtime;
      const got = rt.exports.dataCheck(from, this.bb, rt.ctx) >>> 0;
      if (got === check) return from;
      why = `data check ${hex32(got)} does not match the block map's ${hex32(check)}`;
    }
    this.checkFailures++;
    const slot = state === STATE_UNCOMPRESSED ? '' : ` slot ${state - STATE_COMPRESSED_BASE}`;
    throw new FlashpackError('ECORRUPT', `volume: LBA ${lba} → PBN ${pbnOf(m)}${slot}: ${why}`);
  }

  /**
   * One aligned block whose map page is cached and whose buffers are free now
   * (the common one-block random read): the mapping read synchronously, one device
   * read completing into a callback with a reused record (BlockRead), one
   * promise (the caller's). Null when any of that does
   * not hold (the caller goes block by block).
   */
  private blockNow(lba: number): Promise<Uint8Array> | null {
    const { map, pool, dev } = this.s;
    const out = new Uint8Array(this.bb);
    if (this.pendingInto(lba, out, 0, 0, this.bb)) return Promise.resolve(out);
    const page = map.cachedPage(lba);
    if (page === null) return null;
    const m = map.get(page, lba);
    const pbn = pbnOf(m);
    const state = stateOf(m);
    if (state === STATE_UNMAPPED || pbn === ZERO_PBN) return Promise.resolve(out);
    const check = map.checkOf(page, lba);
    const buf = pool.tryAlloc(this.bb);
    if (buf < 0) return null;
    let plain = -1;
    if (state !== STATE_UNCOMPRESSED) {
      plain = pool.tryAlloc(this.bb);
      if (plain < 0) {
        pool.free(buf);
        return null;
      }
    }
    this.inFlight++;
    const r = this.spareReads.pop() ?? new BlockRead();
    r.lba = lba;
    r.mapping = m;
    r.check = check;
    r.buf = buf;
    r.plain = plain;
    r.out = out;
    this.making = r;
    const done = new Promise<Uint8Array>(this.executor);
    this.making = null;
    dev.readThen(pbn, buf, this.blockRead, r, this.k);
    return done;
  }

  /** blockNow()'s device read completed: the block copied or decoded into the caller's array, the record back to the spares. */
  private readonly blockRead = (err: FlashpackError | null, r: BlockRead): void => {
    const { pool } = this.s;
    const out = r.out as Uint8Array;
    const resolve = r.resolve as (out: Uint8Array) => void;
    const reject = r.reject as (err: unknown) => void;
    try {
      if (err !== null) reject(err);
      else {
        this.copyBlock(r.lba, r.mapping, r.check, pool.bufferOf(r.buf), r.plain, out, 0, 0, this.bb);
        resolve(out);
      }
    } catch (e) {
      reject(e);
    } finally {
      pool.free(r.buf);
      if (r.plain >= 0) pool.free(r.plain);
      this.inFlight--;
      r.out = r.resolve = r.reject = null;
      r.buf = r.plain = -1;
      this.spareReads.push(r);
    }
  };

  /** A short read: its blocks one by one. */
  private async byBlock(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    const parts: Promise<void>[] = [];
    for (let pos = 0; pos < length;) {
      const at = offset + pos;
      const lba = Math.floor(at / this.bb);
      const within = at % this.bb;
      const n = Math.min(this.bb - within, length - pos);
      parts.push(this.into(lba, out, pos, within, n));
      pos += n;
    }
    await Promise.all(parts);
    return out;
  }

  /**
   * A read of many blocks: every mapping first (a block-map page at a time),
   * then each stored block read once — a packed block holding several of the
   * range's fragments is read once, and runs of consecutive PBNs are one
   * device read into a staging buffer — then copied or decoded into `out` as
   * each device read completes. With a `tally` (a scrub), a block or map
   * sector that fails is recorded there and the rest is still verified.
   */
  private async gathered(offset: number, length: number, tally: ScrubTally | null): Promise<Uint8Array> {
    const { map } = this.s;
    // A scrub returns no bytes: it only asks whether a block is pending (copying none of it).
    const out = tally === null ? new Uint8Array(length) : NO_BYTES;
    const bb = this.bb;
    const first = Math.floor(offset / bb);
    const end = Math.floor((offset + length - 1) / bb) + 1;
    const maps = new Float64Array(end - first).fill(-1);
    const checks = new Uint32Array(end - first);
    this.inFlight++;
    try {
      for (let lba = first; lba < end;) {
        const pageEnd = Math.min(end, (Math.floor(lba / MAP_ENTRIES_PER_PAGE) + 1) * MAP_ENTRIES_PER_PAGE);
        const page = await map.page(lba);
        try {
          // Pending writes and the mapping are read in one synchronous pass: a write is either still pending or mapped.
          for (; lba < pageEnd; lba++) {
            const from = Math.max(offset, lba * bb);
            const to = Math.min(offset + length, (lba + 1) * bb);
            if (tally === null ? this.pendingInto(lba, out, from - offset, from - lba * bb, to - from) : this.pendingInto(lba, out, 0, 0, 0)) continue;
            let m: number;
            try {
              m = map.get(page, lba);
            } catch (err) {
              if (tally === null) throw err;
              // A map sector that fails its checksum: one finding, then past the sector.
              tally.bad.push({ lba, pbn: -1, slot: -1, reason: (err as Error).message });
              const base = Math.floor(lba / MAP_ENTRIES_PER_PAGE) * MAP_ENTRIES_PER_PAGE;
              lba = Math.min(pageEnd, base + (Math.floor((lba - base) / MAP_ENTRIES_PER_SECTOR) + 1) * MAP_ENTRIES_PER_SECTOR) - 1;
              continue;
            }
            if (stateOf(m) !== STATE_UNMAPPED && pbnOf(m) !== ZERO_PBN) {
              maps[lba - first] = m;
              checks[lba - first] = map.checkOf(page, lba);
            }
          }
        } finally {
          map.unpin(page);
        }
      }
      const order: number[] = [];
      for (let k = 0; k < maps.length; k++) if (maps[k] >= 0) order.push(k);
      if (order.length === 0) return out;
      order.sort((a, b) => maps[a] - maps[b]);
      return await new Promise<Uint8Array>((resolve, reject) => {
        const g: Gather = { first, offset, length, out, maps, checks, tally, order, runs: [], next: 0, inFlight: 0, waiting: false, failure: null, resolve, reject };
        for (let i = 0; i < order.length;) {
          const start = pbnOf(maps[order[i]]);
          let last = start;
          let j = i + 1;
          for (; j < order.length; j++) {
            const p = pbnOf(maps[order[j]]);
            if (p !== last && (p !== last + this.k || p - start + this.k > READ_RUN_PBNS_MAX)) break;
            last = p;
          }
          g.runs.push({ g, pbn: start, blocks: last - start + this.k, from: i, to: j, buf: -1, plain: -1 });
          i = j;
        }
        this.issue(g);
      });
    } finally {
      this.inFlight--;
    }
  }

  /**
   * Issues g's runs while buffers are free. With none free and none of g's
   * reads in flight to free one, it waits for them (allocAsync, in the order
   * the module header states); otherwise a completion calls it again.
   */
  private issue(g: Gather): void {
    const pool = this.s.pool;
    while (g.next < g.runs.length && g.failure === null && !g.waiting) {
      const r = g.runs[g.next];
      const needsPlain = this.needsPlain(r);
      const size = r.blocks === this.k ? this.bb : STAGING_BYTES;
      if (needsPlain && r.plain < 0) r.plain = pool.tryAlloc(this.bb);
      if (r.buf < 0 && (!needsPlain || r.plain >= 0)) r.buf = pool.tryAlloc(size);
      if (r.buf < 0 || (needsPlain && r.plain < 0)) {
        if (g.inFlight > 0) return;
        g.waiting = true;
        this.waitForBuffers(r, needsPlain, size).then(
          () => {
            g.waiting = false;
            this.issue(g);
          },
          (err: unknown) => {
            g.waiting = false;
            this.fail(g, err);
          },
        );
        return;
      }
      g.next++;
      g.inFlight++;
      this.s.dev.readThen(r.pbn, r.buf, this.runRead, r, r.blocks);
    }
    this.finishIfDone(g);
  }

  private async waitForBuffers(r: Run, needsPlain: boolean, size: number): Promise<void> {
    const pool = this.s.pool;
    if (needsPlain && r.plain < 0) r.plain = await pool.allocAsync(this.bb);
    if (r.buf < 0) r.buf = await pool.allocAsync(size);
  }

  private needsPlain(r: Run): boolean {
    const { maps, order } = r.g;
    for (let i = r.from; i < r.to; i++) if (stateOf(maps[order[i]]) !== STATE_UNCOMPRESSED) return true;
    return false;
  }

  /** A run's device read completed: its blocks into `out`, its buffers back, the next runs out. */
  private readonly runRead = (err: FlashpackError | null, r: Run): void => {
    const g = r.g;
    const pool = this.s.pool;
    try {
      if (err !== null) {
        if (g.tally === null) throw err;
        for (let i = r.from; i < r.to; i++) this.tallyBad(g, g.order[i], err.message);
      } else if (g.failure === null) this.copyRun(r);
    } catch (e) {
      if (g.failure === null) g.failure = e;
    } finally {
      pool.free(r.buf);
      if (r.plain >= 0) pool.free(r.plain);
      r.buf = -1;
      r.plain = -1;
      g.inFlight--;
    }
    this.issue(g);
  };

  /**
   * Copies (or decodes) the blocks stored in run r's buffer into g.out, each
   * verified first; consecutive whole blocks in one copy. A scrub (g.tally)
   * records a block that fails and goes on.
   */
  private copyRun(r: Run): void {
    const { g } = r;
    const { maps, checks, order, first, offset, length, out, tally } = g;
    const { mem, pool } = this.s;
    const base = pool.bufferOf(r.buf);
    for (let i = r.from; i < r.to; i++) {
      const k = order[i];
      const m = maps[k];
      const lba = first + k;
      const at = base + (pbnOf(m) - r.pbn) * BLOCK_BYTES;
      const from = Math.max(offset, lba * this.bb);
      let to = Math.min(offset + length, (lba + 1) * this.bb);
      const within = from - lba * this.bb;
      if (tally !== null) {
        try {
          this.verified(lba, m, checks[k], at, r.plain);
          tally.checked++;
        } catch (err) {
          this.tallyBad(g, k, (err as Error).message);
        }
        continue;
      }
      if (stateOf(m) !== STATE_UNCOMPRESSED) {
        this.copyBlock(lba, m, checks[k], at, r.plain, out, from - offset, within, to - from);
        continue;
      }
      this.verified(lba, m, checks[k], at, -1);
      // Blocks next to each other both logically and on the device: one copy, each verified.
      while (i + 1 < r.to && order[i + 1] === order[i] + 1 && stateOf(maps[order[i + 1]]) === STATE_UNCOMPRESSED && pbnOf(maps[order[i + 1]]) === pbnOf(maps[order[i]]) + this.k) {
        i++;
        this.verified(first + order[i], maps[order[i]], checks[order[i]], base + (pbnOf(maps[order[i]]) - r.pbn) * BLOCK_BYTES, -1);
        to = Math.min(offset + length, (first + order[i] + 1) * this.bb);
      }
      out.set(mem.subarray(at + within, at + within + to - from), from - offset);
    }
  }

  /** Records block first + k of a scrub as bad. */
  private tallyBad(g: Gather, k: number, reason: string): void {
    const m = g.maps[k];
    const state = stateOf(m);
    (g.tally as ScrubTally).bad.push({ lba: g.first + k, pbn: pbnOf(m), slot: state === STATE_UNCOMPRESSED ? -1 : state - STATE_COMPRESSED_BASE, reason });
  }

  /**
   * Verifies every stored block of LBAs [first, first + count) against its
   * data check (a pending write is not yet stored: not counted), recording
   * each that fails, and each map sector that fails, in `tally`.
   */
  async scrub(first: number, count: number, tally: ScrubTally): Promise<void> {
    if (count > 0) await this.gathered(first * this.bb, count * this.bb, tally);
  }

  private fail(g: Gather, err: unknown): void {
    if (g.failure === null) g.failure = err;
    this.finishIfDone(g);
  }

  private finishIfDone(g: Gather): void {
    if (g.inFlight > 0 || g.waiting) return;
    if (g.failure !== null) {
      // Buffers a waiting run took before the failure go back.
      for (let i = g.next; i < g.runs.length; i++) this.release(g.runs[i]);
      g.reject(g.failure);
    } else if (g.next === g.runs.length) g.resolve(g.out);
  }

  private release(r: Run): void {
    if (r.buf >= 0) this.s.pool.free(r.buf);
    if (r.plain >= 0) this.s.pool.free(r.plain);
    r.buf = -1;
    r.plain = -1;
  }
}
