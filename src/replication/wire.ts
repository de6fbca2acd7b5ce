/**
 * The replication data protocol on the wire: every byte layout, constant and
 * limit in one place, modelled on PureFlash's (common/include/pf_message.h).
 * A command is a 64-byte head, a reply a 32-byte reply, each followed by
 * `dataBytes` bytes whose CRC-32 (IEEE, zlib's) it carries; a connection opens
 * with a 32-byte handshake each way. All integers are little-endian; 64-bit
 * fields hold values below 2^53, so they decode to plain numbers. Decoders
 * return a reason string for malformed bytes (never throw on input); encoders
 * throw EINVAL for out-of-range fields. Nothing here does I/O.
 *
 *   HEAD, 64 bytes (PfMessageHead)       REPLY, 32 bytes (PfMessageReply, extended)
 *   @0  opcode      u8                   @0  status      u16  code | DEGRADE | REOPEN
 *   @1  flags       u8   bit0 COMPRESSED @2  epoch lo    u16  (PureFlash meta_ver)
 *   @2  commandId   u16                  @4  commandId   u16
 *   @4  snapSeq     u32  SNAP_SEQ_HEAD   @6  commandSeq  u32
 *   @8  shardId     u64  < 2^53          @10 blockId     u32  reserved, 0
 *   @16 bufAddr     u64  reserved, 0     @14 epoch hi    u16
 *   @24 rkey        u32  reserved, 0     @16 dataBytes   u32  data after the reply
 *   @28 epoch       u32  (meta_ver+rsv)  @20 flags       u8   bit0 COMPRESSED
 *   @32 offset      u64  < 2^53          @21 reserved    3 bytes, 0
 *   @40 length      u32  logical bytes   @24 dataCrc     u32  0 when no data
 *   @44 commandSeq  u32                  @28 reserved    u32, 0
 *   @48 dataBytes   u32  data after head
 *   @52 dataCrc     u32  0 when no data  HANDSHAKE, 32 bytes (both directions)
 *   @56 reserved    u64  0               @0  magic 'PFRP' u32 · @4 version u16 · @6 role u8
 *                                        @7  reserved u8 · @8 queueDepth u16 · @10 status u16
 *                                        @12 ioTimeoutMs u32 · @16 shardId u64 · @24 reserved u64
 *
 * commandSeq of a REPLICATE_WRITE or REPLICATE_DISCARD is the primary's
 * sequence number of the change; of a REPLICATE_FLUSH, the primary's watermark:
 * every change it sequenced up to that number has been answered by every
 * replica (activity logs, replica.ts). Elsewhere it is the sender's own.
 */
import { FlashpackError, badArgument, checkIndex, checkInteger, hex32, type FlashpackErrorCode } from '../errors.js';
import { crc32 as crc32Kernel } from '../codec/checksum.js';

// ---- sizes and limits ------------------------------------------------------------------
export const HEAD_BYTES = 64;
export const REPLY_BYTES = 32;
export const HANDSHAKE_BYTES = 32;
export const SECTOR_BYTES = 512;
/** Largest length of one data command (WRITE, READ, RECOVERY_READ, DISCARD …). */
export const MAX_IO_BYTES = 1 << 20;
/** Largest data after one head or reply; a decoder rejects more before buffering it. */
export const MAX_DATA_BYTES = MAX_IO_BYTES;
/** Largest frame a FrameReader ever holds: a head and its data. */
export const FRAME_BYTES_MAX = HEAD_BYTES + MAX_DATA_BYTES;
/** shardId = volumeId · SHARDS_PER_VOLUME + shardIndex. */
export const SHARDS_PER_VOLUME = 65536;
/** PureFlash's snap_seq for "the current head"; what we always send. */
export const SNAP_SEQ_HEAD = 0xffffffff;
const U64_HI_SAFE = 2 ** 21; // a u64 whose high word reaches this is ≥ 2^53
const EMPTY = new Uint8Array(0);

