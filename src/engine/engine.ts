/**
 * The offload engine: the software stand-in for an accelerator (QAT instances,
 * SPDK's per-thread rings). N workers each run the WASM module on the shared
 * memory; a job is a descriptor index put on a worker's submission ring, and
 * comes back on its completion ring with DESC_STATUS set.
 *
 * Two APIs: the batch API (`submit`, `poll`) moves descriptor indices the caller
 * prepared in `engine.pool`; the promise API (`engine.lz4.compressBlock(src)`,
 * `engine.crc32(src)`, …) mirrors the synchronous codecs and does the copying.
 *
 * Invariants: a worker never holds more jobs (queued, running or completed but
 * not reaped) than its completion ring has slots, so it never waits on the host;
 * the host waits on one doorbell word with Atomics.waitAsync and keeps the
 * process alive with a timer only while jobs are in flight.
 *
 * Errors: EINVAL for an argument or option of the wrong type or out of range
 * (the message names it), ENXIO for a call after close(), ECANCELED for a job
 * close({ drain: false }) canceled, EWORKER for a job on a worker that died,
 * ENOMEM for an exhausted pool (batch API), and the codecs' ECORRUPT.
 */
import { FlashpackError, afterClose, badArgument, checkBoolean, checkInteger, checkOptions } from '../errors.js';
import { Runtime, runtime as processRuntime, wasmModule } from '../wasm/runtime.js';
import { isSharedMemory, type WasmMemory } from '../wasm/wasm-types.js';
import { spawnWorker, availableCores, type WorkerHandle } from '../wasm/spawn.js';
import { readLayout, type Layout } from '../shm/layout.js';
import { Ring, RING_SPIN_ITERATIONS } from '../shm/ring.js';
import { SlabPool, DEFAULT_CLASSES, type SizeClass } from '../shm/slab.js';
import { loadJobs } from './registered-jobs.js';
import { bytesOf } from '../codec/input.js';
import { u32Arg } from '../codec/input.js';
import { accelerationArg, compressBlock as compressBlockSync, lz4KindError, type Lz4CompressOptions } from '../codec/lz4.js';
import {
  compress as deflateSync, deflateOptionsArg, formatArg, inflateError, formatName, type DeflateOptions, type InflateOptions,
} from '../codec/deflate.js';
import {
  OP_CRC32, OP_CRC32C, OP_ADLER32, OP_LZ4_COMPRESS, OP_LZ4_DECOMPRESS, OP_FINGERPRINT, OP_DEFLATE_COMPRESS, OP_INFLATE,
  STATUS_INFLATE_ERROR, STATUS_OUTPUT_OVERFLOW,
  STATUS_OK, STATUS_INCOMPRESSIBLE, STATUS_PENDING, STATUS_LZ4_ERROR_BASE, STATUS_SIZE_MISMATCH,
  STATUS_WORKER_CRASHED, STATUS_CANCELED, DOORBELL_COUNT, DOORBELL_SLEEPERS, DOORBELL_BYTES,
  type WorkerInit, type WorkerReply,
} from './jobs.js';

export interface EngineOptions {
  /** Worker threads (default: cores − 1, at least 1). */
  workers?: number;
  /** The runtime whose memory the engine carves (default: the process runtime). */
  runtime?: Runtime;
  /** A fresh shared memory to build a runtime on (instead of `runtime`). */
  memory?: WasmMemory;
  /** Pool size classes (default 4096 × 4 KiB and 32 × 512 KiB). */
  classes?: readonly SizeClass[];
  /** A pool already carved from `runtime`'s memory, instead of one made from `classes` (a volume shares it with its controller, started beside the engine). */
  pool?: SlabPool;
  /** Slots of each worker's submission and completion ring (a power of two, default 1024). */
  ringCapacity?: number;
  /**
   * How many times an idle worker polls its ring before it parks (default
   * 2000). Spinning saves a wake-up only when a core is free to spin on: a
   * caller that keeps every core busy (a volume: main thread, engine and device
   * workers) passes 0.
   */
  spinIterations?: number;
  /**
   * URLs of modules whose `jobs` the workers run besides the built-in ones
   * (registered-jobs.ts), e.g. a volume's prepare job.
   */
  jobs?: readonly string[];
}

export interface CloseOptions {
  /** Let queued and running jobs finish (default), or cancel what has not started. */
  drain?: boolean;
  /** How long a drain may take before the rest is canceled (default 30 s). */
  timeoutMs?: number;
}

