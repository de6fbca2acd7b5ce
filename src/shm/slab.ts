/**
 * Slab pools in the shared memory: the JS half of assembly/slab.ts. Buffers of
 * fixed size classes (4 KiB-aligned), each described by a 64-byte descriptor;
 * a class's free list is an MPMC ring of descriptor indices, so any thread
 * allocates and frees. Exhaustion is back-pressure (ENOMEM, or wait with
 * allocAsync); the pool never grows the memory after it is carved. A descriptor's
 * state word turns a double free or a foreign index into an EINVAL naming it.
 *
 * A thread may keep the buffers it frees for its own next allocations
 * (keepFreed: DPDK's per-lcore mempool cache). The shared free list is FIFO, so
 * without a cache a thread cycles through every buffer of a class: each one
 * falls out of the CPU cache before it is used again, and on a fresh memory
 * every first touch is a page fault (~10 µs here). A kept buffer goes back to
 * the shared list whenever any thread waits on it.
 *
 * Errors: EINVAL for a size, descriptor index or option of the wrong type or
 * out of range (the message names it), ENOMEM for an exhausted class.
 */
import { FlashpackError, badArgument, describe, invalid } from '../errors.js';
import { bytesOf } from '../codec/input.js';
import type { Runtime } from '../wasm/runtime.js';
import type { WasmMemory } from '../wasm/wasm-types.js';
import { readLayout, type Layout } from './layout.js';
import { Ring } from './ring.js';

export interface SizeClass {
  /** Buffer bytes: a multiple of 4 KiB. */
  size: number;
  /** Buffers in the class. */
  count: number;
}

/** PureFlash's pool4k and pool512k. */
export const DEFAULT_CLASSES: readonly SizeClass[] = Object.freeze([
  { size: 4096, count: 4096 },
  { size: 512 * 1024, count: 32 },
]);

const BUFFER_ALIGN_BYTES = 4096;
/** The OS page: a buffer is faulted in by touching one word per page. */
const PAGE_BYTES = 4096;

interface ClassInfo {
  size: number;
  count: number;
  first: number;
  ring: Ring;
  /** Buffers this thread freed and keeps for itself, newest last (a stack). */
  kept: number[];
  /** Most buffers kept; 0 = every free goes to the shared list. */
  keepMax: number;
}

export class SlabPool {
  readonly at: number;
  readonly memory: WasmMemory;
  readonly layout: Layout;
  readonly descriptors: number;
  private readonly classes: ClassInfo[];
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly descBase: number; // Int32Array index of descriptor 0

  /** Carves a pool from the runtime's memory (before workers start). */
  static create(rt: Runtime, classes: readonly SizeClass[] = DEFAULT_CLASSES): SlabPool {
    if (typeof rt?.reserve !== 'function' || typeof rt.exports !== 'object') throw badArgument('SlabPool.create: rt', 'a Runtime', rt);
    const layout = readLayout(rt.exports);
    if (!Array.isArray(classes) || classes.length === 0 || classes.length > layout.POOL_MAX_CLASSES) {
      throw badArgument('SlabPool.create: classes', `an array of 1 to ${layout.POOL_MAX_CLASSES} size classes`, classes);
    }
    let prev = 0;
    for (const c of classes) {
      if (c === null || typeof c !== 'object') throw badArgument('SlabPool.create: classes[i]', 'a { size, count } object', c);
      if (typeof c.size !== 'number' || !Number.isInteger(c.size) || c.size <= prev || c.size % BUFFER_ALIGN_BYTES !== 0) {
        throw invalid(`slab pool: class size (${describe(c.size)}) must be a multiple of 4096, larger than the previous class`);
      }
      if (typeof c.count !== 'number' || !Number.isInteger(c.count) || c.count < 1 || c.count > 1 << 24) {
        throw invalid(`slab pool: class count (${describe(c.count)}) must be an integer from 1 to 2^24`);
      }
      prev = c.size;
    }
    const total = classes.reduce((a, c) => a + c.count, 0);
    const header = rt.reserve(layout.POOL_HEADER_BYTES, 128);
    const descs = rt.reserve(total * layout.DESC_BYTES, 64);
    const rings = classes.map((c) => {
      const capacity = 2 ** Math.ceil(Math.log2(c.count + 1));
      return { capacity, at: rt.reserve(Ring.bytes(layout, capacity, 'mpmc'), 128) };
    });
    const bufs = classes.map((c) => rt.reserve(c.size * c.count, BUFFER_ALIGN_BYTES));
    const memory = rt.memory;
    const dv = new DataView(memory.buffer);
    const put = (at: number, v: number) => dv.setUint32(at, v, true);
    put(header + layout.POOL_CLASSES, classes.length);
    put(header + layout.POOL_DESCS, descs);
    put(header + layout.POOL_NDESCS, total);
    let first = 0;
    classes.forEach((c, k) => {
      const rec = header + layout.POOL_CLASS0 + k * layout.POOL_CLASS_BYTES;
      put(rec + layout.CLASS_SIZE, c.size);
      put(rec + layout.CLASS_COUNT, c.count);
      put(rec + layout.CLASS_FIRST, first);
      put(rec + layout.CLASS_RING, rings[k].at);
      put(rec + layout.CLASS_BUFS, bufs[k]);
      const ring = Ring.init(memory, layout, rings[k].at, rings[k].capacity, 'mpmc');
      const indices = new Uint32Array(c.count);
      for (let i = 0; i < c.count; i++) {
        const d = descs + (first + i) * layout.DESC_BYTES;
        new Uint8Array(memory.buffer, d, layout.DESC_BYTES).fill(0);
        put(d + layout.DESC_BUF, bufs[k] + i * c.size);
        put(d + layout.DESC_CAP, c.size);
        put(d + layout.DESC_STATE, layout.DESC_FREE);
        put(d + layout.DESC_CLASS, k);
        indices[i] = first + i;
      }
      if (ring.enqueue(indices) !== c.count) throw new FlashpackError('EINTERNAL', 'slab pool: free list too small');
      first += c.count;
    });
    return new SlabPool(memory, layout, header);
  }

