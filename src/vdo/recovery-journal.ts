/**
 * The recovery journal: every mapping change (LBA, old mapping, new mapping,
 * the logical block's data check: XXH3 bits, see encodings.ts) in a ring of
 * `journalBlocks` blocks, each 8 self-validating sectors of 15 entries. The
 * block being filled is rewritten as it grows (from a snapshot, never from the
 * live buffer, and one write of it at a time, so the device never sees an
 * older version after a newer one); a torn rewrite leaves each sector old or
 * new, and both are valid.
 *
 * Every sector carries its block's sequence number and the journal head (the
 * oldest block whose changes may be missing from the on-disk block map).
 * Replay finds the highest head, then walks blocks head, head+1, … while their
 * sectors are valid, full and in sequence, and hands back the entries in order.
 *
 * A clean close ends with the head block written empty and nothing after it
 * (`closedAt`), and the superblock records it: the next open resumes there
 * (`resumeAt`) without reading the ring, filling that same block first, so
 * a crash later replays from the head that close's count snapshot names.
 */
import { FlashpackError, corrupt } from '../errors.js';
import type { SlabPool } from '../shm/slab.js';
import type { BlockDevice } from './block-device.js';
import { STAGING_BYTES } from './data-writer.js';
import {
  BLOCK_BYTES, JOURNAL_ENTRIES_PER_BLOCK, JOURNAL_ENTRIES_PER_SECTOR, JOURNAL_MAGIC, SECTORS_PER_BLOCK, SECTOR_CORRUPT,
  SECTOR_VALID, decodeJournalEntry, encodeJournalEntry, openSector, sealSector, type JournalEntry, type SectorHeader,
} from './encodings.js';

/** What replay() found: the entries to replay, oldest first, and where they lie. */
export interface JournalReplay {
  entries: JournalEntry[];
  /** The head the journal recorded: the oldest block whose changes may be missing from the on-disk block map (the tag of the count snapshot an open can take). */
  head: number;
}

export interface JournalStats {
  entriesWritten: number;
  blocksWritten: number;
}

export class RecoveryJournal {
  readonly blocks: number;
  readonly stats: JournalStats = { entriesWritten: 0, blocksWritten: 0 };
  /** Sequence number of the block being filled. */
  seq = 1;
  /** Oldest block still needed by recovery. */
  head = 1;
  private entries = 0;
  private written = 0; // entries of the current block already on the device (not necessarily flushed)
  private readonly dev: BlockDevice;
  private readonly pool: SlabPool;
  private readonly start: number;
  private readonly nonce: number;
  private readonly current: number; // descriptor of the block being filled
  private inflight: Promise<void> | null = null;
  /** The first journal write that failed: nothing after it is durable, so every commit reports it. */
  private failure: Error | null = null;
  private mem: Uint8Array;

  /** Sync write policy: journal writes are FUA, so a committed entry is durable. */
  private readonly fua: boolean;

  constructor(dev: BlockDevice, pool: SlabPool, start: number, blocks: number, nonce: number, fua = false) {
    this.fua = fua;
    this.dev = dev;
    this.pool = pool;
    this.start = start;
    this.blocks = blocks;
    this.nonce = nonce;
    this.current = pool.alloc(4096);
    this.mem = new Uint8Array(pool.memory.buffer);
    this.block().fill(0);
  }

  /** The `k`-th 4 KiB of buffer `desc`. */
  private block(desc = this.current, k = 0): Uint8Array {
    if (this.mem.buffer.byteLength !== this.pool.memory.buffer.byteLength) this.mem = new Uint8Array(this.pool.memory.buffer);
    const at = this.pool.bufferOf(desc) + k * 4096;
    return this.mem.subarray(at, at + 4096);
  }

  /** Blocks in use from head through the current one. */
  get used(): number {
    return this.seq - this.head + 1;
  }

  /** Whether the journal must checkpoint before taking more entries (half the ring in use). */
  get needsCheckpoint(): boolean {
    return this.used * 2 >= this.blocks;
  }

  /** Entries appended but not yet written (a commit would write them). */
  get unwritten(): number {
    return this.entries - this.written;
  }

