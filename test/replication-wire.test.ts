/**
 * The replication wire format byte for byte: every struct against a buffer
 * built by hand from the documented offsets (so the layout cannot drift),
 * every malformed field refused with a reason, the request checks, status
 * names and errors, and FrameReader on any chunking. Then a fuzz of at least
 * 200,000 valid, bit-flipped, truncated and random frames through FrameReader:
 * it never throws, returns only frames whose data matches their head, and
 * holds at most one frame plus the last chunk. The seed is in the test's
 * name; REPL_WIRE_SEED=<seed> replays it. Imports the TypeScript sources.
 */
import { describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import { FlashpackError } from '../src/errors.js';
import {
  FRAME_BYTES_MAX, FLAG_COMPRESSED, FrameReader, HANDSHAKE_BYTES, HEAD_BYTES, MAGIC, MAX_DATA_BYTES, MAX_IO_BYTES, OP_DISCARD, OP_FLUSH,
  OP_HEARTBEAT, OP_READ, OP_RECOVERY_READ, OP_REPLICATE_DISCARD, OP_REPLICATE_FLUSH, OP_REPLICATE_WRITE, OP_WRITE, PROTOCOL_VERSION, REPLY_BYTES,
  ST_CONN_LOST, ST_CORRUPT, ST_DEGRADE, ST_EPOCH, ST_INVALID_FIELD, ST_LBA_OUT_OF_RANGE, ST_NOSPACE, ST_NOT_PRIMARY, ST_OK, ST_READONLY, ST_REOPEN,
  SNAP_SEQ_HEAD, checkRequest, crc32, dataDirection, decodeHandshake, decodeHead, decodeReply, encodeFrame, encodeHandshake, encodeHead, encodeReply,
  encodeReplyFrame, makeShardId, statusName, statusToError, type Frame, type Handshake, type Head, type Reply,
} from '../src/replication/wire.js';
import { concatBytes, equalBytes, prng, randomBytes } from './helpers/data.js';

const KiB = 1024;
const SEED = process.env.REPL_WIRE_SEED !== undefined ? Number(process.env.REPL_WIRE_SEED) >>> 0 : (Date.now() ^ (process.pid << 12)) >>> 0;
const FUZZ_FRAMES = 200_000;

const HEAD: Head = {
  opcode: OP_REPLICATE_WRITE, flags: FLAG_COMPRESSED, commandId: 0xbeef, snapSeq: SNAP_SEQ_HEAD, shardId: makeShardId(7, 3), epoch: 0x12345678,
  offset: 2 ** 40 + 4096, length: 8192, commandSeq: 0xcafebabe, dataBytes: 1000, dataCrc: 0xdeadbeef,
};
const REPLY: Reply = { status: ST_NOT_PRIMARY | ST_REOPEN, epoch: 0x12345678, commandId: 0xbeef, commandSeq: 0xcafebabe, dataBytes: 4096, flags: 0, dataCrc: 0x0badf00d };
const HANDSHAKE: Handshake = { version: PROTOCOL_VERSION, role: 1, queueDepth: 128, status: 0, ioTimeoutMs: 30_000, shardId: 2 ** 53 - 1 };

/** The head above, laid out from the documented offsets with DataView, not through the encoder. */
function handHead(): Uint8Array {
  const v = new DataView(new ArrayBuffer(64));
  v.setUint8(0, 0x05);
  v.setUint8(1, 0x01);
  v.setUint16(2, 0xbeef, true);
  v.setUint32(4, 0xffffffff, true);
  v.setBigUint64(8, 7n * 65536n + 3n, true);
  v.setUint32(28, 0x12345678, true);
  v.setBigUint64(32, 2n ** 40n + 4096n, true);
  v.setUint32(40, 8192, true);
  v.setUint32(44, 0xcafebabe, true);
  v.setUint32(48, 1000, true);
  v.setUint32(52, 0xdeadbeef, true);
  return new Uint8Array(v.buffer);
}

function handReply(): Uint8Array {
  const v = new DataView(new ArrayBuffer(32));
  v.setUint16(0, 0x40c0, true);
  v.setUint16(2, 0x5678, true);
  v.setUint16(4, 0xbeef, true);
  v.setUint32(6, 0xcafebabe, true);
  v.setUint16(14, 0x1234, true);
  v.setUint32(16, 4096, true);
  v.setUint32(24, 0x0badf00d, true);
  return new Uint8Array(v.buffer);
}

function handHandshake(): Uint8Array {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  b.set([0x50, 0x46, 0x52, 0x50], 0); // 'PFRP'
  v.setUint16(4, 1, true);
  v.setUint8(6, 1);
  v.setUint16(8, 128, true);
  v.setUint32(12, 30_000, true);
  v.setBigUint64(16, 2n ** 53n - 1n, true);
  return b;
}

function mutated(b: Uint8Array, f: (v: DataView) => void): Uint8Array {
  const c = b.slice();
  f(new DataView(c.buffer));
  return c;
}

/** Same head fields (whatever the key order) and the same data bytes. */
function sameFrame(a: Frame<Head | Reply>, b: Frame<Head | Reply>): boolean {
  const ha = a.head as unknown as Record<string, number>;
  const hb = b.head as unknown as Record<string, number>;
  const keys = Object.keys(hb);
  if (Object.keys(ha).length !== keys.length || keys.some((k) => ha[k] !== hb[k])) return false;
  return a.data === null ? b.data === null : b.data !== null && equalBytes(a.data, b.data);
}

describe('layout', () => {
  it('sizes: head 64, reply 32, handshake 32; magic is "PFRP" in little-endian bytes', () => {
    expect([HEAD_BYTES, REPLY_BYTES, HANDSHAKE_BYTES]).toEqual([64, 32, 32]);
    expect(MAGIC).toBe(0x50524650);
    expect(new TextDecoder().decode(encodeHandshake(HANDSHAKE).subarray(0, 4))).toBe('PFRP');
    expect(FRAME_BYTES_MAX).toBe(64 + MAX_DATA_BYTES);
    expect(MAX_DATA_BYTES).toBe(MAX_IO_BYTES);
    expect(MAX_IO_BYTES).toBe(1 << 20);
  });

  it('a head encodes every field at its documented offset and decodes back', () => {
    expect(encodeHead(HEAD)).toEqual(handHead());
    expect(decodeHead(handHead())).toEqual(HEAD);
  });

  it('a reply splits the epoch into @2 (low) and @14 (high) and decodes back', () => {
    expect(encodeReply(REPLY)).toEqual(handReply());
    expect(decodeReply(handReply())).toEqual(REPLY);
  });

  it('a handshake encodes every field at its documented offset and decodes back', () => {
    expect(encodeHandshake(HANDSHAKE)).toEqual(handHandshake());
    expect(decodeHandshake(handHandshake())).toEqual(HANDSHAKE);
  });

  it('encoders write into `out` at `at`, zeroing reserved bytes left from earlier use', () => {
    const out = new Uint8Array(200).fill(0xff);
    expect(encodeHead(HEAD, out, 10)).toBe(out);
    encodeReply(REPLY, out, 80);
    encodeHandshake(HANDSHAKE, out, 120);
    expect(out.subarray(10, 74)).toEqual(handHead());
    expect(out.subarray(80, 112)).toEqual(handReply());
    expect(out.subarray(120, 152)).toEqual(handHandshake());
    expect(out[9]).toBe(0xff);
    expect(out[74]).toBe(0xff);
    expect(decodeHead(out, 10)).toEqual(HEAD);
    expect(decodeReply(out, 80)).toEqual(REPLY);
    expect(decodeHandshake(out, 120)).toEqual(HANDSHAKE);
  });

  it('64-bit fields carry values up to 2^53-1; u32 fields up to 0xffffffff', () => {
    const h = { ...HEAD, shardId: 2 ** 53 - 1, offset: 2 ** 53 - 1, epoch: 0xffffffff, commandSeq: 0xffffffff, length: 0xffffffff };
    expect(decodeHead(encodeHead(h))).toEqual(h);
    const r = { ...REPLY, epoch: 0xffffffff, status: 0xffff };
    expect(decodeReply(encodeReply(r))).toEqual(r);
  });

  it('makeShardId is volumeId * 65536 + shardIndex', () => {
    expect(makeShardId(0, 0)).toBe(0);
    expect(makeShardId(5, 65535)).toBe(5 * 65536 + 65535);
    expect(() => makeShardId(1, 65536)).toThrowError(/shardIndex/);
  });
});

describe('malformed structs give a reason', () => {
  const heads: [string, (v: DataView) => void, RegExp][] = [
    ['unknown flag bit', (v) => v.setUint8(1, 0x02), /flags 0x02 has unknown bits/],
    ['shardId 2^53', (v) => v.setBigUint64(8, 2n ** 53n, true), /shardId 0x0020000000000000 is not below 2\^53/],
    ['bufAddr set', (v) => v.setUint8(16, 1), /bufAddr .* is not 0/],
    ['rkey set', (v) => v.setUint8(27, 1), /rkey 0x01000000 is not 0/],
    ['offset 2^64-1', (v) => v.setBigUint64(32, 2n ** 64n - 1n, true), /offset 0xffffffffffffffff is not below 2\^53/],
    ['reserved u64 set', (v) => v.setUint8(63, 0x80), /reserved bytes 56..63 are 0x8000000000000000/],
    ['dataBytes over the bound', (v) => v.setUint32(48, MAX_DATA_BYTES + 1, true), /dataBytes 1048577 exceeds 1048576/],
    ['dataCrc without data', (v) => (v.setUint8(1, 0), v.setUint32(48, 0, true)), /dataCrc 0xdeadbeef with no data/],
    ['COMPRESSED without data', (v) => (v.setUint32(48, 0, true), v.setUint32(52, 0, true)), /COMPRESSED with no data/],
  ];
  for (const [name, f, why] of heads) it(`head: ${name}`, () => expect(decodeHead(mutated(handHead(), f))).toMatch(why));
  it('head: fewer than 64 bytes', () => expect(decodeHead(handHead(), 1)).toBe('a head is 64 bytes, only 63 given'));

  const replies: [string, (v: DataView) => void, RegExp][] = [
    ['unknown flag bit', (v) => v.setUint8(20, 0x80), /reply flags 0x80 has unknown bits/],
    ['blockId set', (v) => v.setUint32(10, 9, true), /blockId 0x00000009 is not 0/],
    ['reserved byte 22', (v) => v.setUint8(22, 1), /reserved bytes/],
    ['reserved u32 @28', (v) => v.setUint8(31, 1), /reserved bytes/],
    ['dataBytes over the bound', (v) => v.setUint32(16, 2 ** 32 - 1, true), /dataBytes 4294967295 exceeds/],
    ['dataCrc without data', (v) => v.setUint32(16, 0, true), /dataCrc 0x0badf00d with no data/],
  ];
  for (const [name, f, why] of replies) it(`reply: ${name}`, () => expect(decodeReply(mutated(handReply(), f))).toMatch(why));
  it('reply: truncated', () => expect(decodeReply(new Uint8Array(31))).toMatch(/reply is 32 bytes, only 31/));

  const handshakes: [string, (v: DataView) => void, RegExp][] = [
    ['wrong magic', (v) => v.setUint8(0, 0x4e), /magic 0x5052464e is not 0x50524650/],
    ['other version', (v) => v.setUint16(4, 2, true), /version 2 is not 1/],
    ['unknown role', (v) => v.setUint8(6, 3), /role 3 is unknown/],
    ['reserved byte 7', (v) => v.setUint8(7, 1), /reserved/],
    ['reserved u64 @24', (v) => v.setUint8(24, 1), /reserved/],
    ['shardId 2^53', (v) => v.setBigUint64(16, 2n ** 53n, true), /shardId .* not below 2\^53/],
    ['queueDepth 0 with OK', (v) => v.setUint16(8, 0, true), /queueDepth 0/],
  ];
  for (const [name, f, why] of handshakes) it(`handshake: ${name}`, () => expect(decodeHandshake(mutated(handHandshake(), f))).toMatch(why));
  it('handshake: a refusal may carry queueDepth 0', () => {
    expect(decodeHandshake(encodeHandshake({ ...HANDSHAKE, queueDepth: 0, status: ST_NOT_PRIMARY }))).toMatchObject({ queueDepth: 0 });
  });
});

describe('encoders refuse out-of-range fields with EINVAL naming them', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['opcode 256', () => encodeHead({ ...HEAD, opcode: 256 }), /head\.opcode .*the number 256/],
    ['flags 2', () => encodeHead({ ...HEAD, flags: 2 }), /head\.flags/],
    ['shardId 2^53', () => encodeHead({ ...HEAD, shardId: 2 ** 53 }), /head\.shardId/],
    ['offset -1', () => encodeHead({ ...HEAD, offset: -1 }), /head\.offset/],
    ['epoch 1.5', () => encodeHead({ ...HEAD, epoch: 1.5 }), /head\.epoch .*1\.5/],
    ['dataBytes over the bound', () => encodeHead({ ...HEAD, dataBytes: MAX_DATA_BYTES + 1 }), /head\.dataBytes/],
    ['length as a string', () => encodeHead({ ...HEAD, length: '4096' as unknown as number }), /head\.length .*the string "4096"/],
    ['reply epoch 2^32', () => encodeReply({ ...REPLY, epoch: 2 ** 32 }), /reply\.epoch/],
    ['handshake role 3', () => encodeHandshake({ ...HANDSHAKE, role: 3 }), /handshake\.role/],
    ['an out buffer too small', () => encodeHead(HEAD, new Uint8Array(70), 7), /encodeHead: at/],
    ['no head at all', () => encodeHead(null as unknown as Head), /encodeHead: head must be an object/],
    ['frame data over the bound', () => encodeFrame({ ...HEAD }, new Uint8Array(MAX_DATA_BYTES + 1)), /encodeFrame: data/],
  ];
  for (const [name, f, why] of cases) {
    it(name, () => {
      const err = (() => { try { f(); } catch (e) { return e; } })() as FlashpackError;
      expect(err).toBeInstanceOf(FlashpackError);
      expect(err.code).toBe('EINVAL');
      expect(err.message).toMatch(why);
    });
  }
});

