/**
 * The transmission phase of one NBD connection: requests parsed as bytes
 * arrive, each handed to the export at once (many in flight: the volume
 * batches them), replies sent as they complete, matched by cookie.
 *
 * Bounds: at most REQUESTS_INFLIGHT_MAX requests and BYTES_INFLIGHT_MAX
 * payload bytes in flight, and OUTPUT_BYTES_MAX bytes of replies queued on the
 * socket; past any of them the socket is paused, so a client that floods
 * requests or never reads its replies is held back by TCP, not by memory.
 *
 * A request the protocol lets us answer (unknown command, bad flags, range
 * past the end, too long a read) gets an error reply; one that leaves the
 * stream unparseable (bad magic, a write longer than the maximum payload)
 * ends this connection only. Requests already handed to the volume finish
 * first, so nothing acknowledged is lost.
 */
import type { Channel } from './channel.js';
import type { VolumeExtent } from '../vdo/volume.js';
import { FlashpackError } from '../errors.js';
import {
  CMD_BLOCK_STATUS, CMD_CACHE, CMD_DISC, CMD_FLAG_DF, CMD_FLAG_FAST_ZERO, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLAG_REQ_ONE, CMD_FLUSH,
  CMD_NAMES, CMD_READ, CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES, META_ID_BASE_ALLOCATION, NBD_EINVAL, NBD_EIO, NBD_ENOMEM, NBD_ENOSPC, NBD_ENOTSUP, NBD_EOVERFLOW,
  NBD_EPERM, NBD_ESHUTDOWN, PAYLOAD_BYTES_MAX, REPLY_FLAG_DONE, REPLY_TYPE_NONE, REPLY_TYPE_OFFSET_DATA, REQUEST_BYTES, REQUEST_MAGIC, SIMPLE_REPLY_BYTES,
  STATE_HOLE, STATE_ZERO, STRUCTURED_REPLY_BYTES, encodeBlockStatus, encodeStructuredError, putSimpleReply, putStructuredReply,
} from './protocol.js';

/** What an export serves: a Volume, or anything with its interface (a replicated volume). */
export interface ExportTarget {
  readonly logicalSize: number;
  /** The block it reads and writes whole (unaligned writes are read-modify-write): advertised as the preferred block size (default 4 KiB). */
  readonly blockBytes?: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
  extents(offset: number, length: number, maxExtents?: number): Promise<VolumeExtent[]>;
}

export const REQUESTS_INFLIGHT_MAX = 128;
export const BYTES_INFLIGHT_MAX = 64 << 20;
export const OUTPUT_BYTES_MAX = 64 << 20;
/** Descriptors in one BLOCK_STATUS reply. */
const EXTENTS_PER_REPLY_MAX = 2048;
/** WRITE_ZEROES with NO_HOLE writes zeroes this many bytes at a time. */
const ZERO_CHUNK_BYTES = 1 << 20;
const ZEROES = new Uint8Array(ZERO_CHUNK_BYTES);
const KNOWN_FLAGS = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE | CMD_FLAG_FAST_ZERO;

/** Server-wide counters every connection adds to. */
export interface ServerCounters {
  requests: number;
  reads: number;
  writes: number;
  flushes: number;
  trims: number;
  writeZeroes: number;
  caches: number;
  blockStatus: number;
  bytesRead: number;
  bytesWritten: number;
  errorReplies: number;
  protocolViolations: number;
}

export interface ConnectionSetup {
  target: ExportTarget;
  readOnly: boolean;
  structured: boolean;
  blockStatus: boolean;
  counters: ServerCounters;
  log(line: string): void;
  /** Called once, when the connection is finished and its socket closed. */
  onClose(): void;
}

export class Connection {
  private readonly ch: Channel;
  private readonly s: ConnectionSetup;
  private readonly head = new Uint8Array(REQUEST_BYTES);
  /** A WRITE whose header was parsed and whose payload has not all arrived (-1: none). */
  private awaitingPayload = -1;
  private flags = 0;
  private type = 0;
  private cookieHi = 0;
  private cookieLo = 0;
  private offset = 0;
  private inflight = 0;
  private inflightBytes = 0;
  private paused = false;
  /** No more requests are read: DISC, a violation, or server shutdown. */
  private stopping = false;
  private closed = false;
  private corked = false;

  constructor(ch: Channel, setup: ConnectionSetup) {
    this.ch = ch;
    this.s = setup;
    ch.onData = () => this.pump();
    ch.socket.on('drain', () => this.pump());
    this.pump();
  }

  /** Stops reading requests; the socket closes once those in flight are answered. */
  shutdown(): void {
    this.stopping = true;
    this.finishIfIdle();
  }

