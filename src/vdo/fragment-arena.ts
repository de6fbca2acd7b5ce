/**
 * The fragment arena: where compressed fragments wait for their packed block,
 * so a waiting write gives its pipeline slot and both of its block buffers
 * back (packer.ts). A region of the shared memory cut into pages of a volume block; each
 * packer bin holding fragments owns one page and its fragments lie in it one
 * after another, so waiting costs only the compressed bytes.
 *
 * A page is free again once its bin has given it up (disown) and every write
 * whose fragment lies in it has finished (release): until then reads of those
 * blocks decode them from here.
 *
 * Invariants (asserted): a page is taken only when free; references never go
 * below zero; a free page has no owner and no references; a reference is
 * added only to a page a bin owns or one already referenced.
 */
import { assert } from '../assert.js';
import { BLOCK_BYTES } from './encodings.js';
import type { PageSource } from './packer.js';

export class FragmentArena implements PageSource {
  /** Byte address of page 0 in the shared memory. */
  readonly at: number;
  readonly pages: number;
  /** Bytes of a page: the volume block (a packed block's fragments fit one). */
  readonly pageBytes: number;
  /** Fragments in each page whose writes have not finished. */
  private readonly refs: Int32Array;
  /** 1 while a packer bin fills the page. */
  private readonly owned: Uint8Array;
  private readonly free: Int32Array;
  private freeCount: number;

  static bytesFor(pages: number, pageBytes = BLOCK_BYTES): number {
    return pages * pageBytes;
  }

  constructor(at: number, pages: number, pageBytes = BLOCK_BYTES) {
    assert(at % 64 === 0 && pages > 0, 'fragment arena: a 64-aligned region of at least one page');
    this.at = at;
    this.pages = pages;
    this.pageBytes = pageBytes;
    this.refs = new Int32Array(pages);
    this.owned = new Uint8Array(pages);
    this.free = new Int32Array(pages);
    for (let i = 0; i < pages; i++) this.free[i] = pages - 1 - i;
    this.freeCount = pages;
  }

  /** Pages neither filled by a bin nor read by a waiting write. */
  get freePages(): number {
    return this.freeCount;
  }

  take(): number {
    if (this.freeCount === 0) return -1;
    const page = this.free[--this.freeCount];
    assert(this.owned[page] === 0 && this.refs[page] === 0, `fragment arena: page ${page} taken while in use`);
    this.owned[page] = 1;
    return page;
  }

  disown(page: number): void {
    assert(this.owned[page] === 1, `fragment arena: page ${page} given up twice`);
    this.owned[page] = 0;
    if (this.refs[page] === 0) this.free[this.freeCount++] = page;
  }

  /** A fragment was placed in `page` (its bin owns it), or another write reads one there (a hash-lock waiter). */
  hold(page: number): void {
    assert(this.owned[page] === 1 || this.refs[page] > 0, `fragment arena: a fragment placed in page ${page}, which no bin owns`);
    this.refs[page]++;
  }

  /** A write whose fragment lies in `page` finished. */
  release(page: number): void {
    assert(this.refs[page] > 0, `fragment arena: page ${page} released more often than held`);
    if (--this.refs[page] === 0 && this.owned[page] === 0) this.free[this.freeCount++] = page;
  }

  /** Byte address of `offset` in `page`. */
  address(page: number, offset: number): number {
    return this.at + page * this.pageBytes + offset;
  }
}