describe('opcodes, requests and status', () => {
  it('opcodes are (n << 2) | direction, PureFlash values kept', () => {
    expect([OP_WRITE, OP_READ, OP_HEARTBEAT, OP_REPLICATE_WRITE, OP_RECOVERY_READ]).toEqual([0x01, 0x02, 0x04, 0x05, 0x0e]);
    expect([OP_DISCARD, OP_REPLICATE_DISCARD, OP_FLUSH, OP_REPLICATE_FLUSH]).toEqual([0x20, 0x24, 0x28, 0x2c]);
    expect([OP_WRITE, OP_REPLICATE_WRITE].map(dataDirection)).toEqual([1, 1]);
    expect([OP_READ, OP_RECOVERY_READ].map(dataDirection)).toEqual([2, 2]);
    expect([OP_HEARTBEAT, OP_DISCARD, OP_REPLICATE_DISCARD, OP_FLUSH, OP_REPLICATE_FLUSH].map(dataDirection)).toEqual([0, 0, 0, 0, 0]);
  });

  const req = (h: Partial<Head>): Head => ({ ...HEAD, flags: 0, offset: 8192, length: 4096, dataBytes: 0, dataCrc: 0, ...h });
  it('accepts well-formed commands of every opcode', () => {
    const ok = [
      req({ opcode: OP_WRITE, dataBytes: 4096 }), req({ opcode: OP_REPLICATE_WRITE, flags: FLAG_COMPRESSED, dataBytes: 900 }),
      req({ opcode: OP_READ }), req({ opcode: OP_RECOVERY_READ, length: MAX_IO_BYTES }), req({ opcode: OP_DISCARD, length: MAX_IO_BYTES }),
      req({ opcode: OP_REPLICATE_DISCARD }), req({ opcode: OP_HEARTBEAT, offset: 0, length: 0 }), req({ opcode: OP_FLUSH, offset: 0, length: 0 }),
      req({ opcode: OP_REPLICATE_FLUSH, offset: 0, length: 0 }),
    ];
    for (const h of ok) expect(checkRequest(h), `opcode ${h.opcode}`).toBeNull();
  });

  const bad: [string, Head, RegExp][] = [
    ['unknown opcode', req({ opcode: 0x33 }), /unknown opcode 0x33/],
    ['WRITE without data', req({ opcode: OP_WRITE }), /WRITE carries no data/],
    ['WRITE whose data is not its length', req({ opcode: OP_WRITE, dataBytes: 512 }), /512 data bytes for length 4096/],
    ['compressed WRITE larger than its length', req({ opcode: OP_WRITE, flags: FLAG_COMPRESSED, dataBytes: 4097 }), /4097 compressed bytes for length 4096/],
    ['READ carrying data', req({ opcode: OP_READ, dataBytes: 4096 }), /READ carries 4096 data bytes but takes none/],
    ['HEARTBEAT carrying data', req({ opcode: OP_HEARTBEAT, offset: 0, length: 0, dataBytes: 8 }), /takes none/],
    ['FLUSH with an offset', req({ opcode: OP_FLUSH, offset: 512, length: 0 }), /FLUSH has offset 512 and length 0, not 0 and 0/],
    ['HEARTBEAT with a length', req({ opcode: OP_HEARTBEAT, offset: 0, length: 512 }), /not 0 and 0/],
    ['READ of length 0', req({ opcode: OP_READ, length: 0 }), /READ has length 0/],
    ['DISCARD over MAX_IO_BYTES', req({ opcode: OP_DISCARD, length: 2 * MAX_IO_BYTES }), /length 2097152 exceeds 1048576/],
    ['READ at an unaligned offset', req({ opcode: OP_READ, offset: 100 }), /offset 100 or length 4096 is not a multiple of 512/],
    ['WRITE of an unaligned length', req({ opcode: OP_WRITE, length: 1000, dataBytes: 1000 }), /not a multiple of 512/],
  ];
  for (const [name, h, why] of bad) it(`refuses ${name}`, () => expect(checkRequest(h)).toMatch(why));

  it('statusName names the code and its flags', () => {
    expect(statusName(ST_OK)).toBe('OK');
    expect(statusName(ST_NOT_PRIMARY | ST_REOPEN)).toBe('NOT_PRIMARY|REOPEN');
    expect(statusName(ST_EPOCH | ST_REOPEN)).toBe('EPOCH|REOPEN');
    expect(statusName(ST_OK | ST_DEGRADE)).toBe('OK|DEGRADE');
    expect(statusName(0x99)).toBe('0x0099');
  });

  it('statusToError maps codes to FlashpackError codes and names the status', () => {
    const code = (s: number) => statusToError(s, 'write').code;
    expect(code(ST_NOSPACE)).toBe('ENOSPC');
    expect(code(ST_READONLY)).toBe('EROFS');
    expect(code(ST_LBA_OUT_OF_RANGE)).toBe('EINVAL');
    expect(code(ST_INVALID_FIELD)).toBe('EINVAL');
    expect(code(ST_CORRUPT)).toBe('ECORRUPT');
    expect(code(ST_CONN_LOST)).toBe('ENXIO');
    expect(code(ST_NOT_PRIMARY | ST_REOPEN)).toBe('EIO');
    expect(code(0x99)).toBe('EIO');
    expect(statusToError(ST_EPOCH | ST_REOPEN, 'replicate write to store 3').message).toBe('replicate write to store 3: EPOCH|REOPEN (status 0x40c7)');
    expect(statusToError(ST_OK, 'x')).toBeInstanceOf(FlashpackError);
  });
});

