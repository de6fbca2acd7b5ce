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
 * SharedArrayBuffers: a control block and the undo log (their layout, and the
 * device workers' side, are in fault-device.ts). Writers serialize on a lock
 * word while they capture old data, write and log, so the log order is the
 * order the media saw.
 */
import { invalid, FlashpackError, badArgument, checkOptions } from '../errors.js';
import type { Backend, BackendDescription } from './backend.js';
import { openDevice } from './devices.js';
import { STATUS_SUCCESS } from './spec.js';
import {
  CONTROL_BYTES, C_DESTAGES, C_EPOCH, C_FLUSH_US, C_LOG_RECORDS, C_MEDIA_ERRORS, C_PRESENT, C_READ_US, C_VOLATILE, C_WRITE_US,
  KIND_READ, KIND_WRITE, MEDIA_ERRORS_MAX, MEDIA_TABLE_AT, RECORD_FUA, RECORD_HEADER_BYTES, clearLog, lock, recordBytes, unlock,
} from './fault-device.js';

export { MEDIA_ERRORS_MAX } from './fault-device.js';

const DEFAULT_CACHE_BYTES = 64 << 20;

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