const DEFAULT_RING_CAPACITY = 1024;
const BURST = 64;
const READY_TIMEOUT_MS = 30_000;
/** The host re-checks completion rings at least this often, even without a doorbell. */
const DOORBELL_SAFETY_WAKE_MS = 200;

interface WorkerSlot {
  index: number;
  handle: WorkerHandle<WorkerInit> | null;
  submit: Ring;
  complete: Ring;
  ctxAt: number;
  deflateScratchAt: number;
  inflateScratchAt: number;
  /** Descriptors on this worker's rings or running on it. */
  inflight: Set<number>;
  alive: boolean;
}

interface Pending {
  resolve(status: number): void;
  reject(err: Error): void;
}

async function defaultWorkerCount(): Promise<number> {
  return Math.max(1, (await availableCores()) - 1);
}

const spawn = (onReply: (r: WorkerReply) => void, onFailure: (err: Error) => void): Promise<WorkerHandle<WorkerInit>> =>
  spawnWorker<WorkerInit, WorkerReply>(new URL('./worker.js', import.meta.url), onReply, onFailure);

export class Engine {
  readonly runtime: Runtime;
  private readonly spins: number;
  private readonly jobModules: string[];
  readonly pool: SlabPool;
  readonly layout: Layout;
  /** Worker crashes survived (each crashed worker was replaced). */
  crashes = 0;
  private readonly slots: WorkerSlot[] = [];
  private readonly ringCapacity: number;
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly doorbell: number;
  /** Where an inflate error record copied from a descriptor is replayed for inflateError(). */
  private readonly errorRecordAt: number;
  private readonly pending = new Map<number, Pending>();
  private readonly completed: number[] = [];
  private readonly backlog: number[] = [];
  private readonly reaped = new Uint32Array(BURST * 4);
  private readonly readyWaiters = new Map<number, { resolve(): void; reject(e: Error): void }>();
  private readonly closedWaiters = new Map<number, () => void>();
  private pumping = false;
  private flushQueued = false;
  private keepAlive: ReturnType<typeof setInterval> | undefined;
  private state: 'running' | 'closing' | 'closed' = 'running';
  private draining = true;
  /** Promise-API calls between entry and return (close() waits for them when draining). */
  private calls = 0;

  private constructor(rt: Runtime, pool: SlabPool, ringCapacity: number, doorbellAt: number, spins: number, jobModules: string[]) {
    this.runtime = rt;
    this.jobModules = jobModules;
    this.spins = spins;
    this.pool = pool;
    this.layout = pool.layout;
    this.ringCapacity = ringCapacity;
    this.i32 = new Int32Array(rt.memory.buffer);
    this.u32 = new Uint32Array(rt.memory.buffer);
    this.doorbell = doorbellAt >> 2;
    this.errorRecordAt = rt.reserve(32, 16);
  }

  /**
   * Carves the pool and rings from the shared memory and starts the workers.
   * Errors: EINVAL for options that are not an object or an option of the
   * wrong type or out of range; ENOMEM when the memory cannot hold the pool;
   * EWORKER or ETIMEDOUT when a worker does not start.
   */
  static async start(opts?: EngineOptions): Promise<Engine> {
    const { engine, ready } = await Engine.begin(opts);
    await ready;
    return engine;
  }