  private pump(): void {
    const ch = this.ch;
    if (ch.ended !== null) {
      // The client is gone: what is in flight still completes (and goes to the volume), replies are dropped.
      this.stopping = true;
      this.finishIfIdle();
      return;
    }
    if (this.stopping) {
      // Nothing more is read: what a client sends after DISC or a bad frame stays in the kernel.
      this.pause();
      return;
    }
    while (!this.stopping) {
      if (this.inflight >= REQUESTS_INFLIGHT_MAX || this.inflightBytes >= BYTES_INFLIGHT_MAX || ch.socket.writableLength >= OUTPUT_BYTES_MAX) {
        this.pause();
        return;
      }
      if (this.awaitingPayload >= 0) {
        if (ch.available < this.awaitingPayload) break;
        const n = this.awaitingPayload;
        this.awaitingPayload = -1;
        this.startWrite(ch.take(n));
        continue;
      }
      if (ch.available < REQUEST_BYTES) break;
      ch.peek(this.head, REQUEST_BYTES);
      ch.skip(REQUEST_BYTES);
      this.request();
    }
    // A request that stopped the connection (DISC, a bad frame) leaves the socket paused.
    if (this.stopping) this.pause();
    else this.resume();
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.ch.socket.pause();
  }

  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.ch.socket.resume();
  }

  /** Decodes the header in `head` and starts it (or waits for a WRITE's payload). */
  private request(): void {
    const h = this.head;
    const magic = ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0;
    const flags = (h[4] << 8) | h[5];
    const type = (h[6] << 8) | h[7];
    const cookieHi = ((h[8] << 24) | (h[9] << 16) | (h[10] << 8) | h[11]) >>> 0;
    const cookieLo = ((h[12] << 24) | (h[13] << 16) | (h[14] << 8) | h[15]) >>> 0;
    const offHi = ((h[16] << 24) | (h[17] << 16) | (h[18] << 8) | h[19]) >>> 0;
    const offLo = ((h[20] << 24) | (h[21] << 16) | (h[22] << 8) | h[23]) >>> 0;
    const length = ((h[24] << 24) | (h[25] << 16) | (h[26] << 8) | h[27]) >>> 0;
    const offset = offHi >= 2 ** 21 ? Infinity : offHi * 2 ** 32 + offLo;
    if (magic !== REQUEST_MAGIC) return this.violation(`bad request magic 0x${magic.toString(16)}`);
    this.s.counters.requests++;
    this.flags = flags;
    this.type = type;
    this.cookieHi = cookieHi;
    this.cookieLo = cookieLo;
    this.offset = offset;
    if (type === CMD_WRITE) {
      // The payload follows whatever we think of the request: it must be read to stay in step.
      if (length > PAYLOAD_BYTES_MAX) return this.violation(`WRITE of ${length} bytes (at most ${PAYLOAD_BYTES_MAX})`);
      this.awaitingPayload = length;
      return;
    }
    const t = this.s.target;
    const size = t.logicalSize;
    const inRange = offset + length <= size;
    if ((flags & ~KNOWN_FLAGS) !== 0) return this.fail(NBD_EINVAL, `unknown command flags 0x${flags.toString(16)}`);
    switch (type) {
      case CMD_READ:
        if (length > PAYLOAD_BYTES_MAX) return this.fail(NBD_EOVERFLOW, `READ of ${length} bytes (at most ${PAYLOAD_BYTES_MAX})`);
        if (!inRange) return this.fail(NBD_EINVAL, `READ of ${length} bytes at ${offset} runs past the end (${size})`);
        this.s.counters.reads++;
        if (length === 0) return this.ok();
        return this.track(length, t.read(offset, length), (data) => this.sendData(cookieHi, cookieLo, offset, data));
      case CMD_FLUSH:
        this.s.counters.flushes++;
        return this.track(0, t.flush(), () => this.reply(cookieHi, cookieLo));
      case CMD_TRIM:
      case CMD_WRITE_ZEROES: {
        if (this.s.readOnly) return this.fail(NBD_EPERM, 'the export is read-only');
        if (!inRange) return this.fail(NBD_ENOSPC, `${type === CMD_TRIM ? 'TRIM' : 'WRITE_ZEROES'} of ${length} bytes at ${offset} runs past the end (${size})`);
        const fua = (flags & CMD_FLAG_FUA) !== 0;
        let p: Promise<void>;
        if (type === CMD_TRIM) {
          this.s.counters.trims++;
          p = t.discard(offset, length);
        } else {
          this.s.counters.writeZeroes++;
          // Both ways are metadata-only on a volume (an unmapped range, or blocks mapped to the zero block): FAST_ZERO always holds.
          p = (flags & CMD_FLAG_NO_HOLE) !== 0 ? writeZeroes(t, offset, length) : t.discard(offset, length);
        }
        return this.track(0, fua ? p.then(() => t.flush()) : p, () => this.reply(cookieHi, cookieLo));
      }
      case CMD_CACHE:
        if (!inRange) return this.fail(NBD_EINVAL, `CACHE of ${length} bytes at ${offset} runs past the end (${size})`);
        this.s.counters.caches++;
        return this.track(0, prefetch(t, offset, length), () => this.reply(cookieHi, cookieLo));
      case CMD_BLOCK_STATUS:
        if (!this.s.blockStatus) return this.fail(NBD_EINVAL, 'BLOCK_STATUS without base:allocation negotiated');
        if (length === 0 || offset >= size) return this.fail(NBD_EINVAL, `BLOCK_STATUS of ${length} bytes at ${offset} (export of ${size})`);
        this.s.counters.blockStatus++;
        return this.track(0, t.extents(offset, Math.min(length, size - offset), (flags & CMD_FLAG_REQ_ONE) !== 0 ? 1 : EXTENTS_PER_REPLY_MAX), (ex) =>
          this.sendBlockStatus(cookieHi, cookieLo, offset, Math.min(length, size - offset), (flags & CMD_FLAG_REQ_ONE) !== 0, ex));
      case CMD_DISC:
        this.stopping = true;
        this.finishIfIdle();
        return;
      default:
        return this.fail(NBD_EINVAL, `unknown command ${type}`);
    }
  }

  /** The payload of the WRITE whose header is in this.* has arrived. */
  private startWrite(data: Uint8Array): void {
    const { flags, cookieHi, cookieLo, offset } = this;
    const t = this.s.target;
    if ((flags & ~KNOWN_FLAGS) !== 0) return this.fail(NBD_EINVAL, `unknown command flags 0x${flags.toString(16)}`);
    if (this.s.readOnly) return this.fail(NBD_EPERM, 'the export is read-only');
    if (offset + data.length > t.logicalSize) return this.fail(NBD_ENOSPC, `WRITE of ${data.length} bytes at ${offset} runs past the end (${t.logicalSize})`);
    this.s.counters.writes++;
    if (data.length === 0) return this.ok();
    const p = t.write(offset, data);
    this.track(data.length, (flags & CMD_FLAG_FUA) !== 0 ? p.then(() => t.flush()) : p, () => {
      this.s.counters.bytesWritten += data.length;
      this.reply(cookieHi, cookieLo);
    });
  }

  /** Runs `p` as one request in flight; its reply is `done`'s, or an error reply. */
  private track<T>(bytes: number, p: Promise<T>, done: (v: T) => void): void {
    this.inflight++;
    this.inflightBytes += bytes;
    const { cookieHi, cookieLo, type } = this;
    // One reaction per request (no .catch/.finally chain): it answers, then lets the next requests in.
    p.then(
      (v) => this.settle(bytes, type, () => done(v)),
      (err: unknown) => this.settle(bytes, type, () => this.errorReply(cookieHi, cookieLo, errnoOf(err), `${CMD_NAMES[type] ?? type}: ${(err as Error).message}`)),
    );
  }

  private settle(bytes: number, type: number, answer: () => void): void {
    try {
      answer();
    } catch (err) {
      // A bug in a reply path: this connection ends, the server goes on.
      this.s.log(`nbd: internal error answering ${CMD_NAMES[type] ?? type}: ${(err as Error).stack ?? err}`);
      this.stopping = true;
    }
    this.inflight--;
    this.inflightBytes -= bytes;
    if (this.stopping) this.finishIfIdle();
    else this.pump();
  }

  private ok(): void {
    this.reply(this.cookieHi, this.cookieLo);
  }

  private fail(errno: number, why: string): void {
    this.errorReply(this.cookieHi, this.cookieLo, errno, why);
  }

  private reply(cookieHi: number, cookieLo: number): void {
    if (this.s.structured) {
      const b = new Uint8Array(STRUCTURED_REPLY_BYTES);
      putStructuredReply(b, 0, REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookieHi, cookieLo, 0);
      this.send(b);
    } else {
      const b = new Uint8Array(SIMPLE_REPLY_BYTES);
      putSimpleReply(b, 0, 0, cookieHi, cookieLo);
      this.send(b);
    }
  }

  private errorReply(cookieHi: number, cookieLo: number, errno: number, why: string): void {
    this.s.counters.errorReplies++;
    if (this.s.structured) this.send(encodeStructuredError(errno, why, cookieHi, cookieLo));
    else {
      const b = new Uint8Array(SIMPLE_REPLY_BYTES);
      putSimpleReply(b, 0, errno, cookieHi, cookieLo);
      this.send(b);
    }
  }

  private sendData(cookieHi: number, cookieLo: number, offset: number, data: Uint8Array): void {
    this.s.counters.bytesRead += data.length;
    let head: Uint8Array;
    if (this.s.structured) {
      head = new Uint8Array(STRUCTURED_REPLY_BYTES + 8);
      putStructuredReply(head, 0, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, cookieHi, cookieLo, 8 + data.length);
      new DataView(head.buffer).setBigUint64(STRUCTURED_REPLY_BYTES, BigInt(offset));
    } else {
      head = new Uint8Array(SIMPLE_REPLY_BYTES);
      putSimpleReply(head, 0, 0, cookieHi, cookieLo);
    }
    this.send(head);
    this.send(data);
  }

  /** base:allocation descriptors from `offset` (the first block's run starts before it), clipped to the request. */
  private sendBlockStatus(cookieHi: number, cookieLo: number, offset: number, length: number, reqOne: boolean, extents: VolumeExtent[]): void {
    const out: { length: number; status: number }[] = [];
    const end = offset + length;
    for (const e of extents) {
      const from = Math.max(e.offset, offset);
      const to = Math.min(e.offset + e.length, end);
      if (to <= from) continue;
      const status = e.type === 'hole' ? STATE_HOLE | STATE_ZERO : e.type === 'zero' ? STATE_ZERO : 0;
      // Descriptor lengths are 32-bit: a longer run is split.
      for (let at = from; at < to; at += 2 ** 31) out.push({ length: Math.min(2 ** 31, to - at), status });
    }
    if (out.length === 0) return this.errorReply(cookieHi, cookieLo, NBD_EIO, 'BLOCK_STATUS found no extent');
    if (reqOne) out.length = 1; // after the split of runs over 2^31: REQ_ONE gets exactly one
    this.send(encodeBlockStatus(META_ID_BASE_ALLOCATION, out, cookieHi, cookieLo));
  }

  /** Queues bytes on the socket; replies completing in one turn go out in one write. */
  private send(b: Uint8Array): void {
    if (this.ch.ended !== null || this.closed) return;
    if (!this.corked) {
      this.corked = true;
      this.ch.socket.cork();
      queueMicrotask(() => {
        this.corked = false;
        this.ch.socket.uncork();
      });
    }
    this.ch.write(b);
  }

  private violation(why: string): void {
    this.s.counters.protocolViolations++;
    this.s.log(`nbd: closing a connection: ${why}`);
    this.stopping = true;
    this.finishIfIdle();
  }

  private finishIfIdle(): void {
    if (this.closed || this.inflight > 0) return;
    this.closed = true;
    this.ch.onData = null;
    if (this.corked) this.ch.socket.uncork();
    closeGently(this.ch.socket);
    this.s.onClose();
  }
}

