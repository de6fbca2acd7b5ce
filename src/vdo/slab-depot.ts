/**
 * The slab depot: the data region cut into slabs, a reference count per
 * physical block (dm-vdo's bound: 254 references; a block at the bound is not
 * shared further), and allocation slab by slab.
 *
 * Reference counts live in memory. Beside them the depot keeps the counts the
 * block map alone implies (`mapped`: what references writes in flight hold
 * left out), which every checkpoint saves (count-snapshots.ts) and an open
 * loads, or rebuilds from the map. A block whose count drops to zero is not reusable at once: it
 * waits until the next completed flush, so a crash can never leave a journal
 * entry's old mapping pointing at a block that was already overwritten.
 *
 * A block is also marked from its allocation until its data write completes
 * (dm-vdo's PBN write lock): until then the device still holds what a freed
 * block held before, so dedupe must not verify against it and share it.
 *
 * Block map tree pages (map-tree.ts) come from the data region too, with a
 * count of MAX_REFERENCES that never drops: dedupe never shares one and no
 * mapping change frees one (dm-vdo counts its tree pages the same way).
 *
 * Every method that takes a PBN asserts it is in the data region (EINTERNAL):
 * the metadata and the zero block have no reference count to change.
 *
 * The data region grows at its end (grow(): the physical size grew); the
 * last slab, if short, is filled out first, and new slabs follow.
 *
 * A data block is a volume block: `unit` aligned 4 KiB PBNs from dataStart
 * (encodings.ts blockPbns). Counts, slabs and every "block" here count data
 * blocks; PBNs in and out are a data block's first PBN (asserted aligned).
 */
import { FlashpackError } from '../errors.js';
import { assertionFailed } from '../assert.js';
import { COUNTS_PER_BLOCK, SNAPSHOT_SLOTS, countBlocksFor } from './encodings.js';

export const MAX_REFERENCES = 254;

export class SlabDepot {
  readonly dataStart: number;
  /** PBNs per data block. */
  readonly unit: number;
  /** Blocks in the data region (grow() raises it). */
  dataBlocks: number;
  readonly slabBlocks: number;
  private refs: Uint8Array;
  /** Per data block: references the block map holds (tree pages MAX_REFERENCES). */
  private mapped: Uint8Array;
  /** Per snapshot slot, per count block: 1 if a mapped count in it changed since the slot was last written. */
  private dirty: Uint8Array[];
  private slabFree: Int32Array;
  private pendingFree: number[] = [];
  private pendingMark: Uint8Array;
  /** 1 from allocate() until written(): the block's new data is not on the device yet. */
  private writing: Uint8Array;
  private cursor = 0;
  /** Some block was allocated since the last resetAll() (so `writing` may hold ones). */
  private allocated = false;
  private used = 0;
  /** Blocks holding block map tree pages (counted in usedBlocks too). */
  private treePages = 0;
  /** Data blocks the block map references (mapped count > 0; tree pages included): a snapshot records it. */
  private mappedUsed = 0;
  /** Usage reported until the counts are loaded or rebuilt (presetUsage). */
  private preset: { used: number; treePages: number } | null = null;

  /**
   * The data region [dataStart, dataEnd) (PBNs) cut into data blocks of `unit` PBNs and those into slabs of `slabBlocks`.
   * `empty`: every block free (a new volume). Otherwise (an open) the
   * per-block arrays are allocated only when counts are loaded or rebuilt
   * (loadCounts, resetAll): a clean open that never writes never holds them.
   */
  constructor(dataStart: number, dataEnd: number, slabBlocks: number, empty = true, unit = 1) {
    if (dataStart % unit !== 0) throw assertionFailed(`slab depot: data region start ${dataStart} not aligned to ${unit} PBNs`);
    this.dataStart = dataStart;
    this.unit = unit;
    this.dataBlocks = Math.floor((dataEnd - dataStart) / unit);
    this.slabBlocks = slabBlocks;
    const n = empty ? this.dataBlocks : 0;
    this.refs = new Uint8Array(n);
    this.mapped = new Uint8Array(n);
    this.dirty = Array.from({ length: SNAPSHOT_SLOTS }, () => new Uint8Array(countBlocksFor(this.dataBlocks)).fill(1));
    this.pendingMark = new Uint8Array(n);
    this.writing = new Uint8Array(n);
    this.slabFree = new Int32Array(Math.ceil(this.dataBlocks / slabBlocks));
    for (let s = 0; s < this.slabFree.length; s++) this.slabFree[s] = Math.min(slabBlocks, this.dataBlocks - s * slabBlocks);
  }

