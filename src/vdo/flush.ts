/**
 * Flush epochs (dm-vdo's flush generations, flush.c): every write admitted to
 * the pipeline is counted in the epoch current at that moment; flush() closes
 * the current epoch and waits until no write of it, or of an older one, is
 * still in the pipeline, then makes the journal and the device durable.
 *
 * Invariants (asserted): epochs only grow, so the first key of `inFlight` is
 * the oldest epoch with writes in flight; a write leaves the epoch it entered
 * exactly once (no count goes below zero); a waiter is woken once, when every
 * epoch up to its own is empty.
 */
import { assertionFailed } from '../assert.js';

export class FlushEpochs {
  private current = 0;
  /** Writes in flight per epoch, oldest first (Map keeps insertion order). */
  private readonly inFlight = new Map<number, number>();
  private readonly waiters: { epoch: number; wake(): void }[] = [];

  /** Counts a write admitted now; returns its epoch (for leave()). */
  enter(): number {
    const e = this.current;
    this.inFlight.set(e, (this.inFlight.get(e) ?? 0) + 1);
    return e;
  }

  /** A write of `epoch` is over (mapped, dropped or failed). */
  leave(epoch: number): void {
    const left = (this.inFlight.get(epoch) ?? 0) - 1;
    if (left < 0) throw assertionFailed(`flush epoch ${epoch}: a write left it more often than writes entered`);
    if (left > 0) {
      this.inFlight.set(epoch, left);
      return;
    }
    this.inFlight.delete(epoch);
    this.wake();
  }

  /** Closes the current epoch (writes admitted from now on belong to the next) and returns it. */
  close(): number {
    return this.current++;
  }

  /** Resolves when every write of `epoch` or before is over. */
  drained(epoch: number): Promise<void> {
    for (const e of this.inFlight.keys()) {
      if (e > epoch) break;
      return new Promise<void>((wake) => this.waiters.push({ epoch, wake }));
    }
    return Promise.resolve();
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    let oldest = Infinity;
    for (const e of this.inFlight.keys()) {
      oldest = e;
      break;
    }
    for (let i = 0; i < this.waiters.length;) {
      const w = this.waiters[i];
      if (w.epoch < oldest) {
        this.waiters.splice(i, 1);
        w.wake();
      } else i++;
    }
  }
}
