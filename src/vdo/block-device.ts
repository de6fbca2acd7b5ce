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

type Done = { resolve(): void; reject(err: Error): void; what: string; vb: number };

export interface IoCounts {
  reads: number;
  writes: number;
  flushes: number;
}

export class BlockDevice {
  readonly ctrlr: Controller;
  readonly ns: Namespace;
  readonly qp: IoQpair;
  /** Namespace blocks per 4 KiB volume block (1 or 8). */
  readonly lbasPerBlock: number;
  /** Volume blocks on the namespace. */
  readonly blocks: number;
  readonly counts: IoCounts = { reads: 0, writes: 0, flushes: 0 };
  private readonly backlog: (() => void)[] = [];
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
    this.counts.reads++;
    return this.submit('read', vb, (cb, arg) => this.qp.read(this.ns, desc, vb * this.lbasPerBlock, count * this.lbasPerBlock, cb, arg));
  }

  write(vb: number, desc: number, fua = false, count = 1): Promise<void> {
    this.counts.writes++;
    return this.submit('write', vb, (cb, arg) => this.qp.write(this.ns, desc, vb * this.lbasPerBlock, count * this.lbasPerBlock, cb, arg, fua ? IO_FLAGS_FUA : 0));
  }

  flush(): Promise<void> {
    this.counts.flushes++;
    return this.submit('flush', 0, (cb, arg) => this.qp.flush(this.ns, cb, arg));
  }

  writeZeroes(vb: number, count: number): Promise<void> {
    this.counts.writes++;
    return this.submit('write zeroes', vb, (cb, arg) => this.qp.writeZeroes(this.ns, vb * this.lbasPerBlock, count * this.lbasPerBlock, cb, arg));
  }

  private submit(what: string, vb: number, issue: (cb: (s: Status, arg: unknown) => void, arg: Done) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done: Done = { resolve, reject, what, vb };
      const go = (): void => {
        try {
          issue(onComplete, done);
        } catch (err) {
          if ((err as FlashpackError).code === 'ENOMEM') this.backlog.push(go);
          else reject(err as Error);
          return;
        }
        this.poll();
      };
      if (this.backlog.length > 0) this.backlog.push(go);
      else go();
    });
  }

  private poll(): void {
    if (this.polling) return;
    this.polling = true;
    void (async () => {
      try {
        const qp = this.qp;
        while (qp.outstandingCount + qp.queuedCount > 0 || this.backlog.length > 0) {
          const n = qp.processCompletions(0);
          while (this.backlog.length > 0 && qp.freeRequests > 0) this.backlog.shift()!();
          if (n === 0) await qp.waitForCompletions(100);
        }
      } catch (err) {
        for (const go of this.backlog.splice(0)) go();
        throw err;
      } finally {
        this.polling = false;
      }
    })();
  }
}

function onComplete(status: Status, arg: unknown): void {
  const d = arg as Done;
  if (!status.isError) d.resolve();
  else {
    const code = status.sct === SCT_PATH ? 'ENXIO' : 'EIO';
    d.reject(new FlashpackError(code, `volume: device ${d.what} of block ${d.vb} failed: ${status}`));
  }
}
