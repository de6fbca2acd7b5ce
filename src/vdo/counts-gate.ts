/**
 * The reference counts of a clean open, loading behind it (repair.ts
 * loadDeferred): reads need only the block map, so they go on at once; the
 * first write, discard or flush waits for the counts, and so does every call
 * after one that waits — a read issued after a write still sees it, and a
 * flush covers it.
 *
 * Invariants: calls that wait run in the order they were made (reactions on
 * one promise run in registration order, and the gate is taken down before
 * any of them runs); a load that fails fails every call waiting and is
 * handed to `failed` (the volume fails its later writes with it).
 */
export class CountsGate {
  private loading: Promise<void> | null = null;
  private waiting = 0;

  /** Counts loading from now until `load` settles. */
  start(load: Promise<void>, failed: (err: Error) => void): void {
    const gate = load.then(
      () => {
        this.loading = null;
      },
      (err: Error) => {
        this.loading = null;
        failed(err);
        throw err;
      },
    );
    gate.catch(() => {}); // the calls waiting get the error; so does `settled`
    this.loading = gate;
  }

  /** No counts loading: calls go straight through (check this before making a closure for after()). */
  get idle(): boolean {
    return this.loading === null;
  }

  /** Calls are waiting: a read must queue behind them (behind()). */
  get holding(): boolean {
    return this.waiting > 0;
  }

  /** Settles (never rejects) once the counts are loaded or failed to load. */
  get settled(): Promise<void> {
    return this.loading === null ? Promise.resolve() : this.loading.catch(() => {});
  }

  /** A call that needs the counts (write, discard, flush): now, or once they are loaded. */
  after<T>(op: () => Promise<T>): Promise<T> {
    if (this.loading === null) return op();
    this.waiting++;
    return this.loading.then(
      () => {
        this.waiting--;
        return op();
      },
      (err: Error) => {
        this.waiting--;
        throw err;
      },
    );
  }

  /** A call that does not need them (read, extents): now, unless a call made before it is waiting. */
  behind<T>(op: () => Promise<T>): Promise<T> {
    return this.waiting === 0 ? op() : this.after(op);
  }
}
