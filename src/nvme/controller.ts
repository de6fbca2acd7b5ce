/**
 * An NVMe-style controller over a backend, after SPDK's nvme_ctrlr.c: one
 * namespace (nsid 1) with the backend's block size and capacity, a maximum
 * transfer size (MDTS), an optimal I/O boundary (NOIOB), a maximum queue size
 * (MQES + 1), I/O queue pairs, and a timeout callback.
 *
 * The device side is a set of device workers (device-worker.ts) sharing the
 * controller block and every queue pair in the shared memory; each runs
 * commands on its own Device, so up to `ioWorkers` commands execute at once
 * while the host thread only submits and polls.
 *
 * Errors: EINVAL for an argument or option of the wrong type or out of range
 * (the message names it); ENXIO once the controller is closed, failed or its
 * device is gone; ENOMEM when all queue pairs are in use.
 */
import { FlashpackError, afterClose, badArgument, checkFunction, checkInteger, checkOptions, describe, invalid } from '../errors.js';
import { runtime as processRuntime, type Runtime } from '../wasm/runtime.js';
import { SlabPool } from '../shm/slab.js';
import { spawnWorker, availableCores, type WorkerHandle } from '../wasm/spawn.js';
import type { Backend } from './backend.js';
import type { DeviceWorkerInit, DeviceWorkerReply } from './device-worker.js';
import { IoQpair, type IoQpairOptions, type TimeoutCallback } from './qpair.js';
import {
  CTRL_BYTES, CTRL_STATE, CTRL_DOORBELL, CTRL_SLEEPERS, CTRL_SPIN, CTRL_TABLE_GEN, CTRL_TABLE, CTRL_TABLE_ENTRY_BYTES, MAX_QPAIRS,
  CTRL_LIVE, CTRL_CLOSING, CTRL_FAILED, LINE_BYTES, qpairLayout, storeCapacity,
} from './layout.js';
import { MAX_LBAS_PER_COMMAND } from './spec.js';

export interface ControllerOptions {
  /** The shared memory (default: the process runtime). */
  runtime?: Runtime;
  /** Slab pool whose descriptors carry I/O buffers (default: a new pool on the runtime). */
  pool?: SlabPool;
  /** Device workers, i.e. commands that run at once (default: cores − 1, 1 to 4; the host thread keeps a core to poll). */
  ioWorkers?: number;
  /** Maximum data transfer per command in bytes: a power of two, 4 KiB .. 2 MiB (default 128 KiB, MDTS 5). */
  maxTransferBytes?: number;
  /** Namespace optimal I/O boundary (NOIOB) in blocks; 0 = none (default 0). */
  optimalIoBoundary?: number;
  /** Maximum entries of an I/O queue (CAP.MQES + 1): a power of two, 4 .. 65,536 (default 1024). */
  maxQueueEntries?: number;
  /** Idle scans a device worker makes before parking (default 2000; change it later with `spinIterations`). */
  spinIterations?: number;
}

const MIN_PAGE_BYTES = 4096;
const WORKER_READY_TIMEOUT_MS = 30_000;
const WORKER_CLOSE_TIMEOUT_MS = 30_000;

const isPow2 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
const DEFAULT_SPIN_ITERATIONS = 2000;
const checkSpin = (n: unknown, what: string): void => {
  checkInteger(what, n, 0, 2 ** 31 - 1);
};

/** Whether `b` has the shape of a Backend (MemoryBackend, FileBackend, FaultBackend or a caller's own). */
function isBackend(b: unknown): b is Backend {
  const x = b as Backend | null;
  return typeof x === 'object' && x !== null && typeof x.describe === 'function' && typeof x.present === 'function' &&
    typeof x.blockSize === 'number' && typeof x.blocks === 'number';
}

export class Namespace {
  readonly id = 1;
  readonly ctrlr: Controller;
  /** Logical block size in bytes (512 or 4096). */
  readonly blockSize: number;
  private capacity: number;
  /** Blocks one command may move (MDTS). */
  readonly maxTransferBlocks: number;
  /** NOIOB in blocks (0 = none). */
  readonly boundaryBlocks: number;

  /** @internal */
  constructor(ctrlr: Controller, blockSize: number, blocks: number, maxTransferBlocks: number, boundaryBlocks: number) {
    this.ctrlr = ctrlr;
    this.blockSize = blockSize;
    this.capacity = blocks;
    this.maxTransferBlocks = maxTransferBlocks;
    this.boundaryBlocks = boundaryBlocks;
  }

