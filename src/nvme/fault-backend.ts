/**
 * A fault-injecting backend wrapped around another one, for crash and error
 * tests of everything above it:
 *
 * - A volatile write cache. Writes reach the inner backend at once (reads see
 *   them), but until a flush they are recorded in an undo log: per sector (512
 *   bytes by default) the values it held since it was last durable. A power
 *   cut picks, for every such sector independently, one of those values or the
 *   newest ('tear'), or the durable one ('drop'), so unflushed writes vanish or
 *   tear at sector granularity. Flushed and FUA data always survives.
 * - Media errors on chosen LBAs (reads fail with Unrecovered Read Error,
 *   writes with Write Fault).
 * - Latency added to every command.
 * - Hot removal: outstanding and new commands fail with a path error; sleeping
 *   commands wake at once, so nothing hangs.
 *
 * State shared by the host and every device worker lives in two
 * SharedArrayBuffers: a control block and the undo log. Writers serialize on a
 * lock word while they capture old data, write and log, so the log order is
 * the order the media saw.
 */
import { invalid, FlashpackError, badArgument, checkOptions } from '../errors.js';
import type { Backend, BackendDescription, Device } from './backend.js';
import { openDevice } from './devices.js';
import {
  STATUS_PATH_ERROR, STATUS_SUCCESS, STATUS_UNRECOVERED_READ_ERROR, STATUS_WRITE_FAULT,
} from './spec.js';

// Control block (Int32 words).
const C_PRESENT = 0;
const C_EPOCH = 1;
const C_LOCK = 2;
const C_READ_US = 3;
const C_WRITE_US = 4;
const C_FLUSH_US = 5;
const C_MEDIA_ERRORS = 6;
const C_LOG_BYTES = 7;
const C_LOG_RECORDS = 8;
const C_DESTAGES = 9;
const C_VOLATILE = 10; // records of writes not yet durable (FUA records excluded)
const CONTROL_BYTES = 4096;
// Media error table: Float64 triples [lba, count, kinds] from this byte offset.
const MEDIA_TABLE_AT = 1024;
export const MEDIA_ERRORS_MAX = 64;

const KIND_READ = 1;
const KIND_WRITE = 2;

// Undo log record: [lbaLow, lbaHigh, blocks, flags] then, unless FUA, the old bytes.
const RECORD_HEADER_BYTES = 16;
const RECORD_FUA = 1;

const DEFAULT_CACHE_BYTES = 64 << 20;
const LOCK_SPINS = 1000;
const LOCK_WAIT_MAX_MS = 60_000;

export type PowerCutMode = 'tear' | 'drop' | 'keep';

export interface FaultBackendOptions {
  /** Undo-log capacity in bytes (default 64 MiB). When it fills, the cache destages: everything becomes durable. */
  cacheBytes?: number;
  /** Atomic write unit in bytes (default 512): a power cut never splits one. */
  sectorBytes?: number;
}

export interface PowerCutOptions {
  /** 'tear' (default): each unflushed sector independently keeps any value it held since it was durable. 'drop': every unflushed write is lost. 'keep': the cache made it. */
  mode?: PowerCutMode;
  /** Seed of the tear's choices. */
  seed?: number;
}

export interface PowerCutReport {
  /** Writes that were not yet durable. */
  unflushedWrites: number;
  /** Sectors those writes touched. */
  sectors: number;
  /** Sectors set back to an older value. */
  sectorsReverted: number;
}

export type MediaErrorKind = 'read' | 'write' | 'both';

export class FaultBackend implements Backend {
  readonly inner: Backend;
  readonly blockSize: number;
  readonly blocks: number;
  readonly sectorBytes: number;
  private readonly control: SharedArrayBuffer;
  private readonly log: SharedArrayBuffer;
  private readonly c: Int32Array;

