// The NBD fuzzer's core, shared by scripts/nbd-fuzz.mjs (long runs) and
// test/nbd-fuzz.test.ts: a live `flashpack serve` process driven by several
// fuzz connections and one "good" connection at once.
//
// Fuzz connections negotiate in random ways (extra and unknown options,
// oversized ones, structured replies or not, base:allocation or not, GO or
// EXPORT_NAME), then send mostly well-framed requests of random command
// (unknown ones too), flags, offset (in range, near and past the end, up to
// 2^64-1) and length (0 up to 2^32-1), each checked against an oracle: exactly
// one reply per cookie, an error out of the set the spec allows for that
// request, READ data of the requested length, BLOCK_STATUS descriptors inside
// the request. Each connection ends in a random way: DISC, a bad magic, a
// WRITE longer than the maximum payload, garbage (every request before it is
// still answered, then the server closes), or a truncated header, a truncated
// WRITE payload, or a plain close from the client. Some connections misbehave
// during negotiation instead and must be closed. Fuzz WRITE, TRIM and
// WRITE_ZEROES never touch the reserved region [0, size/2) except through an
// offset whose 64-bit sum wraps around (which a correct server refuses);
// reads and BLOCK_STATUS go anywhere.
//
// The good connection owns the reserved region: it writes known data there
// (random, compressible, duplicated, zeroes, trims), flushes, and reads and
// maps it back against an in-memory model the whole time.
//
// Replay: every connection draws from its own PRNG seeded from (seed, its
// index), and nothing it draws depends on timing, so a seed reproduces the
// byte stream of each fuzz connection; how far each gets before the run's
// count is reached, and how the server interleaves them, is timing's.
// Imports ../dist: build first.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as P from '../dist/nbd/protocol.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const flashpackBin = path.join(repoRoot, 'bin', 'flashpack.mjs');

// ---- limits -------------------------------------------------------------------------------
/** A connection that gets no byte for this long while it waits for replies has stalled: a failure. */
const REPLY_STALL_MS = 20_000;
/** How long the server may take to close a connection that must be closed. */
const CLOSE_WAIT_MS = 10_000;
/** How long `flashpack serve` may take to listen, and to exit after SIGTERM. */
const SERVE_READY_MS = 30_000;
const SERVE_STOP_MS = 60_000;
/** The most of the reserved region the good client keeps data in (a model of it is held in memory). */
const GOOD_REGION_BYTES_MAX = 64 << 20;
/** Operations the good client does at least, however soon the fuzz connections finish. */
const GOOD_OPS_MIN = 500;
/** Requests a fuzz connection sends before its ending, on average (exponentially distributed). */
const REQUESTS_PER_CONNECTION_MEAN = 400;
/** Failures kept in the report (the first ones; the count is exact). */
const FAILURES_KEPT = 50;
/** Bytes of random data payloads are cut from. */
const PAYLOAD_POOL_BYTES = 4 << 20;
/** A reply longer than this is garbage. */
const REPLY_BYTES_MAX = P.PAYLOAD_BYTES_MAX + 4096;
const KNOWN_FLAGS = P.CMD_FLAG_FUA | P.CMD_FLAG_NO_HOLE | P.CMD_FLAG_DF | P.CMD_FLAG_REQ_ONE | P.CMD_FLAG_FAST_ZERO;
const REP_ERR_BIT = 2 ** 31;
const TWO64 = 2n ** 64n;
const ENOTSUP = P.NBD_ENOTSUP;

// ---- PRNG ------------------------------------------------------------------------------------

/** mulberry32: uniform in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of stream `i` of a run (connections and the good client each get one). */
function streamSeed(seed, i) {
  return (seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
}

const int = (rand, lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = (rand, xs) => xs[Math.floor(rand() * xs.length)];

function randomBytes(n, rand) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) {
    const x = (rand() * 2 ** 32) >>> 0;
    b[i] = x;
    if (i + 1 < n) b[i + 1] = x >>> 8;
    if (i + 2 < n) b[i + 2] = x >>> 16;
    if (i + 3 < n) b[i + 3] = x >>> 24;
  }
  return b;
}

// ---- bytes in -------------------------------------------------------------------------------------

/** What a socket delivered, as its chunks (no concatenation), read at the front. */
class ByteQueue {
  chunks = [];
  head = 0;
  available = 0;

  push(b) {
    this.chunks.push(b);
    this.available += b.length;
  }

  byteAt(i) {
    let k = 0;
    let at = this.head + i;
    while (at >= this.chunks[k].length) {
      at -= this.chunks[k].length;
      k++;
    }
    return this.chunks[k][at];
  }

  u16(i) {
    const c = this.chunks[0];
    if (c.length - this.head >= i + 2) return c.readUInt16BE(this.head + i);
    return (this.byteAt(i) << 8) | this.byteAt(i + 1);
  }

  u32(i) {
    const c = this.chunks[0];
    if (c.length - this.head >= i + 4) return c.readUInt32BE(this.head + i);
    return ((this.byteAt(i) << 24) | (this.byteAt(i + 1) << 16) | (this.byteAt(i + 2) << 8) | this.byteAt(i + 3)) >>> 0;
  }