  /**
   * The data region now ends at `dataEnd` (later than now): every per-block
   * array grows, the new blocks free, their count blocks marked for every
   * snapshot slot. Synchronous, so no allocation or count change sees half of it.
   */
  grow(dataEnd: number): void {
    const n = Math.floor((dataEnd - this.dataStart) / this.unit);
    if (this.refs.length !== this.dataBlocks) throw assertionFailed('slab depot grow: before the counts were loaded');
    if (!(n > this.dataBlocks)) throw assertionFailed(`slab depot grow: ${n} data blocks, not more than ${this.dataBlocks}`);
    const widen = (a: Uint8Array): Uint8Array => {
      const b = new Uint8Array(n);
      b.set(a);
      return b;
    };
    this.refs = widen(this.refs);
    this.mapped = widen(this.mapped);
    this.pendingMark = widen(this.pendingMark);
    this.writing = widen(this.writing);
    this.dirty = this.dirty.map((d) => {
      const b = new Uint8Array(countBlocksFor(n)).fill(1);
      b.set(d);
      // The count block that held the old end gains counts the slot never held.
      if (d.length > 0) b[d.length - 1] = 1;
      return b;
    });
    const free = new Int32Array(Math.ceil(n / this.slabBlocks));
    free.set(this.slabFree);
    for (let s = 0; s < free.length; s++) {
      const size = Math.min(this.slabBlocks, n - s * this.slabBlocks);
      const was = s < this.slabFree.length ? Math.min(this.slabBlocks, this.dataBlocks - s * this.slabBlocks) : 0;
      free[s] = (s < this.slabFree.length ? this.slabFree[s] : 0) + size - was;
    }
    this.slabFree = free;
    this.dataBlocks = n;
  }

  /** Data blocks holding data (count > 0). */
  get usedBlocks(): number {
    return this.preset?.used ?? this.used;
  }

  /** Blocks holding block map tree pages: overhead, not data. */
  get mapPages(): number {
    return this.preset?.treePages ?? this.treePages;
  }

  /** Blocks free now (not counting those waiting for a flush). */
  get freeBlocks(): number {
    return this.dataBlocks - this.used - this.pendingFree.length;
  }

  /** Blocks freed since the last flush, reusable after the next one. */
  get pendingBlocks(): number {
    return this.pendingFree.length;
  }

  slabs(): number {
    return this.slabFree.length;
  }

  isData(pbn: number): boolean {
    return pbn >= this.dataStart && pbn < this.dataStart + this.dataBlocks * this.unit && (pbn - this.dataStart) % this.unit === 0;
  }

  /** The index of data block `pbn`, asserted in the data region. */
  private at(pbn: number, what: string): number {
    const i = (pbn - this.dataStart) / this.unit;
    if (!(i >= 0 && i < this.dataBlocks && this.refs.length === this.dataBlocks && Number.isInteger(i))) {
      if (this.refs.length !== this.dataBlocks) throw assertionFailed(`slab depot ${what}: PBN ${pbn} before the counts were loaded`);
      const bound = this.unit > 1 ? ` or not on one of its ${this.unit}-PBN block boundaries` : '';
      throw assertionFailed(`slab depot ${what}: PBN ${pbn} outside the data region ${this.dataStart}..${this.dataStart + this.dataBlocks * this.unit - 1}${bound}`);
    }
    return i;
  }

  references(pbn: number): number {
    return this.refs[this.at(pbn, 'references')];
  }

  canShare(pbn: number): boolean {
    return this.refs[this.at(pbn, 'canShare')] < MAX_REFERENCES;
  }

  /** Whether the block was allocated and its data write has not completed (what the device holds is not its data). */
  beingWritten(pbn: number): boolean {
    return this.writing[this.at(pbn, 'beingWritten')] !== 0;
  }

  /** The data write of an allocated block completed (or failed): from now on the device holds what the block maps. */
  written(pbn: number): void {
    this.writing[this.at(pbn, 'written')] = 0;
  }