  /** Appends one entry to the block being filled; a full block is written and the next begun. */
  append(e: JournalEntry): void {
    if (this.used >= this.blocks) throw new FlashpackError('EINTERNAL', `recovery journal: full (${this.blocks} blocks from head ${this.head})`);
    if (this.mem.buffer.byteLength !== this.pool.memory.buffer.byteLength) this.mem = new Uint8Array(this.pool.memory.buffer);
    encodeJournalEntry(this.mem, this.entries, e, this.pool.bufferOf(this.current));
    this.entries++;
    this.stats.entriesWritten++;
    if (this.entries === JOURNAL_ENTRIES_PER_BLOCK) void this.rollOver();
  }

  private rollOver(): Promise<void> {
    const write = this.writeCurrent();
    this.seq++;
    this.entries = 0;
    this.written = 0;
    this.block().fill(0); // the write took a snapshot: the buffer starts the next block
    return write;
  }

  /** Writes the current block as it stands (a snapshot), after any earlier write of it. */
  private writeCurrent(): Promise<void> {
    const seq = this.seq;
    const count = this.entries;
    const snapshot = this.pool.alloc(4096);
    const b = this.block(snapshot);
    b.set(this.block());
    for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
      const n = Math.max(0, Math.min(JOURNAL_ENTRIES_PER_SECTOR, count - s * JOURNAL_ENTRIES_PER_SECTOR));
      sealSector(b, s, JOURNAL_MAGIC, this.nonce, { index: s, count: n, key: seq, aux: this.head });
    }
    const prev = this.inflight ?? Promise.resolve();
    const w = prev.then(() => this.dev.write(this.start + (seq % this.blocks), snapshot, this.fua)).finally(() => this.pool.free(snapshot));
    this.stats.blocksWritten++;
    this.written = count;
    const tail = w.catch((err: Error) => {
      this.failure ??= err;
    });
    this.inflight = tail;
    void tail.then(() => {
      if (this.inflight === tail) this.inflight = null;
    });
    return w;
  }

  /** Writes every appended entry (not a flush: the device may still hold them in its cache). */
  async commit(): Promise<void> {
    if (this.entries > this.written) await this.writeCurrent();
    else if (this.inflight !== null) await this.inflight;
    if (this.failure !== null) throw this.failure;
  }

  /** The head advanceHead() will set now: the block after the current one if it holds entries, else the current one. */
  get nextHead(): number {
    return this.entries > 0 ? this.seq + 1 : this.seq;
  }

  /**
   * Checkpoint step: the block map now holds every change so far durably, so
   * recovery can start at the next block. Closes the current block.
   */
  async advanceHead(): Promise<void> {
    if (this.entries > 0) await this.rollOver();
    await this.commit();
    this.head = this.seq;
  }

  /**
   * Where a clean close leaves the journal, once its checkpoint is done: the
   * head block, written empty, is the last block written (its sequence
   * number, for the superblock's cleanSeq). 0 when entries came after the
   * checkpoint (a write racing the close): the next open must replay them.
   */
  get closedAt(): number {
    return this.entries === 0 && this.head === this.seq ? this.seq : 0;
  }

  /**
   * Whether the ring agrees with a clean close at block `seq` (the
   * superblock's cleanSeq): that block is there, whole, empty and its own
   * head, and the block after it is older. Two blocks read, not the ring; an
   * open that finds otherwise (a superblock copy older than the journal)
   * reads the whole ring instead.
   */
  async closedCleanlyAt(seq: number): Promise<boolean> {
    const desc = await this.pool.allocAsync(BLOCK_BYTES);
    const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
    try {
      await this.dev.read(this.start + (seq % this.blocks), desc, 1);
      let b = this.block(desc);
      for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
        if (openSector(b, s, JOURNAL_MAGIC, this.nonce, h) !== SECTOR_VALID || h.key !== seq || h.aux !== seq || h.count !== 0) return false;
      }
      if (this.blocks === 1) return true;
      await this.dev.read(this.start + ((seq + 1) % this.blocks), desc, 1);
      b = this.block(desc);
      for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
        const r = openSector(b, s, JOURNAL_MAGIC, this.nonce, h);
        if (r === SECTOR_CORRUPT || (r === SECTOR_VALID && h.key > seq)) return false;
      }
      return true;
    } finally {
      this.pool.free(desc);
    }
  }

  /**
   * Open after a clean close: block `seq` is the head, written empty and the
   * last block written (the superblock's cleanSeq); entries go into it again.
   * Replaces replay(), whose result would be no entries and this head.
   */
  resumeAt(seq: number): JournalReplay {
    this.seq = seq;
    this.head = seq;
    this.entries = 0;
    this.written = 0;
    this.block().fill(0);
    return { entries: [], head: seq };
  }

  /** Writes the (empty) block at the head, so recovery starts there without rereading older blocks. */
  async recordHead(): Promise<void> {
    if (this.entries === 0) await this.writeCurrent();
  }

  release(): void {
    this.pool.free(this.current);
  }

  /**
   * Reads the whole ring and returns the entries to replay, oldest first, and
   * positions the journal after everything it saw (new blocks begin past the
   * highest sequence found, so stale blocks can never be mistaken for new ones).
   */
  async replay(): Promise<JournalReplay> {
    // The ring is read a staging buffer (128 blocks) per device read.
    const run = STAGING_BYTES / 4096;
    const desc = await this.pool.allocAsync(STAGING_BYTES);
    const seqs = new Float64Array(this.blocks).fill(-1);
    const counts: number[][] = [];
    const heads = new Float64Array(this.blocks);
    const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
    const kept = new Map<number, Uint8Array>();
    let maxSeq = 0;
    let maxHead = 0;
    try {
      for (let i = 0; i < this.blocks; i++) {
        if (i % run === 0) await this.dev.read(this.start + i, desc, Math.min(run, this.blocks - i));
        const b = this.block(desc, i % run);
        const c: number[] = [];
        let blockSeq = -1;
        for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
          const r = openSector(b, s, JOURNAL_MAGIC, this.nonce, h);
          if (r === SECTOR_CORRUPT) c.push(-2);
          else if (r !== SECTOR_VALID) c.push(-1);
          else {
            if (blockSeq < 0) blockSeq = h.key;
            c.push(h.key === blockSeq ? h.count : -1);
            if (h.key > maxSeq) maxSeq = h.key;
            if (h.aux > maxHead) maxHead = h.aux;
            heads[i] = Math.max(heads[i], h.aux);
          }
        }
        seqs[i] = blockSeq;
        counts[i] = c;
        if (blockSeq >= 0) kept.set(i, b.slice());
      }
    } finally {
      this.pool.free(desc);
    }
    const out: JournalEntry[] = [];
    if (maxSeq === 0) return { entries: out, head: 0 };
    for (let seq = maxHead; seq <= maxSeq; seq++) {
      const i = seq % this.blocks;
      if (seqs[i] !== seq) break;
      const c = counts[i];
      const b = kept.get(i)!;
      let complete = true;
      for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
        if (c[s] === -2) throw corrupt(`recovery journal: block ${seq} (position ${i}) sector ${s} fails its checksum`);
        if (c[s] > JOURNAL_ENTRIES_PER_SECTOR) throw corrupt(`recovery journal: block ${seq} (position ${i}) sector ${s} claims ${c[s]} entries (at most ${JOURNAL_ENTRIES_PER_SECTOR})`);
        if (c[s] < 0) {
          complete = false;
          break;
        }
        for (let k = 0; k < c[s]; k++) {
          const e: JournalEntry = { kind: 0, lba: 0, count: 0, newPbn: 0, newState: 0, oldPbn: 0, oldState: 0, dataCheck: 0 };
          decodeJournalEntry(b, s * JOURNAL_ENTRIES_PER_SECTOR + k, e);
          out.push(e);
        }
        if (c[s] < JOURNAL_ENTRIES_PER_SECTOR) {
          complete = false;
          break;
        }
      }
      if (!complete) break;
    }
    this.seq = maxSeq + 1;
    this.head = this.seq;
    return { entries: out, head: maxHead };
  }
}