  /** The next n bytes (a view when they sit in one chunk), consumed. */
  take(n) {
    const c = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (c.length - this.head >= n) {
      const out = c.subarray(this.head, this.head + n);
      this.skip(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const d = this.chunks[0];
      const k = Math.min(n - done, d.length - this.head);
      d.copy(out, done, this.head, this.head + k);
      done += k;
      this.skip(k);
    }
    return out;
  }

  skip(n) {
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
}

// ---- one connection -----------------------------------------------------------------------------

/**
 * A raw client connection: awaited reads during negotiation, then an
 * event-driven reply parser that checks every reply against the request it
 * answers (`pending`, by cookie) and calls `onReply(req, error)`.
 */
class Conn {
  constructor(socketPath, label, fail) {
    this.socketPath = socketPath;
    this.label = label;
    this.fail = fail;
    this.q = new ByteQueue();
    this.waiter = null;
    this.ended = false;
    this.closeWaiters = [];
    this.transmitting = false;
    this.structured = false;
    this.blockStatus = false;
    this.size = 0;
    this.pending = new Map();
    this.nextCookie = 1;
    this.broken = false;
    this.lastByteAt = Date.now();
    this.progressWaiter = null;
    this.onReply = () => {};
  }

  connect() {
    return new Promise((resolve, reject) => {
      const s = net.connect(this.socketPath);
      this.socket = s;
      s.once('connect', () => {
        s.off('error', reject);
        s.on('error', () => {});
        resolve();
      });
      s.once('error', reject);
      s.on('data', (b) => {
        this.lastByteAt = Date.now();
        this.q.push(b);
        if (this.transmitting) this.parse();
        else this.wake();
      });
      s.on('close', () => {
        this.ended = true;
        if (this.transmitting) this.parse();
        this.wake();
        for (const w of this.closeWaiters) w();
        this.closeWaiters = [];
        this.notifyProgress();
      });
    });
  }

  wake() {
    const w = this.waiter;
    if (w === null) return;
    if (this.q.available >= w.n || this.ended) {
      this.waiter = null;
      w.done();
    }
  }

  /** Exactly n bytes (negotiation); null if the stream ends first. */
  async read(n, ms = REPLY_STALL_MS) {
    if (this.q.available < n && !this.ended) {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiter = null;
          reject(new Error(`${this.label}: ${n} bytes did not arrive within ${ms} ms`));
        }, ms);
        this.waiter = { n, done: () => { clearTimeout(timer); resolve(); } };
      });
    }
    if (this.q.available < n) return null;
    return this.q.take(n);
  }

  /** Whether the server closes the connection within ms (whatever it sends meanwhile is dropped). */
  closed(ms = CLOSE_WAIT_MS) {
    if (this.ended) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  write(b) {
    if (this.ended || this.socket.destroyed) return true;
    return this.socket.write(b);
  }

  drained() {
    if (!this.socket.writableNeedDrain || this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  destroy() {
    this.socket.destroy();
  }

  // ---- negotiation ----

  async greeting() {
    const g = await this.read(18);
    if (g === null) return false;
    if (g.readBigUInt64BE(0) !== P.NBDMAGIC || g.readBigUInt64BE(8) !== P.IHAVEOPT || g.readUInt16BE(16) !== (P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES)) {
      this.fail(`${this.label}: greeting ${g.toString('hex')}`);
      return false;
    }
    return true;
  }

  sendFlags(flags) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(flags >>> 0);
    this.write(b);
  }

  sendOption(option, data = Buffer.alloc(0), length = data.length, magic = P.IHAVEOPT) {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(magic);
    h.writeUInt32BE(option >>> 0, 8);
    h.writeUInt32BE(length >>> 0, 12);
    this.write(data.length === 0 ? h : Buffer.concat([h, data]));
  }

  /** Option replies up to the final one (ACK or an error); null if the server closed. */
  async optionReplies(option) {
    const out = [];
    for (;;) {
      const h = await this.read(20);
      if (h === null) return null;
      if (h.readBigUInt64BE(0) !== P.REPLY_MAGIC) throw new Error(`${this.label}: option reply magic ${h.subarray(0, 8).toString('hex')}`);
      const length = h.readUInt32BE(16);
      if (length > 1 << 20) throw new Error(`${this.label}: option reply of ${length} bytes`);
      const r = { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: Buffer.from((await this.read(length)) ?? Buffer.alloc(0)) };
      if (r.option !== option) throw new Error(`${this.label}: a reply to option ${r.option} for option ${option}`);
      out.push(r);
      if (r.type === P.REP_ACK || r.type >= REP_ERR_BIT) return out;
    }
  }

  async option(option, data) {
    this.sendOption(option, data);
    return this.optionReplies(option);
  }

  // ---- transmission ----

  startTransmission(structured, blockStatus, size) {
    this.structured = structured;
    this.blockStatus = blockStatus;
    this.size = size;
    this.transmitting = true;
    this.parse();
  }

  /** A request header (cookie assigned); `req` gets cookie and the header. */
  header(req) {
    const h = Buffer.allocUnsafe(P.REQUEST_BYTES);
    req.cookie = this.nextCookie++;
    h.writeUInt32BE(P.REQUEST_MAGIC, 0);
    h.writeUInt16BE(req.flags, 4);
    h.writeUInt16BE(req.type, 6);
    h.writeUInt32BE(Math.floor(req.cookie / 2 ** 32), 8);
    h.writeUInt32BE(req.cookie >>> 0, 12);
    h.writeBigUInt64BE(req.offset, 16);
    h.writeUInt32BE(req.length, 24);
    return h;
  }

  /** Resolves once at most `n` requests are outstanding, the connection ends, or it breaks. */
  waitOutstanding(n) {
    if (this.pending.size <= n || this.ended || this.broken) return Promise.resolve();
    return new Promise((resolve) => {
      this.progressWaiter = { n, resolve };
      const check = () => {
        if (this.progressWaiter === null) return;
        if (Date.now() - this.lastByteAt > REPLY_STALL_MS) {
          this.fail(`${this.label}: no reply for ${REPLY_STALL_MS} ms with ${this.pending.size} requests outstanding (first: ${describe(this.pending.values().next().value)})`);
          this.broken = true;
          this.destroy();
          this.notifyProgress();
          return;
        }
        setTimeout(check, 1000).unref();
      };
      setTimeout(check, 1000).unref();
    });
  }

  notifyProgress() {
    const w = this.progressWaiter;
    if (w !== null && (this.pending.size <= w.n || this.ended || this.broken)) {
      this.progressWaiter = null;
      w.resolve();
    }
  }

  /** A reply that makes no sense: the connection is dropped (its later bytes cannot be framed). */
  garbage(why) {
    this.fail(`${this.label}: ${why}`);
    this.broken = true;
    this.transmitting = false;
    this.destroy();
    this.notifyProgress();
  }

  parse() {
    const q = this.q;
    while (this.transmitting && q.available >= 4) {
      const magic = q.u32(0);
      if (magic === P.SIMPLE_REPLY_MAGIC) {
        if (q.available < P.SIMPLE_REPLY_BYTES) break;
        const error = q.u32(4);
        const cookie = q.u32(8) * 2 ** 32 + q.u32(12);
        const req = this.pending.get(cookie);
        if (req === undefined) return this.garbage(`a simple reply for cookie ${cookie}, not outstanding (error ${error})`);
        const data = req.type === P.CMD_READ && error === 0 ? req.length : 0;
        if (data > 0 && this.structured) return this.garbage(`a simple reply with data to ${describe(req)} on a structured connection`);
        if (q.available < P.SIMPLE_REPLY_BYTES + data) break;
        q.skip(P.SIMPLE_REPLY_BYTES);
        const bytes = req.keep === true && data > 0 ? Buffer.from(q.take(data)) : (q.skip(data), null);
        this.complete(req, error, '', bytes, null);
      } else if (magic === P.STRUCTURED_REPLY_MAGIC) {
        if (!this.structured) return this.garbage('a structured reply on a connection that did not negotiate them');
        if (q.available < P.STRUCTURED_REPLY_BYTES) break;
        const flags = q.u16(4);
        const type = q.u16(6);
        const cookie = q.u32(8) * 2 ** 32 + q.u32(12);
        const length = q.u32(16);
        if (length > REPLY_BYTES_MAX) return this.garbage(`a structured chunk of ${length} bytes`);
        if (q.available < P.STRUCTURED_REPLY_BYTES + length) break;
        q.skip(P.STRUCTURED_REPLY_BYTES);
        const req = this.pending.get(cookie);
        if (req === undefined) return this.garbage(`a structured chunk (type ${type}) for cookie ${cookie}, not outstanding`);
        if (!this.chunk(req, flags, type, length)) return;
      } else {
        return this.garbage(`reply magic 0x${magic.toString(16)}`);
      }
    }
    if (this.ended && this.transmitting) this.notifyProgress();
  }

  /** One structured chunk's payload (q at its start); false if the connection is dropped. */
  chunk(req, flags, type, length) {
    const q = this.q;
    req.chunks = (req.chunks ?? 0) + 1;
    switch (type) {
      case P.REPLY_TYPE_NONE:
        if (length !== 0) return this.garbage(`NONE chunk of ${length} bytes for ${describe(req)}`), false;
        if ((flags & P.REPLY_FLAG_DONE) === 0) return this.garbage(`a NONE chunk without DONE for ${describe(req)}`), false;
        break;
      case P.REPLY_TYPE_OFFSET_DATA: {
        if (req.type !== P.CMD_READ || length < 8) return this.garbage(`OFFSET_DATA chunk of ${length} bytes for ${describe(req)}`), false;
        const at = q.take(8).readBigUInt64BE(0);
        const n = length - 8;
        if (at < req.offset || at + BigInt(n) > req.offset + BigInt(req.length)) {
          return this.garbage(`OFFSET_DATA at ${at} of ${n} bytes outside ${describe(req)}`), false;
        }
        req.got = (req.got ?? 0) + n;
        if (req.keep === true) {
          req.data ??= Buffer.alloc(req.length);
          q.take(n).copy(req.data, Number(at - req.offset));
        } else q.skip(n);
        break;
      }
      case P.REPLY_TYPE_BLOCK_STATUS: {
        if (req.type !== P.CMD_BLOCK_STATUS || length < 12 || (length - 4) % 8 !== 0) {
          return this.garbage(`BLOCK_STATUS chunk of ${length} bytes for ${describe(req)}`), false;
        }
        const b = q.take(length);
        req.contextId = b.readUInt32BE(0);
        req.extents = [];
        for (let i = 4; i < length; i += 8) req.extents.push({ length: b.readUInt32BE(i), status: b.readUInt32BE(i + 4) });
        break;
      }
      case P.REPLY_TYPE_ERROR: {
        if (length < 6) return this.garbage(`an error chunk of ${length} bytes for ${describe(req)}`), false;
        const b = q.take(length);
        const n = b.readUInt16BE(4);
        if (6 + n > length) return this.garbage(`an error chunk's message of ${n} bytes in ${length} for ${describe(req)}`), false;
        req.error = b.readUInt32BE(0);
        req.message = b.subarray(6, 6 + n).toString('utf8');
        if (req.error === 0) return this.garbage(`an error chunk with error 0 for ${describe(req)}`), false;
        break;
      }
      default:
        return this.garbage(`chunk type ${type} for ${describe(req)}`), false;
    }
    if ((flags & P.REPLY_FLAG_DONE) !== 0) this.complete(req, req.error ?? 0, req.message ?? '', req.data ?? null, req.extents ?? null);
    return true;
  }

  complete(req, error, message, data, extents) {
    this.pending.delete(req.cookie);
    req.answered = true;
    this.onReply(req, error, message, data, extents);
    this.notifyProgress();
  }
}

function describe(req) {
  if (req === undefined) return 'nothing';
  const name = P.CMD_NAMES[req.type] ?? `command ${req.type}`;
  return `${name} cookie ${req.cookie} flags 0x${req.flags.toString(16)} offset ${req.offset} length ${req.length}`;
}

// ---- the oracle ----------------------------------------------------------------------------------

/** The errors the spec allows for a well-framed request (0: success), given the export and what was negotiated. */
function allowed(req, size, blockStatus) {
  const S = BigInt(size);
  const end = req.offset + BigInt(req.length);
  const inRange = end <= S;
  if ((req.flags & ~KNOWN_FLAGS) !== 0) return [P.NBD_EINVAL];
  switch (req.type) {
    case P.CMD_WRITE:
      return inRange ? [0] : [P.NBD_ENOSPC, P.NBD_EINVAL];
    case P.CMD_READ:
      if (req.length > P.PAYLOAD_BYTES_MAX) return [P.NBD_EOVERFLOW, P.NBD_EINVAL];
      return inRange ? [0] : [P.NBD_EINVAL];
    case P.CMD_FLUSH:
      return [0];
    case P.CMD_TRIM:
    case P.CMD_WRITE_ZEROES:
      if (!inRange) return [P.NBD_ENOSPC, P.NBD_EINVAL];
      return req.length === 0 ? [0, P.NBD_EINVAL] : req.type === P.CMD_WRITE_ZEROES && (req.flags & P.CMD_FLAG_FAST_ZERO) !== 0 ? [0, ENOTSUP] : [0];
    case P.CMD_CACHE:
      return inRange ? [0] : [P.NBD_EINVAL];
    case P.CMD_BLOCK_STATUS:
      if (!blockStatus || req.length === 0 || req.offset >= S) return [P.NBD_EINVAL];
      return inRange ? [0] : [0, P.NBD_EINVAL];
    default:
      return [P.NBD_EINVAL];
  }
}

/** What a successful reply must carry beyond its error: READ data of the right length, BLOCK_STATUS descriptors inside the request. */
function checkSuccess(req, size, structured) {
  if (req.type === P.CMD_READ) {
    if (structured && req.length > 0 && req.got !== req.length) return `${req.got ?? 0} bytes of data for ${describe(req)}`;
    return null;
  }
  if (req.type === P.CMD_BLOCK_STATUS) {
    const ex = req.extents;
    if (ex == null || ex.length === 0) return `no descriptors for ${describe(req)}`;
    if (req.contextId !== P.META_ID_BASE_ALLOCATION) return `context id ${req.contextId} for ${describe(req)}`;
    if ((req.flags & P.CMD_FLAG_REQ_ONE) !== 0 && ex.length !== 1) return `${ex.length} descriptors with REQ_ONE for ${describe(req)}: ${JSON.stringify(ex.slice(0, 4))}`;
    let sum = 0;
    for (const e of ex) {
      if (e.length === 0) return `a zero-length descriptor for ${describe(req)}`;
      if ((e.status & ~(P.STATE_HOLE | P.STATE_ZERO)) !== 0) return `status ${e.status} for ${describe(req)}`;
      sum += e.length;
    }
    const max = Math.min(req.length, size - Number(req.offset));
    if (sum > max) return `descriptors summing to ${sum} > ${max} for ${describe(req)}`;
    return null;
  }
  if (req.chunks !== undefined && req.chunks !== 1) return `${req.chunks} chunks for ${describe(req)}`;
  return null;
}

// ---- requests ------------------------------------------------------------------------------------

const HUGE_OFFSETS = [2n ** 63n, TWO64 - 1n, TWO64 - 4096n, TWO64 - 512n, 2n ** 53n, 2n ** 53n - 1n, 2n ** 53n + 1n, 2n ** 32n, 2n ** 48n, 2n ** 62n + 12345n];

function genType(rand) {
  const r = rand();
  if (r < 0.26) return P.CMD_READ;
  if (r < 0.46) return P.CMD_WRITE;
  if (r < 0.58) return P.CMD_BLOCK_STATUS;
  if (r < 0.66) return P.CMD_TRIM;
  if (r < 0.74) return P.CMD_WRITE_ZEROES;
  if (r < 0.79) return P.CMD_CACHE;
  if (r < 0.86) return P.CMD_FLUSH;
  // Unknown commands: just past the known ones, anywhere, the top.
  return pick(rand, [8, 9, 10, 99, 0x7fff, 0xffff, int(rand, 8, 0xffff)]);
}

function genFlags(rand, type) {
  const r = rand();
  if (type === P.CMD_BLOCK_STATUS && r < 0.3) return P.CMD_FLAG_REQ_ONE;
  if (r < 0.65) return 0;
  if (r < 0.92) {
    // Known flags, the ones meant for this command most often.
    let f = 0;
    if (rand() < 0.4) f |= P.CMD_FLAG_FUA;
    if (rand() < (type === P.CMD_WRITE_ZEROES ? 0.5 : 0.1)) f |= P.CMD_FLAG_NO_HOLE;
    if (rand() < (type === P.CMD_READ ? 0.4 : 0.05)) f |= P.CMD_FLAG_DF;
    if (rand() < (type === P.CMD_BLOCK_STATUS ? 0.5 : 0.05)) f |= P.CMD_FLAG_REQ_ONE;
    if (rand() < (type === P.CMD_WRITE_ZEROES ? 0.4 : 0.05)) f |= P.CMD_FLAG_FAST_ZERO;
    return f;
  }
  return int(rand, 0, 0xffff);
}

function genLength(rand, type) {
  const r = rand();
  if (r < 0.05) return 0;
  if (r < 0.4) return int(rand, 1, 4096);
  if (r < 0.75) return int(rand, 1, 4) * 4096;
  if (r < 0.93) return int(rand, 1, 64 << 10);
  // Metadata-only commands: any length up to the whole export and past it.
  if (type === P.CMD_TRIM || type === P.CMD_WRITE_ZEROES || type === P.CMD_BLOCK_STATUS) return int(rand, 0, rand() < 0.5 ? 16 << 20 : 0xffffffff);
  if (r < 0.975) return int(rand, 64 << 10, 512 << 10);
  if (type === P.CMD_WRITE) return int(rand, 512 << 10, 2 << 20);
  if (r < 0.99) return int(rand, 512 << 10, 4 << 20);
  // Past the maximum payload: EOVERFLOW for a READ, a range past the end for the rest; or most of the export.
  return pick(rand, [P.PAYLOAD_BYTES_MAX + 1, 0xffffffff, int(rand, P.PAYLOAD_BYTES_MAX + 1, 0xffffffff), int(rand, 4 << 20, 16 << 20)]);
}

/** An offset for `length` bytes; for commands that change data, kept out of the reserved region [0, size/2). */
function genOffset(rand, size, length, mutates) {
  const r = rand();
  let off;
  if (r < 0.45) off = int(rand, 0, size / 4096 - 1) * 4096;
  else if (r < 0.7) off = int(rand, 0, size - 1);
  else if (r < 0.88) off = Math.max(0, size - int(rand, 0, 2 * Math.max(length, 4096)));
  else if (r < 0.95) off = size + int(rand, 0, 1 << 20);
  else return pick(rand, HUGE_OFFSETS);
  const half = size / 2;
  if (mutates && off < half) off = half + (off % half);
  return BigInt(off);
}

/** A well-framed request (fields only; the cookie comes when it is sent). */
function genRequest(rand, size) {
  const type = genType(rand);
  const flags = genFlags(rand, type);
  const length = genLength(rand, type);
  const mutates = type === P.CMD_WRITE || type === P.CMD_TRIM || type === P.CMD_WRITE_ZEROES;
  return { type, flags, offset: genOffset(rand, size, length, mutates), length, cookie: 0 };
}

// ---- the run -------------------------------------------------------------------------------------

/**
 * Fuzzes the NBD server listening on `socket` (export `exportName` of `size`
 * bytes) until `requests` fuzz requests were sent. Resolves to the report;
 * never rejects for what the server does (that is a failure in the report).
 */
export async function runFuzz(o) {
  const { socket, exportName, size, seed, requests } = o;
  const connections = o.connections ?? 4;
  const started = Date.now();
  const report = {
    seed, requests: 0, answered: 0, errorReplies: 0, errors: {}, unverified: 0, connects: 0, negotiationFuzz: {}, endings: {},
    good: { ops: 0, writes: 0, reads: 0, bytesVerified: 0, blockStatus: 0 }, failures: [], failureCount: 0, ms: 0,
  };
  const fail = (msg) => {
    report.failureCount++;
    if (report.failures.length < FAILURES_KEPT) report.failures.push(msg);
    o.onFailure?.(msg);
  };
  const pool = randomBytes(PAYLOAD_POOL_BYTES, prng(streamSeed(seed, 1000)));
  const ctx = { socket, exportName, size, report, fail, pool, target: requests, stop: false, onProgress: o.onProgress };

  const fuzzers = Array.from({ length: connections }, (_, i) => fuzzStream(ctx, i, prng(streamSeed(seed, i))));
  const goodDone = { value: false };
  const good = goodClient(ctx, prng(streamSeed(seed, 999)), goodDone);
  await Promise.all(fuzzers);
  goodDone.value = true;
  const model = await good;
  // The server still negotiates and answers at the end.
  await finalProbe(ctx);
  report.ms = Date.now() - started;
  return { report, model, reservedBytes: reservedBytes(size) };
}

/** The part of the reserved region [0, size/2) the good client uses (its model is held in memory). */
function reservedBytes(size) {
  return Math.min(size / 2, GOOD_REGION_BYTES_MAX);
}

/** One fuzz connection after another until the run's request count is reached. */
async function fuzzStream(ctx, id, rand) {
  let n = 0;
  while (ctx.report.requests < ctx.target && ctx.report.failureCount < FAILURES_KEPT) {
    const conn = new Conn(ctx.socket, `fuzz ${id}.${n++}`, ctx.fail);
    try {
      await conn.connect();
    } catch (err) {
      ctx.fail(`${conn.label}: connect: ${err.message}`);
      return;
    }
    ctx.report.connects++;
    try {
      const neg = await fuzzNegotiation(ctx, conn, rand);
      if (neg !== null) await fuzzTransmission(ctx, conn, rand, neg);
    } catch (err) {
      ctx.fail(`${conn.label}: ${err.stack ?? err}`);
    } finally {
      conn.destroy();
    }
  }
}

/** Negotiates (returns {structured, blockStatus}) or misbehaves and checks the server closes (returns null). */
async function fuzzNegotiation(ctx, conn, rand) {
  const { report, fail } = ctx;
  if (!(await conn.greeting())) {
    fail(`${conn.label}: no greeting`);
    return null;
  }
  const count = (kind) => (report.negotiationFuzz[kind] = (report.negotiationFuzz[kind] ?? 0) + 1);
  const mustClose = async (kind) => {
    count(kind);
    if (!(await conn.closed())) fail(`${conn.label}: the server kept the connection open after ${kind}`);
    return null;
  };
  const r0 = rand();
  if (r0 < 0.015) {
    conn.sendFlags((P.CLIENT_FLAG_FIXED_NEWSTYLE | (1 << int(rand, 2, 31))) >>> 0);
    conn.write(randomBytes(int(rand, 0, 64), rand));
    return mustClose('unknown client flags');
  }
  if (r0 < 0.02) {
    const garbage = randomBytes(int(rand, 4, 300), rand);
    garbage[0] |= 0x80; // an unknown client flag bit: the first 4 bytes are the flags
    conn.write(garbage);
    return mustClose('garbage instead of client flags');
  }
  const noZeroes = rand() < 0.8;
  conn.sendFlags(P.CLIENT_FLAG_FIXED_NEWSTYLE | (noZeroes ? P.CLIENT_FLAG_NO_ZEROES : 0));
  const r1 = rand();
  if (r1 < 0.01) {
    const garbage = randomBytes(int(rand, 16, 300), rand);
    if (garbage[0] === 0x49) garbage[0] = 0; // never IHAVEOPT
    conn.write(garbage);
    return mustClose('garbage instead of an option');
  }
  if (r1 < 0.015) {
    conn.sendOption(int(rand, 0, 20), Buffer.alloc(0), int(rand, (1 << 20) + 1, 0xffffffff));
    return mustClose('an option longer than 1 MiB');
  }
  if (r1 < 0.02) {
    conn.sendOption(P.OPT_EXPORT_NAME, Buffer.from(`no-such-export-${int(rand, 0, 1e6)}`));
    return mustClose('EXPORT_NAME of an unknown export');
  }
  if (r1 < 0.025) {
    const r = await conn.option(P.OPT_ABORT);
    if (r === null || r.length !== 1 || r[0].type !== P.REP_ACK) fail(`${conn.label}: ABORT answered ${JSON.stringify(r?.map((x) => x.type))}`);
    return mustClose('ABORT');
  }

  let structured = false;
  let blockStatus = false;
  const extra = rand() < 0.3 ? int(rand, 1, 4) : 0;
  for (let i = 0; i < extra; i++) {
    const k = rand();
    let option;
    let data;
    if (k < 0.35) {
      option = pick(rand, [0, 3, 4, 5, 6, 8, 9, 10, 11, 12, 99, 0x7fffffff, 0xffffffff, int(rand, 11, 0xffffffff)]);
      data = randomBytes(rand() < 0.3 ? 0 : int(rand, 1, 64), rand);
      count('random option');
    } else if (k < 0.45) {
      option = pick(rand, [P.OPT_GO, P.OPT_INFO, 3, 99, P.OPT_SET_META_CONTEXT]);
      data = Buffer.alloc(int(rand, P.OPTION_BYTES_MAX + 1, 1 << 20));
      count('oversized option');
    } else if (k < 0.6) {
      option = P.OPT_LIST;
      data = Buffer.alloc(0);
    } else if (k < 0.75) {
      option = P.OPT_INFO;
      data = goData(rand() < 0.5 ? '' : ctx.exportName, [P.INFO_NAME, P.INFO_DESCRIPTION, P.INFO_BLOCK_SIZE, int(rand, 0, 0xffff)].slice(0, int(rand, 0, 4)));
    } else if (k < 0.87) {
      option = P.OPT_LIST_META_CONTEXT;
      data = metaData(ctx.exportName, pick(rand, [[], ['base:allocation'], ['base:'], ['qemu:dirty-bitmap:x']]));
    } else {
      option = P.OPT_STARTTLS;
      data = Buffer.alloc(0);
    }
    const r = await conn.option(option, data);
    if (r === null) {
      fail(`${conn.label}: the server closed the connection after option ${option} of ${data.length} bytes`);
      return null;
    }
    const last = r[r.length - 1].type;
    if (data.length > P.OPTION_BYTES_MAX && (r.length !== 1 || last !== P.REP_ERR_TOO_BIG)) fail(`${conn.label}: option ${option} of ${data.length} bytes answered ${last}`);
    if (option === P.OPT_STARTTLS && data.length <= P.OPTION_BYTES_MAX && last !== P.REP_ERR_UNSUP && last !== P.REP_ERR_INVALID) fail(`${conn.label}: STARTTLS answered ${last}`);
    if (option === P.OPT_LIST && data.length === 0 && last !== P.REP_ACK) fail(`${conn.label}: LIST answered ${last}`);
    if (option === P.OPT_STRUCTURED_REPLY && last === P.REP_ACK) structured = true;
    if (option === P.OPT_SET_META_CONTEXT && last === P.REP_ACK) blockStatus = structured && r.some((x) => x.type === P.REP_META_CONTEXT);
    if (option === P.OPT_SET_META_CONTEXT && last === P.REP_ACK && !structured) fail(`${conn.label}: SET_META_CONTEXT before STRUCTURED_REPLY was accepted`);
  }
  if (rand() < 0.7) {
    const r = await conn.option(P.OPT_STRUCTURED_REPLY);
    if (r === null || r[0].type !== P.REP_ACK) throw new Error(`STRUCTURED_REPLY answered ${JSON.stringify(r?.map((x) => x.type))}`);
    structured = true;
  }
  if (rand() < 0.75) {
    const r = await conn.option(P.OPT_SET_META_CONTEXT, metaData(rand() < 0.5 ? '' : ctx.exportName, [P.META_BASE_ALLOCATION]));
    if (r === null) throw new Error('the server closed the connection after SET_META_CONTEXT');
    const types = r.map((x) => x.type);
    if (structured) {
      if (types.join() !== `${P.REP_META_CONTEXT},${P.REP_ACK}` || r[0].data.readUInt32BE(0) !== P.META_ID_BASE_ALLOCATION) fail(`${conn.label}: SET_META_CONTEXT answered ${types}`);
      blockStatus = true;
    } else if (types.join() !== `${P.REP_ERR_INVALID}`) fail(`${conn.label}: SET_META_CONTEXT before STRUCTURED_REPLY answered ${types}`);
  }
  const name = rand() < 0.5 ? '' : ctx.exportName;
  if (rand() < 0.1) {
    conn.sendOption(P.OPT_EXPORT_NAME, Buffer.from(name));
    const b = await conn.read(noZeroes ? 10 : 134);
    if (b === null) throw new Error('the server closed the connection after EXPORT_NAME');
    if (Number(b.readBigUInt64BE(0)) !== ctx.size) fail(`${conn.label}: EXPORT_NAME size ${b.readBigUInt64BE(0)}`);
    count('EXPORT_NAME');
  } else {
    const r = await conn.option(P.OPT_GO, goData(name, []));
    if (r === null || r[r.length - 1].type !== P.REP_ACK) throw new Error(`GO answered ${JSON.stringify(r?.map((x) => x.type))}`);
    const info = r.find((x) => x.type === P.REP_INFO && x.data.readUInt16BE(0) === P.INFO_EXPORT);
    if (info === undefined || Number(info.data.readBigUInt64BE(2)) !== ctx.size) fail(`${conn.label}: GO without INFO_EXPORT of the size`);
  }
  return { structured, blockStatus };
}

function goData(name, infos) {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + infos.length * 2);
  b.writeUInt32BE(n.length);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((x, i) => b.writeUInt16BE(x, 6 + n.length + i * 2));
  return b;
}