  /** A free block with one reference, marked being written until written(), or ENOSPC. Allocation fills a slab before moving on. */
  allocate(): number {
    const n = this.dataBlocks;
    if (this.refs.length !== n) throw assertionFailed('slab depot allocate: before the counts were loaded');
    for (let scanned = 0; scanned < n; scanned++) {
      const i = this.cursor;
      this.cursor = this.cursor + 1 === n ? 0 : this.cursor + 1;
      if (this.refs[i] === 0 && this.pendingMark[i] === 0) {
        this.refs[i] = 1;
        this.writing[i] = 1;
        this.allocated = true;
        this.used++;
        this.slabFree[Math.floor(i / this.slabBlocks)]--;
        return this.dataStart + i * this.unit;
      }
    }
    throw new FlashpackError('ENOSPC', `slab depot: all ${n} data blocks are in use${this.pendingFree.length ? ` (${this.pendingFree.length} free after the next flush)` : ''}`);
  }

  /** A free block for a block map tree page, counted MAX_REFERENCES for good (ENOSPC when none). */
  allocateMapPage(): number {
    const pbn = this.allocate();
    const i = (pbn - this.dataStart) / this.unit;
    this.refs[i] = MAX_REFERENCES;
    this.writing[i] = 0;
    this.treePages++;
    this.setMapped(i, MAX_REFERENCES);
    return pbn;
  }

  private setMapped(i: number, n: number): void {
    const was = this.mapped[i];
    if (was === 0 && n !== 0) this.mappedUsed++;
    else if (was !== 0 && n === 0) this.mappedUsed--;
    this.mapped[i] = n;
    const k = Math.floor(i / COUNTS_PER_BLOCK);
    for (let s = 0; s < SNAPSHOT_SLOTS; s++) this.dirty[s][k] = 1;
  }

  /** The block map now references `pbn` once more (delta 1) or once less (−1): a mapping change, journaled. */
  mapRef(pbn: number, delta: 1 | -1): void {
    const i = this.at(pbn, 'mapRef');
    const n = this.mapped[i] + delta;
    if (n < 0 || n > MAX_REFERENCES) throw assertionFailed(`slab depot: the block map's references to PBN ${pbn} would be ${n}`);
    this.setMapped(i, n);
  }

  /** Data blocks the block map references, tree pages included (what a snapshot's counts add up to). */
  get mappedUsedBlocks(): number {
    return this.mappedUsed;
  }

  /**
   * Before the counts are loaded (a clean open loads them behind it): usage
   * as the snapshot recorded it, so stats() is right meanwhile. loadCounts()
   * or a rebuild sets it again from the counts themselves.
   */
  presetUsage(usedBlocks: number, treePages: number): void {
    this.preset = { used: usedBlocks, treePages };
  }

  /** False from presetUsage() until the counts are loaded or rebuilt: nothing may count or snapshot them yet. */
  get countsKnown(): boolean {
    return this.preset === null;
  }

  /** The block map's count per data block (a snapshot writes it; read only). */
  mappedCounts(): Uint8Array {
    return this.mapped;
  }

  /** Snapshot slot `slot`'s changed count blocks (the writer clears what it wrote). */
  mappedDirty(slot: number): Uint8Array {
    return this.dirty[slot];
  }

  /** Every count block of `slot` to be written: what the slot holds is unknown. */
  markAllMappedDirty(slot: number): void {
    this.dirty[slot].fill(1);
  }

  /** Rebuild: `pbn` holds a tree page the block map names. ECORRUPT if anything else counted it already. */
  claimMapPage(pbn: number): void {
    if (!this.isData(pbn)) throw new FlashpackError('ECORRUPT', `block map: a tree page at PBN ${pbn}, not a data block of the data region`);
    const i = (pbn - this.dataStart) / this.unit;
    if (this.refs[i] !== 0) throw new FlashpackError('ECORRUPT', `block map: PBN ${pbn} is named as a tree page and is ${this.refs[i] === MAX_REFERENCES ? 'another tree page or full' : 'referenced by a mapping'} too`);
    this.refs[i] = MAX_REFERENCES;
    this.used++;
    this.treePages++;
    this.slabFree[Math.floor(i / this.slabBlocks)]--;
    this.setMapped(i, MAX_REFERENCES);
  }

  /** One more reference to an allocated block. */
  increment(pbn: number): void {
    const i = this.at(pbn, 'increment');
    if (this.refs[i] >= MAX_REFERENCES) throw new FlashpackError('EINTERNAL', `slab depot: PBN ${pbn} already has ${MAX_REFERENCES} references`);
    if (this.refs[i] === 0) {
      this.used++;
      this.slabFree[Math.floor(i / this.slabBlocks)]--;
    }
    this.refs[i]++;
  }