  /** Capacity in logical blocks (Controller.growNamespace raises it). */
  get blocks(): number {
    return this.capacity;
  }

  /** @internal Controller.growNamespace */
  grown(blocks: number): void {
    this.capacity = blocks;
  }

  get sizeBytes(): number {
    return this.blocks * this.blockSize;
  }
}

interface DeviceWorker {
  handle: WorkerHandle<DeviceWorkerInit>;
  closed: Promise<void>;
}

export class Controller {
  readonly backend: Backend;
  readonly runtime: Runtime;
  readonly pool: SlabPool;
  readonly namespaces: readonly Namespace[];
  readonly maxTransferBytes: number;
  /** MDTS as NVMe encodes it: log2(maxTransferBytes / 4 KiB). */
  readonly mdts: number;
  readonly optimalIoBoundary: number;
  readonly maxQueueEntries: number;
  readonly ioWorkers: number;
  /** Byte address of the controller block in the shared memory. */
  readonly at: number;

  /** @internal read by qpairs on every completion pass */
  timeoutMs = 0;
  /** @internal */
  timeoutCallback: TimeoutCallback | null = null;
  /** @internal true once no device worker can post a completion any more */
  devicesGone = false;

  private readonly i32: () => Int32Array;
  private readonly epoch: number;
  private workers: DeviceWorker[] = [];
  private readonly qpairs: (IoQpair | null)[] = new Array(MAX_QPAIRS).fill(null);
  private readonly spareRegions = new Map<number, number[]>();
  private failure: Error | null = null;

  private constructor(backend: Backend, rt: Runtime, pool: SlabPool, opts: ControllerOptions) {
    const bs = backend.blockSize;
    const what = 'nvme.Controller.open: options';
    const maxTransfer = opts.maxTransferBytes ?? 128 * 1024;
    if (!isPow2(maxTransfer) || maxTransfer < MIN_PAGE_BYTES || maxTransfer > 2 << 20 || maxTransfer < bs) {
      throw badArgument(`${what}.maxTransferBytes`, `a power of two from 4096 to 2 MiB, at least the ${bs}-byte block`, maxTransfer);
    }
    const noiob = checkInteger(`${what}.optimalIoBoundary`, opts.optimalIoBoundary ?? 0, 0, 0xffff);
    const mqe = opts.maxQueueEntries ?? 1024;
    if (!isPow2(mqe) || mqe < 4 || mqe > 65536) throw badArgument(`${what}.maxQueueEntries`, 'a power of two from 4 to 65,536', mqe);
    const workers = checkInteger(`${what}.ioWorkers`, opts.ioWorkers ?? 1, 1, 64);
    const spin = opts.spinIterations ?? DEFAULT_SPIN_ITERATIONS;
    checkSpin(spin, `${what}.spinIterations`);
    this.backend = backend;
    this.runtime = rt;
    this.pool = pool;
    this.maxTransferBytes = maxTransfer;
    this.mdts = Math.log2(maxTransfer / MIN_PAGE_BYTES);
    this.optimalIoBoundary = noiob;
    this.maxQueueEntries = mqe;
    this.ioWorkers = workers;
    this.epoch = backend.epoch;
    const maxBlocks = Math.min(maxTransfer / bs, MAX_LBAS_PER_COMMAND);
    this.namespaces = Object.freeze([new Namespace(this, bs, backend.blocks, maxBlocks, noiob)]);
    this.at = rt.reserve(CTRL_BYTES, LINE_BYTES);
    const memory = rt.memory;
    let view = new Int32Array(memory.buffer);
    this.i32 = () => (view.buffer.byteLength === memory.buffer.byteLength ? view : (view = new Int32Array(memory.buffer)));
    this.i32().fill(0, this.at >> 2, (this.at + CTRL_BYTES) >> 2);
    Atomics.store(this.i32(), (this.at + CTRL_SPIN) >> 2, spin);
    this.publishCapacity(backend.blocks);
  }

  /** The namespace's capacity where the device workers read it (device-worker.ts). */
  private publishCapacity(blocks: number): void {
    storeCapacity(this.i32(), this.at, blocks);
  }