function metaData(name, queries) {
  const parts = [];
  const str = (s) => {
    const b = Buffer.from(s);
    const l = Buffer.alloc(4);
    l.writeUInt32BE(b.length);
    parts.push(l, b);
  };
  str(name);
  const c = Buffer.alloc(4);
  c.writeUInt32BE(queries.length);
  parts.push(c);
  for (const q of queries) str(q);
  return Buffer.concat(parts);
}

/** Requests until this connection's budget is spent, then one of the endings. */
async function fuzzTransmission(ctx, conn, rand, neg) {
  const { report, fail, size, pool } = ctx;
  const label = conn.label;
  conn.onReply = (req, error, message) => {
    report.answered++;
    const ok = allowed(req, size, neg.blockStatus);
    if (error !== 0) {
      report.errorReplies++;
      report.errors[error] = (report.errors[error] ?? 0) + 1;
    }
    if (!ok.includes(error)) {
      fail(`${label}: ${describe(req)} answered error ${error}${message ? ` (${message})` : ''}, expected ${ok.join(' or ')}`);
      return;
    }
    if (error === 0) {
      const why = checkSuccess(req, size, neg.structured);
      if (why !== null) fail(`${label}: ${why}`);
    }
  };
  conn.startTransmission(neg.structured, neg.blockStatus, size);
  // A window of requests in flight; sometimes far past the server's 128, to lean on its back-pressure.
  const window = rand() < 0.1 ? int(rand, 160, 400) : int(rand, 1, 96);
  let budget = Math.floor(-Math.log(1 - rand()) * REQUESTS_PER_CONNECTION_MEAN) + 1;
  while (budget > 0 && report.requests < ctx.target && !conn.ended && !conn.broken) {
    const parts = [];
    const room = Math.min(budget, window - conn.pending.size, ctx.target - report.requests);
    let bytes = 0;
    for (let i = 0; i < room && bytes < 8 << 20; i++) {
      const req = genRequest(rand, size);
      parts.push(conn.header(req));
      if (req.type === P.CMD_WRITE) {
        parts.push(payload(pool, rand, req.length));
        bytes += req.length;
      }
      conn.pending.set(req.cookie, req);
      report.requests++;
      budget--;
    }
    if (parts.length > 0 && !conn.write(Buffer.concat(parts))) await conn.drained();
    ctx.onProgress?.(report);
    await conn.waitOutstanding(Math.max(0, Math.floor(window / 2) - 1));
  }
  if (conn.broken) return;
  if (conn.ended) {
    if (conn.pending.size > 0) fail(`${label}: the server closed the connection with ${conn.pending.size} requests unanswered (first: ${describe(conn.pending.values().next().value)})`);
    return;
  }
  await ending(ctx, conn, rand);
}

