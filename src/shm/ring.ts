/**
 * Bounded lock-free rings in the shared memory: the JS half of
 * assembly/ring.ts, same layout and protocol, so JS and WASM can produce or
 * consume the same ring in either direction.
 *
 * Indices are free-running u32s (held in Int32Array cells; differences are taken
 * with `| 0`). SPSC publishes a burst with one Atomics.store; MPMC (Vyukov) claims
 * a burst with one CAS. Waiting: spin briefly, then park with Atomics.wait (in a
 * worker) or Atomics.waitAsync (on the main thread) on the index word; the other
 * side notifies only when the sleeper count says someone is parked.
 *
 * Errors: EINVAL for a bad capacity, kind, offset or argument range. close()
 * only wakes waiters (they return 'closed'); it does not refuse values.
 */
import { badArgument, checkIndex, describe, invalid } from '../errors.js';
import type { Layout } from './layout.js';
import { isSharedMemory, type WasmMemory } from '../wasm/wasm-types.js';

export type RingKind = 'spsc' | 'mpmc';
export type WaitResult = 'ok' | 'timed-out' | 'closed';

/** Spin iterations before parking: about 10 µs of polling on this class of CPU. */
export const RING_SPIN_ITERATIONS = 2000;

function capacityArg(what: string, capacity: unknown): number {
  if (typeof capacity !== 'number' || !Number.isInteger(capacity) || capacity < 2 || capacity > 1 << 30 || (capacity & (capacity - 1)) !== 0) {
    throw badArgument(`${what}: capacity`, 'a power of two from 2 to 2^30', capacity);
  }
  return capacity;
}

function kindArg(what: string, kind: unknown): RingKind {
  if (kind !== 'spsc' && kind !== 'mpmc') throw badArgument(`${what}: kind`, "'spsc' or 'mpmc'", kind);
  return kind;
}

function rangeError(what: string, array: unknown, start: unknown, count: unknown): Error {
  const length = (array as ArrayLike<number> | null)?.length;
  if (typeof length !== 'number') return badArgument(`${what}: array`, 'an array or typed array', array);
  return invalid(`${what}: start (${describe(start)}) and count (${describe(count)}) must select whole elements of the ${length}-element array`);
}

export class Ring {
  readonly at: number;
  readonly capacity: number;
  readonly kind: RingKind;
  private readonly i32: Int32Array;
  private readonly mask: number;
  private readonly head: number; // Int32Array indices of the header words
  private readonly tail: number;
  private readonly prodTailCache: number;
  private readonly consHeadCache: number;
  private readonly sleepers: number;
  private readonly prodSleepers: number;
  private readonly closed: number;
  private readonly slots: number;

  /** Attaches to a ring initialized by Ring.init at byte offset `at`. */
  constructor(memory: WasmMemory, layout: Layout, at: number) {
    if (!isSharedMemory(memory)) throw badArgument('Ring: memory', 'a shared WebAssembly.Memory', memory);
    if (checkIndex('Ring: at', at) % 128 !== 0) throw invalid(`Ring: at ${at} is not 128-byte aligned`);
    this.at = at;
    this.i32 = new Int32Array(memory.buffer);
    const w = at >> 2;
    this.head = w + (layout.RING_HEAD >> 2);
    this.tail = w + (layout.RING_TAIL >> 2);
    this.prodTailCache = w + (layout.RING_PROD_TAIL_CACHE >> 2);
    this.consHeadCache = w + (layout.RING_CONS_HEAD_CACHE >> 2);
    this.sleepers = w + (layout.RING_SLEEPERS >> 2);
    this.prodSleepers = w + (layout.RING_PROD_SLEEPERS >> 2);
    this.closed = w + (layout.RING_CLOSED >> 2);
    this.slots = w + (layout.RING_SLOTS >> 2);
    this.capacity = this.i32[w + (layout.RING_CAPACITY >> 2)];
    const kind = this.i32[w + (layout.RING_KIND >> 2)];
    if (kind !== layout.RING_SPSC && kind !== layout.RING_MPMC) throw invalid(`Ring: no ring at ${at} (kind ${kind})`);
    this.kind = kind === layout.RING_MPMC ? 'mpmc' : 'spsc';
    this.mask = this.capacity - 1;
  }