  /**
   * Grows namespace 1 to `blocks` logical blocks while commands run (NVMe's
   * namespace attribute change after a capacity increase): the backend grows
   * first (a file is extended), then the device workers learn the new bound,
   * all before this returns, so a command submitted after it may address the
   * new blocks. A size not above the current one changes nothing. Errors:
   * EINVAL (blocks), ENXIO (not live), ENOTSUP (a backend that cannot grow),
   * the backend's (ENOSPC, EROFS, EIO).
   */
  growNamespace(blocks: number): void {
    checkInteger('controller.growNamespace: blocks', blocks, 1, Number.MAX_SAFE_INTEGER);
    this.checkLive('controller.growNamespace');
    const ns = this.namespaces[0];
    if (blocks <= ns.blocks) return;
    if (this.backend.grow === undefined) {
      throw new FlashpackError('ENOTSUP', `controller.growNamespace: a ${this.backend.describe().kind} backend cannot grow (${ns.blocks} blocks; ${blocks} asked)`);
    }
    this.backend.grow(blocks);
    ns.grown(blocks);
    this.publishCapacity(blocks);
  }

  /**
   * Idle scans of the queues a device worker makes before it parks on the
   * doorbell. Spinning answers the next command without a wake-up, but only
   * pays while a core is free to spin on; the workers read it every time they
   * go idle, so a caller can turn it down while its own threads are busy.
   */
  get spinIterations(): number {
    return Atomics.load(this.i32(), (this.at + CTRL_SPIN) >> 2);
  }

  set spinIterations(n: number) {
    checkSpin(n, 'controller.spinIterations');
    Atomics.store(this.i32(), (this.at + CTRL_SPIN) >> 2, n);
  }

  /**
   * Attaches to a backend and starts its device workers. Errors: EINVAL for a
   * backend that is not one, options that are not an object or an option of
   * the wrong type or out of range; ENXIO when the backend is not present or a
   * device worker cannot open it.
   */
  static async open(backend: Backend, opts?: ControllerOptions): Promise<Controller> {
    if (!isBackend(backend)) throw badArgument('nvme.Controller.open: backend', 'a Backend (MemoryBackend, FileBackend or FaultBackend)', backend);
    const o = checkOptions('nvme.Controller.open: options', opts);
    if (o.runtime !== undefined && typeof o.runtime?.reserve !== 'function') throw badArgument('nvme.Controller.open: options.runtime', 'a Runtime', o.runtime);
    if (o.pool !== undefined && typeof o.pool?.checkAllocated !== 'function') throw badArgument('nvme.Controller.open: options.pool', 'a SlabPool', o.pool);
    if (o.ioWorkers !== undefined) checkInteger('nvme.Controller.open: options.ioWorkers', o.ioWorkers, 1, 64);
    if (!backend.present(backend.epoch)) throw new FlashpackError('ENXIO', 'nvme.Controller.open: the backend is not present (removed or powered off)');
    const rt = o.runtime ?? processRuntime();
    const pool = o.pool ?? SlabPool.create(rt);
    if (pool.memory !== rt.memory) throw invalid('nvme.Controller.open: options.pool is not in the runtime\'s memory');
    const ioWorkers = o.ioWorkers ?? Math.min(4, Math.max(1, (await availableCores()) - 1));
    const c = new Controller(backend, rt, pool, { ...o, ioWorkers });
    try {
      await Promise.all(Array.from({ length: c.ioWorkers }, () => c.startWorker()));
    } catch (err) {
      await c.stopWorkers();
      throw err;
    }
    return c;
  }

