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
 */
import { FlashpackError, invalid } from '../errors.js';
import { runtime as processRuntime, type Runtime } from '../wasm/runtime.js';
import { SlabPool } from '../shm/slab.js';
import { spawnWorker, availableCores, type WorkerHandle } from '../wasm/spawn.js';
import type { Backend } from './backend.js';
import type { DeviceWorkerInit, DeviceWorkerReply } from './device-worker.js';
import { IoQpair, type IoQpairOptions, type TimeoutCallback } from './qpair.js';
import {
  CTRL_BYTES, CTRL_STATE, CTRL_DOORBELL, CTRL_SLEEPERS, CTRL_SPIN, CTRL_TABLE_GEN, CTRL_TABLE, CTRL_TABLE_ENTRY_BYTES, MAX_QPAIRS,
  CTRL_LIVE, CTRL_CLOSING, CTRL_FAILED, LINE_BYTES, qpairLayout,
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

const isPow2 = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
const DEFAULT_SPIN_ITERATIONS = 2000;
const checkSpin = (n: number): void => {
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 31 - 1) throw invalid(`controller: spinIterations ${n} (a non-negative integer)`);
};

export class Namespace {
  readonly id = 1;
  readonly ctrlr: Controller;
  /** Logical block size in bytes (512 or 4096). */
  readonly blockSize: number;
  /** Capacity in logical blocks. */
  readonly blocks: number;
  /** Blocks one command may move (MDTS). */
  readonly maxTransferBlocks: number;
  /** NOIOB in blocks (0 = none). */
  readonly boundaryBlocks: number;

  /** @internal */
  constructor(ctrlr: Controller, blockSize: number, blocks: number, maxTransferBlocks: number, boundaryBlocks: number) {
    this.ctrlr = ctrlr;
    this.blockSize = blockSize;
    this.blocks = blocks;
    this.maxTransferBlocks = maxTransferBlocks;
    this.boundaryBlocks = boundaryBlocks;
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
    const maxTransfer = opts.maxTransferBytes ?? 128 * 1024;
    if (!isPow2(maxTransfer) || maxTransfer < MIN_PAGE_BYTES || maxTransfer > 2 << 20 || maxTransfer < bs) {
      throw invalid(`controller: maxTransferBytes ${maxTransfer} (a power of two, 4096 to 2 MiB)`);
    }
    const noiob = opts.optimalIoBoundary ?? 0;
    if (!Number.isInteger(noiob) || noiob < 0 || noiob > 0xffff) throw invalid(`controller: optimalIoBoundary ${noiob} (0 to 65,535 blocks)`);
    const mqe = opts.maxQueueEntries ?? 1024;
    if (!isPow2(mqe) || mqe < 4 || mqe > 65536) throw invalid(`controller: maxQueueEntries ${mqe} (a power of two, 4 to 65,536)`);
    const workers = opts.ioWorkers ?? 1;
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw invalid(`controller: ioWorkers ${workers} (1 to 64)`);
    const spin = opts.spinIterations ?? DEFAULT_SPIN_ITERATIONS;
    checkSpin(spin);
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
    checkSpin(n);
    Atomics.store(this.i32(), (this.at + CTRL_SPIN) >> 2, n);
  }

  /** Attaches to a backend and starts its device workers. */
  static async open(backend: Backend, opts: ControllerOptions = {}): Promise<Controller> {
    if (!backend.present(backend.epoch)) throw new FlashpackError('ENXIO', 'controller: the backend is not present (removed or powered off)');
    const rt = opts.runtime ?? processRuntime();
    const pool = opts.pool ?? SlabPool.create(rt);
    if (pool.memory !== rt.memory) throw invalid('controller: the slab pool is not in the runtime\'s memory');
    const ioWorkers = opts.ioWorkers ?? Math.min(4, Math.max(1, (await availableCores()) - 1));
    const c = new Controller(backend, rt, pool, { ...opts, ioWorkers });
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

  /** @internal ENXIO unless the controller accepts commands. */
  checkLive(): void {
    if (this.live) return;
    const why = this.state === CTRL_CLOSING ? 'is closed' : this.failure !== null ? `failed (${this.failure.message})` : 'lost its device (removed or powered off)';
    throw new FlashpackError('ENXIO', `controller ${why}`);
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

  /** Namespace `id` (only nsid 1 exists). */
  ns(id = 1): Namespace {
    if (id !== 1) throw invalid(`controller: namespace ${id} does not exist (only 1)`);
    return this.namespaces[0];
  }

  /** spdk_nvme_ctrlr_alloc_io_qpair. Defaults: 256 entries, 512 requests (SPDK's). */
  allocIoQpair(opts: IoQpairOptions = {}): IoQpair {
    this.checkLive();
    const entries = opts.ioQueueSize ?? Math.min(256, this.maxQueueEntries);
    if (!isPow2(entries) || entries < 4 || entries > this.maxQueueEntries) {
      throw invalid(`allocIoQpair: ioQueueSize ${entries} (a power of two, 4 to maxQueueEntries ${this.maxQueueEntries})`);
    }
    const requests = opts.ioQueueRequests ?? 512;
    if (!Number.isInteger(requests) || requests < 1 || requests > 1 << 20) throw invalid(`allocIoQpair: ioQueueRequests ${requests} (1 to 2^20)`);
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

  /** spdk_nvme_ctrlr_free_io_qpair: EINVAL while commands are outstanding or queued. */
  freeIoQpair(qp: IoQpair): void {
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
   * timeoutMs 0 turns reporting off.
   */
  registerTimeoutCallback(timeoutMs: number, cb: TimeoutCallback | null): void {
    if (!(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) throw invalid(`registerTimeoutCallback: timeout ${timeoutMs} ms`);
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
}