  /** Bytes a ring needs. */
  static bytes(layout: Layout, capacity: number, kind: RingKind): number {
    return layout.RING_SLOTS + capacityArg('Ring.bytes', capacity) * (kindArg('Ring.bytes', kind) === 'mpmc' ? 8 : 4);
  }

  /**
   * Writes an empty ring at `at` (not concurrently with any use of it). Its
   * indices start at `startIndex` (tests start near 2^32 to cross the wrap).
   */
  static init(memory: WasmMemory, layout: Layout, at: number, capacity: number, kind: RingKind, startIndex = 0): Ring {
    capacityArg('Ring.init', capacity);
    kindArg('Ring.init', kind);
    if (!isSharedMemory(memory)) throw badArgument('Ring.init: memory', 'a shared WebAssembly.Memory', memory);
    if (checkIndex('Ring.init: at', at) % 128 !== 0 || at + Ring.bytes(layout, capacity, kind) > memory.buffer.byteLength) {
      throw invalid(`Ring.init: at ${at} must be 128-byte aligned with the ring's ${Ring.bytes(layout, capacity, kind)} bytes inside the memory`);
    }
    if (typeof startIndex !== 'number' || (startIndex >>> 0) !== startIndex) throw badArgument('Ring.init: startIndex', 'an integer from 0 to 2^32-1', startIndex);
    const u8 = new Uint8Array(memory.buffer, at, layout.RING_SLOTS);
    u8.fill(0);
    const i32 = new Int32Array(memory.buffer);
    i32[(at + layout.RING_CAPACITY) >> 2] = capacity;
    i32[(at + layout.RING_KIND) >> 2] = kind === 'mpmc' ? layout.RING_MPMC : layout.RING_SPSC;
    for (const off of [layout.RING_HEAD, layout.RING_TAIL, layout.RING_PROD_TAIL_CACHE, layout.RING_CONS_HEAD_CACHE]) {
      i32[(at + off) >> 2] = startIndex | 0;
    }
    if (kind === 'mpmc') {
      // The slot of position p is free for the producer when its seq == p.
      const slots = (at + layout.RING_SLOTS) >> 2;
      for (let k = 0; k < capacity; k++) {
        const pos = (startIndex + k) | 0;
        i32[slots + 2 * (pos & (capacity - 1))] = pos;
      }
    }
    return new Ring(memory, layout, at);
  }

  /** Values in the ring (a snapshot). */
  get size(): number {
    return (Atomics.load(this.i32, this.head) - Atomics.load(this.i32, this.tail)) | 0;
  }

  /** Whether any thread waits for a value (waitNotEmpty, waitNotEmptyAsync, waitEnqueuedSinceAsync). */
  get hasSleepers(): boolean {
    return Atomics.load(this.i32, this.sleepers) !== 0;
  }

  get isClosed(): boolean {
    return Atomics.load(this.i32, this.closed) !== 0;
  }

  /** Enqueues up to n values from src[start…]; returns how many (0 when full). EINVAL unless [start, start+n) lies in src. */
  enqueue(src: ArrayLike<number>, start = 0, n = src?.length - start): number {
    if (!Number.isInteger(start) || !Number.isInteger(n) || start < 0 || n < 0 || !(start + n <= src.length)) throw rangeError('ring.enqueue', src, start, n);
    const done = this.kind === 'spsc' ? this.spscEnqueue(src, start, n) : this.mpmcEnqueue(src, start, n);
    if (done > 0 && Atomics.load(this.i32, this.sleepers) !== 0) Atomics.notify(this.i32, this.head);
    return done;
  }

