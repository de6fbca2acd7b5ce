/**
 * Ordering by logical block (dm-vdo's logical zone, logical-zone.c): every
 * write and discard takes a generation when it is called, and the effects on
 * one LBA land in generation order whatever order the pipeline finishes in.
 *
 * - LBA states: for each LBA with writes in flight, the newest generation
 *   issued, mapped and discarded (an older write that reaches mapping after a
 *   newer one is dropped there);
 * - the newest admitted write not yet mapped, per LBA (its state's
 *   `pending`): reads see its bytes at once;
 * - per-LBA writer queues: a write that must wait (a partial block, no room)
 *   keeps its place behind the writers of that block called before it;
 * - discards issued and not yet applied: reads inside them see zeroes unless
 *   a newer write is pending, and no write issued after one maps before it.
 *
 * Invariants: an LBA state lives while writes hold it (`inflight` counts
 * them; asserted never to go below zero), and is then reused for another
 * LBA — no write still refers to it; `pending` holds only the newest admitted
 * write of its LBA, and never one a later discard superseded.
 */
import { assertionFailed } from '../assert.js';
import type { DataVio, LbaState } from './data-vio.js';
import { RecordTable } from './record-table.js';

/** A discard issued and not yet applied. */
export interface PendingDiscard {
  first: number;
  /** Exclusive. */
  last: number;
  gen: number;
  applied: boolean;
}

/** A place in an LBA's queue of writers. */
export interface LbaTicket {
  /** Settles when the writer ahead is done. */
  prev: Promise<void>;
  release(): void;
}

/** The place in line of a writer with none ahead of it: settled, shared. */
const NO_WRITER_AHEAD: Promise<void> = Promise.resolve();

export class LogicalZone {
  /** By LBA (its `key`): a table that allocates nothing as states come and go, unlike a Map (record-table.ts). */
  private readonly states = new RecordTable<LbaState>();
  /** States no LBA holds, for reuse. */
  private readonly spare: LbaState[] = [];
  private readonly queues = new Map<number, Promise<void>>();
  private readonly discards: PendingDiscard[] = [];

  /** The state of `lba`, counted as held by one more write (drop() when it is over). */
  hold(lba: number): LbaState {
    let st = this.states.get(lba);
    if (st === undefined) {
      st = this.spare.pop() ?? { key: 0, latest: 0, applied: 0, discarded: 0, inflight: 0, pending: null };
      st.key = lba;
      st.latest = st.applied = st.discarded = 0;
      this.states.set(st);
    }
    st.inflight++;
    return st;
  }

  drop(lba: number, st: LbaState): void {
    if (st.inflight <= 0 || st.key !== lba) throw assertionFailed(`logical zone: LBA ${lba} dropped by more writes than held it, or with another LBA's state (${st.key})`);
    if (--st.inflight === 0 && this.states.deleteRecord(st)) {
      st.pending = null;
      this.spare.push(st);
    }
  }

  /** Whether writes or discards of `lba` are in flight (its content may differ from the block map). */
  busy(lba: number): boolean {
    if (this.states.get(lba) !== undefined) return true;
    for (const d of this.discards) if (lba >= d.first && lba < d.last) return true;
    return false;
  }

  /** Every LBA in [first, last) with a write or discard in flight, as sorted, merged [from, to) runs (extents of unmapped ranges). */
  busyIn(first: number, last: number): [number, number][] {
    const runs: [number, number][] = [];
    this.states.forEach((st) => {
      if (st.key >= first && st.key < last) runs.push([st.key, st.key + 1]);
    });
    for (const d of this.discards) if (d.last > first && d.first < last) runs.push([Math.max(first, d.first), Math.min(last, d.last)]);
    runs.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const r of runs) {
      const top = merged[merged.length - 1];
      if (top !== undefined && r[0] <= top[1]) top[1] = Math.max(top[1], r[1]);
      else merged.push(r);
    }
    return merged;
  }

  /** A place at the end of `lba`'s writer queue. */
  enqueue(lba: number): LbaTicket {
    const prev = this.queues.get(lba) ?? NO_WRITER_AHEAD;
    let open!: () => void;
    const mine = new Promise<void>((r) => (open = r));
    this.queues.set(lba, mine);
    return {
      prev,
      release: () => {
        open();
        if (this.queues.get(lba) === mine) this.queues.delete(lba);
      },
    };
  }

  /** Whether a writer of `lba` is queued (a new write must queue behind it). */
  queued(lba: number): boolean {
    return this.queues.has(lba);
  }

  /** An admitted write: reads see it unless a newer one is pending. */
  admitted(job: DataVio): void {
    const st = job.st;
    if (st.pending === null || st.pending.gen < job.gen) st.pending = job;
  }

  /** The write is mapped or over: reads go to the block map again, unless a newer one is pending. */
  finished(job: DataVio): void {
    if (job.st.pending === job) job.st.pending = null;
  }

  /**
   * What a read of `lba` sees before the block map: the pending write, 'zero'
   * (a newer pending discard), or null (the block map answers).
   */
  pendingAt(lba: number): DataVio | 'zero' | null {
    const p = this.states.get(lba)?.pending ?? null;
    let discarded = 0;
    for (const d of this.discards) if (lba >= d.first && lba < d.last && d.gen > discarded) discarded = d.gen;
    if (p !== null && p.gen > discarded) return p;
    return discarded > 0 ? 'zero' : null;
  }

  /**
   * A discard of [first, last) issued at `gen`: writes issued before it are
   * superseded and reads see zeroes. Returns its record; call discardDone()
   * when it is applied and settled.
   */
  discardIssued(first: number, last: number, gen: number): PendingDiscard {
    this.states.forEach((st) => {
      if (st.key >= first && st.key < last) {
        st.discarded = Math.max(st.discarded, gen);
        st.latest = Math.max(st.latest, gen);
        if (st.pending !== null && st.pending.gen < gen) st.pending = null;
      }
    });
    const pd: PendingDiscard = { first, last, gen, applied: false };
    this.discards.push(pd);
    return pd;
  }

  /** The discard at `gen` is being applied to `lba`: older writes still in flight are dropped when they map. */
  discardApplying(lba: number, gen: number): void {
    const st = this.states.get(lba);
    if (st !== undefined) st.applied = Math.max(st.applied, gen);
  }

  discardDone(pd: PendingDiscard): void {
    const i = this.discards.indexOf(pd);
    if (i < 0) throw assertionFailed(`logical zone: discard of LBAs ${pd.first}..${pd.last - 1} settled twice`);
    this.discards.splice(i, 1);
  }

  /** Writes newer than this generation wait: a discard issued before them is not applied yet (Infinity: none). */
  mappingBarrier(): number {
    let barrier = Infinity;
    for (const d of this.discards) if (!d.applied && d.gen < barrier) barrier = d.gen;
    return barrier;
  }
}