// ---- handshake --------------------------------------------------------------------------
export const MAGIC = 0x50524650; // bytes 'P','F','R','P'
export const PROTOCOL_VERSION = 1;
export const ROLE_CLIENT = 0;
export const ROLE_PEER = 1; // a store replicating to another
export const ROLE_OPERATOR = 2; // verify and repair tools
const ROLE_MAX = ROLE_OPERATOR;
if (MAGIC !== new DataView(new TextEncoder().encode('PFRP').buffer).getUint32(0, true)) {
  throw new FlashpackError('EINTERNAL', `replication wire: MAGIC ${hex32(MAGIC)} is not 'PFRP' in little-endian bytes`);
}

// ---- opcodes: (n << 2) | direction, as PureFlash --------------------------------------------
export const DIR_NONE = 0;
export const DIR_TO_SERVER = 1;
export const DIR_FROM_SERVER = 2;
export const OP_WRITE = 0x01;
export const OP_READ = 0x02;
export const OP_HEARTBEAT = 0x04;
export const OP_REPLICATE_WRITE = 0x05;
export const OP_RECOVERY_READ = 0x0e;
export const OP_DISCARD = 0x20;
export const OP_REPLICATE_DISCARD = 0x24;
export const OP_FLUSH = 0x28;
export const OP_REPLICATE_FLUSH = 0x2c;
const OP_NAMES: Record<number, string> = {
  [OP_WRITE]: 'WRITE', [OP_READ]: 'READ', [OP_HEARTBEAT]: 'HEARTBEAT', [OP_REPLICATE_WRITE]: 'REPLICATE_WRITE',
  [OP_RECOVERY_READ]: 'RECOVERY_READ', [OP_DISCARD]: 'DISCARD', [OP_REPLICATE_DISCARD]: 'REPLICATE_DISCARD',
  [OP_FLUSH]: 'FLUSH', [OP_REPLICATE_FLUSH]: 'REPLICATE_FLUSH',
};

/** Which way an opcode's data flows: DIR_NONE, DIR_TO_SERVER or DIR_FROM_SERVER (3 is no direction). */
export function dataDirection(op: number): number {
  return op & 3;
}

/** "REPLICATE_WRITE", or "opcode 0x33" for one this protocol does not define. */
export function opcodeName(op: number): string {
  return OP_NAMES[op] ?? `opcode 0x${hex(op, 2)}`;
}

export const FLAG_COMPRESSED = 1 << 0;

// ---- status: NVMe generic codes below 0xC0, PureFlash's from 0xC0, plus flag bits ----------------
export const ST_OK = 0x00;
export const ST_INVALID_OPCODE = 0x01;
export const ST_INVALID_FIELD = 0x02;
export const ST_DATA_XFER_ERROR = 0x04;
export const ST_INTERNAL = 0x06;
export const ST_ABORTED = 0x07;
export const ST_LBA_OUT_OF_RANGE = 0x80;
export const ST_NOT_READY = 0x82;
export const ST_NOT_PRIMARY = 0xc0;
export const ST_NOSPACE = 0xc1;
export const ST_READONLY = 0xc2;
export const ST_CONN_LOST = 0xc3;
export const ST_REP_TO_PRIMARY = 0xc4;
export const ST_NO_RESOURCE = 0xc5;
export const ST_CORRUPT = 0xc6;
/** A stale epoch; always sent with ST_REOPEN. */
export const ST_EPOCH = 0xc7;
/** The write succeeded, but not on every replica. */
export const ST_DEGRADE = 0x2000;
/** Reopen the shard (fetch its new epoch and primary) and resend. */
export const ST_REOPEN = 0x4000;
const ST_FLAG_BITS = ST_DEGRADE | ST_REOPEN;
const ST_NAMES: Record<number, string> = {
  [ST_OK]: 'OK', [ST_INVALID_OPCODE]: 'INVALID_OPCODE', [ST_INVALID_FIELD]: 'INVALID_FIELD',
  [ST_DATA_XFER_ERROR]: 'DATA_XFER_ERROR', [ST_INTERNAL]: 'INTERNAL', [ST_ABORTED]: 'ABORTED',
  [ST_LBA_OUT_OF_RANGE]: 'LBA_OUT_OF_RANGE', [ST_NOT_READY]: 'NOT_READY', [ST_NOT_PRIMARY]: 'NOT_PRIMARY',
  [ST_NOSPACE]: 'NOSPACE', [ST_READONLY]: 'READONLY', [ST_CONN_LOST]: 'CONN_LOST',
  [ST_REP_TO_PRIMARY]: 'REP_TO_PRIMARY', [ST_NO_RESOURCE]: 'NO_RESOURCE', [ST_CORRUPT]: 'CORRUPT', [ST_EPOCH]: 'EPOCH',
};
const ST_ERRORS: Record<number, FlashpackErrorCode> = {
  [ST_NOSPACE]: 'ENOSPC', [ST_READONLY]: 'EROFS', [ST_LBA_OUT_OF_RANGE]: 'EINVAL', [ST_INVALID_FIELD]: 'EINVAL',
  [ST_CORRUPT]: 'ECORRUPT', [ST_CONN_LOST]: 'ENXIO', [ST_INVALID_OPCODE]: 'ENOTSUP', [ST_ABORTED]: 'ECANCELED',
};