  /** Dequeues up to max values (at most what fits dst) into dst[start…]; returns how many (0 when empty). */
  dequeue(dst: Uint32Array | Int32Array | number[], max: number, start = 0): number {
    if (typeof max !== 'number' || !(max >= 0) || !Number.isInteger(start) || start < 0 || !(start <= dst?.length)) throw rangeError('ring.dequeue', dst, start, max);
    if (max > dst.length - start) max = dst.length - start;
    const done = this.kind === 'spsc' ? this.spscDequeue(dst, max, start) : this.mpmcDequeue(dst, max, start);
    if (done > 0 && Atomics.load(this.i32, this.prodSleepers) !== 0) Atomics.notify(this.i32, this.tail);
    return done;
  }

  private spscEnqueue(src: ArrayLike<number>, start: number, n: number): number {
    const i32 = this.i32;
    const head = i32[this.head]; // only the producer writes it
    let tail = i32[this.prodTailCache];
    if (this.capacity - ((head - tail) | 0) < n) {
      tail = Atomics.load(i32, this.tail);
      i32[this.prodTailCache] = tail;
    }
    const free = this.capacity - ((head - tail) | 0);
    if (n > free) n = free;
    const mask = this.mask;
    const slots = this.slots;
    for (let k = 0; k < n; k++) i32[slots + ((head + k) & mask)] = src[start + k];
    if (n > 0) Atomics.store(i32, this.head, (head + n) | 0);
    return n;
  }

  private spscDequeue(dst: Uint32Array | Int32Array | number[], max: number, start: number): number {
    const i32 = this.i32;
    const tail = i32[this.tail]; // only the consumer writes it
    let head = i32[this.consHeadCache];
    if (((head - tail) | 0) < max) {
      head = Atomics.load(i32, this.head);
      i32[this.consHeadCache] = head;
    }
    let n = (head - tail) | 0;
    if (n > max) n = max;
    const mask = this.mask;
    const slots = this.slots;
    for (let k = 0; k < n; k++) dst[start + k] = i32[slots + ((tail + k) & mask)] >>> 0;
    if (n > 0) Atomics.store(i32, this.tail, (tail + n) | 0);
    return n;
  }

  private mpmcEnqueue(src: ArrayLike<number>, start: number, n: number): number {
    const i32 = this.i32;
    const mask = this.mask;
    const slots = this.slots;
    for (;;) {
      const pos = Atomics.load(i32, this.head);
      let k = 0;
      while (k < n && Atomics.load(i32, slots + 2 * ((pos + k) & mask)) === ((pos + k) | 0)) k++;
      if (k === 0) {
        if (Atomics.load(i32, this.head) === pos) return 0;
        continue;
      }
      if (Atomics.compareExchange(i32, this.head, pos, (pos + k) | 0) !== pos) continue;
      for (let i = 0; i < k; i++) {
        const slot = slots + 2 * ((pos + i) & mask);
        i32[slot + 1] = src[start + i];
        Atomics.store(i32, slot, (pos + i + 1) | 0);
      }
      return k;
    }
  }

  private mpmcDequeue(dst: Uint32Array | Int32Array | number[], max: number, start: number): number {
    const i32 = this.i32;
    const mask = this.mask;
    const cap = this.capacity;
    const slots = this.slots;
    for (;;) {
      const pos = Atomics.load(i32, this.tail);
      let k = 0;
      while (k < max && Atomics.load(i32, slots + 2 * ((pos + k) & mask)) === ((pos + k + 1) | 0)) k++;
      if (k === 0) {
        if (Atomics.load(i32, this.tail) === pos) return 0;
        continue;
      }
      if (Atomics.compareExchange(i32, this.tail, pos, (pos + k) | 0) !== pos) continue;
      for (let i = 0; i < k; i++) {
        const slot = slots + 2 * ((pos + i) & mask);
        dst[start + i] = i32[slot + 1] >>> 0;
        Atomics.store(i32, slot, (pos + i + cap) | 0);
      }
      return k;
    }
  }

