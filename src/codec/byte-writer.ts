/** An append-only byte buffer that grows by doubling; `bytes()` trims once at the end. */
export class ByteWriter {
  private buf: Uint8Array;
  private len = 0;

  constructor(initialCapacity: number) {
    this.buf = new Uint8Array(Math.max(16, initialCapacity));
  }

  get length(): number {
    return this.len;
  }

  /** Makes room for `n` more bytes without writing them. */
  ensureSpare(n: number): void {
    const need = this.len + n;
    if (need > this.buf.length) {
      const next = new Uint8Array(Math.max(need, this.buf.length * 2));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
  }

  /** Room for n more bytes; returns the offset to write them at. */
  reserve(n: number): number {
    this.ensureSpare(n);
    const at = this.len;
    this.len += n;
    return at;
  }

  // reserve() may replace this.buf, so it runs before this.buf is read.
  write(bytes: Uint8Array): void {
    const at = this.reserve(bytes.length);
    this.buf.set(bytes, at);
  }

  u8(v: number): void {
    const at = this.reserve(1);
    this.buf[at] = v;
  }

  u32le(v: number): void {
    const at = this.reserve(4);
    this.buf[at] = v;
    this.buf[at + 1] = v >>> 8;
    this.buf[at + 2] = v >>> 16;
    this.buf[at + 3] = v >>> 24;
  }

  /** The written bytes: the buffer itself when exactly full, else a trimmed copy. */
  bytes(): Uint8Array {
    return this.len === this.buf.length ? this.buf : this.buf.slice(0, this.len);
  }
}

export function readU32le(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}
