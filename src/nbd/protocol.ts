/**
 * Every byte layout and constant of the NBD protocol flashpack speaks, in one
 * place: fixed newstyle negotiation, simple and structured replies, the
 * base:allocation meta context (NetworkBlockDevice/nbd doc/proto.md). All
 * integers are big-endian. Nothing here does I/O.
 */

// ---- handshake --------------------------------------------------------------------
export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const REPLY_MAGIC = 0x3e889045565a9n; // option replies
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const CLIENT_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const CLIENT_FLAG_NO_ZEROES = 1 << 1;

// ---- options ------------------------------------------------------------------------
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_LIST_META_CONTEXT = 9;
export const OPT_SET_META_CONTEXT = 10;

export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
const REP_ERR = 2 ** 31;
export const REP_ERR_UNSUP = REP_ERR + 1;
export const REP_ERR_POLICY = REP_ERR + 2;
export const REP_ERR_INVALID = REP_ERR + 3;
export const REP_ERR_TLS_REQD = REP_ERR + 5;
export const REP_ERR_UNKNOWN = REP_ERR + 6;
export const REP_ERR_SHUTDOWN = REP_ERR + 7;
export const REP_ERR_TOO_BIG = REP_ERR + 9;

export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

/** The one meta context served, and the id it gets on every connection that selects it. */
export const META_BASE_ALLOCATION = 'base:allocation';
export const META_ID_BASE_ALLOCATION = 1;
/** base:allocation status bits. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

// ---- transmission flags (per export) ---------------------------------------------------
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_FUA = 1 << 3;
export const TFLAG_SEND_TRIM = 1 << 5;
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
export const TFLAG_CAN_MULTI_CONN = 1 << 8;
export const TFLAG_SEND_CACHE = 1 << 10;
export const TFLAG_SEND_FAST_ZERO = 1 << 11;

// ---- requests ------------------------------------------------------------------------
export const REQUEST_MAGIC = 0x25609513;
export const REQUEST_BYTES = 28;
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;
export const CMD_FLAG_FAST_ZERO = 1 << 4;
export const CMD_NAMES = ['READ', 'WRITE', 'DISC', 'FLUSH', 'TRIM', 'CACHE', 'WRITE_ZEROES', 'BLOCK_STATUS'];

// ---- replies -----------------------------------------------------------------------------
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const SIMPLE_REPLY_BYTES = 16;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const STRUCTURED_REPLY_BYTES = 20;
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR = 2 ** 15 + 1;

/** NBD error values (the protocol's, not the host's errno). */
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// ---- limits -------------------------------------------------------------------------------
/** Largest READ or WRITE payload (advertised as the maximum block size; nbdkit's default). */
export const PAYLOAD_BYTES_MAX = 32 << 20;
/** Preferred block size advertised for a target that does not name its block (a volume does: Volume.blockBytes). */
export const PREFERRED_BLOCK_BYTES = 4096;
/** Largest option payload accepted during negotiation (names and queries are at most 4 KiB each). */
export const OPTION_BYTES_MAX = 64 << 10;
/** Longest export name or meta context query (the spec's limit for strings). */
export const STRING_BYTES_MAX = 4096;
/** Meta context queries in one option. */
export const QUERIES_MAX = 128;
/** Options one connection may send before transmission (a client that loops forever is cut off). */
export const OPTIONS_MAX = 1024;

// ---- encoders ---------------------------------------------------------------------------------

/** The server's greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(): Uint8Array {
  const b = new Uint8Array(18);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, NBDMAGIC);
  v.setBigUint64(8, IHAVEOPT);
  v.setUint16(16, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
  return b;
}

/** An option reply: header and `data`. */
export function encodeOptionReply(option: number, type: number, data: Uint8Array = EMPTY): Uint8Array {
  const b = new Uint8Array(20 + data.length);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, REPLY_MAGIC);
  v.setUint32(8, option);
  v.setUint32(12, type);
  v.setUint32(16, data.length);
  b.set(data, 20);
  return b;
}