/** "NOT_PRIMARY|REOPEN", "OK|DEGRADE", or "0x0099" for a code this protocol does not define. */
export function statusName(status: number): string {
  const code = status & ~ST_FLAG_BITS & 0xffff;
  let s = ST_NAMES[code] ?? `0x${hex(code, 4)}`;
  if (status & ST_DEGRADE) s += '|DEGRADE';
  if (status & ST_REOPEN) s += '|REOPEN';
  return s;
}

/** A local failure as the status that answers it: ENOSPC is NOSPACE, ECORRUPT (stored data failing its checks) CORRUPT, anything else INTERNAL. */
export function statusOf(err: unknown): number {
  const code = err instanceof FlashpackError ? err.code : undefined;
  return code === 'ENOSPC' ? ST_NOSPACE : code === 'ECORRUPT' ? ST_CORRUPT : ST_INTERNAL;
}

/** The FlashpackError for a failed reply: "replicate write to store 3: NOT_PRIMARY|REOPEN (status 0x40c0)"; EIO unless mapped. */
export function statusToError(status: number, what: string): FlashpackError {
  const code = status & ~ST_FLAG_BITS & 0xffff;
  const message = `${what}: ${statusName(status)} (status 0x${hex(status, 4)})`;
  if (code === ST_OK) return new FlashpackError('EINTERNAL', `${message} is not a failure`);
  return new FlashpackError(ST_ERRORS[code] ?? 'EIO', message);
}

// ---- structs ----------------------------------------------------------------------------------
/** A command head; bufAddr, rkey and the reserved u64 are always 0 and not fields. */
export interface Head {
  opcode: number; flags: number; commandId: number; snapSeq: number; shardId: number; epoch: number;
  offset: number; length: number; commandSeq: number; dataBytes: number; dataCrc: number;
}

/** A reply; epoch is epochLo | epochHi << 16. blockId and the reserved bytes are 0. */
export interface Reply {
  status: number; epoch: number; commandId: number; commandSeq: number; dataBytes: number; flags: number; dataCrc: number;
}

/** The magic is written by the encoder and checked by the decoder; so is the version, which must be PROTOCOL_VERSION. */
export interface Handshake {
  version: number; role: number; queueDepth: number; status: number; ioTimeoutMs: number; shardId: number;
}

/** The shardId of a volume's shard: volumeId · 65536 + shardIndex. */
export function makeShardId(volumeId: number, shardIndex: number): number {
  checkInteger('makeShardId: volumeId', volumeId, 0, Math.floor(Number.MAX_SAFE_INTEGER / SHARDS_PER_VOLUME) - 1);
  return volumeId * SHARDS_PER_VOLUME + checkInteger('makeShardId: shardIndex', shardIndex, 0, SHARDS_PER_VOLUME - 1);
}

/** CRC-32 (IEEE, as zlib) of a frame's data: the codec's WASM kernel, synchronous on every runtime. */
export function crc32(bytes: Uint8Array): number {
  return crc32Kernel(bytes);
}

