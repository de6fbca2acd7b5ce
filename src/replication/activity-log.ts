/**
 * A replica's activity log (DRBD's, by region): the 1 MiB regions it may have
 * changed since the last flush that completed on every replica, kept in a file
 * beside the replica's volume (`<shard index>.al`). A region is appended —
 * and the append made durable — before the first change to it is written, and
 * the file is rewritten with what is still unflushed after each such flush.
 *
 * What is in the file when a replica opens is what its previous run may have
 * left different from the other replicas: writes in flight when it crashed,
 * writes it made as a primary that was deposed meanwhile, writes a power cut
 * may have undone. Those regions join the shard's dirty map before the
 * replica counts as a copy again (failover.ts, recovery.ts).
 *
 * Format: one decimal region number per line. A torn last line (a crash in
 * the middle of an append) is ignored: its change had not been written yet.
 */
import * as fs from 'node:fs';
import { FlashpackError } from '../errors.js';

/** Regions a shard may have: shard size at most 16 TiB, 1 MiB regions. */
const MAX_REGION = 2 ** 24;

export class ActivityLog {
  private fd: number;
  private closed = false;

  private constructor(readonly file: string, fd: number) {
    this.fd = fd;
  }

  /** Opens (creating) the log at `file`: the log, and the regions its previous run left in it. */
  static open(file: string): { log: ActivityLog; leftover: number[] } {
    const leftover = new Set<number>();
    if (fs.existsSync(file)) {
      for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        if (!/^\d{1,8}$/.test(line)) continue;
        const r = Number(line);
        if (r < MAX_REGION) leftover.add(r);
      }
    }
    const fd = fs.openSync(file, 'a');
    return { log: new ActivityLog(file, fd), leftover: [...leftover].sort((a, b) => a - b) };
  }

  /** Records `regions` durably (before the change that touches them is written). */
  add(regions: Iterable<number>): void {
    this.checkOpen('add');
    let text = '';
    for (const r of regions) text += `${r}\n`;
    if (text === '') return;
    fs.writeSync(this.fd, text);
    fs.fdatasyncSync(this.fd);
  }

  /** Replaces the log with `regions` (what is still unflushed), atomically: a crash leaves the old log or the new one. */
  rewrite(regions: Iterable<number>): void {
    this.checkOpen('rewrite');
    let text = '';
    for (const r of regions) text += `${r}\n`;
    const tmp = `${this.file}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, text);
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
    fs.closeSync(this.fd);
    this.fd = fs.openSync(this.file, 'a');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  private checkOpen(what: string): void {
    if (this.closed) throw new FlashpackError('ENXIO', `activity log ${this.file}: ${what} after close`);
  }
}
