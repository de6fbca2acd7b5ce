/**
 * A raw NBD client for protocol tests, on node:net and the layouts of
 * src/nbd/protocol.ts: fixed newstyle negotiation one option at a time, then
 * requests with cookies and a parser for simple and structured replies. It
 * sends whatever it is told to, malformed or not, and reads only when asked:
 * the socket is paused between reads, so a test that sends without reading
 * holds the server back by TCP, as a real slow client would.
 *
 * Every read has a deadline (READ_TIMEOUT_MS): a server that never answers
 * fails the test with what was awaited, it does not hang it.
 */
import * as net from 'node:net';
import {
  CLIENT_FLAG_FIXED_NEWSTYLE, CLIENT_FLAG_NO_ZEROES, CMD_BLOCK_STATUS, CMD_READ, CMD_WRITE, IHAVEOPT, META_BASE_ALLOCATION, NBDMAGIC,
  OPT_GO, OPT_SET_META_CONTEXT, OPT_STRUCTURED_REPLY, REPLY_FLAG_DONE, REPLY_MAGIC, REPLY_TYPE_BLOCK_STATUS, REPLY_TYPE_ERROR, REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA, REP_ACK, REP_INFO, SIMPLE_REPLY_BYTES, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_BYTES, STRUCTURED_REPLY_MAGIC,
  INFO_EXPORT, encodeRequest, utf8,
} from '../../src/nbd/protocol.js';

/** How long one read may wait for its bytes. */
export const READ_TIMEOUT_MS = 10_000;
/** The most bytes a reply may claim before the client calls it garbage (32 MiB of data and headers). */
const REPLY_BYTES_MAX = (32 << 20) + 4096;
const REP_ERR_BIT = 2 ** 31;

/** The server ended the stream while the client waited for bytes. */
export class NbdClosed extends Error {}

export interface OptionReply {
  option: number;
  type: number;
  data: Uint8Array;
}

export interface Extent {
  length: number;
  status: number;
}

/** One request's answer: a simple reply, or every structured chunk up to the DONE one. */
export interface Reply {
  cookie: bigint;
  /** 0, or the NBD error. */
  error: number;
  /** The structured error chunk's message ('' for simple replies). */
  message: string;
  /** READ data, assembled from OFFSET_DATA chunks (or the simple reply's payload). */
  data: Uint8Array | null;
  /** BLOCK_STATUS descriptors and their context id. */
  extents: Extent[] | null;
  contextId: number;
  structured: boolean;
  /** Structured chunks that made up the reply (1 for a simple reply). */
  chunks: number;
}

interface Sent {
  type: number;
  offset: number;
  length: number;
}

export interface OpenOptions {
  /** Export name (default '': the only export). */
  name?: string;
  /** NBD_OPT_STRUCTURED_REPLY (default true). */
  structured?: boolean;
  /** NBD_OPT_SET_META_CONTEXT base:allocation (default: when structured). */
  blockStatus?: boolean;
}