// ---- head -------------------------------------------------------------------------------------
export function encodeHead(h: Head, out?: Uint8Array, at = 0): Uint8Array {
  const b = target('encodeHead', out, at, HEAD_BYTES);
  checkStruct('encodeHead: head', h);
  b[at] = checkInteger('encodeHead: head.opcode', h.opcode, 0, 0xff);
  b[at + 1] = checkInteger('encodeHead: head.flags', h.flags, 0, FLAG_COMPRESSED);
  put16(b, at + 2, u16('encodeHead: head.commandId', h.commandId));
  put32(b, at + 4, u32('encodeHead: head.snapSeq', h.snapSeq));
  put64(b, at + 8, checkIndex('encodeHead: head.shardId', h.shardId));
  b.fill(0, at + 16, at + 28); // bufAddr, rkey
  put32(b, at + 28, u32('encodeHead: head.epoch', h.epoch));
  put64(b, at + 32, checkIndex('encodeHead: head.offset', h.offset));
  put32(b, at + 40, u32('encodeHead: head.length', h.length));
  put32(b, at + 44, u32('encodeHead: head.commandSeq', h.commandSeq));
  put32(b, at + 48, checkInteger('encodeHead: head.dataBytes', h.dataBytes, 0, MAX_DATA_BYTES));
  put32(b, at + 52, u32('encodeHead: head.dataCrc', h.dataCrc));
  b.fill(0, at + 56, at + 64);
  return b;
}

/** The head at buf[at…], or why it is malformed. Opcode semantics are checkRequest's. */
export function decodeHead(buf: Uint8Array, at = 0): Head | string {
  const short = source('head', HEAD_BYTES, buf, at);
  if (short !== null) return short;
  const flags = buf[at + 1];
  if (flags & ~FLAG_COMPRESSED) return `head flags 0x${hex(flags, 2)} has unknown bits`;
  if (get32(buf, at + 12) >= U64_HI_SAFE) return `head shardId ${hex64(buf, at + 8)} is not below 2^53`;
  if (!zeroes(buf, at + 16, at + 28)) return `head bufAddr ${hex64(buf, at + 16)} or rkey ${hex32(get32(buf, at + 24))} is not 0`;
  if (get32(buf, at + 36) >= U64_HI_SAFE) return `head offset ${hex64(buf, at + 32)} is not below 2^53`;
  if (!zeroes(buf, at + 56, at + 64)) return `head reserved bytes 56..63 are ${hex64(buf, at + 56)}, not 0`;
  const dataBytes = get32(buf, at + 48);
  const dataCrc = get32(buf, at + 52);
  const bad = checkData('head', flags, dataBytes, dataCrc);
  if (bad !== null) return bad;
  return {
    opcode: buf[at], flags, commandId: get16(buf, at + 2), snapSeq: get32(buf, at + 4), shardId: get64(buf, at + 8),
    epoch: get32(buf, at + 28), offset: get64(buf, at + 32), length: get32(buf, at + 40), commandSeq: get32(buf, at + 44), dataBytes, dataCrc,
  };
}

/** Why a well-formed head is no command a server should run (answer INVALID_OPCODE / INVALID_FIELD), or null. */
export function checkRequest(h: Head): string | null {
  const name = OP_NAMES[h.opcode];
  if (name === undefined) return `unknown opcode 0x${hex(h.opcode, 2)}`;
  const dir = dataDirection(h.opcode);
  if (dir === DIR_TO_SERVER) {
    if (h.dataBytes === 0) return `${name} carries no data`;
    if (h.flags & FLAG_COMPRESSED) {
      if (h.dataBytes > h.length) return `${name} has ${h.dataBytes} compressed bytes for length ${h.length}`;
    } else if (h.dataBytes !== h.length) return `${name} has ${h.dataBytes} data bytes for length ${h.length}`;
  } else if (h.dataBytes !== 0) return `${name} carries ${h.dataBytes} data bytes but takes none`;
  if (h.opcode === OP_HEARTBEAT || h.opcode === OP_FLUSH || h.opcode === OP_REPLICATE_FLUSH) {
    if (h.offset !== 0 || h.length !== 0) return `${name} has offset ${h.offset} and length ${h.length}, not 0 and 0`;
    return null;
  }
  if (h.length === 0) return `${name} has length 0`;
  if (h.length > MAX_IO_BYTES) return `${name} length ${h.length} exceeds ${MAX_IO_BYTES}`;
  if (h.offset % SECTOR_BYTES !== 0 || h.length % SECTOR_BYTES !== 0) {
    return `${name} offset ${h.offset} or length ${h.length} is not a multiple of ${SECTOR_BYTES}`;
  }
  return null;
}