describe('frames', () => {
  it('crc32 is zlib\'s CRC-32', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const d = new Uint8Array(5000).map((_, i) => (i * 31) & 0xff);
    if (typeof zlib.crc32 === 'function') expect(crc32(d)).toBe(zlib.crc32(d));
  });

  it('encodeFrame fills dataBytes and dataCrc and returns [head, data] or [head]', () => {
    const data = new Uint8Array(4096).fill(7);
    const h = { ...HEAD, flags: 0 };
    const parts = encodeFrame(h, data);
    expect(parts.length).toBe(2);
    expect(parts[1]).toBe(data);
    expect(h.dataBytes).toBe(4096);
    expect(h.dataCrc).toBe(crc32(data));
    expect(decodeHead(parts[0])).toEqual(h);
    const none = { ...HEAD, flags: 0, opcode: OP_HEARTBEAT };
    expect(encodeFrame(none).length).toBe(1);
    expect([none.dataBytes, none.dataCrc]).toEqual([0, 0]);
    const r = { ...REPLY };
    expect(decodeReply(encodeReplyFrame(r, data)[0])).toEqual({ ...REPLY, dataCrc: crc32(data) });
  });

  /** A stream of n frames with data of 0 … 64 KiB (and one of MAX_DATA_BYTES), with their heads and data. */
  function stream(kind: 'request' | 'reply', n: number, rand: () => number): { bytes: Uint8Array; frames: Frame<Head | Reply>[] } {
    const parts: Uint8Array[] = [];
    const frames: Frame<Head | Reply>[] = [];
    for (let i = 0; i < n; i++) {
      const size = i === 3 ? MAX_DATA_BYTES : rand() < 0.3 ? 0 : Math.floor(rand() * (rand() < 0.1 ? 64 * KiB : 4 * KiB)) + 1;
      const data = size === 0 ? null : randomBytes(size, rand);
      const head = kind === 'request' ? { ...HEAD, flags: 0, commandId: i } : { ...REPLY, commandId: i };
      parts.push(...(kind === 'request' ? encodeFrame(head as Head, data ?? undefined) : encodeReplyFrame(head as Reply, data ?? undefined)));
      frames.push({ head, data });
    }
    return { bytes: concatBytes(parts), frames };
  }

  function expectFrames(got: (Frame<Head | Reply> | string)[], want: Frame<Head | Reply>[]): void {
    expect(got.length).toBe(want.length);
    got.forEach((f, i) => expect(typeof f !== 'string' && sameFrame(f, want[i]), `frame ${i}: ${typeof f === 'string' ? f : 'differs'}`).toBe(true));
  }

  function readAll(kind: 'request' | 'reply', bytes: Uint8Array, chunk: () => number): (Frame<Head | Reply> | string)[] {
    const reader = new FrameReader({ kind });
    const out: (Frame<Head | Reply> | string)[] = [];
    for (let at = 0; at < bytes.length;) {
      const n = Math.min(chunk(), bytes.length - at);
      reader.push(bytes.subarray(at, at + n));
      at += n;
      for (let f = reader.next(); f !== null; f = reader.next()) {
        out.push(f);
        if (typeof f === 'string') return out;
      }
    }
    expect(reader.buffered).toBe(0);
    return out;
  }

  for (const kind of ['request', 'reply'] as const) {
    it(`FrameReader (${kind === 'reply' ? 'replies' : 'requests'}) gives the same frames for chunks of 1 byte, random sizes, and the whole stream`, () => {
      const rand = prng(SEED);
      const s = stream(kind, 12, rand);
      const small = stream(kind, 3, rand); // 1-byte chunks over 1 MiB would be slow; this stream has no big frame
      expectFrames(readAll(kind, small.bytes, () => 1), small.frames);
      for (const max of [7, 100, 5000, 70_000, 2 << 20]) expectFrames(readAll(kind, s.bytes, () => 1 + Math.floor(rand() * max)), s.frames);
      expectFrames(readAll(kind, s.bytes, () => s.bytes.length), s.frames);
    });
  }

  it('a data CRC mismatch poisons the reader, naming the frame\'s stream offset', () => {
    const a = encodeFrame({ ...HEAD, flags: 0 }, new Uint8Array(100).fill(1));
    const b = encodeFrame({ ...HEAD, flags: 0 }, new Uint8Array(100).fill(2));
    const bytes = concatBytes([...a, ...b]);
    bytes[164 + 64 + 50] ^= 0x10;
    const reader = new FrameReader();
    reader.push(bytes);
    expect(reader.next()).toMatchObject({ head: { dataBytes: 100 } });
    const why = reader.next();
    expect(why).toMatch(/^frame at stream byte 164: data CRC 0x[0-9a-f]{8} of 100 bytes does not match the request's dataCrc/);
    expect(reader.next()).toBe(why);
    expect(reader.buffered).toBe(0);
    reader.push(concatBytes(a));
    expect(reader.next()).toBe(why);
    expect(reader.buffered).toBe(0);
  });

  it('a malformed head poisons the reader; push before draining is EINVAL; data is the reader\'s copy', () => {
    const reader = new FrameReader();
    const chunk = concatBytes([...encodeFrame({ ...HEAD, flags: 0 }, new Uint8Array(8).fill(9)), mutated(handHead(), (v) => v.setUint8(1, 4))]);
    reader.push(chunk);
    expect(() => reader.push(new Uint8Array(1))).toThrowError(/call next\(\) until it returns null/);
    const f = reader.next() as Frame;
    chunk.fill(0, 0, 72);
    expect(f.data).toEqual(new Uint8Array(8).fill(9));
    expect(reader.next()).toBe('frame at stream byte 72: head flags 0x04 has unknown bits');
  });
});