/** A random payload of n bytes, cut from the pool (repeated past its size). */
function payload(pool, rand, n) {
  if (n <= pool.length) {
    const at = int(rand, 0, pool.length - n);
    return pool.subarray(at, at + n);
  }
  const b = Buffer.allocUnsafe(n);
  for (let at = 0; at < n; at += pool.length) pool.copy(b, at, 0, Math.min(pool.length, n - at));
  return b;
}

/** How a fuzz connection ends; those the server must close answer every earlier request first. */
async function ending(ctx, conn, rand) {
  const { report, fail } = ctx;
  const r = rand();
  const count = (kind) => (report.endings[kind] = (report.endings[kind] ?? 0) + 1);
  const serverCloses = async (kind, bytes) => {
    count(kind);
    conn.write(bytes);
    await conn.waitOutstanding(0);
    if (conn.broken) return;
    if (conn.pending.size > 0) {
      fail(`${conn.label}: after ${kind}, ${conn.pending.size} earlier requests unanswered (first: ${describe(conn.pending.values().next().value)})`);
      report.unverified += conn.pending.size;
    }
    if (!(await conn.closed())) fail(`${conn.label}: the server kept the connection open after ${kind}`);
    if (conn.q.available > 0) fail(`${conn.label}: ${conn.q.available} bytes after the replies, after ${kind}`);
  };
  const header = (type, length, magic = P.REQUEST_MAGIC) => {
    const h = conn.header({ type, flags: 0, offset: BigInt(ctx.size / 2), length });
    h.writeUInt32BE(magic >>> 0, 0);
    return h;
  };
  if (r < 0.35) return serverCloses('DISC', header(P.CMD_DISC, 0));
  if (r < 0.5) {
    let magic = int(rand, 0, 0xffffffff);
    if (magic === P.REQUEST_MAGIC) magic ^= 1;
    return serverCloses('bad request magic', header(pick(rand, [P.CMD_READ, P.CMD_WRITE, P.CMD_FLUSH]), int(rand, 0, 4096), magic));
  }
  if (r < 0.62) return serverCloses('WRITE longer than 32 MiB', header(P.CMD_WRITE, int(rand, P.PAYLOAD_BYTES_MAX + 1, 0xffffffff)));
  if (r < 0.7) {
    const g = randomBytes(int(rand, 28, 400), rand);
    if (g.readUInt32BE(0) === P.REQUEST_MAGIC) g[0] ^= 1;
    return serverCloses('garbage request', g);
  }
  // The client goes away: earlier replies are awaited first (so each is checked), then the stream is cut.
  await conn.waitOutstanding(0);
  if (conn.broken) return;
  if (r < 0.8) {
    count('truncated header, then close');
    conn.write(header(P.CMD_READ, 4096).subarray(0, int(rand, 1, P.REQUEST_BYTES - 1)));
  } else if (r < 0.9) {
    count('truncated WRITE payload, then close');
    const n = int(rand, 2, 256 << 10);
    conn.write(Buffer.concat([header(P.CMD_WRITE, n), payload(ctx.pool, rand, int(rand, 0, n - 1))]));
  } else {
    count('close with requests in flight');
    // These are never checked (the client is gone): counted, and any reply that makes it here is ignored.
    conn.transmitting = false;
    for (let i = int(rand, 1, 32); i > 0; i--) {
      const req = genRequest(rand, ctx.size);
      if (req.type === P.CMD_WRITE) req.length = Math.min(req.length, 1 << 20);
      conn.write(conn.header(req));
      if (req.type === P.CMD_WRITE) conn.write(payload(ctx.pool, rand, req.length));
      report.requests++;
      report.unverified++;
    }
  }
  conn.socket.end();
  await new Promise((r) => setTimeout(r, int(rand, 0, 3)));
  conn.destroy();
}

