/**
 * Mapping updates (dm-vdo's block map zone and recovery journal steps of a
 * data_vio): under the metadata lock, every placed write waiting is mapped in
 * one pass — journal entry (LBA, old, new, data check), then the block map,
 * then reference counts — and, for sync writes, one journal commit covers
 * them all. Discards are applied here too, one journal entry per run of
 * mapped blocks in a map page, and checkpoints write the dirty map pages so
 * the journal can move its head.
 *
 * Invariants: a write newer than an unapplied discard waits for the pass
 * behind that discard; a write older than what its LBA already has mapped is
 * dropped (its reference with it); every mapping change is journaled before
 * the map changes; a write's reference is dropped exactly once if it is not
 * mapped.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from './block-device.js';
import { pbnOf, stateOf, type BlockMap, type Page } from './block-map.js';
import type { DataVio } from './data-vio.js';
import type { LogicalZone } from './logical-zone.js';
import type { RecoveryJournal } from './recovery-journal.js';
import type { SlabDepot } from './slab-depot.js';
import type { CountSnapshots } from './count-snapshots.js';
import { ENTRY_DISCARD, ENTRY_MAP, MAP_ENTRIES_PER_PAGE, STATE_UNMAPPED, ZERO_PBN, type JournalEntry } from './encodings.js';

/** A promise-chain mutex: the metadata lock. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.tail.then(fn);
    this.tail = r.then(() => {}, () => {});
    return r;
  }
}

export interface MappingOptions {
  map: BlockMap;
  journal: RecoveryJournal;
  depot: SlabDepot;
  dev: BlockDevice;
  zone: LogicalZone;
  meta: Mutex;
  snapshots: CountSnapshots;
  /** Commit the journal after each pass (the sync policy). */
  sync: boolean;
  /** The write is over: mapped (err null), dropped, or failed. */
  finish(job: DataVio, err: Error | null): void;
}

export class MappingStage {
  /** Logical blocks mapped (including those mapped to the zero block). */
  logicalUsed = 0;
  private readonly o: MappingOptions;
  /** The journal entry applyMapping fills (the journal copies it). */
  private readonly entry: JournalEntry = { kind: ENTRY_MAP, lba: 0, count: 1, newPbn: 0, newState: 0, oldPbn: 0, oldState: 0, dataCheck: 0 };
  /** Writes placed and waiting for the metadata lock. */
  private waiting: DataVio[] = [];
  /** The array `waiting` becomes at the next pass, and the writes a pass mapped: reused, one pass runs at a time (the lock). */
  private spare: DataVio[] = [];
  private readonly mapped: DataVio[] = [];
  private queued = false;

  constructor(o: MappingOptions) {
    this.o = o;
  }

  /** A placed write (its home holds one reference for it): mapped in the next pass. */
  add(job: DataVio): void {
    this.waiting.push(job);
    this.queue();
  }

  private queue(): void {
    if (this.queued) return;
    this.queued = true;
    void this.o.meta.run(() => this.pass());
  }

