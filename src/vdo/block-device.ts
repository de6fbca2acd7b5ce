/**
 * The volume's view of its device: 4 KiB blocks (PBNs; a data block is one or
 * more of them, see encodings.ts) read and written from
 * slab descriptors through one NVMe queue pair, as promises. A poller reaps
 * completions while anything is outstanding (processCompletions, then
 * waitForCompletions), so no caller ever waits on a single I/O synchronously.
 * When the request pool is empty, submissions wait in a backlog and go out as
 * completions free requests.
 *
 * Each I/O is a DeviceIo record from a free list the device keeps (it grows to
 * the most I/Os ever outstanding and backlogged, then is reused): the callback
 * path allocates nothing per I/O. A record goes back to the list before its
 * callback runs, so the callback may issue the next I/O with it.
 */
import { FlashpackError } from '../errors.js';
import type { Controller, Namespace } from '../nvme/controller.js';
import type { IoQpair } from '../nvme/qpair.js';
import { IO_FLAGS_FUA, SCT_PATH, type Status } from '../nvme/spec.js';
import { BLOCK_BYTES } from './encodings.js';

/** Called once when an I/O completes: null, or the error (EIO, or ENXIO for a lost device). */
export type IoCallback<A> = (err: FlashpackError | null, arg: A) => void;

const OP_READ = 0;
const OP_WRITE = 1;
const OP_FLUSH = 2;
const OP_WRITE_ZEROES = 3;
const OP_NAMES = ['read', 'write', 'flush', 'write zeroes'];

class DeviceIo {
  op = OP_READ;
  vb = 0;
  desc = 0;
  count = 0;
  flags = 0;
  cb: IoCallback<unknown> | null = null;
  arg: unknown = null;
}

export interface IoCounts {
  /** Commands (bios out), each of one or more blocks. */
  reads: number;
  writes: number;
  flushes: number;
  /** 4 KiB blocks written (write zeroes not counted). */
  blocksWritten: number;
}

export class BlockDevice {
  readonly ctrlr: Controller;
  readonly ns: Namespace;
  readonly qp: IoQpair;
  /** Namespace blocks per 4 KiB PBN (1 or 8). */
  readonly lbasPerBlock: number;
  /** Volume blocks on the namespace (it may grow: Controller.growNamespace). */
  get blocks(): number {
    return Math.floor(this.ns.blocks / this.lbasPerBlock);
  }
  readonly counts: IoCounts = { reads: 0, writes: 0, flushes: 0, blocksWritten: 0 };
  private readonly backlog: DeviceIo[] = [];
  private readonly free: DeviceIo[] = [];
  private polling = false;

  constructor(ctrlr: Controller) {
    this.ctrlr = ctrlr;
    this.ns = ctrlr.ns(1);
    if (BLOCK_BYTES % this.ns.blockSize !== 0) throw new FlashpackError('EINVAL', `volume: namespace block size ${this.ns.blockSize} does not divide 4096`);
    this.lbasPerBlock = BLOCK_BYTES / this.ns.blockSize;
    this.qp = ctrlr.allocIoQpair({ ioQueueSize: 256, ioQueueRequests: 1024 });
  }

  read(vb: number, desc: number, count = 1): Promise<void> {
    return new Promise<void>((resolve, reject) => this.readThen(vb, desc, (err) => (err === null ? resolve() : reject(err)), null, count));
  }

  /** read() with a callback instead of a promise. */
  readThen<A>(vb: number, desc: number, cb: IoCallback<A>, arg: A, count = 1): void {
    this.counts.reads++;
    this.submit(this.io(OP_READ, vb, desc, count, 0, cb as IoCallback<unknown>, arg));
  }

  write(vb: number, desc: number, fua = false, count = 1): Promise<void> {
    return new Promise<void>((resolve, reject) => this.writeThen(vb, desc, fua, (err) => (err === null ? resolve() : reject(err)), null, count));
  }

