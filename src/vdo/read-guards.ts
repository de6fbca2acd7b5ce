/**
 * Where guarded reads get their guards back: pages of u32 words in the shared
 * memory, one page per device read in flight. A guarded read (nvme/spec.ts
 * IO_FLAGS_GUARD) has the device worker hash each data block it read and store
 * the data check in the read's page, so the read path compares a word with the
 * block map's instead of hashing the block on the main thread (dm-vdo checks
 * on the CPU that reads; NVMe end-to-end protection has the controller do it).
 *
 * A page holds the guards of the largest read the read path issues (a staging
 * buffer of data blocks). The pages are few and fixed: a read that finds none
 * free is issued unguarded and its blocks are hashed on the main thread, as
 * every read was before — the same check either way, never a skipped one.
 */
import { FlashpackError } from '../errors.js';
import type { Runtime } from '../wasm/runtime.js';
import { STAGING_BYTES } from './data-writer.js';

/** Guarded reads in flight at most (more go unguarded). */
export const READ_GUARD_PAGES = 256;

/** Bytes of one page at a block size: a guard per data block of a staging buffer. */
function pageBytesFor(blockBytes: number): number {
  return 4 * Math.max(1, STAGING_BYTES / blockBytes);
}

export class ReadGuards {
  /** The region's bytes at a block size (Volume reserves it before it views the memory). */
  static bytesFor(blockBytes: number): number {
    return READ_GUARD_PAGES * pageBytesFor(blockBytes);
  }

  private readonly at: number;
  private readonly pageBytes: number;
  private readonly words: Int32Array;
  /** Free page indexes, a stack. */
  private readonly free: Int32Array;
  private freeCount = READ_GUARD_PAGES;

  /** Over the region of bytesFor(blockBytes) bytes at byte address `at` of rt's memory. */
  constructor(rt: Runtime, at: number, blockBytes: number) {
    this.at = at;
    this.pageBytes = pageBytesFor(blockBytes);
    this.words = new Int32Array(rt.memory.buffer, at, ReadGuards.bytesFor(blockBytes) >> 2);
    this.free = Int32Array.from({ length: READ_GUARD_PAGES }, (_, i) => READ_GUARD_PAGES - 1 - i);
  }

  /** The byte address of a free page, or 0 when every page is out. */
  take(): number {
    if (this.freeCount === 0) return 0;
    return this.at + this.free[--this.freeCount] * this.pageBytes;
  }

  /** Page `page` (from take()) back to the free pages. */
  give(page: number): void {
    const i = (page - this.at) / this.pageBytes;
    if (!(i >= 0 && i < READ_GUARD_PAGES && Number.isInteger(i)) || this.freeCount === READ_GUARD_PAGES) {
      throw new FlashpackError('EINTERNAL', `read guards: page ${page} was not taken`);
    }
    this.free[this.freeCount++] = i;
  }

  /** Guard `i` of page `page`: the data check the device computed, as an unsigned 32-bit number. */
  guard(page: number, i: number): number {
    return this.words[((page - this.at) >> 2) + i] >>> 0;
  }
}