// ---- reply ------------------------------------------------------------------------------------
export function encodeReply(r: Reply, out?: Uint8Array, at = 0): Uint8Array {
  const b = target('encodeReply', out, at, REPLY_BYTES);
  checkStruct('encodeReply: reply', r);
  const epoch = u32('encodeReply: reply.epoch', r.epoch);
  put16(b, at, u16('encodeReply: reply.status', r.status));
  put16(b, at + 2, epoch & 0xffff);
  put16(b, at + 4, u16('encodeReply: reply.commandId', r.commandId));
  put32(b, at + 6, u32('encodeReply: reply.commandSeq', r.commandSeq));
  put32(b, at + 10, 0); // blockId
  put16(b, at + 14, epoch >>> 16);
  put32(b, at + 16, checkInteger('encodeReply: reply.dataBytes', r.dataBytes, 0, MAX_DATA_BYTES));
  b[at + 20] = checkInteger('encodeReply: reply.flags', r.flags, 0, FLAG_COMPRESSED);
  b.fill(0, at + 21, at + 24);
  put32(b, at + 24, u32('encodeReply: reply.dataCrc', r.dataCrc));
  put32(b, at + 28, 0);
  return b;
}

export function decodeReply(buf: Uint8Array, at = 0): Reply | string {
  const short = source('reply', REPLY_BYTES, buf, at);
  if (short !== null) return short;
  const flags = buf[at + 20];
  if (flags & ~FLAG_COMPRESSED) return `reply flags 0x${hex(flags, 2)} has unknown bits`;
  if (get32(buf, at + 10) !== 0) return `reply blockId ${hex32(get32(buf, at + 10))} is not 0`;
  if (!zeroes(buf, at + 21, at + 24) || get32(buf, at + 28) !== 0) return `reply reserved bytes 21..23 or 28..31 are not 0`;
  const dataBytes = get32(buf, at + 16);
  const dataCrc = get32(buf, at + 24);
  const bad = checkData('reply', flags, dataBytes, dataCrc);
  if (bad !== null) return bad;
  return {
    status: get16(buf, at), epoch: (get16(buf, at + 2) | (get16(buf, at + 14) << 16)) >>> 0, commandId: get16(buf, at + 4),
    commandSeq: get32(buf, at + 6), dataBytes, flags, dataCrc,
  };
}

// ---- handshake -----------------------------------------------------------------------------------
export function encodeHandshake(h: Handshake, out?: Uint8Array, at = 0): Uint8Array {
  const b = target('encodeHandshake', out, at, HANDSHAKE_BYTES);
  checkStruct('encodeHandshake: handshake', h);
  put32(b, at, MAGIC);
  put16(b, at + 4, u16('encodeHandshake: handshake.version', h.version));
  b[at + 6] = checkInteger('encodeHandshake: handshake.role', h.role, 0, ROLE_MAX);
  b[at + 7] = 0;
  put16(b, at + 8, u16('encodeHandshake: handshake.queueDepth', h.queueDepth));
  put16(b, at + 10, u16('encodeHandshake: handshake.status', h.status));
  put32(b, at + 12, u32('encodeHandshake: handshake.ioTimeoutMs', h.ioTimeoutMs));
  put64(b, at + 16, checkIndex('encodeHandshake: handshake.shardId', h.shardId));
  b.fill(0, at + 24, at + 32);
  return b;
}

