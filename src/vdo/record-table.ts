/**
 * A table of records filed under whole-number keys below 2^48: the hash
 * locks' index (48-bit data key → the write holding that key's lock,
 * hash-lock.ts) and the logical zone's LBA states (LBA → state,
 * logical-zone.ts).
 *
 * Open addressing with linear probing over one array of records, so filing
 * and removing allocates nothing. A Map keyed by a 48-bit number would box
 * every key in a heap number, and rehash its whole backing store as it grows
 * and shrinks; a write parked in the packer (up to a flush) keeps its hash
 * lock and its LBA state, so with thousands of parked writes those boxes and
 * stores lived through scavenges and were copied.
 *
 * Invariants: every key appears at most once; an entry lies at or after its
 * home slot with no empty slot between (deletion shifts entries back rather
 * than leaving tombstones, so a lookup stops at the first empty slot); the
 * table is at most half full (it doubles first).
 */
import { assert } from '../assert.js';

/** What the table holds: a record and the key it is filed under (a whole number below 2^48). */
export interface KeyedRecord {
  key: number;
}

const MIN_CAPACITY = 64;

export class RecordTable<T extends KeyedRecord> {
  private slots: (T | null)[];
  private mask: number;
  private shift: number;
  private count = 0;

  constructor(capacity = 1024) {
    const cap = Math.max(MIN_CAPACITY, 2 ** Math.ceil(Math.log2(capacity)));
    this.slots = new Array<T | null>(cap).fill(null);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
  }

  /** Records filed. */
  get size(): number {
    return this.count;
  }

  /** Slots (a power of two). */
  get capacity(): number {
    return this.slots.length;
  }

  /** The record filed under `key`, or undefined. */
  get(key: number): T | undefined {
    const slots = this.slots;
    for (let i = this.home(key); ; i = (i + 1) & this.mask) {
      const r = slots[i];
      if (r === null) return undefined;
      if (r.key === key) return r;
    }
  }

  /** Files `rec` under its key, in place of the record filed there before, which it returns (or undefined). */
  set(rec: T): T | undefined {
    const key = rec.key;
    assert(Number.isInteger(key) && key >= 0 && key < 2 ** 48, 'record table: a key is a whole number below 2^48');
    if (2 * (this.count + 1) > this.slots.length) this.grow();
    const slots = this.slots;
    for (let i = this.home(key); ; i = (i + 1) & this.mask) {
      const r = slots[i];
      if (r === null) {
        slots[i] = rec;
        this.count++;
        return undefined;
      }
      if (r.key === key) {
        slots[i] = rec;
        return r;
      }
    }
  }

  /** Removes `rec` if it is the record filed under its key; whether it was. */
  deleteRecord(rec: T): boolean {
    const slots = this.slots;
    const mask = this.mask;
    let i = this.home(rec.key);
    for (;; i = (i + 1) & mask) {
      const r = slots[i];
      if (r === null) return false;
      if (r.key === rec.key) {
        if (r !== rec) return false;
        break;
      }
    }
    // Backward shift: an entry after the hole moves into it unless its home lies
    // after the hole (cyclically, within (hole, j]), where a lookup would not pass the hole.
    let hole = i;
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const r = slots[j];
      if (r === null) break;
      const h = this.home(r.key);
      if (((j - h) & mask) >= ((j - hole) & mask)) {
        slots[hole] = r;
        hole = j;
      }
    }
    slots[hole] = null;
    this.count--;
    return true;
  }

  /** Calls `fn` with every record filed (none may be filed or removed meanwhile). */
  forEach(fn: (rec: T) => void): void {
    const slots = this.slots;
    const count = this.count;
    for (const r of slots) if (r !== null) fn(r);
    assert(this.slots === slots && this.count === count, 'record table: changed while it was walked');
  }

  /** Fibonacci hashing of the key's two halves (no allocation: both are int32 operations); set() checked the key. */
  private home(key: number): number {
    const lo = key >>> 0;
    const hi = (key / 2 ** 32) | 0;
    return Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
  }

  private grow(): void {
    const old = this.slots;
    const cap = old.length * 2;
    this.slots = new Array<T | null>(cap).fill(null);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.count = 0;
    for (const r of old) if (r !== null) this.set(r);
  }
}