  /**
   * Wraps `inner`. Errors: EINVAL for an inner that is not a Backend, options
   * that are not an object, a sector size that is not at least 512 and a
   * divisor of the block, or a cache that cannot hold one block.
   */
  constructor(inner: Backend, opts?: FaultBackendOptions) {
    const x = inner as Backend | null;
    if (typeof x !== 'object' || x === null || typeof x.describe !== 'function' || typeof x.present !== 'function' || typeof x.blockSize !== 'number') {
      throw badArgument('nvme.FaultBackend: inner', 'a Backend (MemoryBackend or FileBackend)', inner);
    }
    const o = checkOptions('nvme.FaultBackend: options', opts);
    const sector = o.sectorBytes ?? 512;
    if (typeof sector !== 'number' || !Number.isInteger(sector) || sector < 512 || inner.blockSize % sector !== 0) {
      throw badArgument('nvme.FaultBackend: options.sectorBytes', `an integer ≥ 512 that divides the ${inner.blockSize}-byte block`, sector);
    }
    const cacheBytes = o.cacheBytes ?? DEFAULT_CACHE_BYTES;
    if (typeof cacheBytes !== 'number' || !Number.isSafeInteger(cacheBytes) || cacheBytes < RECORD_HEADER_BYTES + inner.blockSize) {
      throw badArgument('nvme.FaultBackend: options.cacheBytes', `a whole number of bytes that holds one ${inner.blockSize}-byte block and its record header`, cacheBytes);
    }
    // Whole 8-byte words: the log is read through Int32Array views.
    const cache = Math.floor(cacheBytes / 8) * 8;
    this.inner = inner;
    this.blockSize = inner.blockSize;
    this.blocks = inner.blocks;
    this.sectorBytes = sector;
    this.control = new SharedArrayBuffer(CONTROL_BYTES);
    this.log = new SharedArrayBuffer(cache);
    this.c = new Int32Array(this.control);
    this.c[C_PRESENT] = 1;
  }

  describe(): BackendDescription {
    return {
      kind: 'fault', blockSize: this.blockSize, blocks: this.blocks, inner: this.inner.describe(),
      control: this.control, log: this.log, sectorBytes: this.sectorBytes,
    };
  }

  get epoch(): number {
    return Atomics.load(this.c, C_EPOCH);
  }

  present(epoch: number): boolean {
    return Atomics.load(this.c, C_PRESENT) === 1 && Atomics.load(this.c, C_EPOCH) === epoch && this.inner.present(this.inner.epoch);
  }