  private async startWorker(): Promise<void> {
    let ready!: (ok: DeviceWorkerReply) => void;
    const readyP = new Promise<DeviceWorkerReply>((r) => (ready = r));
    let closed!: () => void;
    const closedP = new Promise<void>((r) => (closed = r));
    const handle = await spawnWorker<DeviceWorkerInit, DeviceWorkerReply>(
      new URL('./device-worker.js', import.meta.url),
      (msg) => ('closed' in msg ? closed() : ready(msg)),
      (err) => {
        ready({ ready: false, error: err.message });
        closed();
        this.onWorkerFailure(err);
      },
    );
    const w: DeviceWorker = { handle, closed: closedP };
    this.workers.push(w);
    handle.post({ memory: this.runtime.memory, ctrlAt: this.at, backend: this.backend.describe() });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = await Promise.race([
      readyP,
      new Promise<DeviceWorkerReply>((r) => (timer = setTimeout(() => r({ ready: false, error: 'no answer in 30 s' }), WORKER_READY_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (!('ready' in reply) || !reply.ready) {
      throw new FlashpackError('ENXIO', `controller: device worker could not open the backend: ${'error' in reply ? reply.error : 'closed'}`);
    }
    handle.unref();
  }

  /** A device worker died: the controller fails; every command it held completes with a path error. */
  private onWorkerFailure(err: Error): void {
    if (this.failure !== null || this.state !== CTRL_LIVE) return;
    this.failure = err;
    Atomics.store(this.i32(), (this.at + CTRL_STATE) >> 2, CTRL_FAILED);
    void this.stopWorkers().then(() => {
      this.devicesGone = true;
    });
  }

  private async stopWorkers(): Promise<void> {
    const ws = this.workers;
    this.workers = [];
    await Promise.all(ws.map((w) => w.handle.terminate()));
  }

  private get state(): number {
    return Atomics.load(this.i32(), (this.at + CTRL_STATE) >> 2);
  }

  /** True when the controller failed or its device is gone (hot removal, power cut). */
  get failed(): boolean {
    return this.state === CTRL_FAILED || !this.backend.present(this.epoch);
  }

  /** @internal accepting commands */
  get live(): boolean {
    return this.state === CTRL_LIVE && this.backend.present(this.epoch);
  }

  /** @internal ENXIO unless the controller accepts commands (`what` names the call: "qpair.write"). */
  checkLive(what: string): void {
    if (this.live) return;
    if (this.state === CTRL_CLOSING) throw afterClose(what);
    throw new FlashpackError('ENXIO', `${what}: the controller ${this.whyDown}`);
  }

  /** Why commands fail with a path error now ("failed (…)", "lost its device …", "is closing"), or null while live. */
  get whyDown(): string | null {
    if (this.live) return null;
    if (this.state === CTRL_CLOSING) return 'is closing';
    return this.failure !== null ? `failed (${this.failure.message})` : 'lost its device (removed or powered off)';
  }

  /** @internal a write command of `blocks` blocks completed: the backend hears of it (write-behind). */
  wrote(blocks: number): void {
    this.backend.wrote?.(blocks * this.backend.blockSize);
  }

  /**
   * @internal after new SQ tails are stored: wake a parked device worker. Workers
   * that are not parked poll the queues themselves, so the doorbell (a line they
   * would otherwise fight the host for) is touched only when one sleeps.
   */
  ringDoorbell(): void {
    const i32 = this.i32();
    if (Atomics.load(i32, (this.at + CTRL_SLEEPERS) >> 2) === 0) return;
    Atomics.add(i32, (this.at + CTRL_DOORBELL) >> 2, 1);
    Atomics.notify(i32, (this.at + CTRL_DOORBELL) >> 2, 1);
  }

  /** Namespace `id` (only nsid 1 exists). EINVAL for any other id. */
  ns(id = 1): Namespace {
    if (id !== 1) throw invalid(`controller.ns: namespace ${describe(id)} does not exist (only 1)`);
    return this.namespaces[0];
  }

  /**
   * spdk_nvme_ctrlr_alloc_io_qpair. Defaults: 256 entries, 512 requests
   * (SPDK's). Errors: ENXIO after close() (or failure, or removal); EINVAL for
   * options that are not an object or out of range; ENOMEM when all queue
   * pairs are in use.
   */
  allocIoQpair(opts?: IoQpairOptions): IoQpair {
    const o = checkOptions('controller.allocIoQpair: options', opts);
    this.checkLive('controller.allocIoQpair');
    const entries = o.ioQueueSize ?? Math.min(256, this.maxQueueEntries);
    if (!isPow2(entries) || entries < 4 || entries > this.maxQueueEntries) {
      throw badArgument('controller.allocIoQpair: options.ioQueueSize', `a power of two from 4 to maxQueueEntries ${this.maxQueueEntries}`, entries);
    }
    const requests = checkInteger('controller.allocIoQpair: options.ioQueueRequests', o.ioQueueRequests ?? 512, 1, 1 << 20);
    const slot = this.qpairs.indexOf(null);
    if (slot < 0) throw new FlashpackError('ENOMEM', `allocIoQpair: all ${MAX_QPAIRS} queue pairs are in use`);
    const L = qpairLayout(entries);
    const base = this.spareRegions.get(entries)?.pop() ?? this.runtime.reserve(L.bytes, LINE_BYTES);
    const i32 = this.i32();
    i32.fill(0, base >> 2, (base + L.bytes) >> 2);
    const qp = new IoQpair(this, slot + 1, base, entries, requests);
    this.qpairs[slot] = qp;
    const e = (this.at + CTRL_TABLE + slot * CTRL_TABLE_ENTRY_BYTES) >> 2;
    i32[e] = base;
    i32[e + 1] = entries;
    i32[e + 2] = qp.trackers;
    Atomics.store(i32, e + 3, 1);
    Atomics.add(i32, (this.at + CTRL_TABLE_GEN) >> 2, 1);
    return qp;
  }

  /** spdk_nvme_ctrlr_free_io_qpair: EINVAL while commands are outstanding or queued, or for a qpair not allocated here. */
  freeIoQpair(qp: IoQpair): void {
    if (!(qp instanceof IoQpair)) throw badArgument('controller.freeIoQpair: qp', 'an IoQpair', qp);
    const slot = qp.id - 1;
    if (this.qpairs[slot] !== qp) throw invalid(`freeIoQpair: qpair ${qp.id} is not allocated on this controller`);
    if (qp.outstandingCount + qp.queuedCount > 0 && !this.devicesGone) {
      throw invalid(`freeIoQpair: qpair ${qp.id} has ${qp.outstandingCount} outstanding and ${qp.queuedCount} queued commands`);
    }
    const i32 = this.i32();
    Atomics.store(i32, (this.at + CTRL_TABLE + slot * CTRL_TABLE_ENTRY_BYTES + 12) >> 2, 0);
    Atomics.add(i32, (this.at + CTRL_TABLE_GEN) >> 2, 1);
    this.qpairs[slot] = null;
    qp.markFreed();
    // A device worker may still hold the old table for a moment; the region is reused only for a same-size queue.
    let spare = this.spareRegions.get(qp.entries);
    if (spare === undefined) this.spareRegions.set(qp.entries, (spare = []));
    spare.push(qp.base);
  }

  /**
   * spdk_nvme_ctrlr_register_timeout_callback: commands outstanding longer than
   * timeoutMs are reported once each, oldest first, from processCompletions.
   * timeoutMs 0 turns reporting off. Errors: EINVAL for timeoutMs that is not
   * a finite number ≥ 0, or cb that is neither a function nor null.
   */
  registerTimeoutCallback(timeoutMs: number, cb: TimeoutCallback | null): void {
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) {
      throw badArgument('controller.registerTimeoutCallback: timeoutMs', 'a finite number of milliseconds ≥ 0', timeoutMs);
    }
    if (cb !== null) checkFunction('controller.registerTimeoutCallback: cb', cb);
    this.timeoutMs = timeoutMs;
    this.timeoutCallback = cb;
  }

  /**
   * Detaches: new commands are refused (ENXIO), the device workers finish every
   * command already in a submission queue, completions are delivered, and
   * requests still in software queues complete with ABORTED_SQ_DELETION.
   */
  async close(): Promise<void> {
    if (this.state === CTRL_CLOSING) return;
    const i32 = this.i32();
    if (this.state === CTRL_LIVE) {
      for (const qp of this.qpairs) qp?.publishNow(); // commands submitted in this tick are drained too
      Atomics.store(i32, (this.at + CTRL_STATE) >> 2, CTRL_CLOSING);
      Atomics.add(i32, (this.at + CTRL_DOORBELL) >> 2, 1);
      Atomics.notify(i32, (this.at + CTRL_DOORBELL) >> 2);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(this.workers.map((w) => w.closed)),
        new Promise<void>((r) => (timer = setTimeout(r, WORKER_CLOSE_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
    } else {
      Atomics.store(i32, (this.at + CTRL_STATE) >> 2, CTRL_CLOSING);
    }
    await this.stopWorkers();
    this.devicesGone = true;
    for (const qp of this.qpairs) qp?.drainOnClose();
  }

  /** `await using ctrlr = await nvme.Controller.open(backend)`: closes when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