  /**
   * start() in two steps: the engine, its pool and rings, with its workers
   * starting; and `ready`, which settles once they have (rejecting, after
   * closing the engine, as start() would). Jobs submitted before then wait
   * in the backlog. For callers with other work to do meanwhile.
   */
  static async begin(opts?: EngineOptions): Promise<{ engine: Engine; ready: Promise<void> }> {
    const o = checkOptions('Engine.start: options', opts);
    if (o.runtime !== undefined && typeof o.runtime?.reserve !== 'function') throw badArgument('Engine.start: options.runtime', 'a Runtime', o.runtime);
    if (o.memory !== undefined && !isSharedMemory(o.memory)) throw badArgument('Engine.start: options.memory', 'a shared WebAssembly.Memory', o.memory);
    if (o.workers !== undefined) checkInteger('Engine.start: options.workers', o.workers, 1, 256);
    const ringCapacity = o.ringCapacity ?? DEFAULT_RING_CAPACITY;
    if (typeof ringCapacity !== 'number' || !Number.isInteger(ringCapacity) || ringCapacity < 2 || ringCapacity > 1 << 20 || (ringCapacity & (ringCapacity - 1)) !== 0) {
      throw badArgument('Engine.start: options.ringCapacity', 'a power of two from 2 to 2^20', ringCapacity);
    }
    const spins = checkInteger('Engine.start: options.spinIterations', o.spinIterations ?? RING_SPIN_ITERATIONS, 0, 2 ** 31 - 1);
    const jobModules = o.jobs ?? [];
    if (!Array.isArray(jobModules) || !jobModules.every((u) => typeof u === 'string')) throw badArgument('Engine.start: options.jobs', 'an array of module URLs', jobModules);
    await loadJobs(jobModules); // the host refuses what the workers would fail on
    const rt = o.runtime ?? (o.memory ? new Runtime(o.memory) : processRuntime());
    const count = o.workers ?? (await defaultWorkerCount());
    const layout = readLayout(rt.exports);
    if (o.pool !== undefined && (typeof o.pool?.checkAllocated !== 'function' || o.pool.memory !== rt.memory)) throw badArgument('Engine.start: options.pool', "a SlabPool in the runtime's memory", o.pool);
    const pool = o.pool ?? SlabPool.create(rt, o.classes ?? DEFAULT_CLASSES);
    const doorbellAt = rt.reserve(DOORBELL_BYTES, 128);
    new Int32Array(rt.memory.buffer, doorbellAt, DOORBELL_BYTES >> 2).fill(0);
    const engine = new Engine(rt, pool, ringCapacity, doorbellAt, spins, [...jobModules]);
    for (let i = 0; i < count; i++) {
      const submitAt = rt.reserve(Ring.bytes(layout, ringCapacity, 'spsc'), 128);
      const completeAt = rt.reserve(Ring.bytes(layout, ringCapacity, 'spsc'), 128);
      engine.slots.push({
        index: i,
        handle: null,
        submit: Ring.init(rt.memory, layout, submitAt, ringCapacity, 'spsc'),
        complete: Ring.init(rt.memory, layout, completeAt, ringCapacity, 'spsc'),
        ctxAt: rt.reserve(rt.ctxBytes, 64),
        deflateScratchAt: rt.reserve(rt.exports.DEFLATE_SCRATCH_BYTES.value as number, 64),
        inflateScratchAt: rt.reserve(rt.exports.INFLATE_SCRATCH_BYTES.value as number, 64),
        inflight: new Set(),
        alive: false,
      });
    }
    const ready = Promise.all(engine.slots.map((s) => engine.launch(s))).then(
      () => {},
      async (err: unknown) => {
        await engine.close({ drain: false });
        throw err;
      },
    );
    ready.catch(() => {}); // handled here too: a caller may await it only later
    return { engine, ready };
  }

  get workers(): number {
    return this.slots.length;
  }

  /** Jobs queued, running, or completed and not yet reaped. */
  get inflight(): number {
    let n = this.backlog.length;
    for (const s of this.slots) n += s.inflight.size;
    return n;
  }