  /**
   * Blocks (in a worker) until the ring is non-empty, closed or timeoutMs passes:
   * spins, then parks on the head word with Atomics.wait.
   */
  waitNotEmpty(timeoutMs = Infinity, spins = RING_SPIN_ITERATIONS): WaitResult {
    const i32 = this.i32;
    for (let i = 0; i < spins; i++) {
      if (this.size > 0) return 'ok';
      if (Atomics.load(i32, this.closed) !== 0) return 'closed';
    }
    Atomics.add(i32, this.sleepers, 1);
    try {
      const head = Atomics.load(i32, this.head);
      if (((head - Atomics.load(i32, this.tail)) | 0) > 0) return 'ok';
      if (Atomics.load(i32, this.closed) !== 0) return 'closed';
      const r = Atomics.wait(i32, this.head, head, timeoutMs);
      if (Atomics.load(i32, this.closed) !== 0) return 'closed';
      return r === 'timed-out' ? 'timed-out' : 'ok';
    } finally {
      Atomics.sub(i32, this.sleepers, 1);
    }
  }

  /** The main thread's wait: resolves when the ring is non-empty, closed or timed out. */
  async waitNotEmptyAsync(timeoutMs = Infinity): Promise<WaitResult> {
    const i32 = this.i32;
    Atomics.add(i32, this.sleepers, 1);
    try {
      for (;;) {
        const head = Atomics.load(i32, this.head);
        if (((head - Atomics.load(i32, this.tail)) | 0) > 0) return 'ok';
        if (Atomics.load(i32, this.closed) !== 0) return 'closed';
        const r = Atomics.waitAsync(i32, this.head, head, timeoutMs);
        const v = r.async ? await r.value : r.value;
        if (v === 'timed-out') return 'timed-out';
      }
    } finally {
      Atomics.sub(i32, this.sleepers, 1);
    }
  }

  /** The producer index: compare with a later value to see whether anything was enqueued. */
  get enqueueCount(): number {
    return Atomics.load(this.i32, this.head);
  }

  /** Resolves when something is enqueued after `since` (an enqueueCount snapshot), or on timeout. */
  async waitEnqueuedSinceAsync(since: number, timeoutMs = Infinity): Promise<WaitResult> {
    const i32 = this.i32;
    Atomics.add(i32, this.sleepers, 1);
    try {
      if (Atomics.load(i32, this.closed) !== 0) return 'closed';
      const r = Atomics.waitAsync(i32, this.head, since, timeoutMs);
      const v = r.async ? await r.value : r.value;
      return v === 'timed-out' ? 'timed-out' : 'ok';
    } finally {
      Atomics.sub(i32, this.sleepers, 1);
    }
  }

  /** Blocks (in a worker) until the ring has room or timeoutMs passes. */
  waitNotFull(timeoutMs = Infinity, spins = RING_SPIN_ITERATIONS): WaitResult {
    const i32 = this.i32;
    for (let i = 0; i < spins; i++) if (this.size < this.capacity) return 'ok';
    Atomics.add(i32, this.prodSleepers, 1);
    try {
      const tail = Atomics.load(i32, this.tail);
      if (((Atomics.load(i32, this.head) - tail) | 0) < this.capacity) return 'ok';
      if (Atomics.load(i32, this.closed) !== 0) return 'closed';
      return Atomics.wait(i32, this.tail, tail, timeoutMs) === 'timed-out' ? 'timed-out' : 'ok';
    } finally {
      Atomics.sub(i32, this.prodSleepers, 1);
    }
  }

  /** Marks the ring closed and wakes every parked consumer and producer. */
  close(): void {
    Atomics.store(this.i32, this.closed, 1);
    Atomics.notify(this.i32, this.head);
    Atomics.notify(this.i32, this.tail);
  }
}
