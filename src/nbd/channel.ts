/**
 * The byte stream of one NBD connection: what the socket delivered, queued as
 * the chunks it came in (no concatenation), read either as awaited exact
 * lengths (negotiation) or synchronously by a parser called on every arrival
 * (transmission). The socket underneath can be swapped once, for TLS.
 *
 * Invariant: `available` is the sum of the unread bytes of `chunks` after
 * `head` bytes of chunks[0].
 */
import type { Duplex } from 'node:stream';

export class Channel {
  socket: Duplex;
  private chunks: Uint8Array[] = [];
  private head = 0;
  available = 0;
  /** Why the stream ended (null while it is open). */
  ended: Error | null = null;
  private waiter: { n: number; resolve(b: Uint8Array): void; reject(e: Error): void } | null = null;
  /** Transmission mode: called after bytes arrive (and once when the stream ends). */
  onData: (() => void) | null = null;
  private readonly listeners: { data(b: Uint8Array): void; end(): void; error(e: Error): void };

  constructor(socket: Duplex) {
    this.socket = socket;
    this.listeners = {
      data: (b) => this.arrived(b),
      end: () => this.end(new Error('the client closed the connection')),
      error: (e) => this.end(e),
    };
    this.attach(socket);
  }

  private attach(socket: Duplex): void {
    this.socket = socket;
    socket.on('data', this.listeners.data);
    socket.on('end', this.listeners.end);
    socket.on('close', this.listeners.end);
    socket.on('error', this.listeners.error);
  }

  /** Hands the socket to a wrapper (TLS): nothing may be left unread, since the wrapper reads from here on. */
  detach(): Duplex {
    const s = this.socket;
    s.off('data', this.listeners.data);
    s.off('end', this.listeners.end);
    s.off('close', this.listeners.end);
    s.off('error', this.listeners.error);
    return s;
  }

  /** Reads from `socket` from now on (the TLS socket wrapping the old one). */
  replace(socket: Duplex): void {
    this.attach(socket);
  }

  private arrived(b: Uint8Array): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.available += b.length;
    const w = this.waiter;
    if (w !== null && this.available >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n));
    }
    if (this.onData !== null) this.onData();
  }

  private end(e: Error): void {
    if (this.ended !== null) return;
    this.ended = e;
    const w = this.waiter;
    this.waiter = null;
    if (w !== null) w.reject(e);
    if (this.onData !== null) this.onData();
  }

  /** Exactly `n` bytes, when they have arrived; rejects if the stream ends first. */
  read(n: number): Promise<Uint8Array> {
    if (this.available >= n) return Promise.resolve(this.take(n));
    if (this.ended !== null) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => (this.waiter = { n, resolve, reject }));
  }

  /** `n` bytes now (n ≤ available): a view when they sit in one chunk, else a copy. */
  take(n: number): Uint8Array {
    if (n > this.available) throw new Error(`channel: take(${n}) with ${this.available} available`);
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.consume(n);
      return out;
    }
    return this.copy(new Uint8Array(n), 0, n);
  }

  /** Copies the next `n` bytes into out[at…] and consumes them. */
  copy(out: Uint8Array, at: number, n: number): Uint8Array {
    let done = 0;
    while (done < n) {
      const c = this.chunks[0];
      const k = Math.min(n - done, c.length - this.head);
      out.set(c.subarray(this.head, this.head + k), at + done);
      done += k;
      this.consume(k);
    }
    return out;
  }

  /** Drops the next `n` bytes (n ≤ available). */
  skip(n: number): void {
    this.consume(n);
  }

  private consume(n: number): void {
    this.available -= n;
    while (n > 0) {
      const c = this.chunks[0];
      const k = Math.min(n, c.length - this.head);
      this.head += k;
      n -= k;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
  }

  /** Copies up to `n` unread bytes into out[0…] without consuming them; returns how many. */
  peek(out: Uint8Array, n: number): number {
    let done = 0;
    let head = this.head;
    for (let i = 0; i < this.chunks.length && done < n; i++) {
      const c = this.chunks[i];
      const k = Math.min(n - done, c.length - head);
      out.set(c.subarray(head, head + k), done);
      done += k;
      head = 0;
    }
    return done;
  }

  write(b: Uint8Array): boolean {
    if (this.ended !== null || this.socket.destroyed) return false;
    return this.socket.write(b);
  }
}