  /** Attaches to a pool carved elsewhere (a worker, given the header offset). */
  constructor(memory: WasmMemory, layout: Layout, at: number) {
    this.memory = memory;
    this.layout = layout;
    this.at = at;
    this.i32 = new Int32Array(memory.buffer);
    this.u32 = new Uint32Array(memory.buffer);
    const word = (off: number) => this.u32[(at + off) >> 2];
    this.descriptors = word(layout.POOL_NDESCS);
    this.descBase = word(layout.POOL_DESCS) >> 2;
    this.classes = [];
    for (let k = 0; k < word(layout.POOL_CLASSES); k++) {
      const rec = layout.POOL_CLASS0 + k * layout.POOL_CLASS_BYTES;
      this.classes.push({
        size: word(rec + layout.CLASS_SIZE),
        count: word(rec + layout.CLASS_COUNT),
        first: word(rec + layout.CLASS_FIRST),
        ring: new Ring(memory, layout, word(rec + layout.CLASS_RING)),
        kept: [],
        keepMax: 0,
      });
    }
  }

  /** Size classes, smallest first. */
  get sizeClasses(): SizeClass[] {
    return this.classes.map((c) => ({ size: c.size, count: c.count }));
  }

  /** Largest buffer a descriptor can have. */
  get maxBufferBytes(): number {
    return this.classes[this.classes.length - 1].size;
  }

  /** Buffer size of the class that serves `size` bytes. */
  classSizeFor(size: number): number {
    return this.classFor(size, 'pool.classSizeFor').size;
  }

  /** Free buffers in the class that serves `size` bytes (a snapshot): the shared list and this thread's kept ones. */
  available(size: number): number {
    const c = this.classFor(size, 'pool.available');
    return c.ring.size + c.kept.length;
  }

  /**
   * Keeps up to `max` buffers this thread frees in the class that serves
   * `size` for its own next allocations, newest first (0: none; what is kept
   * beyond the new bound goes back to the shared list). Other threads do not
   * see kept buffers until a thread waits on the class, so keep only on the
   * thread that does most of a class's allocating. With `warm`, fills the
   * kept set now from the shared list and touches every page of it, so the
   * first allocations take no page faults.
   */
  keepFreed(size: number, max: number, warm = false): void {
    const c = this.classFor(size, 'pool.keepFreed');
    if (typeof max !== 'number' || !Number.isInteger(max)) throw badArgument('pool.keepFreed: max', `an integer from 0 to ${c.count}`, max);
    if (typeof warm !== 'boolean') throw badArgument('pool.keepFreed: warm', 'a boolean', warm);
    if (max < 0 || max > c.count) throw invalid(`slab pool: keep ${max} freed buffers of ${c.size} bytes (0 to ${c.count})`);
    c.keepMax = max;
    while (c.kept.length > max) this.share(c, c.kept.pop()!);
    if (!warm) return;
    const taken: number[] = [];
    for (let idx = 0; c.kept.length + taken.length < max && (idx = this.tryAlloc(size)) >= 0;) {
      taken.push(idx);
      const at = this.bufferOf(idx) >> 2;
      for (let w = 0; w < c.size >> 2; w += PAGE_BYTES >> 2) this.i32[at + w] = 0;
    }
    for (let k = taken.length - 1; k >= 0; k--) this.free(taken[k]);
  }