  /** Latency added before each command runs, in microseconds. EINVAL for a value that is not an integer from 0 to 60,000,000. */
  setLatency(lat: { readUs?: number; writeUs?: number; flushUs?: number }): void {
    const o = checkOptions('fault.setLatency: latency', lat);
    for (const [k, w] of [['readUs', C_READ_US], ['writeUs', C_WRITE_US], ['flushUs', C_FLUSH_US]] as const) {
      const v = o[k];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 60_000_000) throw badArgument(`fault.setLatency: latency.${k}`, 'an integer from 0 to 60,000,000', v);
      Atomics.store(this.c, w, v);
    }
  }

  /**
   * Makes reads and/or writes of `count` blocks from `lba` fail with a media
   * error, until clearMediaErrors(). EINVAL for a range outside the device, a
   * kind other than 'read', 'write' or 'both', or more than MEDIA_ERRORS_MAX ranges.
   */
  injectMediaError(lba: number, count = 1, kind: MediaErrorKind = 'read'): void {
    if (typeof lba !== 'number' || !Number.isSafeInteger(lba) || lba < 0) throw badArgument('fault.injectMediaError: lba', 'a whole number', lba);
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1) throw badArgument('fault.injectMediaError: count', 'an integer ≥ 1', count);
    if (kind !== 'read' && kind !== 'write' && kind !== 'both') throw badArgument('fault.injectMediaError: kind', "'read', 'write' or 'both'", kind);
    if (lba + count > this.blocks) {
      throw invalid(`fault backend: media error at LBA ${lba} for ${count} blocks outside 0..${this.blocks}`);
    }
    const n = Atomics.load(this.c, C_MEDIA_ERRORS);
    if (n >= MEDIA_ERRORS_MAX) throw invalid(`fault backend: more than ${MEDIA_ERRORS_MAX} media error ranges`);
    const t = new Float64Array(this.control, MEDIA_TABLE_AT, MEDIA_ERRORS_MAX * 3);
    t[n * 3] = lba;
    t[n * 3 + 1] = count;
    t[n * 3 + 2] = kind === 'read' ? KIND_READ : kind === 'write' ? KIND_WRITE : KIND_READ | KIND_WRITE;
    Atomics.store(this.c, C_MEDIA_ERRORS, n + 1);
  }

  clearMediaErrors(): void {
    Atomics.store(this.c, C_MEDIA_ERRORS, 0);
  }

  /** Hot removal: the device vanishes; everything outstanding or new fails with a path error. */
  remove(): void {
    Atomics.store(this.c, C_PRESENT, 0);
    Atomics.notify(this.c, C_PRESENT);
  }

  /** Writes not yet durable (in the volatile cache). */
  get unflushedWrites(): number {
    return Atomics.load(this.c, C_VOLATILE);
  }

  /** Times the cache filled and destaged everything (making it durable). */
  get destages(): number {
    return Atomics.load(this.c, C_DESTAGES);
  }

  /**
   * Cuts the power: the device disappears (as remove()), then the volatile cache
   * is lost according to `mode`, and the inner backend holds what a real drive
   * would after the cut. powerOn() brings the device back for a new controller.
   * EINVAL for options that are not an object, or a bad mode or seed.
   */
  powerCut(opts?: PowerCutOptions): PowerCutReport {
    const o = checkOptions('fault.powerCut: options', opts);
    const mode = o.mode ?? 'tear';
    if (mode !== 'tear' && mode !== 'drop' && mode !== 'keep') throw badArgument('fault.powerCut: options.mode', "'tear', 'drop' or 'keep'", mode);
    const seed = o.seed ?? 1;
    if (typeof seed !== 'number' || !Number.isFinite(seed)) throw badArgument('fault.powerCut: options.seed', 'a number', seed);
    this.remove();
    lock(this.c);
    try {
      const report = this.loseCache(mode, seed);
      clearLog(this.c);
      return report;
    } finally {
      unlock(this.c);
    }
  }

  /** Power back on after powerCut() (or re-insert after remove()): a new epoch for new controllers. */
  powerOn(): void {
    lock(this.c);
    clearLog(this.c);
    Atomics.add(this.c, C_EPOCH, 1);
    Atomics.store(this.c, C_PRESENT, 1);
    unlock(this.c);
  }

  private loseCache(mode: PowerCutMode, seed: number): PowerCutReport {
    const records = Atomics.load(this.c, C_LOG_RECORDS);
    const report: PowerCutReport = { unflushedWrites: Atomics.load(this.c, C_VOLATILE), sectors: 0, sectorsReverted: 0 };
    if (records === 0 || mode === 'keep') return report;
    const spb = this.blockSize / this.sectorBytes;
    // Per sector: byte offsets in the log of the values it held, oldest first (the durable one first).
    const history = new Map<number, number[]>();
    const logBytes = new Uint8Array(this.log);
    const h = new Int32Array(this.log);
    let at = 0;
    for (let r = 0; r < records; r++) {
      const lba = (h[at >> 2] >>> 0) + (h[(at >> 2) + 1] >>> 0) * 2 ** 32;
      const blocks = h[(at >> 2) + 2];
      const fua = (h[(at >> 2) + 3] & RECORD_FUA) !== 0;
      const data = at + RECORD_HEADER_BYTES;
      for (let s = 0; s < blocks * spb; s++) {
        const sector = lba * spb + s;
        if (fua) history.delete(sector); // durable now: nothing older can come back
        else {
          let list = history.get(sector);
          if (list === undefined) history.set(sector, (list = []));
          list.push(data + s * this.sectorBytes);
        }
      }
      at += recordBytes(blocks * this.blockSize, fua);
    }
    report.sectors = history.size;
    const rand = mulberry32(seed);
    const dev = openDevice(this.inner.describe());
    try {
      const block = new Uint8Array(this.blockSize);
      // Group the reverted sectors by block: read, patch, write back.
      const byBlock = new Map<number, [number, number][]>();
      // Sectors in address order: the same seed tears the same way whatever order concurrent writes reached the log.
      for (const sector of [...history.keys()].sort((a, b) => a - b)) {
        const values = history.get(sector)!;
        const pick = mode === 'drop' ? 0 : Math.floor(rand() * (values.length + 1));
        if (pick === values.length) continue; // the newest value stays
        const lba = Math.floor(sector / spb);
        let list = byBlock.get(lba);
        if (list === undefined) byBlock.set(lba, (list = []));
        list.push([sector % spb, values[pick]]);
        report.sectorsReverted++;
      }
      for (const [lba, patches] of byBlock) {
        if (dev.read(lba, 1, block, 0) !== STATUS_SUCCESS) throw new FlashpackError('ENXIO', `fault backend: power cut cannot read LBA ${lba}`);
        for (const [s, from] of patches) block.set(logBytes.subarray(from, from + this.sectorBytes), s * this.sectorBytes);
        if (dev.write(lba, 1, block, 0, false) !== STATUS_SUCCESS) throw new FlashpackError('ENXIO', `fault backend: power cut cannot write LBA ${lba}`);
      }
      dev.flush();
    } finally {
      dev.close();
    }
    return report;
  }
}

