/**
 * The volume check's side of the image: positioned reads of whole blocks from
 * a file or block device opened O_RDONLY (never written), a progress count
 * reported at most every PROGRESS_INTERVAL_MS, and the problem list with its
 * bound. Shared by check.ts and check-journal.ts.
 */
import type { FileHandle } from 'node:fs/promises';
import { fromOsError } from '../errors.js';
import { BLOCK_BYTES } from './encodings.js';

/** Blocks one read takes (1 MiB): the map and journal regions are read in runs this long. */
export const READ_RUN_BLOCKS_MAX = 256;
/** Unwanted blocks a read may take in passing to join two wanted ones (cheaper than a second read). */
export const READ_GAP_BLOCKS_MAX = 8;
const PROGRESS_INTERVAL_MS = 100;
/** Problems listed in a report; the rest are counted in one final entry. */
export const PROBLEMS_LISTED_MAX = 1000;

export interface CheckProblem {
  where: string;
  what: string;
}

export class Problems {
  private readonly listed: CheckProblem[] = [];
  private unlisted = 0;

  add(where: string, what: string): void {
    if (this.listed.length < PROBLEMS_LISTED_MAX) this.listed.push({ where, what });
    else this.unlisted++;
  }

  get count(): number {
    return this.listed.length + this.unlisted;
  }

  list(): CheckProblem[] {
    if (this.unlisted === 0) return this.listed;
    return [...this.listed, { where: 'check', what: `${this.unlisted} more problems not listed` }];
  }
}

export class Image {
  blocksRead = 0;
  /** Blocks the check expects to read; grows as it learns what the map references. */
  total = 0;
  private lastReport = 0;
  private readonly fh: FileHandle;
  private readonly path: string;
  private readonly onProgress: ((done: number, total: number) => void) | undefined;

  constructor(fh: FileHandle, path: string, onProgress: ((done: number, total: number) => void) | undefined) {
    this.fh = fh;
    this.path = path;
    this.onProgress = onProgress;
  }

  /** Reads `blocks` blocks from `pbn` into `b`; bytes past the end of the image read as zero. Returns the bytes the image had. */
  async read(pbn: number, blocks: number, b: Uint8Array): Promise<number> {
    const want = blocks * BLOCK_BYTES;
    let got = 0;
    try {
      while (got < want) {
        const { bytesRead } = await this.fh.read(b, got, want - got, pbn * BLOCK_BYTES + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (err) {
      throw fromOsError(err, `checkVolume: reading ${this.path} at block ${pbn}`);
    }
    b.fill(0, got, want);
    this.blocksRead += blocks;
    this.progress(false);
    return got;
  }

  /**
   * Reads the blocks of `span` PBNs (a data block's, or 1) at `pbns`
   * (ascending) in runs of up to READ_RUN_BLOCKS_MAX, reading through small
   * gaps, and hands each wanted block to `visit`. The caller counts `span`
   * blocks in `total` for each.
   */
  async readEach(pbns: ArrayLike<number>, visit: (pbn: number, block: Uint8Array) => void, span = 1): Promise<void> {
    const buf = new Uint8Array(Math.max(READ_RUN_BLOCKS_MAX, span) * BLOCK_BYTES);
    let i = 0;
    while (i < pbns.length) {
      const first = pbns[i];
      let j = i + 1;
      while (j < pbns.length && pbns[j] - first + span <= READ_RUN_BLOCKS_MAX && pbns[j] - pbns[j - 1] <= READ_GAP_BLOCKS_MAX + span) j++;
      const blocks = pbns[j - 1] - first + span;
      this.total += blocks - (j - i) * span; // the gap blocks read in passing
      await this.read(first, blocks, buf);
      for (let k = i; k < j; k++) {
        const at = (pbns[k] - first) * BLOCK_BYTES;
        visit(pbns[k], buf.subarray(at, at + span * BLOCK_BYTES));
      }
      i = j;
    }
  }

  progress(final: boolean): void {
    if (this.onProgress === undefined) return;
    const now = Date.now();
    if (!final && now - this.lastReport < PROGRESS_INTERVAL_MS) return;
    this.lastReport = now;
    this.onProgress(this.blocksRead, Math.max(this.total, this.blocksRead));
  }
}