// ---- the good client --------------------------------------------------------------------------------

/**
 * Keeps known data in [0, size/2) and checks it back the whole time; returns
 * the model (what the region must hold) after a final flush and full compare.
 */
async function goodClient(ctx, rand, done) {
  const { fail, report, size } = ctx;
  const region = reservedBytes(size);
  const model = new Uint8Array(region);
  const conn = new Conn(ctx.socket, 'good client', fail);
  await conn.connect();
  if (!(await conn.greeting())) throw new Error('good client: no greeting');
  conn.sendFlags(P.CLIENT_FLAG_FIXED_NEWSTYLE | P.CLIENT_FLAG_NO_ZEROES);
  const s = await conn.option(P.OPT_STRUCTURED_REPLY);
  const m = await conn.option(P.OPT_SET_META_CONTEXT, metaData(ctx.exportName, [P.META_BASE_ALLOCATION]));
  const g = await conn.option(P.OPT_GO, goData(ctx.exportName, []));
  if (s?.[0].type !== P.REP_ACK || m?.length !== 2 || g?.at(-1).type !== P.REP_ACK) {
    fail('good client: negotiation failed');
    return model;
  }
  conn.startTransmission(true, true, size);
  let waiting = null;
  conn.onReply = (req, error, message, data, extents) => {
    const w = waiting;
    waiting = null;
    w?.({ req, error, message, data, extents });
  };
  const call = async (type, flags, offset, length, body) => {
    const req = { type, flags, offset: BigInt(offset), length, keep: true };
    const h = conn.header(req);
    conn.pending.set(req.cookie, req);
    const got = new Promise((resolve) => (waiting = resolve));
    conn.write(body === undefined ? h : Buffer.concat([h, body]));
    report.good.ops++;
    const closed = conn.waitOutstanding(0).then(() => (conn.pending.has(req.cookie) ? 'closed' : got));
    const r = await Promise.race([got, closed, stall(REPLY_STALL_MS * 2)]);
    if (typeof r === 'string') throw new Error(`good client: no reply to ${describe(req)} (${r === 'closed' ? 'the connection ended' : 'stalled'})`);
    if (r.error !== 0) throw new Error(`good client: ${describe(req)} failed with error ${r.error} (${r.message})`);
    return r;
  };
  const verify = async (offset, length) => {
    const r = await call(P.CMD_READ, rand() < 0.2 ? P.CMD_FLAG_DF : 0, offset, length);
    report.good.reads++;
    const want = model.subarray(offset, offset + length);
    if (r.data === null || r.data.length !== length || !Buffer.from(want).equals(r.data)) {
      const at = r.data === null ? 0 : firstDifference(want, r.data);
      throw new Error(`good client: READ ${length} bytes at ${offset} differs from what was written at byte ${offset + at}`);
    }
    report.good.bytesVerified += length;
  };
  const range = () => {
    const aligned = rand() < 0.6;
    const len = aligned ? int(rand, 1, 32) * 4096 : int(rand, 1, 96 << 10);
    const off = aligned ? int(rand, 0, (region - len) / 4096) * 4096 : int(rand, 0, region - len);
    return [off, len];
  };
  const blocks = [];
  try {
    while ((!done.value || report.good.ops < GOOD_OPS_MIN) && report.failureCount === 0) {
      const k = rand();
      if (k < 0.4) {
        const [off, len] = range();
        const data = goodData(rand, len, blocks);
        await call(P.CMD_WRITE, rand() < 0.1 ? P.CMD_FLAG_FUA : 0, off, len, data);
        model.set(data, off);
        report.good.writes++;
      } else if (k < 0.47) {
        const [off, len] = range();
        await call(P.CMD_WRITE_ZEROES, pick(rand, [0, P.CMD_FLAG_NO_HOLE, P.CMD_FLAG_FAST_ZERO, P.CMD_FLAG_FUA]), off, len);
        model.fill(0, off, off + len);
      } else if (k < 0.52) {
        const [off, len] = range();
        await call(P.CMD_TRIM, 0, off, len);
        model.fill(0, off, off + len);
      } else if (k < 0.58) {
        await call(P.CMD_FLUSH, 0, 0, 0);
      } else if (k < 0.66) {
        const [off, len] = range();
        const r = await call(P.CMD_BLOCK_STATUS, rand() < 0.3 ? P.CMD_FLAG_REQ_ONE : 0, off, len);
        report.good.blockStatus++;
        let at = off;
        for (const e of r.extents ?? []) {
          // A range claimed to read as zeroes must read as zeroes.
          if ((e.status & P.STATE_ZERO) !== 0 && !model.subarray(at, at + e.length).every((x) => x === 0)) {
            throw new Error(`good client: BLOCK_STATUS calls ${e.length} bytes at ${at} zero (status ${e.status}), but data was written there`);
          }
          at += e.length;
        }
      } else {
        const [off, len] = range();
        await verify(off, len);
      }
    }
    await call(P.CMD_FLUSH, 0, 0, 0);
    for (let at = 0; at < region; at += 1 << 20) await verify(at, Math.min(1 << 20, region - at));
    await call(P.CMD_DISC, 0, 0, 0).catch(() => {});
  } catch (err) {
    fail(err.message);
  } finally {
    conn.destroy();
  }
  return model;
}