/** The handshake at buf[at…], or why it is not one of ours (magic, version, role, reserved bytes). */
export function decodeHandshake(buf: Uint8Array, at = 0): Handshake | string {
  const short = source('handshake', HANDSHAKE_BYTES, buf, at);
  if (short !== null) return short;
  const magic = get32(buf, at);
  if (magic !== MAGIC) return `handshake magic ${hex32(magic)} is not ${hex32(MAGIC)} ('PFRP')`;
  const version = get16(buf, at + 4);
  if (version !== PROTOCOL_VERSION) return `handshake version ${version} is not ${PROTOCOL_VERSION}`;
  const role = buf[at + 6];
  if (role > ROLE_MAX) return `handshake role ${role} is unknown`;
  if (buf[at + 7] !== 0 || !zeroes(buf, at + 24, at + 32)) return `handshake reserved byte 7 or bytes 24..31 are not 0`;
  if (get32(buf, at + 20) >= U64_HI_SAFE) return `handshake shardId ${hex64(buf, at + 16)} is not below 2^53`;
  const queueDepth = get16(buf, at + 8);
  const status = get16(buf, at + 10);
  if (status === ST_OK && queueDepth === 0) return `handshake queueDepth 0 with status OK`;
  return { version, role, queueDepth, status, ioTimeoutMs: get32(buf, at + 12), shardId: get64(buf, at + 16) };
}

// ---- frames ---------------------------------------------------------------------------------------
/**
 * A head (dataBytes and dataCrc filled in from `data`, in place) and its data,
 * ready to write in order: [head] or [head, data]. `data` is not copied.
 */
export function encodeFrame(head: Head, data?: Uint8Array): Uint8Array[] {
  checkStruct('encodeFrame: head', head);
  const n = dataLength('encodeFrame: data', data);
  head.dataBytes = n;
  head.dataCrc = n === 0 ? 0 : crc32(data!);
  return n === 0 ? [encodeHead(head)] : [encodeHead(head), data!];
}

/** encodeFrame for a reply: [reply] or [reply, data]. */
export function encodeReplyFrame(reply: Reply, data?: Uint8Array): Uint8Array[] {
  checkStruct('encodeReplyFrame: reply', reply);
  const n = dataLength('encodeReplyFrame: data', data);
  reply.dataBytes = n;
  reply.dataCrc = n === 0 ? 0 : crc32(data!);
  return n === 0 ? [encodeReply(reply)] : [encodeReply(reply), data!];
}

export type FrameKind = 'request' | 'reply';
/** A whole frame; `data` (null when dataBytes is 0) is the reader's copy, the caller's to keep. */
export interface Frame<H = Head> {
  head: H;
  data: Uint8Array | null;
}
export type FrameOf<K extends FrameKind> = Frame<K extends 'reply' ? Reply : Head>;

/**
 * Cuts a byte stream into frames, checking each frame's data CRC. Use: push()
 * a chunk, then next() until it returns null (more bytes needed) or a reason
 * (the stream is malformed; the reader stays poisoned and drops later pushes).
 * Frames inside a chunk are parsed in place (so leave a chunk untouched until
 * next() returns null; pushing before then is EINVAL); only a frame split
 * across pushes is gathered into a buffer of at most one frame, so the reader
 * never holds more than one frame plus the last chunk (`buffered`).
 */
export class FrameReader<K extends FrameKind = 'request'> {
  readonly kind: K;
  private readonly headBytes: number;
  private readonly decode: (b: Uint8Array, at: number) => Head | Reply | string;
  /** The start of a frame split across pushes, buf[0, len), and its head once complete. */
  private buf: Uint8Array = EMPTY;
  private len = 0;
  private pending: Head | Reply | null = null;
  /** The last chunk pushed; chunk[pos…] is not parsed yet. */
  private chunk: Uint8Array = EMPTY;
  private pos = 0;
  /** Stream offset of the next frame's first byte (for reasons). */
  private frameAt = 0;
  private reason: string | null = null;

  constructor(options?: { kind?: K }) {
    const kind = (options?.kind ?? 'request') as K;
    if (kind !== 'request' && kind !== 'reply') throw badArgument('FrameReader: options.kind', "'request' or 'reply'", kind);
    this.kind = kind;
    this.headBytes = kind === 'reply' ? REPLY_BYTES : HEAD_BYTES;
    this.decode = kind === 'reply' ? decodeReply : decodeHead;
  }