describe(`replication wire fuzz, seed ${SEED} (replay: REPL_WIRE_SEED=${SEED})`, () => {
  it(`${FUZZ_FRAMES}+ valid, bit-flipped, truncated and random frames: FrameReader never throws, returns only consistent frames, stays bounded`, () => {
    const rand = prng(SEED);
    const int = (n: number) => Math.floor(rand() * n);
    const pool = new Uint8Array(MAX_DATA_BYTES + 64 * KiB).map(() => (rand() * 256) | 0);
    const failures: string[] = [];
    const started = performance.now();
    let frames = 0;
    let cases = 0;
    while (frames < FUZZ_FRAMES && failures.length < 10) {
      cases++;
      const kind = rand() < 0.25 ? 'reply' : 'request';
      const headBytes = kind === 'reply' ? REPLY_BYTES : HEAD_BYTES;
      const parts: Uint8Array[] = [];
      const sent: Frame<Head | Reply>[] = [];
      const ends: number[] = [];
      const count = 1 + int(8);
      for (let i = 0, end = 0; i < count; i++) {
        const r = rand();
        const size = r < 0.3 ? 0 : r < 0.8 ? int(513) : r < 0.99 ? int(4097) : r < 0.99995 ? int(64 * KiB) : MAX_DATA_BYTES;
        const from = int(pool.length - size);
        const data = size === 0 ? undefined : pool.subarray(from, from + size);
        const head = kind === 'request'
          ? { ...HEAD, opcode: int(256), flags: 0, commandId: int(65536), shardId: int(2 ** 40), offset: int(2 ** 45), length: int(2 ** 20) }
          : { ...REPLY, status: int(65536), commandId: int(65536), flags: 0 };
        parts.push(...(kind === 'request' ? encodeFrame(head as Head, data) : encodeReplyFrame(head as Reply, data)));
        sent.push({ head, data: data ?? null });
        ends.push((end += headBytes + (data?.length ?? 0)));
      }
      frames += count;
      let bytes = concatBytes(parts);
      // What must come back: all frames, or those wholly before a cut or a flipped bit; a flipped data bit must be caught.
      let intact = count;
      let mustFail = false;
      const mode = rand();
      if (mode < 0.35) {
        // unmodified
      } else if (mode < 0.55) {
        const p = int(bytes.length);
        bytes[p] ^= 1 << int(8);
        intact = ends.findIndex((e) => e > p);
        mustFail = p >= (intact === 0 ? 0 : ends[intact - 1]) + headBytes;
        if (!mustFail) intact = -1; // a flipped head bit may still parse: anything goes after the intact prefix
      } else if (mode < 0.7) {
        bytes = bytes.subarray(0, int(bytes.length));
        intact = ends.filter((e) => e <= bytes.length).length;
      } else {
        intact = -1;
        if (mode < 0.85) for (let k = 1 + int(8); k > 0; k--) bytes[int(bytes.length)] = int(256);
        else if (mode < 0.95) bytes = pool.slice(int(1024), int(1024) + int(4 * KiB)); // random bytes
        else bytes = concatBytes([bytes, pool.subarray(0, 1 + int(256))]); // trailing garbage
      }
      const reader = new FrameReader({ kind });
      const got: Frame<Head | Reply>[] = [];
      let reason: string | null = null;
      let biggest = 0;
      const chunkMax = bytes.length <= 600 && rand() < 0.1 ? 1 : [64, 4 * KiB, 256 * KiB][int(3)]; // 1-byte chunks only for short streams, to bound the time
      try {
        for (let at = 0; at < bytes.length && reason === null;) {
          const n = Math.min(bytes.length - at, 1 + int(chunkMax));
          biggest = Math.max(biggest, n);
          reader.push(bytes.subarray(at, at + n));
          at += n;
          if (reader.buffered > FRAME_BYTES_MAX + biggest) failures.push(`case ${cases}: buffered ${reader.buffered} after a push of ${n}`);
          for (let f = reader.next(); f !== null; f = reader.next()) {
            if (typeof f === 'string') {
              reason = f;
              if (reader.next() !== f) failures.push(`case ${cases}: a poisoned reader changed its reason`);
              break;
            }
            const dataLength = f.data === null ? 0 : f.data.length;
            if (dataLength !== f.head.dataBytes) failures.push(`case ${cases}: data of ${dataLength} bytes under dataBytes ${f.head.dataBytes}`);
            else if (f.data !== null && crc32(f.data) !== f.head.dataCrc) failures.push(`case ${cases}: a frame with a wrong CRC got through`);
            got.push(f);
          }
        }
      } catch (e) {
        failures.push(`case ${cases}: threw ${(e as Error).message}`);
      }
      const prefix = intact === -1 ? 0 : intact;
      for (let i = 0; i < Math.min(prefix, got.length); i++) {
        const f = got[i];
        const s = sent[i];
        if (!sameFrame(f, s)) failures.push(`case ${cases}: frame ${i} changed`);
      }
      if (intact !== -1 && (got.length !== intact || (reason !== null) !== mustFail)) {
        failures.push(`case ${cases} (mode ${mode.toFixed(2)}): ${got.length} of ${intact} intact frames back, reason ${reason}, a failure ${mustFail ? '' : 'not '}expected`);
      }
      if (intact !== -1 && !mustFail && reader.buffered !== bytes.length - (intact === 0 ? 0 : ends[intact - 1])) failures.push(`case ${cases}: buffered ${reader.buffered} after a cut`);
    }
    const ms = performance.now() - started;
    console.log(`replication wire fuzz, seed ${SEED}: ${frames} frames in ${cases} streams, ${ms.toFixed(0)} ms`);
    expect(failures, `seed ${SEED} (replay: REPL_WIRE_SEED=${SEED} npx vitest run test/replication-wire.test.ts)`).toEqual([]);
    expect(frames).toBeGreaterThanOrEqual(FUZZ_FRAMES);
  }, 60_000);
});