/** Data the volume reduces in every way: random, compressible text, a block written before (dedupe), zero blocks. */
function goodData(rand, len, blocks) {
  const out = Buffer.allocUnsafe(len);
  for (let at = 0; at < len; at += 4096) {
    const n = Math.min(4096, len - at);
    const k = rand();
    if (k < 0.4) randomBytes(n, rand).copy(out, at);
    else if (k < 0.7) out.write(`flashpack ${int(rand, 0, 99)} `.repeat(Math.ceil(n / 12)).slice(0, n), at, n, 'latin1');
    else if (k < 0.9 && blocks.length > 0) pick(rand, blocks).copy(out, at, 0, n);
    else out.fill(0, at, at + n);
    if (n === 4096 && k < 0.7 && blocks.length < 64) blocks.push(Buffer.from(out.subarray(at, at + n)));
  }
  return out;
}

function firstDifference(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return Math.min(a.length, b.length);
}

function stall(ms) {
  return new Promise((resolve) => setTimeout(() => resolve('stall'), ms).unref());
}

/** A fresh connection negotiates, reads and is answered: the server is alive at the end. */
async function finalProbe(ctx) {
  const conn = new Conn(ctx.socket, 'final probe', ctx.fail);
  try {
    await conn.connect();
    if (!(await conn.greeting())) return ctx.fail('final probe: no greeting');
    conn.sendFlags(P.CLIENT_FLAG_FIXED_NEWSTYLE | P.CLIENT_FLAG_NO_ZEROES);
    const g = await conn.option(P.OPT_GO, goData('', []));
    if (g?.at(-1).type !== P.REP_ACK) return ctx.fail('final probe: GO failed');
    let answered = false;
    conn.onReply = (_req, error) => (answered = error === 0);
    conn.startTransmission(false, false, ctx.size);
    const req = { type: P.CMD_READ, flags: 0, offset: 0n, length: 4096 };
    conn.write(conn.header(req));
    conn.pending.set(req.cookie, req);
    await conn.waitOutstanding(0);
    if (!answered) ctx.fail('final probe: the READ was not answered');
  } catch (err) {
    ctx.fail(`final probe: ${err.message}`);
  } finally {
    conn.destroy();
  }
}