  /** Bytes held: a partial frame plus the unparsed rest of the last chunk. */
  get buffered(): number {
    return this.len + this.chunk.length - this.pos;
  }

  push(chunk: Uint8Array): void {
    if (!(chunk instanceof Uint8Array)) throw badArgument('FrameReader.push: chunk', 'a Uint8Array', chunk);
    if (this.reason !== null) return;
    if (this.pos < this.chunk.length) {
      throw new FlashpackError('EINVAL', `FrameReader.push: ${this.chunk.length - this.pos} bytes of the last chunk are unparsed; call next() until it returns null first`);
    }
    this.chunk = chunk;
    this.pos = 0;
  }

  next(): FrameOf<K> | null | string {
    if (this.reason !== null) return this.reason;
    return (this.len === 0 ? this.fromChunk() : this.fromSplit()) as FrameOf<K> | null | string;
  }

  /** The common case: the next frame starts in the chunk, parsed where it lies. */
  private fromChunk(): Frame<Head | Reply> | null | string {
    const c = this.chunk;
    const at = this.pos;
    const avail = c.length - at;
    if (avail < this.headBytes) return this.stash(this.headBytes);
    const head = this.decode(c, at);
    if (typeof head === 'string') return this.poison(head);
    const total = this.headBytes + head.dataBytes;
    if (avail < total) {
      this.pending = head;
      return this.stash(total);
    }
    this.pos = at + total;
    if (this.pos === c.length) this.dropChunk();
    return this.finish(head, c, at + this.headBytes);
  }

  /** A frame split across pushes, gathered in buf. */
  private fromSplit(): Frame<Head | Reply> | null | string {
    if (this.pending === null) {
      this.take(this.headBytes);
      if (this.len < this.headBytes) return null;
      const head = this.decode(this.buf, 0);
      if (typeof head === 'string') return this.poison(head);
      this.pending = head;
    }
    const head = this.pending;
    const total = this.headBytes + head.dataBytes;
    this.take(total);
    if (this.len < total) return null;
    this.pending = null;
    this.len = 0;
    return this.finish(head, this.buf, this.headBytes);
  }

  private finish(head: Head | Reply, src: Uint8Array, dataAt: number): Frame<Head | Reply> | string {
    const n = head.dataBytes;
    if (n === 0) {
      this.frameAt += this.headBytes;
      return { head, data: null };
    }
    const data = src.slice(dataAt, dataAt + n);
    if (data.length !== n) throw new FlashpackError('EINTERNAL', `FrameReader: a frame's data is ${data.length} bytes, its head says ${n}`);
    const crc = crc32(data);
    if (crc !== head.dataCrc) return this.poison(`data CRC ${hex32(crc)} of ${n} bytes does not match the ${this.kind}'s dataCrc ${hex32(head.dataCrc)}`);
    this.frameAt += this.headBytes + n;
    return { head, data };
  }

  /** Keeps the chunk's unparsed tail (less than one frame of `frameBytes`) in buf; more bytes needed. */
  private stash(frameBytes: number): null {
    const n = this.chunk.length - this.pos;
    if (n > 0) {
      this.grow(frameBytes);
      this.buf.set(this.chunk.subarray(this.pos), 0);
      this.len = n;
    }
    this.dropChunk();
    return null;
  }

  /** Moves bytes from the chunk into buf until it holds `upTo` bytes or the chunk is used up. */
  private take(upTo: number): void {
    this.grow(upTo);
    const n = Math.min(upTo - this.len, this.chunk.length - this.pos);
    if (n <= 0) return;
    this.buf.set(this.chunk.subarray(this.pos, this.pos + n), this.len);
    this.len += n;
    this.pos += n;
    if (this.pos === this.chunk.length) this.dropChunk();
  }