/** An error option reply with a message for humans. */
export function encodeOptionError(option: number, type: number, message: string): Uint8Array {
  return encodeOptionReply(option, type, utf8(message));
}

/** NBD_REP_SERVER: one export of NBD_OPT_LIST. */
export function encodeServerReply(name: string, description: string): Uint8Array {
  const n = utf8(name);
  const d = utf8(description);
  const b = new Uint8Array(4 + n.length + d.length);
  new DataView(b.buffer).setUint32(0, n.length);
  b.set(n, 4);
  b.set(d, 4 + n.length);
  return encodeOptionReply(OPT_LIST, REP_SERVER, b);
}

export function encodeInfoExport(option: number, size: number, flags: number): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  v.setUint16(0, INFO_EXPORT);
  v.setBigUint64(2, BigInt(size));
  v.setUint16(10, flags);
  return encodeOptionReply(option, REP_INFO, b);
}

export function encodeInfoBlockSize(option: number, min: number, preferred: number, max: number): Uint8Array {
  const b = new Uint8Array(14);
  const v = new DataView(b.buffer);
  v.setUint16(0, INFO_BLOCK_SIZE);
  v.setUint32(2, min);
  v.setUint32(6, preferred);
  v.setUint32(10, max);
  return encodeOptionReply(option, REP_INFO, b);
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION. */
export function encodeInfoString(option: number, type: number, text: string): Uint8Array {
  const s = utf8(text);
  const b = new Uint8Array(2 + s.length);
  new DataView(b.buffer).setUint16(0, type);
  b.set(s, 2);
  return encodeOptionReply(option, REP_INFO, b);
}

export function encodeMetaContext(option: number, id: number, name: string): Uint8Array {
  const s = utf8(name);
  const b = new Uint8Array(4 + s.length);
  new DataView(b.buffer).setUint32(0, id);
  b.set(s, 4);
  return encodeOptionReply(option, REP_META_CONTEXT, b);
}

/** What NBD_OPT_EXPORT_NAME answers on success: size, flags, and 124 zeroes unless the client asked for none. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Uint8Array {
  const b = new Uint8Array(noZeroes ? 10 : 134);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(size));
  v.setUint16(8, flags);
  return b;
}

/** A request, as a client sends it (tests and the fuzzer). */
export function encodeRequest(type: number, flags: number, cookie: bigint, offset: number, length: number): Uint8Array {
  const b = new Uint8Array(REQUEST_BYTES);
  const v = new DataView(b.buffer);
  v.setUint32(0, REQUEST_MAGIC);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  v.setBigUint64(8, cookie);
  v.setBigUint64(16, BigInt(offset));
  v.setUint32(24, length);
  return b;
}

/** A decoded request header. The cookie is kept as its two 32-bit halves (no BigInt per request). */
export interface Request {
  magic: number;
  flags: number;
  type: number;
  cookieHi: number;
  cookieLo: number;
  offset: number;
  length: number;
}

/** Decodes the 28-byte header at b[at…]; an offset past 2^53 comes back as Infinity (out of range for any export). */
export function decodeRequest(b: Uint8Array, at: number, out: Request): void {
  const v = new DataView(b.buffer, b.byteOffset + at, REQUEST_BYTES);
  out.magic = v.getUint32(0);
  out.flags = v.getUint16(4);
  out.type = v.getUint16(6);
  out.cookieHi = v.getUint32(8);
  out.cookieLo = v.getUint32(12);
  const hi = v.getUint32(16);
  out.offset = hi >= 2 ** 21 ? Infinity : hi * 2 ** 32 + v.getUint32(20);
  out.length = v.getUint32(24);
}

/** Writes a simple reply header into b[at…]. */
export function putSimpleReply(b: Uint8Array, at: number, error: number, cookieHi: number, cookieLo: number): void {
  const v = new DataView(b.buffer, b.byteOffset + at, SIMPLE_REPLY_BYTES);
  v.setUint32(0, SIMPLE_REPLY_MAGIC);
  v.setUint32(4, error);
  v.setUint32(8, cookieHi);
  v.setUint32(12, cookieLo);
}

/** Writes a structured reply chunk header into b[at…]; `length` is the payload that follows. */
export function putStructuredReply(b: Uint8Array, at: number, flags: number, type: number, cookieHi: number, cookieLo: number, length: number): void {
  const v = new DataView(b.buffer, b.byteOffset + at, STRUCTURED_REPLY_BYTES);
  v.setUint32(0, STRUCTURED_REPLY_MAGIC);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  v.setUint32(8, cookieHi);
  v.setUint32(12, cookieLo);
  v.setUint32(16, length);
}

/** A structured error chunk (DONE): error, message. */
export function encodeStructuredError(error: number, message: string, cookieHi: number, cookieLo: number): Uint8Array {
  const m = utf8(message).subarray(0, STRING_BYTES_MAX);
  const b = new Uint8Array(STRUCTURED_REPLY_BYTES + 6 + m.length);
  putStructuredReply(b, 0, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookieHi, cookieLo, 6 + m.length);
  const v = new DataView(b.buffer);
  v.setUint32(STRUCTURED_REPLY_BYTES, error);
  v.setUint16(STRUCTURED_REPLY_BYTES + 4, m.length);
  b.set(m, STRUCTURED_REPLY_BYTES + 6);
  return b;
}

/** A BLOCK_STATUS chunk (DONE) for one context: (length, status) descriptors. */
export function encodeBlockStatus(contextId: number, extents: readonly { length: number; status: number }[], cookieHi: number, cookieLo: number): Uint8Array {
  const payload = 4 + extents.length * 8;
  const b = new Uint8Array(STRUCTURED_REPLY_BYTES + payload);
  putStructuredReply(b, 0, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, cookieHi, cookieLo, payload);
  const v = new DataView(b.buffer);
  v.setUint32(STRUCTURED_REPLY_BYTES, contextId);
  for (let i = 0; i < extents.length; i++) {
    v.setUint32(STRUCTURED_REPLY_BYTES + 4 + i * 8, extents[i].length);
    v.setUint32(STRUCTURED_REPLY_BYTES + 8 + i * 8, extents[i].status);
  }
  return b;
}

// ---- option payloads ------------------------------------------------------------------------

/** Reads the strings of an option payload with bounds checks; every failure is a reason string. */
export class OptionReader {
  private at = 0;
  constructor(private readonly b: Uint8Array) {}

  get remaining(): number {
    return this.b.length - this.at;
  }

  u16(): number {
    if (this.remaining < 2) throw new OptionError('truncated (a 16-bit field runs past the end)');
    const x = (this.b[this.at] << 8) | this.b[this.at + 1];
    this.at += 2;
    return x;
  }

  u32(): number {
    if (this.remaining < 4) throw new OptionError('truncated (a 32-bit field runs past the end)');
    const x = new DataView(this.b.buffer, this.b.byteOffset + this.at, 4).getUint32(0);
    this.at += 4;
    return x;
  }

  /** A 32-bit length and that many bytes of UTF-8 (at most STRING_BYTES_MAX). */
  string(what: string): string {
    const n = this.u32();
    if (n > STRING_BYTES_MAX) throw new OptionError(`${what} of ${n} bytes is longer than ${STRING_BYTES_MAX}`);
    if (n > this.remaining) throw new OptionError(`${what} of ${n} bytes runs past the option's end`);
    const s = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return new TextDecoder('utf-8', { fatal: false }).decode(s);
  }
}

/** A malformed option payload: answered with NBD_REP_ERR_INVALID and this message. */
export class OptionError extends Error {}

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}