  /** write() with a callback instead of a promise (the volume's hot path: no promise per block). */
  writeThen<A>(vb: number, desc: number, fua: boolean, cb: IoCallback<A>, arg: A, count = 1): void {
    this.counts.writes++;
    this.counts.blocksWritten += count;
    this.submit(this.io(OP_WRITE, vb, desc, count, fua ? IO_FLAGS_FUA : 0, cb as IoCallback<unknown>, arg));
  }

  flush(): Promise<void> {
    this.counts.flushes++;
    return this.promise(OP_FLUSH, 0, 0);
  }

  writeZeroes(vb: number, count: number): Promise<void> {
    this.counts.writes++;
    return this.promise(OP_WRITE_ZEROES, vb, count);
  }

  private promise(op: number, vb: number, count: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.submit(this.io(op, vb, 0, count, 0, (err) => (err === null ? resolve() : reject(err)), null));
    });
  }

  private io(op: number, vb: number, desc: number, count: number, flags: number, cb: IoCallback<unknown>, arg: unknown): DeviceIo {
    const io = this.free.pop() ?? new DeviceIo();
    io.op = op;
    io.vb = vb;
    io.desc = desc;
    io.count = count;
    io.flags = flags;
    io.cb = cb;
    io.arg = arg;
    return io;
  }

  /** Back to the free list, then its callback runs (and may take the record for its next I/O). */
  private finish(io: DeviceIo, err: FlashpackError | null): void {
    const cb = io.cb!;
    const arg = io.arg;
    io.cb = null;
    io.arg = null;
    this.free.push(io);
    cb(err, arg);
  }

  /** Issues now, or queues behind earlier submissions while the request pool is empty. */
  private submit(io: DeviceIo): void {
    if (this.backlog.length > 0 || !this.issue(io)) this.backlog.push(io);
  }

  /** False when the request pool is empty (ENOMEM): try again after completions. */
  private issue(io: DeviceIo): boolean {
    const qp = this.qp;
    const ns = this.ns;
    const k = this.lbasPerBlock;
    try {
      switch (io.op) {
        case OP_READ:
          qp.read(ns, io.desc, io.vb * k, io.count * k, this.completed, io);
          break;
        case OP_WRITE:
          qp.write(ns, io.desc, io.vb * k, io.count * k, this.completed, io, io.flags);
          break;
        case OP_FLUSH:
          qp.flush(ns, this.completed, io);
          break;
        default:
          qp.writeZeroes(ns, io.vb * k, io.count * k, this.completed, io);
      }
    } catch (err) {
      if ((err as FlashpackError).code === 'ENOMEM') return false;
      this.finish(io, err as FlashpackError);
      return true;
    }
    this.poll();
    return true;
  }

  /** The qpair's completion callback (one for every I/O; the record is its argument). */
  private readonly completed = (status: Status, arg: unknown): void => {
    const io = arg as DeviceIo;
    if (!status.isError) this.finish(io, null);
    else {
      const path = status.sct === SCT_PATH;
      // A path error says the controller is down; the message says why (a worker's death, removal, close).
      const why = path ? this.ctrlr.whyDown : null;
      this.finish(io, new FlashpackError(path ? 'ENXIO' : 'EIO', `volume: device ${OP_NAMES[io.op]} of block ${io.vb} failed: ${status}${why !== null ? `; the controller ${why}` : ''}`));
    }
  };

  private poll(): void {
    if (this.polling) return;
    this.polling = true;
    void (async () => {
      // Start after this microtask wave: the qpair publishes the wave's commands
      // with one doorbell, which reaping at once (it publishes first) would split.
      await null;
      try {
        const qp = this.qp;
        while (qp.outstandingCount + qp.queuedCount > 0 || this.backlog.length > 0) {
          const n = qp.processCompletions(0);
          while (this.backlog.length > 0 && qp.freeRequests > 0 && this.issue(this.backlog[0])) this.backlog.shift();
          if (n === 0) await qp.waitForCompletions(100);
        }
      } catch (err) {
        // Nothing can complete now: everything waiting fails with the poller's error.
        const e = err instanceof FlashpackError ? err : new FlashpackError('EIO', `volume: device poller failed: ${(err as Error).message}`);
        for (const io of this.backlog.splice(0)) this.finish(io, e);
      } finally {
        this.polling = false;
      }
    })();
  }
}