  private classFor(size: number, what: string): ClassInfo {
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) throw badArgument(`${what}: size`, 'a whole number of bytes', size);
    for (const c of this.classes) if (size <= c.size) return c;
    throw invalid(`slab pool: no size class holds ${size} bytes (largest ${this.maxBufferBytes})`);
  }

  /** A descriptor whose buffer holds `size` bytes, or -1 when its class is exhausted. */
  tryAlloc(size: number): number {
    return this.take(this.classFor(size, 'pool.tryAlloc'));
  }

  private take(c: ClassInfo): number {
    if (c.kept.length > 0) return this.claim(c.kept.pop()!);
    const one = SCRATCH_ONE;
    // An empty answer while the ring counts values is transient: another thread
    // claimed a slot and has not published it yet (Vyukov rings wait on a
    // preempted peer). Retry until the ring agrees it is empty.
    for (let tries = 0; c.ring.dequeue(one, 1) === 0; tries++) {
      if (c.ring.size <= 0) return -1;
      backoff(tries);
    }
    return this.claim(one[0]);
  }

  /** Marks a free descriptor allocated, with no data and no status. */
  private claim(idx: number): number {
    const d = this.descBase + idx * (this.layout.DESC_BYTES >> 2);
    const L = this.layout;
    if (Atomics.compareExchange(this.i32, d + (L.DESC_STATE >> 2), L.DESC_FREE | 0, L.DESC_ALLOCATED | 0) !== (L.DESC_FREE | 0)) {
      throw new FlashpackError('EINTERNAL', `slab pool: free list held descriptor ${idx}, which is not free`);
    }
    this.i32[d + (L.DESC_LEN >> 2)] = 0;
    this.i32[d + (L.DESC_STATUS >> 2)] = 0;
    return idx;
  }

  /** A descriptor for `size` bytes; ENOMEM when the class is exhausted. */
  alloc(size: number): number {
    const c = this.classFor(size, 'pool.alloc');
    const idx = this.take(c);
    if (idx < 0) throw new FlashpackError('ENOMEM', `slab pool: all ${c.count} buffers of ${c.size} bytes are in use`);
    return idx;
  }

  /** Waits (asynchronously) up to timeoutMs for a buffer; ENOMEM on timeout, EINVAL for a bad size or timeoutMs. */
  async allocAsync(size: number, timeoutMs = Infinity): Promise<number> {
    const c = this.classFor(size, 'pool.allocAsync');
    timeoutArg('pool.allocAsync: timeoutMs', timeoutMs);
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const idx = this.take(c);
      if (idx >= 0) return idx;
      const left = deadline - performance.now();
      if (left <= 0) throw new FlashpackError('ENOMEM', `slab pool: no buffer of ${c.size} bytes freed within ${timeoutMs} ms`);
      await c.ring.waitNotEmptyAsync(left);
    }
  }

  /** A snapshot to pass to waitForFree: how many frees the class that serves `size` has seen. */
  freeCount(size: number): number {
    return this.classFor(size, 'pool.freeCount').ring.enqueueCount;
  }

  /** Resolves once a buffer for `size` is freed after the `since` snapshot (or on timeout). */
  async waitForFree(size: number, since: number, timeoutMs = Infinity): Promise<void> {
    const c = this.classFor(size, 'pool.waitForFree');
    if (typeof since !== 'number' || !Number.isInteger(since)) throw badArgument('pool.waitForFree: since', 'a freeCount() snapshot', since);
    await c.ring.waitEnqueuedSinceAsync(since, timeoutArg('pool.waitForFree: timeoutMs', timeoutMs));
  }

  /**
   * Returns a descriptor to its class — to this thread's kept buffers when it
   * keeps some, has room and nobody waits for the class, else to the shared
   * list — or, with `share`, always to the shared list (where freeCount and
   * waitForFree see it). EINVAL for a foreign index or a double free.
   */
  free(idx: number, share = false): void {
    const L = this.layout;
    this.checkDescriptor(idx, 'slab pool');
    const d = this.descBase + idx * (L.DESC_BYTES >> 2);
    if (Atomics.compareExchange(this.i32, d + (L.DESC_STATE >> 2), L.DESC_ALLOCATED | 0, L.DESC_FREE | 0) !== (L.DESC_ALLOCATED | 0)) {
      throw invalid(`slab pool: descriptor ${idx} freed twice (it is not allocated)`);
    }
    const c = this.classes[this.i32[d + (L.DESC_CLASS >> 2)]];
    if (!share && c.kept.length < c.keepMax && !c.ring.hasSleepers) c.kept.push(idx);
    else this.share(c, idx);
  }

  private share(c: ClassInfo, idx: number): void {
    SCRATCH_ONE[0] = idx;
    // The free list holds every index of its class and has room for one more,
    // so "full" means a consumer of that slot was preempted mid-release: retry.
    for (let tries = 0; c.ring.enqueue(SCRATCH_ONE, 0, 1) !== 1; tries++) {
      if (tries > MAX_BACKOFF_TRIES) throw new FlashpackError('EINTERNAL', `slab pool: free list of ${c.size}-byte buffers stayed full`);
      backoff(tries);
    }
  }

  /** EINVAL unless `idx` is one of this pool's descriptors and currently allocated (`what` names the caller). */
  checkAllocated(idx: number, what: string): void {
    this.checkDescriptor(idx, what);
    const L = this.layout;
    if (Atomics.load(this.i32, this.descWord(idx) + (L.DESC_STATE >> 2)) !== (L.DESC_ALLOCATED | 0)) {
      throw invalid(`${what}: descriptor ${idx} is not allocated`);
    }
  }

  /** EINVAL unless `idx` is one of this pool's descriptor indices (`what` names the caller). */
  checkDescriptor(idx: number, what: string): void {
    if (typeof idx !== 'number' || !Number.isInteger(idx)) throw badArgument(`${what}: descriptor`, `a descriptor index from 0 to ${this.descriptors - 1}`, idx);
    if (idx < 0 || idx >= this.descriptors) throw invalid(`${what}: descriptor ${idx} is not one of this pool's ${this.descriptors}`);
  }

  /** Int32Array index of a descriptor's first word (for fast field access; `idx` is not checked). */
  descWord(idx: number): number {
    return this.descBase + idx * (this.layout.DESC_BYTES >> 2);
  }

  /** Byte offset of a descriptor's buffer. */
  bufferOf(idx: number): number {
    this.checkDescriptor(idx, 'pool.bufferOf');
    return this.u32[this.descWord(idx) + (this.layout.DESC_BUF >> 2)];
  }

  capacityOf(idx: number): number {
    this.checkDescriptor(idx, 'pool.capacityOf');
    return this.u32[this.descWord(idx) + (this.layout.DESC_CAP >> 2)];
  }

  lengthOf(idx: number): number {
    this.checkDescriptor(idx, 'pool.lengthOf');
    return this.u32[this.descWord(idx) + (this.layout.DESC_LEN >> 2)];
  }

  setLength(idx: number, len: number): void {
    if (typeof len !== 'number' || !Number.isInteger(len) || len < 0) throw badArgument('pool.setLength: len', 'a whole number of bytes', len);
    if (len > this.capacityOf(idx)) throw invalid(`slab pool: length ${len} exceeds descriptor ${idx}'s capacity ${this.capacityOf(idx)}`);
    this.u32[this.descWord(idx) + (this.layout.DESC_LEN >> 2)] = len;
  }

  /** A view of a descriptor's buffer: its data (length) or whole capacity. */
  bytes(idx: number, whole = false): Uint8Array {
    this.checkDescriptor(idx, 'pool.bytes');
    return new Uint8Array(this.memory.buffer, this.bufferOf(idx), whole ? this.capacityOf(idx) : this.lengthOf(idx));
  }

  /** Copies data into a descriptor's buffer and sets its length. */
  write(idx: number, data: Uint8Array): void {
    const bytes = bytesOf(data, 'pool.write: data');
    this.checkDescriptor(idx, 'pool.write');
    this.setLength(idx, bytes.length);
    new Uint8Array(this.memory.buffer, this.bufferOf(idx), bytes.length).set(bytes);
  }
}

const SCRATCH_ONE = new Uint32Array(1);

function timeoutArg(what: string, ms: unknown): number {
  if (typeof ms !== 'number' || !(ms >= 0)) throw badArgument(what, 'a number of milliseconds ≥ 0 (or Infinity)', ms);
  return ms;
}
const SPIN_TRIES = 64;
/** About 10 s of 0.1 ms sleeps: far beyond any scheduler delay. */
const MAX_BACKOFF_TRIES = SPIN_TRIES + 100_000;
const SLEEP_CELL = new Int32Array(new SharedArrayBuffer(4));

/** Spin a little, then sleep 0.1 ms per try (Atomics.wait is allowed on every thread in Node, Deno and Bun). */
function backoff(tries: number): void {
  if (tries >= SPIN_TRIES) Atomics.wait(SLEEP_CELL, 0, 0, 0.1);
}