// ---- the server process ------------------------------------------------------------------------------

/** Runs `node bin/flashpack.mjs <args>` to completion: { code, signal, stdout, stderr }. */
export function flashpack(args, timeoutMs = 120_000) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [flashpackBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Starts `flashpack serve <image> --socket <socket>` and waits until it
 * accepts. The handle: pid, running(), stderr(), stop() (SIGTERM; resolves to
 * the exit code, SIGKILL after SERVE_STOP_MS), kill().
 */
export async function startServer(image, socket, extra = []) {
  const child = spawn(process.execPath, [flashpackBin, 'serve', image, '--socket', socket, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s) => {
    stderr += s;
    if (stderr.length > 1 << 20) stderr = stderr.slice(-(1 << 19));
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const running = () => child.exitCode === null && child.signalCode === null;
  const handle = {
    pid: child.pid,
    running,
    stderr: () => stderr,
    kill: () => running() && child.kill('SIGKILL'),
    async stop() {
      if (running()) child.kill('SIGTERM');
      let timer;
      const late = new Promise((resolve) => (timer = setTimeout(() => resolve(null), SERVE_STOP_MS)));
      const r = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (r === null) {
        child.kill('SIGKILL');
        return { code: null, signal: 'timeout' };
      }
      return r;
    },
  };
  const deadline = Date.now() + SERVE_READY_MS;
  for (;;) {
    if (!running()) throw new Error(`flashpack serve exited before listening:\n${stderr}`);
    if (await accepts(socket)) return handle;
    if (Date.now() > deadline) {
      handle.kill();
      throw new Error(`flashpack serve did not listen within ${SERVE_READY_MS} ms:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function accepts(socket) {
  if (!fs.existsSync(socket)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = net.connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The server's resident memory in MiB (Linux), or null. */
export function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? null : Math.round(Number(m[1]) / 1024);
  } catch {
    return null;
  }
}

/** The first difference between the reserved region of a volume (opened read-only) and the model, or null. */
export async function verifyImage(image, model) {
  const { Volume } = await import('../dist/index.js');
  const v = await Volume.open(image, { readOnly: true });
  try {
    for (let at = 0; at < model.length; at += 1 << 20) {
      const n = Math.min(1 << 20, model.length - at);
      const got = await v.read(at, n);
      const want = model.subarray(at, at + n);
      if (!Buffer.from(got).equals(Buffer.from(want))) return `the reopened volume differs from the good client's data at byte ${at + firstDifference(want, got)}`;
    }
    return null;
  } finally {
    await v.close();
  }
}
