/**
 * The volume's view of its device: 4 KiB volume blocks read and written from
 * slab descriptors through one NVMe queue pair, as promises. A poller reaps
 * completions while anything is outstanding (processCompletions, then
 * waitForCompletions), so no caller ever waits on a single I/O synchronously.
 * When the request pool is empty, submissions wait in a backlog and go out as
 * completions free requests.
 */
import { FlashpackError } from '../errors.js';
import type { Controller, Namespace } from '../nvme/controller.js';
import type { IoQpair } from '../nvme/qpair.js';
import { IO_FLAGS_FUA, SCT_PATH, type Status } from '../nvme/spec.js';
import { BLOCK_BYTES } from './encodings.js';

/** Called once when an I/O completes: null, or the error (EIO, or ENXIO for a lost device). */
export type IoCallback<A> = (err: FlashpackError | null, arg: A) => void;

interface Done {
  cb: IoCallback<unknown>;
  arg: unknown;
  what: string;
  vb: number;
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
  /** Namespace blocks per 4 KiB volume block (1 or 8). */
  readonly lbasPerBlock: number;
  /** Volume blocks on the namespace. */
  readonly blocks: number;
  readonly counts: IoCounts = { reads: 0, writes: 0, flushes: 0, blocksWritten: 0 };
  private readonly backlog: { done: Done; issue: (done: Done) => void }[] = [];
  private polling = false;

  constructor(ctrlr: Controller) {
    this.ctrlr = ctrlr;
    this.ns = ctrlr.ns(1);
    if (BLOCK_BYTES % this.ns.blockSize !== 0) throw new FlashpackError('EINVAL', `volume: namespace block size ${this.ns.blockSize} does not divide 4096`);
    this.lbasPerBlock = BLOCK_BYTES / this.ns.blockSize;
    this.blocks = Math.floor(this.ns.blocks / this.lbasPerBlock);
    this.qp = ctrlr.allocIoQpair({ ioQueueSize: 256, ioQueueRequests: 1024 });
  }

  read(vb: number, desc: number, count = 1): Promise<void> {
    return new Promise<void>((resolve, reject) => this.readThen(vb, desc, (err) => (err === null ? resolve() : reject(err)), null, count));
  }

  /** read() with a callback instead of a promise. */
  readThen<A>(vb: number, desc: number, cb: IoCallback<A>, arg: A, count = 1): void {
    this.counts.reads++;
    const qp = this.qp;
    const ns = this.ns;
    this.submit({ cb: cb as IoCallback<unknown>, arg, what: 'read', vb }, (done) => qp.read(ns, desc, vb * this.lbasPerBlock, count * this.lbasPerBlock, onComplete, done));
  }

  write(vb: number, desc: number, fua = false, count = 1): Promise<void> {
    return new Promise<void>((resolve, reject) => this.writeThen(vb, desc, fua, (err) => (err === null ? resolve() : reject(err)), null, count));
  }

  /** write() with a callback instead of a promise (the volume's hot path: no promise per block). */
  writeThen<A>(vb: number, desc: number, fua: boolean, cb: IoCallback<A>, arg: A, count = 1): void {
    this.counts.writes++;
    this.counts.blocksWritten += count;
    const qp = this.qp;
    const ns = this.ns;
    const flags = fua ? IO_FLAGS_FUA : 0;
    this.submit({ cb: cb as IoCallback<unknown>, arg, what: 'write', vb }, (done) => qp.write(ns, desc, vb * this.lbasPerBlock, count * this.lbasPerBlock, onComplete, done, flags));
  }

  flush(): Promise<void> {
    this.counts.flushes++;
    return this.promise('flush', 0, (cb, arg) => this.qp.flush(this.ns, cb, arg));
  }

  writeZeroes(vb: number, count: number): Promise<void> {
    this.counts.writes++;
    return this.promise('write zeroes', vb, (cb, arg) => this.qp.writeZeroes(this.ns, vb * this.lbasPerBlock, count * this.lbasPerBlock, cb, arg));
  }

  private promise(what: string, vb: number, issue: (cb: (s: Status, arg: unknown) => void, arg: Done) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.submit({ cb: (err) => (err === null ? resolve() : reject(err)), arg: null, what, vb }, (done) => issue(onComplete, done));
    });
  }

  /** Issues now, or queues behind earlier submissions while the request pool is empty. */
  private submit(done: Done, issue: (done: Done) => void): void {
    if (this.backlog.length > 0 || !this.issue(done, issue)) this.backlog.push({ done, issue });
  }

  /** False when the request pool is empty (ENOMEM): try again after completions. */
  private issue(done: Done, issue: (done: Done) => void): boolean {
    try {
      issue(done);
    } catch (err) {
      if ((err as FlashpackError).code === 'ENOMEM') return false;
      done.cb(err as FlashpackError, done.arg);
      return true;
    }
    this.poll();
    return true;
  }

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
          while (this.backlog.length > 0 && qp.freeRequests > 0 && this.issue(this.backlog[0].done, this.backlog[0].issue)) this.backlog.shift();
          if (n === 0) await qp.waitForCompletions(100);
        }
      } catch (err) {
        // Nothing can complete now: everything waiting fails with the poller's error.
        const e = err instanceof FlashpackError ? err : new FlashpackError('EIO', `volume: device poller failed: ${(err as Error).message}`);
        for (const b of this.backlog.splice(0)) b.done.cb(e, b.done.arg);
      } finally {
        this.polling = false;
      }
    })();
  }
}

function onComplete(status: Status, arg: unknown): void {
  const d = arg as Done;
  if (!status.isError) d.cb(null, d.arg);
  else {
    const code = status.sct === SCT_PATH ? 'ENXIO' : 'EIO';
    d.cb(new FlashpackError(code, `volume: device ${d.what} of block ${d.vb} failed: ${status}`), d.arg);
  }
}