  private launch(slot: WorkerSlot): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new FlashpackError('ETIMEDOUT', `engine: worker ${slot.index} not ready within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      this.readyWaiters.set(slot.index, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      spawn((r) => this.onReply(slot, r), (err) => this.onFailure(slot, err)).then((handle) => {
        slot.handle = handle;
        handle.unref();
        handle.post({
          type: 'init', module: wasmModule(), memory: this.runtime.memory, index: slot.index,
          submitAt: slot.submit.at, completeAt: slot.complete.at, doorbellAt: this.doorbell << 2,
          ctxAt: slot.ctxAt, poolAt: this.pool.at, deflateScratchAt: slot.deflateScratchAt, inflateScratchAt: slot.inflateScratchAt,
          spins: this.spins, jobModules: this.jobModules,
        });
      }, (err) => this.readyWaiters.get(slot.index)?.reject(err));
    });
  }

  private onReply(slot: WorkerSlot, r: WorkerReply): void {
    if (r.type === 'ready') {
      slot.alive = true;
      this.readyWaiters.get(slot.index)?.resolve();
      this.readyWaiters.delete(slot.index);
      this.flushBacklog();
    } else {
      this.closedWaiters.get(slot.index)?.();
    }
  }

  /** A worker died: fail its jobs in flight with EWORKER and start a replacement on fresh rings. */
  private onFailure(slot: WorkerSlot, err: Error): void {
    const starting = this.readyWaiters.get(slot.index);
    if (starting) {
      this.readyWaiters.delete(slot.index);
      starting.reject(new FlashpackError('EWORKER', `engine: worker ${slot.index} failed to start: ${err.message}`));
      return;
    }
    if (this.state === 'closed') return;
    slot.alive = false;
    void slot.handle?.terminate();
    slot.handle = null;
    this.crashes++;
    this.drain(slot); // completions it published before dying are good
    const lost = [...slot.inflight];
    slot.inflight.clear();
    const L = this.layout;
    for (const idx of lost) {
      this.i32[this.pool.descWord(idx) + (L.DESC_STATUS >> 2)] = STATUS_WORKER_CRASHED;
      this.finish(idx, new FlashpackError('EWORKER', `engine: worker ${slot.index} crashed with descriptor ${idx} in flight (${err.message})`));
    }
    Ring.init(this.runtime.memory, L, slot.submit.at, this.ringCapacity, 'spsc');
    Ring.init(this.runtime.memory, L, slot.complete.at, this.ringCapacity, 'spsc');
    if (this.state === 'running') {
      this.launch(slot).catch(() => {
        // Could not replace it: the engine goes on with the workers it has.
      });
    }
  }

  // --------------------------------------------------------------------------
  // Batch API

  /**
   * Submits prepared job descriptors (DESC_OP, DESC_LEN, DESC_LINK, DESC_ARG set)
   * and returns how many were accepted: fewer when every worker's rings are full
   * (back-pressure: poll, then submit the rest). Errors: ENXIO after close();
   * EINVAL for a batch that is not an array of the pool's descriptor indices.
   */
  submit(batch: ArrayLike<number>): number {
    if (this.state !== 'running') throw afterClose('engine.submit');
    if (batch === null || typeof batch !== 'object' || typeof batch.length !== 'number') {
      throw badArgument('engine.submit: batch', 'an array of descriptor indices', batch);
    }
    const L = this.layout;
    for (let i = 0; i < batch.length; i++) {
      const idx = batch[i];
      this.pool.checkDescriptor(idx, 'engine.submit');
      this.i32[this.pool.descWord(idx) + (L.DESC_STATUS >> 2)] = STATUS_PENDING;
    }
    const placed = this.place(batch, 0, batch.length);
    this.updateRef();
    return placed;
  }

  // A pending Atomics.waitAsync does not keep a process alive, and idle workers
  // are unref'd: hold a timer while anything is in flight, release it when idle.
  private updateRef(): void {
    const busy = this.inflight > 0 || this.pending.size > 0;
    if (busy && this.keepAlive === undefined) this.keepAlive = setInterval(() => {}, 1 << 30);
    else if (!busy && this.keepAlive !== undefined) {
      clearInterval(this.keepAlive);
      this.keepAlive = undefined;
    }
  }

  /** Reaps up to `max` completed descriptors of the batch API (never blocks). EINVAL unless max is a whole number or Infinity. */
  poll(max = Infinity): number[] {
    if (typeof max !== 'number' || !(max >= 0) || (max !== Infinity && !Number.isInteger(max))) {
      throw badArgument('engine.poll: max', 'a whole number or Infinity', max);
    }
    this.reap();
    return this.completed.splice(0, max);
  }

  /** Resolves when at least one batch-API completion can be polled (or nothing is in flight). */
  async waitForCompletions(): Promise<void> {
    while (this.completed.length === 0 && this.inflight > this.pending.size) {
      this.reap();
      if (this.completed.length > 0) return;
      await this.sleepOnDoorbell();
    }
  }

  /** DESC_STATUS of a descriptor (0 ok, 1 incompressible, < 0 error). EINVAL for an index that is not the pool's. */
  statusOf(idx: number): number {
    this.pool.checkDescriptor(idx, 'engine.statusOf');
    return this.i32[this.pool.descWord(idx) + (this.layout.DESC_STATUS >> 2)];
  }

  /** DESC_CHECKSUM of a checksum job. EINVAL for an index that is not the pool's. */
  checksumOf(idx: number): number {
    this.pool.checkDescriptor(idx, 'engine.checksumOf');
    return this.u32[this.pool.descWord(idx) + (this.layout.DESC_CHECKSUM >> 2)];
  }

  /**
   * Sets a descriptor's job fields (DESC_AUX: an input of some registered jobs,
   * else 0). Errors: EINVAL for idx or link that is not one of the pool's
   * descriptors, op that is not 0 to 255, or arg or aux that is not a u32.
   */
  prepare(idx: number, op: number, link = 0, arg = 0, aux = 0): void {
    this.pool.checkDescriptor(idx, 'engine.prepare');
    checkInteger('engine.prepare: op', op, 0, 255);
    this.pool.checkDescriptor(link, 'engine.prepare: link');
    u32Arg(arg, 'engine.prepare: arg');
    u32Arg(aux, 'engine.prepare: aux');
    const L = this.layout;
    const d = this.pool.descWord(idx);
    this.u32[d + (L.DESC_OP >> 2)] = op;
    this.u32[d + (L.DESC_LINK >> 2)] = link;
    this.u32[d + (L.DESC_ARG >> 2)] = arg;
    this.u32[d + (L.DESC_AUX >> 2)] = aux;
  }

  // Places batch[start, start+n) on the least busy live workers; returns how many.
  private place(batch: ArrayLike<number>, start: number, n: number): number {
    let done = 0;
    while (done < n) {
      let best: WorkerSlot | undefined;
      for (const s of this.slots) {
        if (s.alive && s.inflight.size < this.ringCapacity && (!best || s.inflight.size < best.inflight.size)) best = s;
      }
      if (!best) break;
      const k = Math.min(n - done, this.ringCapacity - best.inflight.size, BURST);
      const put = best.submit.enqueue(batch, start + done, k);
      for (let i = 0; i < put; i++) best.inflight.add(batch[start + done + i]);
      done += put;
      if (put < k) break; // cannot happen while inflight <= capacity; stop rather than spin
    }
    return done;
  }

  private flushBacklog(): void {
    if (this.backlog.length === 0) return;
    const put = this.place(this.backlog, 0, this.backlog.length);
    this.backlog.splice(0, put);
  }

  /** Drains every completion ring, routing each descriptor to its promise or the poll queue. */
  private reap(): void {
    for (const s of this.slots) this.drain(s);
    this.flushBacklog();
    this.updateRef();
  }

  private drain(s: WorkerSlot): void {
    const buf = this.reaped;
    for (let n = s.complete.dequeue(buf, buf.length); n > 0; n = s.complete.dequeue(buf, buf.length)) {
      for (let i = 0; i < n; i++) {
        s.inflight.delete(buf[i]);
        this.finish(buf[i]);
      }
    }
  }

  private finish(idx: number, err?: Error): void {
    const p = this.pending.get(idx);
    if (!p) {
      this.completed.push(idx);
      return;
    }
    this.pending.delete(idx);
    if (err) p.reject(err);
    else p.resolve(this.statusOf(idx));
  }

  private async sleepOnDoorbell(): Promise<void> {
    const i32 = this.i32;
    const seen = Atomics.load(i32, this.doorbell + DOORBELL_COUNT);
    Atomics.add(i32, this.doorbell + DOORBELL_SLEEPERS, 1);
    try {
      for (const s of this.slots) if (s.complete.size > 0) return;
      const r = Atomics.waitAsync(i32, this.doorbell + DOORBELL_COUNT, seen, DOORBELL_SAFETY_WAKE_MS);
      if (r.async) await r.value;
    } finally {
      Atomics.sub(i32, this.doorbell + DOORBELL_SLEEPERS, 1);
    }
  }

  // Reaps while promise-API jobs are outstanding; holds the process open meanwhile
  // (a pending Atomics.waitAsync does not).
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.pending.size > 0) {
        this.reap();
        if (this.pending.size === 0) break;
        await this.sleepOnDoorbell();
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Runs one descriptor prepared with prepare() and resolves with its status
   * (STATUS_OK, STATUS_INCOMPRESSIBLE, or a negative error status). Jobs
   * started in the same microtask wave reach the workers as one burst.
   * Rejects with ENXIO after close(), EINVAL for an index that is not the
   * pool's, ECANCELED or EWORKER as the batch API's statuses say.
   */
  execute(idx: number): Promise<number> {
    try {
      this.pool.checkDescriptor(idx, 'engine.execute');
      if (this.state === 'closed') throw afterClose('engine.execute');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.run(idx);
  }

  private run(idx: number): Promise<number> {
    if (this.state === 'closed' || (this.state === 'closing' && !this.draining)) {
      this.i32[this.pool.descWord(idx) + (this.layout.DESC_STATUS >> 2)] = STATUS_CANCELED;
      return Promise.reject(new FlashpackError('ECANCELED', `engine: descriptor ${idx} canceled by close()`));
    }
    const L = this.layout;
    this.i32[this.pool.descWord(idx) + (L.DESC_STATUS >> 2)] = STATUS_PENDING;
    const done = new Promise<number>((resolve, reject) => this.pending.set(idx, { resolve, reject }));
    // Calls made together reach here in the same microtask wave: queue them and
    // place them as one burst at the end of the wave (one worker wake-up, not one
    // per job); a lone call waits only for that microtask.
    this.backlog.push(idx);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flushBacklog();
      });
    }
    this.updateRef();
    void this.pump();
    return done;
  }

  // Both descriptors, or neither: waiting while holding one could deadlock
  // callers that each hold one half. Waits are for a free after a snapshot taken
  // before trying, so a free in between is not missed and nothing spins.
  private async allocPair(a: number, b: number): Promise<[number, number]> {
    for (;;) {
      const sinceA = this.pool.freeCount(a);
      const sinceB = this.pool.freeCount(b);
      const x = this.pool.tryAlloc(a);
      if (x < 0) {
        await this.pool.waitForFree(a, sinceA);
        continue;
      }
      const y = this.pool.tryAlloc(b);
      if (y >= 0) return [x, y];
      // To the shared list, where freeCount counts it; our own free counts too
      // when a and b share a class: wait past it.
      this.pool.free(x, true);
      await this.pool.waitForFree(b, this.pool.classSizeFor(a) === this.pool.classSizeFor(b) ? sinceB + 1 : sinceB);
    }
  }

  // A promise-API call is accepted or refused when it is made; an accepted call
  // that reaches run() during close() is drained or canceled with the rest.
  private enter(what: string): void {
    if (this.state !== 'running') throw afterClose(`engine.${what}`);
    this.calls++;
  }

  private checkSize(n: number, what: string): void {
    if (n > this.pool.maxBufferBytes) throw new FlashpackError('EINVAL', `engine.${what}: ${n} bytes exceed the largest pool buffer (${this.pool.maxBufferBytes}); use the synchronous codec`);
  }

  // --------------------------------------------------------------------------
  // Promise API: the synchronous codecs, run on the workers.

  private async checksum(op: number, what: string, src: ArrayBufferView | ArrayBuffer): Promise<number> {
    this.enter(what);
    try {
      const input = bytesOf(src, `engine.${what}: src`);
      this.checkSize(input.length, what);
      const d = await this.pool.allocAsync(input.length);
      try {
        this.pool.write(d, input);
        this.prepare(d, op);
        await this.run(d);
        return this.checksumOf(d);
      } finally {
        this.pool.free(d);
      }
    } finally {
      this.calls--;
    }
  }

  crc32(src: ArrayBufferView | ArrayBuffer): Promise<number> {
    return this.checksum(OP_CRC32, 'crc32', src);
  }

  crc32c(src: ArrayBufferView | ArrayBuffer): Promise<number> {
    return this.checksum(OP_CRC32C, 'crc32c', src);
  }

  adler32(src: ArrayBufferView | ArrayBuffer): Promise<number> {
    return this.checksum(OP_ADLER32, 'adler32', src);
  }

  /** The dedupe fingerprint (XXH3-128, 16 bytes), as fingerprint(src). */
  fingerprint(src: ArrayBufferView | ArrayBuffer): Promise<Uint8Array> {
    return this.call('fingerprint', async () => {
      const input = bytesOf(src, 'engine.fingerprint: src');
      this.checkSize(input.length, 'fingerprint');
      const d = await this.pool.allocAsync(input.length);
      try {
        this.pool.write(d, input);
        this.prepare(d, OP_FINGERPRINT);
        await this.run(d);
        return this.resultOf(d);
      } finally {
        this.pool.free(d);
      }
    });
  }

  /** Word k (0–3, little-endian) of a fingerprint job's DESC_RESULT, without copying the digest. EINVAL for a bad idx or k. */
  resultWord(idx: number, k: number): number {
    this.pool.checkDescriptor(idx, 'engine.resultWord');
    checkInteger('engine.resultWord: k', k, 0, 3);
    return this.u32[this.pool.descWord(idx) + (this.layout.DESC_RESULT >> 2) + k];
  }

  /** DESC_RESULT of a fingerprint job: the 16-byte digest (a copy). EINVAL for an index that is not the pool's. */
  resultOf(idx: number): Uint8Array {
    this.pool.checkDescriptor(idx, 'engine.resultOf');
    const at = (this.pool.descWord(idx) << 2) + this.layout.DESC_RESULT;
    return new Uint8Array(this.runtime.memory.buffer, at, 16).slice();
  }

  readonly deflate = Object.freeze({
    /** As deflate.compress(src, opts), on a worker. */
    compress: (src: ArrayBufferView | ArrayBuffer, opts?: DeflateOptions): Promise<Uint8Array> => this.call('deflate.compress', () => this.deflateCompress(src, opts)),
    /**
     * As deflate.decompress(src, opts), on a worker. The output must fit one pool
     * buffer: give originalSize when known (it picks the buffer), else the largest.
     */
    decompress: (src: ArrayBufferView | ArrayBuffer, opts?: InflateOptions & { originalSize?: number }): Promise<Uint8Array> => this.call('deflate.decompress', () => this.inflate(src, opts)),
  });

  private async deflateCompress(src: ArrayBufferView | ArrayBuffer, opts?: DeflateOptions): Promise<Uint8Array> {
    const input = bytesOf(src, 'engine.deflate.compress: src');
    const { level, format } = deflateOptionsArg(opts, 'engine.deflate.compress');
    return this.compressJob('deflate.compress', input, OP_DEFLATE_COMPRESS, level | (format << 8), () => deflateSync(input, opts));
  }

  private async inflate(src: ArrayBufferView | ArrayBuffer, opts?: InflateOptions & { originalSize?: number }): Promise<Uint8Array> {
    const input = bytesOf(src, 'engine.deflate.decompress: src');
    this.checkSize(input.length, 'deflate.decompress');
    const o = checkOptions('engine.deflate.decompress: options', opts);
    const format = formatArg(o.format, 'engine.deflate.decompress: options.format');
    const size = checkInteger('engine.deflate.decompress: options.originalSize', o.originalSize ?? this.pool.maxBufferBytes, 0, this.pool.maxBufferBytes);
    const [inD, outD] = await this.allocPair(Math.max(1, input.length), Math.max(1, size));
    try {
      this.pool.write(inD, input);
      this.prepare(inD, OP_INFLATE, outD, format);
      const status = await this.run(inD);
      const L = this.layout;
      const d = this.pool.descWord(inD);
      if (status === STATUS_INFLATE_ERROR) {
        const rec = this.errorRecordAt >> 2;
        this.u32[rec] = this.u32[d + (L.DESC_CHECKSUM >> 2)];
        this.u32[rec + 1] = this.u32[d + (L.DESC_AUX >> 2)];
        for (let k = 0; k < 3; k++) this.u32[rec + 2 + k] = this.u32[d + (L.DESC_RESULT >> 2) + k];
        throw inflateError(this.runtime, this.errorRecordAt, formatName(format));
      }
      if (status === STATUS_OUTPUT_OVERFLOW) {
        // originalSize is a claim about the stream; the largest buffer is only the engine's limit.
        if (o.originalSize !== undefined) throw new FlashpackError('ECORRUPT', `${formatName(format)}: decodes to more than originalSize ${size}`);
        throw new FlashpackError('ENOSPC', `${formatName(format)}: decodes to more than the engine's largest buffer (${size} bytes); give options.originalSize or use deflate.decompress`);
      }
      if (status !== STATUS_OK) throw new FlashpackError('EINTERNAL', `engine: inflate status ${status}`);
      const out = this.pool.bytes(outD).slice();
      if (o.originalSize !== undefined && out.length !== o.originalSize) {
        throw new FlashpackError('ECORRUPT', `${formatName(format)}: decoded ${out.length} bytes, expected originalSize ${o.originalSize}`);
      }
      return out;
    } finally {
      this.pool.free(inD);
      this.pool.free(outD);
    }
  }

  readonly lz4 = Object.freeze({
    compressBlock: (src: ArrayBufferView | ArrayBuffer, opts?: Lz4CompressOptions): Promise<Uint8Array> => this.call('lz4.compressBlock', () => this.lz4Compress(src, opts)),
    decompressBlock: (src: ArrayBufferView | ArrayBuffer, originalSize: number): Promise<Uint8Array> => this.call('lz4.decompressBlock', () => this.lz4Decompress(src, originalSize)),
  });

  private async call<T>(what: string, body: () => Promise<T>): Promise<T> {
    this.enter(what);
    try {
      return await body();
    } finally {
      this.calls--;
    }
  }

  private async lz4Compress(src: ArrayBufferView | ArrayBuffer, opts?: Lz4CompressOptions): Promise<Uint8Array> {
    const input = bytesOf(src, 'engine.lz4.compressBlock: src');
    const accel = accelerationArg(opts, 'engine.lz4.compressBlock');
    return this.compressJob('lz4.compressBlock', input, OP_LZ4_COMPRESS, accel, () => compressBlockSync(input, opts));
  }

  /**
   * A compression job: the output gets the input's own size class (a 4 KiB block
   * compresses into a 4 KiB buffer); the rare input that does not shrink enough
   * to fit is compressed on this thread by `fallback`.
   */
  private async compressJob(what: string, input: Uint8Array, op: number, arg: number, fallback: () => Uint8Array): Promise<Uint8Array> {
    this.checkSize(input.length, what);
    const [inD, outD] = await this.allocPair(input.length, this.pool.classSizeFor(Math.max(1, input.length)));
    try {
      this.pool.write(inD, input);
      this.prepare(inD, op, outD, arg);
      const status = await this.run(inD);
      if (status === STATUS_INCOMPRESSIBLE) return fallback();
      if (status !== STATUS_OK) throw new FlashpackError('EINTERNAL', `engine.${what}: status ${status}`);
      return this.pool.bytes(outD).slice();
    } finally {
      this.pool.free(inD);
      this.pool.free(outD);
    }
  }

  private async lz4Decompress(src: ArrayBufferView | ArrayBuffer, originalSize: number): Promise<Uint8Array> {
    const input = bytesOf(src, 'engine.lz4.decompressBlock: src');
    this.checkSize(input.length, 'lz4.decompressBlock');
    checkInteger('engine.lz4.decompressBlock: originalSize', originalSize, 0, this.pool.maxBufferBytes);
    const [inD, outD] = await this.allocPair(input.length, Math.max(1, originalSize));
    try {
      this.pool.write(inD, input);
      this.prepare(inD, OP_LZ4_DECOMPRESS, outD, originalSize === 0 ? 0 : originalSize);
      const status = await this.run(inD);
      const L = this.layout;
      const d = this.pool.descWord(inD);
      // Statuses from -101 down are LZ4 error kinds; STATUS_SIZE_MISMATCH (-200) and below are not.
      if (status <= STATUS_LZ4_ERROR_BASE && status > STATUS_SIZE_MISMATCH) {
        throw lz4KindError(STATUS_LZ4_ERROR_BASE - status, this.u32[d + (L.DESC_CHECKSUM >> 2)], this.u32[d + (L.DESC_AUX >> 2)],
          this.u32[d + (L.DESC_RESULT >> 2)], 'lz4 block', 'ECORRUPT', 'originalSize');
      }
      const got = this.pool.lengthOf(outD);
      if (status === STATUS_SIZE_MISMATCH || got !== originalSize) {
        throw new FlashpackError('ECORRUPT', `lz4 block: decoded ${got} bytes, expected originalSize ${originalSize}`);
      }
      if (status !== STATUS_OK) throw new FlashpackError('EINTERNAL', `engine: lz4 decompress status ${status}`);
      return this.pool.bytes(outD).slice();
    } finally {
      this.pool.free(inD);
      this.pool.free(outD);
    }
  }

  // --------------------------------------------------------------------------

  /**
   * Stops the engine. By default lets queued and running jobs finish (up to
   * timeoutMs); otherwise, or after the timeout, cancels what has not started
   * (promises reject with ECANCELED, batch jobs complete with STATUS_CANCELED).
   * Workers leave and nothing is left holding the process open. Closing
   * twice is a no-op. Errors: EINVAL for options that are not an object, a
   * drain that is not a boolean or a timeoutMs that is not a number ≥ 0.
   */
  async close(opts?: CloseOptions): Promise<void> {
    const o = checkOptions('engine.close: options', opts);
    const drain = checkBoolean('engine.close: options.drain', o.drain, true);
    const timeoutMs = o.timeoutMs ?? 30_000;
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) throw badArgument('engine.close: options.timeoutMs', 'a number of milliseconds ≥ 0', timeoutMs);
    if (this.state !== 'running') return;
    this.state = 'closing';
    this.draining = drain;
    const deadline = performance.now() + timeoutMs;
    while (this.draining && (this.calls > 0 || this.inflight > 0) && performance.now() < deadline && this.slots.some((s) => s.alive)) {
      this.reap();
      if (this.inflight > 0) await this.sleepOnDoorbell();
      else if (this.calls > 0) await new Promise((r) => setTimeout(r, 1));
    }
    this.draining = false;
    // Ask the workers to leave; a closed ring makes a worker stop before its next burst.
    const gone = this.slots.map((s) => new Promise<void>((resolve) => {
      if (!s.alive) return resolve();
      const timer = setTimeout(resolve, 5000);
      this.closedWaiters.set(s.index, () => {
        clearTimeout(timer);
        resolve();
      });
      s.submit.close();
    }));
    await Promise.all(gone);
    this.reap();
    this.state = 'closed';
    for (const s of this.slots) {
      s.alive = false;
      void s.handle?.terminate();
      s.handle = null;
      const left = [...s.inflight];
      s.inflight.clear();
      for (const idx of left) this.cancel(idx);
    }
    for (const idx of this.backlog.splice(0)) this.cancel(idx);
    this.updateRef();
  }

  /** `await using engine = await Engine.start()`: closes (draining) when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private cancel(idx: number): void {
    this.i32[this.pool.descWord(idx) + (this.layout.DESC_STATUS >> 2)] = STATUS_CANCELED;
    this.finish(idx, new FlashpackError('ECANCELED', `engine: descriptor ${idx} canceled by close()`));
  }
}
