/**
 * Progress of a long command on stderr. On a terminal: one line redrawn in
 * place (a bar, done/total, MB/s, ETA), at most REDRAWS_PER_SECOND times a
 * second. Elsewhere (a log, a pipe): a plain line every PLAIN_INTERVAL_MS, or
 * sooner at every PLAIN_STEP_PERCENT but at most one a PLAIN_MIN_INTERVAL_MS
 * (a copy of a few seconds logs a few lines, not ten).
 */
import process from 'node:process';
import { formatBytes } from './args.js';

const REDRAWS_PER_SECOND = 10;
const PLAIN_INTERVAL_MS = 5000;
const PLAIN_STEP_PERCENT = 10;
const PLAIN_MIN_INTERVAL_MS = 1000;
const BAR_CELLS = 24;

export interface ProgressOptions {
  /** What is counted: bytes (shown as MiB, with MB/s) or blocks. */
  unit: 'bytes' | 'blocks';
  /** The line's prefix ("copy", "check"). */
  label: string;
  /** Redraw in place (default: whether stderr is a terminal). */
  tty?: boolean;
  /** Print nothing at all. */
  quiet?: boolean;
}

export class Progress {
  private total: number;
  private readonly opts: Required<ProgressOptions>;
  private readonly started = performance.now();
  private lastDraw = 0;
  private lastPercent = 0;
  private drawn = false;
  private done = 0;

  constructor(total: number, opts: ProgressOptions) {
    this.total = total;
    this.opts = { tty: process.stderr.isTTY === true, quiet: false, ...opts };
    this.lastDraw = this.started;
  }

  /** Seconds since the start. */
  get seconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** `done` so far, of `total` (which may grow as the work learns its size). */
  update(done: number, total = this.total): void {
    this.done = done;
    this.total = total;
    if (this.opts.quiet) return;
    const now = performance.now();
    if (this.opts.tty) {
      if (now - this.lastDraw < 1000 / REDRAWS_PER_SECOND) return;
      this.lastDraw = now;
      this.drawn = true;
      process.stderr.write(`\r${this.line(now)}\x1b[K`);
      return;
    }
    const percent = this.total > 0 ? Math.floor((done / this.total) * 100) : 0;
    const since = now - this.lastDraw;
    if (since >= PLAIN_INTERVAL_MS || (since >= PLAIN_MIN_INTERVAL_MS && percent >= this.lastPercent + PLAIN_STEP_PERCENT)) {
      this.lastDraw = now;
      this.lastPercent = percent - (percent % PLAIN_STEP_PERCENT);
      if (done < this.total) process.stderr.write(this.line(now) + '\n');
    }
  }

  /** Ends the progress display (the terminal line is cleared; the summary is the caller's). */
  finish(): void {
    if (this.opts.quiet) return;
    if (this.opts.tty && this.drawn) process.stderr.write('\r\x1b[K');
    this.drawn = false;
  }

  private line(now: number): string {
    const s = (now - this.started) / 1000;
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 1;
    const percent = `${(frac * 100).toFixed(0).padStart(3)}%`;
    const rate = s > 0 ? this.done / s : 0;
    const eta = rate > 0 && this.done < this.total ? formatDuration((this.total - this.done) / rate) : '--:--';
    const amount = this.opts.unit === 'bytes'
      ? `${formatBytes(this.done)} / ${formatBytes(this.total)}, ${(rate / 1e6).toFixed(1)} MB/s`
      : `${this.done.toLocaleString('en')} / ${this.total.toLocaleString('en')} blocks`;
    if (!this.opts.tty) return `${this.opts.label}: ${percent} ${amount}, ETA ${eta}`;
    const cells = Math.round(frac * BAR_CELLS);
    return `${this.opts.label} [${'#'.repeat(cells)}${'.'.repeat(BAR_CELLS - cells)}] ${percent} ${amount}, ETA ${eta}`;
  }
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
