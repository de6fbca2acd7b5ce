/**
 * The device side of a FaultBackend (fault-backend.ts), one per device worker,
 * and the layout of the state both sides share: a control block of Int32 words
 * and an undo log of records. The inner device is opened by the caller
 * (devices.ts), so this file imports no backend.
 */
import type { BackendDescription, Device } from './backend.js';
import { FlashpackError } from '../errors.js';
import {
  STATUS_PATH_ERROR, STATUS_SUCCESS, STATUS_UNRECOVERED_READ_ERROR, STATUS_WRITE_FAULT,
} from './spec.js';

// Control block (Int32 words).
export const C_PRESENT = 0;
export const C_EPOCH = 1;
export const C_LOCK = 2;
export const C_READ_US = 3;
export const C_WRITE_US = 4;
export const C_FLUSH_US = 5;
export const C_MEDIA_ERRORS = 6;
export const C_LOG_BYTES = 7;
export const C_LOG_RECORDS = 8;
export const C_DESTAGES = 9;
export const C_VOLATILE = 10; // records of writes not yet durable (FUA records excluded)
export const CONTROL_BYTES = 4096;
// Media error table: Float64 triples [lba, count, kinds] from this byte offset.
export const MEDIA_TABLE_AT = 1024;
export const MEDIA_ERRORS_MAX = 64;

export const KIND_READ = 1;
export const KIND_WRITE = 2;

// Undo log record: [lbaLow, lbaHigh, blocks, flags] then, unless FUA, the old bytes.
export const RECORD_HEADER_BYTES = 16;
export const RECORD_FUA = 1;

const LOCK_SPINS = 1000;
const LOCK_WAIT_MAX_MS = 60_000;

export const recordBytes = (dataBytes: number, fua: boolean): number => RECORD_HEADER_BYTES + (fua ? 0 : dataBytes);

/** The cache lock: spin briefly, then sleep on the word (a holder may be in fdatasync). */
export function lock(c: Int32Array): void {
  const deadline = Date.now() + LOCK_WAIT_MAX_MS;
  for (let i = 0; Atomics.compareExchange(c, C_LOCK, 0, 1) !== 0; i++) {
    if (i < LOCK_SPINS) continue;
    if (Date.now() > deadline) throw new FlashpackError('EINTERNAL', `fault backend: cache lock held for over ${LOCK_WAIT_MAX_MS} ms`);
    Atomics.wait(c, C_LOCK, 1, 1);
  }
}

export function unlock(c: Int32Array): void {
  Atomics.store(c, C_LOCK, 0);
  Atomics.notify(c, C_LOCK, 1);
}

export function clearLog(c: Int32Array): void {
  Atomics.store(c, C_LOG_BYTES, 0);
  Atomics.store(c, C_LOG_RECORDS, 0);
  Atomics.store(c, C_VOLATILE, 0);
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

  /** `inner`: the device desc.inner describes, opened by the caller. */
  constructor(desc: Extract<BackendDescription, { kind: 'fault' }>, inner: Device) {
    this.inner = inner;
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
