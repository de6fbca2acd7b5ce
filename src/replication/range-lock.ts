/**
 * Byte-range locks taken in arrival order: a range waits for every earlier
 * range it overlaps, held or still waiting, and for nothing else. The primary
 * holds a write's range from before its local write and its REPLICATE_WRITEs
 * go out until every replica has answered, so overlapping writes reach every
 * replica one after the other, in the order the primary received them —
 * the ordering PureFlash leaves to the host.
 */
interface Entry {
  start: number;
  end: number;
  released: Promise<void>;
}

export class RangeLock {
  private readonly entries = new Set<Entry>();

  /** Ranges held or waiting. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Takes [start, end) once every earlier overlapping range is released;
   * resolves to the release function (call it exactly once).
   */
  async acquire(start: number, end: number): Promise<() => void> {
    const before: Promise<void>[] = [];
    for (const e of this.entries) if (e.start < end && start < e.end) before.push(e.released);
    let release!: () => void;
    const entry: Entry = { start, end, released: new Promise<void>((r) => (release = r)) };
    this.entries.add(entry);
    if (before.length > 0) await Promise.all(before);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.entries.delete(entry);
      release();
    };
  }

  /** Whether a range overlapping [start, end) is held or waiting. */
  overlaps(start: number, end: number): boolean {
    for (const e of this.entries) if (e.start < end && start < e.end) return true;
    return false;
  }
}