  private grow(bytes: number): void {
    if (this.buf.length >= bytes) return;
    if (bytes > FRAME_BYTES_MAX) throw new FlashpackError('EINTERNAL', `FrameReader: a frame of ${bytes} bytes passed the decoder's bound ${FRAME_BYTES_MAX}`);
    const next = new Uint8Array(Math.min(FRAME_BYTES_MAX, Math.max(bytes, this.buf.length * 2, 4096)));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private dropChunk(): void {
    this.chunk = EMPTY;
    this.pos = 0;
  }

  private poison(why: string): string {
    this.reason = `frame at stream byte ${this.frameAt}: ${why}`;
    this.buf = EMPTY;
    this.len = 0;
    this.pending = null;
    this.dropChunk();
    return this.reason;
  }
}

// ---- helpers ------------------------------------------------------------------------------------

function hex(v: number, digits: number): string { return v.toString(16).padStart(digits, '0'); }

function hex64(b: Uint8Array, at: number): string { return `0x${hex(get32(b, at + 4), 8)}${hex(get32(b, at), 8)}`; }

function u16(what: string, v: number): number { return checkInteger(what, v, 0, 0xffff); }

function u32(what: string, v: number): number { return checkInteger(what, v, 0, 0xffffffff); }

function checkStruct(what: string, v: unknown): void {
  if (v === null || typeof v !== 'object') throw badArgument(what, 'an object', v);
}

/** The buffer an encoder writes into: `out` with room at `at`, or a new one. */
function target(what: string, out: Uint8Array | undefined, at: number, bytes: number): Uint8Array {
  if (out === undefined) {
    if (at !== 0) throw badArgument(`${what}: at`, '0 without an out buffer', at);
    return new Uint8Array(bytes);
  }
  if (!(out instanceof Uint8Array)) throw badArgument(`${what}: out`, 'a Uint8Array', out);
  checkInteger(`${what}: at`, at, 0, Math.max(0, out.length - bytes));
  if (out.length < bytes) throw badArgument(`${what}: out`, `at least ${bytes} bytes`, out);
  return out;
}

/** Why buf[at…] cannot hold a `what` of `bytes` bytes, or null. A wrong type or index is the caller's bug: EINVAL. */
function source(what: string, bytes: number, buf: Uint8Array, at: number): string | null {
  if (!(buf instanceof Uint8Array)) throw badArgument(`decode ${what}: buf`, 'a Uint8Array', buf);
  checkIndex(`decode ${what}: at`, at);
  const have = buf.length - at;
  return have < bytes ? `a ${what} is ${bytes} bytes, only ${Math.max(0, have)} given` : null;
}

function checkData(what: string, flags: number, dataBytes: number, dataCrc: number): string | null {
  if (dataBytes > MAX_DATA_BYTES) return `${what} dataBytes ${dataBytes} exceeds ${MAX_DATA_BYTES}`;
  if (dataBytes === 0 && dataCrc !== 0) return `${what} dataCrc ${hex32(dataCrc)} with no data`;
  if (dataBytes === 0 && flags & FLAG_COMPRESSED) return `${what} flag COMPRESSED with no data`;
  return null;
}

function dataLength(what: string, data: Uint8Array | undefined): number {
  if (data === undefined) return 0;
  if (!(data instanceof Uint8Array)) throw badArgument(what, 'a Uint8Array', data);
  if (data.length > MAX_DATA_BYTES) throw badArgument(what, `at most ${MAX_DATA_BYTES} bytes`, data);
  return data.length;
}

function zeroes(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}

function put16(b: Uint8Array, at: number, v: number): void { b[at] = v; b[at + 1] = v >>> 8; }

function put32(b: Uint8Array, at: number, v: number): void { b[at] = v; b[at + 1] = v >>> 8; b[at + 2] = v >>> 16; b[at + 3] = v >>> 24; }

/** A safe integer as a u64: ToUint32 keeps the low word exactly for values below 2^53. */
function put64(b: Uint8Array, at: number, v: number): void {
  put32(b, at, v >>> 0);
  put32(b, at + 4, Math.floor(v / 2 ** 32));
}

function get16(b: Uint8Array, at: number): number { return b[at] | (b[at + 1] << 8); }

function get32(b: Uint8Array, at: number): number { return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0; }

/** A u64 the decoder already checked is below 2^53. */
function get64(b: Uint8Array, at: number): number {
  return get32(b, at + 4) * 2 ** 32 + get32(b, at);
}