  /** Under the metadata lock: every waiting write not held back by a discard, then one commit for sync writes. */
  private async pass(): Promise<void> {
    this.queued = false;
    const jobs = this.waiting;
    this.waiting = this.spare;
    const barrier = this.o.zone.mappingBarrier();
    const mapped = this.mapped;
    assert(this.waiting.length === 0 && mapped.length === 0, 'mapping: two passes at once');
    // Indexed loops: an async function's for-of made an iterator result per write.
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i];
      if (job.gen > barrier) {
        this.waiting.push(job);
        continue;
      }
      try {
        const slow = this.mapNow(job);
        if (slow !== null) await slow;
        mapped.push(job);
      } catch (err) {
        // Nothing changed for this write (the failure came before the map was updated): drop its reference.
        if (job.st.applied !== job.gen && pbnOf(job.mapping) !== ZERO_PBN) this.o.depot.decrement(pbnOf(job.mapping));
        this.o.finish(job, err as Error);
      }
    }
    let failure: Error | null = null;
    if (this.o.sync && mapped.length > 0) {
      try {
        await this.o.journal.commit();
      } catch (err) {
        failure = err as Error;
      }
    }
    jobs.length = 0;
    this.spare = jobs;
    try {
      for (let i = 0; i < mapped.length; i++) this.o.finish(mapped[i], failure);
    } finally {
      mapped.length = 0;
    }
    if (this.waiting.length > 0) this.queue();
  }

  /** Maps a write at once when its block map page is cached; else returns the promise of doing so. */
  private mapNow(job: DataVio): Promise<void> | null {
    if (job.gen < job.st.applied) {
      // A newer write to this LBA is already mapped: this one is obsolete.
      if (pbnOf(job.mapping) !== ZERO_PBN) this.o.depot.decrement(pbnOf(job.mapping));
      return null;
    }
    const { journal, map } = this.o;
    if (journal.needsCheckpoint || map.needsCheckpoint) return this.mapSlow(job);
    const page = map.cachedPage(job.lba);
    if (page === null || page.pbn === 0) return this.mapSlow(job);
    this.applyMapping(job, page);
    return null;
  }

  private async mapSlow(job: DataVio): Promise<void> {
    const { journal, map } = this.o;
    if (journal.needsCheckpoint || map.needsCheckpoint) await this.checkpoint();
    const page = await map.page(job.lba);
    try {
      // A leaf (and its parents) get blocks before anything is journaled: ENOSPC here changes nothing.
      await map.place(page);
      this.applyMapping(job, page);
    } finally {
      map.unpin(page);
    }
  }

  /** Journal, then block map, then reference counts. */
  private applyMapping(job: DataVio, page: Page): void {
    const { map, journal, depot } = this.o;
    const lba = job.lba;
    const mapping = job.mapping;
    const old = map.get(page, lba);
    const e = this.entry;
    e.lba = lba;
    e.newPbn = pbnOf(mapping);
    e.newState = stateOf(mapping);
    e.oldPbn = pbnOf(old);
    e.oldState = stateOf(old);
    e.dataCheck = job.check;
    journal.append(e);
    map.set(page, lba, mapping, job.check);
    job.st.applied = job.gen;
    // The map's own counts (count-snapshots.ts): the old block loses this LBA, the new one gains it.
    if (stateOf(old) === STATE_UNMAPPED) this.logicalUsed++;
    else if (pbnOf(old) !== ZERO_PBN) {
      depot.mapRef(pbnOf(old), -1);
      depot.decrement(pbnOf(old));
    }
    if (pbnOf(mapping) !== ZERO_PBN) depot.mapRef(pbnOf(mapping), 1);
  }

  /**
   * A discard of whole blocks [first, last) issued at generation `gen`:
   * writes issued before it are superseded and reads see zeroes from now on;
   * queued on the metadata lock now, so every write issued later maps after
   * it (mapBatch holds back writes newer than a discard not yet applied).
   */
  discard(first: number, last: number, gen: number): Promise<void> {
    const { zone, meta, journal } = this.o;
    const pd = zone.discardIssued(first, last, gen);
    return meta
      .run(async () => {
        try {
          await this.applyDiscard(first, last, gen);
        } finally {
          pd.applied = true;
        }
        if (this.o.sync) await journal.commit();
      })
      .finally(() => zone.discardDone(pd));
  }

  /** Unmaps [first, last) for the discard issued at `gen`; the caller holds the metadata lock. */
  async applyDiscard(first: number, last: number, gen: number): Promise<void> {
    const { map, journal, depot, zone } = this.o;
    let lba = first;
    while (lba < last) {
      const pageEnd = Math.min(last, (Math.floor(lba / MAP_ENTRIES_PER_PAGE) + 1) * MAP_ENTRIES_PER_PAGE);
      const page = await map.page(lba);
      try {
        // Runs of mapped blocks, each journaled before the map changes. Writes issued after
        // this discard queue on the metadata lock behind it, so none of them is mapped yet;
        // writes issued before it that are still in flight are dropped when they get here.
        const runs: [number, number][] = [];
        for (let l = lba; l < pageEnd; l++) {
          zone.discardApplying(l, gen);
          if (stateOf(map.get(page, l)) !== STATE_UNMAPPED) {
            if (runs.length > 0 && runs[runs.length - 1][1] === l) runs[runs.length - 1][1] = l + 1;
            else runs.push([l, l + 1]);
          }
        }
        for (const [from, to] of runs) {
          if (journal.needsCheckpoint || map.needsCheckpoint) await this.checkpoint();
          journal.append({ kind: ENTRY_DISCARD, lba: from, count: to - from, newPbn: 0, newState: 0, oldPbn: 0, oldState: 0, dataCheck: 0 });
          for (let l = from; l < to; l++) {
            const old = map.get(page, l);
            map.set(page, l, 0, 0);
            this.logicalUsed--;
            if (pbnOf(old) !== ZERO_PBN) {
              depot.mapRef(pbnOf(old), -1);
              depot.decrement(pbnOf(old));
            }
          }
        }
      } finally {
        map.unpin(page);
      }
      lba = pageEnd;
    }
  }

  /**
   * Journal durable; the counts the map implies saved as a snapshot tagged
   * with the head recorded below (count-snapshots.ts: before any map page,
   * so the media's map never runs ahead of the newest snapshot); every dirty
   * block map page written and flushed; recovery then starts at the next block.
   */
  async checkpoint(): Promise<void> {
    const { journal, map, dev } = this.o;
    await journal.commit();
    await dev.flush();
    await this.o.snapshots.write(journal.nextHead, this.logicalUsed);
    await map.writeDirty();
    await dev.flush();
    await journal.advanceHead();
    // The new head must be durable before the volume takes writes: after a
    // recovery, the blocks behind it hold entries whose data never arrived, and
    // replaying them again later could let them match data written since.
    await journal.recordHead();
    await dev.flush();
  }
}