  /** One reference fewer; at zero the block waits for the next flush. */
  decrement(pbn: number): void {
    const i = this.at(pbn, 'decrement');
    if (this.refs[i] === 0) throw new FlashpackError('EINTERNAL', `slab depot: PBN ${pbn} has no references to drop`);
    if (--this.refs[i] === 0) {
      this.used--;
      this.slabFree[Math.floor(i / this.slabBlocks)]++;
      this.pendingMark[i] = 1;
      this.pendingFree.push(i);
    }
  }

  /** A flush completed: blocks freed before it became reusable. */
  releasePending(count = this.pendingFree.length): void {
    const done = this.pendingFree.splice(0, count);
    for (const i of done) this.pendingMark[i] = 0;
  }

  /**
   * The counts of a snapshot, in place of a rebuild (open; no write is in
   * flight, so they are the block map's too): false, and nothing changed,
   * unless there is one per data block and none is over MAX_REFERENCES.
   * Every slot's count blocks are marked unchanged: the slot loaded holds
   * exactly these counts, and CountSnapshots.opened() sets the others. The
   * depot takes `counts` as its own: the caller must not change it after.
   */
  loadCounts(counts: Uint8Array, treePages: number): boolean {
    if (counts.length !== this.dataBlocks) return false;
    // One pass counts and checks; nothing changes until it found every count valid.
    const per = this.slabBlocks;
    const free = new Int32Array(this.slabFree.length);
    for (let s = 0; s < free.length; s++) free[s] = Math.min(per, this.dataBlocks - s * per);
    let used = 0;
    const take = (i: number, n: number): boolean => {
      if (n === 0) return true;
      if (n > MAX_REFERENCES) return false;
      used++;
      free[Math.floor(i / per)]--;
      return true;
    };
    // Four counts at a time: a volume's counts are mostly zero (free) or mostly small.
    const words = counts.byteOffset % 4 === 0 ? new Uint32Array(counts.buffer, counts.byteOffset, counts.length >>> 2) : null;
    const tail = words === null ? 0 : words.length * 4;
    const word = (w: number, x: number): boolean =>
      take(w * 4, x & 0xff) && take(w * 4 + 1, (x >>> 8) & 0xff) && take(w * 4 + 2, (x >>> 16) & 0xff) && take(w * 4 + 3, x >>> 24);
    if (words !== null) {
      let w = 0;
      for (; w + 1 < words.length; w += 2) {
        const x = words[w];
        const y = words[w + 1];
        if ((x | y) !== 0 && !(word(w, x) && word(w + 1, y))) return false;
      }
      if (w < words.length && !word(w, words[w])) return false;
    }
    for (let i = tail; i < counts.length; i++) if (!take(i, counts[i])) return false;
    this.resetAll();
    this.refs.set(counts);
    // The depot keeps the array as its mapped counts (no second copy to fault in).
    this.mapped = counts;
    this.slabFree = free;
    this.used = used;
    this.mappedUsed = used;
    this.treePages = treePages;
    this.preset = null;
    for (const d of this.dirty) d.fill(0);
    return true;
  }

  /** Recovery, after a rebuild: the block map's counts are the counts (no write is in flight). */
  syncMapped(): void {
    this.mapped.set(this.refs);
    this.mappedUsed = this.used;
    this.preset = null;
    for (const d of this.dirty) d.fill(1);
  }

  /** Recovery: counts rebuilt from scratch (every block referenced by the block map). */
  resetAll(): void {
    if (this.refs.length !== this.dataBlocks) {
      // An open's depot: the arrays come now, zeroed.
      this.refs = new Uint8Array(this.dataBlocks);
      this.mapped = new Uint8Array(this.dataBlocks);
      this.pendingMark = new Uint8Array(this.dataBlocks);
      this.writing = new Uint8Array(this.dataBlocks);
    }
    // Arrays that can hold only zeroes are not written (at open they are new: zeroed pages not yet touched).
    if (this.used !== 0 || this.treePages !== 0) this.refs.fill(0);
    if (this.mappedUsed !== 0) this.mapped.fill(0);
    if (this.pendingFree.length !== 0) this.pendingMark.fill(0);
    if (this.allocated) this.writing.fill(0);
    this.allocated = false;
    this.pendingFree = [];
    this.used = 0;
    this.treePages = 0;
    this.mappedUsed = 0;
    for (let s = 0; s < this.slabFree.length; s++) this.slabFree[s] = Math.min(this.slabBlocks, this.dataBlocks - s * this.slabBlocks);
  }
}
