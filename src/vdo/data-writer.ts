/**
 * Data block writes, gathered. The blocks the volume writes in one microtask
 * wave mostly go to consecutive PBNs (the slab depot allocates in order), so
 * they are laid out side by side in a staging buffer and go to the device as
 * one multi-block write: one NVMe command (split by MDTS) and one completion
 * instead of one per block, and one pwrite on a file backend.
 */
import type { SlabPool } from '../shm/slab.js';
import type { BlockDevice, IoCallback } from './block-device.js';
import type { FlashpackError } from '../errors.js';
import { BLOCK_BYTES } from './encodings.js';

/** One staging buffer: up to this many blocks per write. */
export const STAGING_BYTES = 512 * 1024;

interface Run {
  desc: number;
  /** Byte address of the buffer in shared memory. */
  at: number;
  start: number;
  count: number;
  done: IoCallback<unknown>[];
  args: unknown[];
}

export class DataWriter {
  private readonly dev: BlockDevice;
  private readonly pool: SlabPool;
  private readonly fua: boolean;
  /** Bytes and PBNs of a data block. */
  private readonly blockBytes: number;
  private readonly pbns: number;
  /** Blocks per staging buffer. */
  private readonly capacity: number;
  private run: Run | null = null;
  private waveQueued = false;
  /** Runs written (device commands before MDTS splitting), for stats. */
  runsWritten = 0;

  constructor(dev: BlockDevice, pool: SlabPool, fua: boolean, blockBytes = BLOCK_BYTES) {
    this.dev = dev;
    this.pool = pool;
    this.fua = fua;
    this.blockBytes = blockBytes;
    this.pbns = blockBytes / BLOCK_BYTES;
    this.capacity = Math.floor(Math.min(STAGING_BYTES, pool.classSizeFor(STAGING_BYTES)) / blockBytes);
  }

  /**
   * The byte address in shared memory where the data block at `pbn` goes, or −1 when
   * no staging buffer is free (write the block on its own then). Fill it, then
   * call added() before asking for another slot.
   */
  slot(pbn: number): number {
    let r = this.run;
    if (r !== null && (pbn !== r.start + r.count * this.pbns || r.count === this.capacity)) {
      this.submit();
      r = null;
    }
    if (r === null) {
      const desc = this.pool.tryAlloc(STAGING_BYTES);
      if (desc < 0) return -1;
      r = this.run = { desc, at: this.pool.bufferOf(desc), start: pbn, count: 0, done: [], args: [] };
      if (!this.waveQueued) {
        this.waveQueued = true;
        queueMicrotask(this.endWave);
      }
    }
    return r.at + r.count * this.blockBytes;
  }

  /** The slot is filled: it goes out with its run, and done(err, arg) is called once the run is written. */
  added<A>(done: IoCallback<A>, arg: A): void {
    const r = this.run!;
    r.count++;
    r.done.push(done as IoCallback<unknown>);
    r.args.push(arg);
  }

  private readonly endWave = (): void => {
    this.waveQueued = false;
    this.submit();
  };

  private submit(): void {
    const r = this.run;
    if (r === null) return;
    this.run = null;
    if (r.count === 0) {
      this.pool.free(r.desc);
      return;
    }
    this.runsWritten++;
    this.pool.setLength(r.desc, r.count * this.blockBytes);
    this.dev.writeThen(r.start, r.desc, this.fua, this.written, r, r.count * this.pbns);
  }

  private readonly written = (err: FlashpackError | null, r: Run): void => {
    this.pool.free(r.desc);
    for (let i = 0; i < r.count; i++) r.done[i](err, r.args[i]);
  };
}