export class NbdClient {
  readonly socket: net.Socket;
  private chunks: Buffer[] = [];
  private available = 0;
  private waiter: { n: number; resolve(): void; reject(e: Error): void } | null = null;
  private ended: Error | null = null;
  private nextCookie = 1n;
  private readonly pending = new Map<bigint, Sent>();
  /** Structured chunks of replies not yet DONE. */
  private readonly partial = new Map<bigint, Reply>();
  /** Negotiated: structured replies. */
  structured = false;
  size = 0;
  flags = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (b: Buffer) => {
      this.chunks.push(b);
      this.available += b.length;
      this.wake();
    });
    const end = (e: Error): void => {
      if (this.ended === null) this.ended = e;
      this.wake();
    };
    socket.on('end', () => end(new NbdClosed('the server closed the connection')));
    socket.on('close', () => end(new NbdClosed('the connection closed')));
    socket.on('error', (e) => end(e));
    socket.pause();
  }

  /** `allowHalfOpen`: keep sending after the server's FIN (a client that ignores the close). */
  static connect(socketPath: string, o: { allowHalfOpen?: boolean } = {}): Promise<NbdClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ path: socketPath, allowHalfOpen: o.allowHalfOpen === true });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new NbdClient(s));
      });
      s.once('error', reject);
    });
  }

  /** Connects and negotiates (fixed newstyle, NO_ZEROES, structured replies and base:allocation by default, GO). */
  static async open(socketPath: string, o: OpenOptions = {}): Promise<NbdClient> {
    const c = await NbdClient.connect(socketPath);
    await c.handshake();
    const structured = o.structured ?? true;
    if (structured) await c.structuredReply();
    if (o.blockStatus ?? structured) {
      const r = await c.setMetaContext(o.name ?? '', [META_BASE_ALLOCATION]);
      const last = r[r.length - 1];
      if (last.type !== REP_ACK || r.length !== 2) throw new Error(`SET_META_CONTEXT: replies ${r.map((x) => x.type).join(', ')}`);
    }
    await c.go(o.name ?? '');
    return c;
  }

  // ---- bytes ------------------------------------------------------------------------------

  private wake(): void {
    const w = this.waiter;
    if (w === null) return;
    if (this.available >= w.n) {
      this.waiter = null;
      this.socket.pause();
      w.resolve();
    } else if (this.ended !== null) {
      this.waiter = null;
      w.reject(this.ended);
    }
  }

  /** Exactly `n` bytes; rejects with NbdClosed if the stream ends first, or after `timeoutMs`. */
  async read(n: number, timeoutMs = READ_TIMEOUT_MS): Promise<Uint8Array> {
    if (this.available < n) {
      if (this.ended !== null) throw this.ended;
      if (this.waiter !== null) throw new Error('NbdClient: two reads at once');
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiter = null;
          this.socket.pause();
          reject(new Error(`NbdClient: ${n} bytes did not arrive within ${timeoutMs} ms (${this.available} did)`));
        }, timeoutMs);
        this.waiter = {
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        };
        this.socket.resume();
      });
    }
    const out = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      const c = this.chunks[0];
      const k = Math.min(n - done, c.length);
      out.set(c.subarray(0, k), done);
      done += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.available -= n;
    return out;
  }

  /** Bytes received and not read yet. */
  get buffered(): number {
    return this.available;
  }

  /**
   * Whether the server ends the connection within `timeoutMs`. Reads (and
   * keeps) whatever arrives meanwhile; false if the stream is still open.
   */
  closed(timeoutMs = READ_TIMEOUT_MS): Promise<boolean> {
    if (this.ended !== null) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.socket.off('close', onClose);
        this.socket.pause();
        resolve(false);
      }, timeoutMs);
      const onClose = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.socket.once('close', onClose);
      this.socket.resume();
    });
  }

  send(b: Uint8Array): void {
    this.socket.write(b);
  }

  /**
   * Keeps sending `chunkBytes` of junk for up to `ms` or `maxBytes`, each
   * write awaited until the kernel took it; returns the bytes taken. A server
   * that stops reading holds this at its socket buffers' size.
   */
  async flood(ms: number, maxBytes: number, chunkBytes = 1 << 20): Promise<number> {
    const junk = new Uint8Array(chunkBytes).fill(0x5a);
    const deadline = Date.now() + ms;
    let taken = 0;
    while (taken < maxBytes && Date.now() < deadline && !this.socket.destroyed && this.socket.writable) {
      const ok = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), Math.max(1, deadline - Date.now()));
        this.socket.write(junk, (err) => {
          clearTimeout(timer);
          resolve(err == null);
        });
      });
      if (!ok) break;
      taken += chunkBytes;
    }
    return taken;
  }

  /** Half-closes (FIN) after what was sent. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ---- negotiation -----------------------------------------------------------------------------

  /** The greeting's handshake flags (NBDMAGIC and IHAVEOPT checked). */
  async readGreeting(): Promise<number> {
    const v = view(await this.read(18));
    if (v.getBigUint64(0) !== NBDMAGIC) throw new Error(`greeting: magic 0x${v.getBigUint64(0).toString(16)}`);
    if (v.getBigUint64(8) !== IHAVEOPT) throw new Error(`greeting: IHAVEOPT 0x${v.getBigUint64(8).toString(16)}`);
    return v.getUint16(16);
  }

  sendClientFlags(flags: number): void {
    const b = new Uint8Array(4);
    view(b).setUint32(0, flags);
    this.send(b);
  }

  /** Greeting, then client flags FIXED_NEWSTYLE | NO_ZEROES. */
  async handshake(flags = CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES): Promise<number> {
    const serverFlags = await this.readGreeting();
    this.sendClientFlags(flags);
    return serverFlags;
  }

  /** An option header claiming `length` bytes (default: data's), then `data`. */
  sendOption(option: number, data: Uint8Array = new Uint8Array(0), length = data.length, magic = IHAVEOPT): void {
    const b = new Uint8Array(16 + data.length);
    const v = view(b);
    v.setBigUint64(0, magic);
    v.setUint32(8, option);
    v.setUint32(12, length);
    b.set(data, 16);
    this.send(b);
  }

  async readOptionReply(): Promise<OptionReply> {
    const v = view(await this.read(20));
    if (v.getBigUint64(0) !== REPLY_MAGIC) throw new Error(`option reply: magic 0x${v.getBigUint64(0).toString(16)}`);
    const length = v.getUint32(16);
    if (length > REPLY_BYTES_MAX) throw new Error(`option reply of ${length} bytes`);
    return { option: v.getUint32(8), type: v.getUint32(12), data: await this.read(length) };
  }

  /** Sends an option and reads its replies up to the final one (ACK or an error), which comes last. */
  async option(option: number, data?: Uint8Array): Promise<OptionReply[]> {
    this.sendOption(option, data);
    return this.optionReplies();
  }

  async optionReplies(): Promise<OptionReply[]> {
    const out: OptionReply[] = [];
    for (;;) {
      const r = await this.readOptionReply();
      out.push(r);
      if (r.type === REP_ACK || r.type >= REP_ERR_BIT) return out;
    }
  }

  async structuredReply(): Promise<void> {
    const r = await this.option(OPT_STRUCTURED_REPLY);
    if (r.length !== 1 || r[0].type !== REP_ACK) throw new Error(`STRUCTURED_REPLY: replies ${r.map((x) => x.type).join(', ')}`);
    this.structured = true;
  }

  setMetaContext(name: string, queries: string[], option = OPT_SET_META_CONTEXT): Promise<OptionReply[]> {
    return this.option(option, metaContextPayload(name, queries));
  }

  /** NBD_OPT_GO; on ACK the connection is in transmission, with the size and flags of NBD_INFO_EXPORT. */
  async go(name: string, infos: number[] = []): Promise<OptionReply[]> {
    const r = await this.option(OPT_GO, goPayload(name, infos));
    const last = r[r.length - 1];
    if (last.type !== REP_ACK) throw new Error(`GO '${name}': ${last.type >= REP_ERR_BIT ? `error ${last.type - REP_ERR_BIT}: ${text(last.data)}` : `reply ${last.type}`}`);
    for (const x of r) {
      if (x.type !== REP_INFO) continue;
      const v = view(x.data);
      if (v.getUint16(0) === INFO_EXPORT) {
        this.size = Number(v.getBigUint64(2));
        this.flags = v.getUint16(10);
      }
    }
    return r;
  }

  // ---- transmission -------------------------------------------------------------------------------

  /** Sends one request (a WRITE's payload after it, unless `payload` is given short on purpose); returns its cookie. */
  request(type: number, flags: number, offset: number | bigint, length: number, payload?: Uint8Array): bigint {
    const cookie = this.nextCookie++;
    const head = encodeRequest(type, flags, cookie, 0, length);
    view(head).setBigUint64(16, BigInt(offset));
    this.pending.set(cookie, { type, offset: Number(offset), length });
    this.send(payload === undefined ? head : concat(head, payload));
    return cookie;
  }

  /** Forgets a cookie the server will not answer (a request that ends the connection). */
  forget(cookie: bigint): void {
    this.pending.delete(cookie);
  }

  /** Requests sent and not answered yet. */
  get outstanding(): number {
    return this.pending.size;
  }

  /** The next reply to complete, whichever request it answers. An unknown cookie or a malformed reply throws. */
  async readReply(timeoutMs = READ_TIMEOUT_MS): Promise<Reply> {
    for (;;) {
      const magic = view(await this.read(4, timeoutMs)).getUint32(0);
      if (magic === SIMPLE_REPLY_MAGIC) return this.simple(timeoutMs);
      if (magic !== STRUCTURED_REPLY_MAGIC) throw new Error(`reply magic 0x${magic.toString(16)}`);
      const done = await this.chunk(timeoutMs);
      if (done !== null) return done;
    }
  }

  private async simple(timeoutMs: number): Promise<Reply> {
    const v = view(await this.read(SIMPLE_REPLY_BYTES - 4, timeoutMs));
    const error = v.getUint32(0);
    const cookie = v.getBigUint64(4);
    const sent = this.answered(cookie);
    let data: Uint8Array | null = null;
    if (sent.type === CMD_READ && error === 0) {
      if (this.structured) throw new Error(`cookie ${cookie}: a simple reply to a READ on a structured connection`);
      data = await this.read(sent.length, timeoutMs);
    }
    return { cookie, error, message: '', data, extents: null, contextId: 0, structured: false, chunks: 1 };
  }

  /** One structured chunk; the whole reply once its DONE chunk is read, else null. */
  private async chunk(timeoutMs: number): Promise<Reply | null> {
    if (!this.structured) throw new Error('a structured reply on a connection that did not negotiate them');
    const v = view(await this.read(STRUCTURED_REPLY_BYTES - 4, timeoutMs));
    const flags = v.getUint16(0);
    const type = v.getUint16(2);
    const cookie = v.getBigUint64(4);
    const length = v.getUint32(12);
    if (length > REPLY_BYTES_MAX) throw new Error(`cookie ${cookie}: a chunk of ${length} bytes`);
    const sent = this.pending.get(cookie);
    if (sent === undefined) throw new Error(`a chunk for cookie ${cookie}, which is not outstanding`);
    const payload = await this.read(length, timeoutMs);
    const pv = view(payload);
    let r = this.partial.get(cookie);
    if (r === undefined) {
      r = { cookie, error: 0, message: '', data: null, extents: null, contextId: 0, structured: true, chunks: 0 };
      this.partial.set(cookie, r);
    }
    r.chunks++;
    switch (type) {
      case REPLY_TYPE_NONE:
        if (length !== 0) throw new Error(`cookie ${cookie}: NBD_REPLY_TYPE_NONE with ${length} bytes`);
        break;
      case REPLY_TYPE_OFFSET_DATA: {
        if (sent.type !== CMD_READ) throw new Error(`cookie ${cookie}: OFFSET_DATA for command ${sent.type}`);
        const at = Number(pv.getBigUint64(0)) - sent.offset;
        if (at < 0 || at + length - 8 > sent.length) throw new Error(`cookie ${cookie}: OFFSET_DATA at ${at + sent.offset} outside the request`);
        r.data ??= new Uint8Array(sent.length);
        r.data.set(payload.subarray(8), at);
        break;
      }
      case REPLY_TYPE_BLOCK_STATUS: {
        if (sent.type !== CMD_BLOCK_STATUS) throw new Error(`cookie ${cookie}: BLOCK_STATUS chunk for command ${sent.type}`);
        if (length < 12 || (length - 4) % 8 !== 0) throw new Error(`cookie ${cookie}: BLOCK_STATUS chunk of ${length} bytes`);
        r.contextId = pv.getUint32(0);
        r.extents = [];
        for (let at = 4; at < length; at += 8) r.extents.push({ length: pv.getUint32(at), status: pv.getUint32(at + 4) });
        break;
      }
      case REPLY_TYPE_ERROR: {
        const n = pv.getUint16(4);
        if (6 + n > length) throw new Error(`cookie ${cookie}: error message of ${n} bytes in a ${length}-byte chunk`);
        r.error = pv.getUint32(0);
        r.message = text(payload.subarray(6, 6 + n));
        break;
      }
      default:
        throw new Error(`cookie ${cookie}: chunk type ${type}`);
    }
    if ((flags & REPLY_FLAG_DONE) === 0) return null;
    this.partial.delete(cookie);
    this.answered(cookie);
    // A READ answered without an error reads as its whole range (holes may come as HOLE chunks: none are sent here).
    if (sent.type === CMD_READ && r.error === 0) r.data ??= new Uint8Array(sent.length);
    return r;
  }

  private answered(cookie: bigint): Sent {
    const sent = this.pending.get(cookie);
    if (sent === undefined) throw new Error(`a reply for cookie ${cookie}, which is not outstanding`);
    this.pending.delete(cookie);
    return sent;
  }

  /** Sends one request and reads its reply (nothing else may be outstanding). */
  async call(type: number, flags: number, offset: number | bigint, length: number, payload?: Uint8Array): Promise<Reply> {
    if (this.pending.size !== 0) throw new Error(`call() with ${this.pending.size} requests outstanding`);
    const cookie = this.request(type, flags, offset, length, payload);
    const r = await this.readReply();
    if (r.cookie !== cookie) throw new Error(`reply for cookie ${r.cookie}, expected ${cookie}`);
    return r;
  }

  async write(offset: number, data: Uint8Array, flags = 0): Promise<Reply> {
    return this.call(CMD_WRITE, flags, offset, data.length, data);
  }

  async readAt(offset: number, length: number, flags = 0): Promise<Reply> {
    return this.call(CMD_READ, flags, offset, length);
  }
}

// ---- option payloads ----------------------------------------------------------------------------

/** NBD_OPT_GO / NBD_OPT_INFO: name length, name, information request count, requests. */
export function goPayload(name: string, infos: number[] = []): Uint8Array {
  const n = utf8(name);
  const b = new Uint8Array(4 + n.length + 2 + infos.length * 2);
  const v = view(b);
  v.setUint32(0, n.length);
  b.set(n, 4);
  v.setUint16(4 + n.length, infos.length);
  infos.forEach((x, i) => v.setUint16(6 + n.length + i * 2, x));
  return b;
}

/** NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT: export name, query count, queries. */
export function metaContextPayload(name: string, queries: string[]): Uint8Array {
  const parts = [lengthPrefixed(name), u32(queries.length), ...queries.map(lengthPrefixed)];
  return concat(...parts);
}

export function lengthPrefixed(s: string): Uint8Array {
  return concat(u32(utf8(s).length), utf8(s));
}

export function u32(x: number): Uint8Array {
  const b = new Uint8Array(4);
  view(b).setUint32(0, x);
  return b;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}