/** How long a closed connection may take to drain its replies before it is cut. */
const CLOSE_DRAIN_MS = 5_000;

/**
 * Ends a socket: nothing more is read (a client that keeps sending is held
 * back by the kernel, not buffered here), what is queued is still sent, and
 * the socket is destroyed if the client has not closed it within CLOSE_DRAIN_MS.
 */
export function closeGently(sock: import('node:stream').Duplex): void {
  sock.pause();
  sock.removeAllListeners('data');
  sock.end();
  const timer = setTimeout(() => sock.destroy(), CLOSE_DRAIN_MS);
  (timer as { unref?(): void }).unref?.();
  sock.once('close', () => clearTimeout(timer));
}

async function writeZeroes(t: ExportTarget, offset: number, length: number): Promise<void> {
  const parts: Promise<void>[] = [];
  for (let at = 0; at < length; at += ZERO_CHUNK_BYTES) parts.push(t.write(offset + at, ZEROES.subarray(0, Math.min(ZERO_CHUNK_BYTES, length - at))));
  await Promise.all(parts);
}

/** NBD_CMD_CACHE: reads the range (block map pages and data come into the caches), a chunk at a time. */
async function prefetch(t: ExportTarget, offset: number, length: number): Promise<void> {
  for (let at = 0; at < length; at += PAYLOAD_BYTES_MAX) await t.read(offset + at, Math.min(PAYLOAD_BYTES_MAX, length - at));
}

/** The NBD error for a failure of the volume. */
function errnoOf(err: unknown): number {
  if (!(err instanceof FlashpackError)) return NBD_EIO;
  switch (err.code) {
    case 'EINVAL':
      return NBD_EINVAL;
    case 'ENOSPC':
      return NBD_ENOSPC;
    case 'EROFS':
      return NBD_EPERM;
    case 'ENOMEM':
      return NBD_ENOMEM;
    case 'ENOTSUP':
      return NBD_ENOTSUP;
    case 'ENXIO':
      return NBD_ESHUTDOWN;
    default:
      return NBD_EIO;
  }
}