const recordBytes = (dataBytes: number, fua: boolean): number => RECORD_HEADER_BYTES + (fua ? 0 : dataBytes);

/** The cache lock: spin briefly, then sleep on the word (a holder may be in fdatasync). */
function lock(c: Int32Array): void {
  const deadline = Date.now() + LOCK_WAIT_MAX_MS;
  for (let i = 0; Atomics.compareExchange(c, C_LOCK, 0, 1) !== 0; i++) {
    if (i < LOCK_SPINS) continue;
    if (Date.now() > deadline) throw new FlashpackError('EINTERNAL', `fault backend: cache lock held for over ${LOCK_WAIT_MAX_MS} ms`);
    Atomics.wait(c, C_LOCK, 1, 1);
  }
}

function unlock(c: Int32Array): void {
  Atomics.store(c, C_LOCK, 0);
  Atomics.notify(c, C_LOCK, 1);
}

function clearLog(c: Int32Array): void {
  Atomics.store(c, C_LOG_BYTES, 0);
  Atomics.store(c, C_LOG_RECORDS, 0);
  Atomics.store(c, C_VOLATILE, 0);
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The device side of a FaultBackend, one per device worker. */
export class FaultDevice implements Device {
  private readonly inner: Device;
  private readonly c: Int32Array;
  private readonly media: Float64Array;
  private readonly log: Uint8Array;
  private readonly logWords: Int32Array;
  private readonly bs: number;
  private readonly epoch: number;

  constructor(desc: Extract<BackendDescription, { kind: 'fault' }>) {
    this.inner = openDevice(desc.inner);
    this.c = new Int32Array(desc.control);
    this.media = new Float64Array(desc.control, MEDIA_TABLE_AT, MEDIA_ERRORS_MAX * 3);
    this.log = new Uint8Array(desc.log);
    this.logWords = new Int32Array(desc.log);
    this.bs = desc.blockSize;
    this.epoch = Atomics.load(this.c, C_EPOCH);
  }

  private alive(): boolean {
    return Atomics.load(this.c, C_PRESENT) === 1 && Atomics.load(this.c, C_EPOCH) === this.epoch;
  }

  /** Sleeps the injected latency; wakes early (and reports false) if the device goes away. */
  private delay(word: number): boolean {
    const us = Atomics.load(this.c, word);
    if (us > 0 && this.alive()) Atomics.wait(this.c, C_PRESENT, 1, us / 1000);
    return this.alive();
  }

  private mediaError(lba: number, blocks: number, kind: number): boolean {
    const n = Atomics.load(this.c, C_MEDIA_ERRORS);
    for (let i = 0; i < n; i++) {
      const from = this.media[i * 3];
      if ((this.media[i * 3 + 2] & kind) !== 0 && from < lba + blocks && lba < from + this.media[i * 3 + 1]) return true;
    }
    return false;
  }

  read(lba: number, blocks: number, mem: Uint8Array, at: number): number {
    if (!this.delay(C_READ_US)) return STATUS_PATH_ERROR;
    if (this.mediaError(lba, blocks, KIND_READ)) return STATUS_UNRECOVERED_READ_ERROR;
    const st = this.inner.read(lba, blocks, mem, at);
    return this.alive() ? st : STATUS_PATH_ERROR;
  }

  write(lba: number, blocks: number, mem: Uint8Array, at: number, fua: boolean): number {
    return this.mutate(lba, blocks, fua, () => this.inner.write(lba, blocks, mem, at, fua));
  }

  writeZeroes(lba: number, blocks: number, fua: boolean): number {
    return this.mutate(lba, blocks, fua, () => this.inner.writeZeroes(lba, blocks, fua));
  }

  deallocate(lba: number, blocks: number): number {
    return this.mutate(lba, blocks, false, () => this.inner.deallocate(lba, blocks));
  }

  flush(): number {
    if (!this.delay(C_FLUSH_US)) return STATUS_PATH_ERROR;
    lock(this.c);
    try {
      if (!this.alive()) return STATUS_PATH_ERROR;
      const st = this.inner.flush();
      if (st === STATUS_SUCCESS) clearLog(this.c);
      return st;
    } finally {
      unlock(this.c);
    }
  }

  close(): void {
    this.inner.close();
  }

  /** Capture the old bytes into the undo log, then change the media, as one step under the lock. */
  private mutate(lba: number, blocks: number, fua: boolean, apply: () => number): number {
    if (!this.delay(C_WRITE_US)) return STATUS_PATH_ERROR;
    if (this.mediaError(lba, blocks, KIND_WRITE)) return STATUS_WRITE_FAULT;
    lock(this.c);
    try {
      if (!this.alive()) return STATUS_PATH_ERROR;
      const bytes = recordBytes(blocks * this.bs, fua);
      let at = Atomics.load(this.c, C_LOG_BYTES);
      if (at + bytes > this.log.length && at > 0) {
        // The cache is full: destage it all (it is durable now) and start over.
        const st = this.inner.flush();
        if (st !== STATUS_SUCCESS) return st;
        clearLog(this.c);
        Atomics.add(this.c, C_DESTAGES, 1);
        at = 0;
      }
      const loggable = bytes <= this.log.length;
      if (loggable && !fua) {
        const st = this.inner.read(lba, blocks, this.log, at + RECORD_HEADER_BYTES);
        if (st !== STATUS_SUCCESS) return st;
      }
      const st = apply();
      if (st !== STATUS_SUCCESS) return st;
      if (!loggable) {
        // Larger than the whole cache: written through.
        const f = this.inner.flush();
        return f;
      }
      const w = at >> 2;
      this.logWords[w] = lba >>> 0;
      this.logWords[w + 1] = Math.floor(lba / 2 ** 32);
      this.logWords[w + 2] = blocks;
      this.logWords[w + 3] = fua ? RECORD_FUA : 0;
      Atomics.store(this.c, C_LOG_BYTES, at + bytes);
      Atomics.add(this.c, C_LOG_RECORDS, 1);
      if (!fua) Atomics.add(this.c, C_VOLATILE, 1);
      return STATUS_SUCCESS;
    } finally {
      unlock(this.c);
    }
  }
}
