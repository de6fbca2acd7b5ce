/**
 * The NBD server byte for byte, through a raw client (helpers/nbd-client.ts)
 * on a unix socket, the server in this process: every negotiation option and
 * its failure modes, every command and its error replies, the bounds
 * (payload, option size, requests in flight) and what ends a connection
 * versus what is answered and goes on. Each test asserts an exact reply.
 * Imports the built package (the volume's workers load dist/), so
 * `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Volume, nbd } from '../dist/index.js';
import {
  CLIENT_FLAG_FIXED_NEWSTYLE, CLIENT_FLAG_NO_ZEROES, CMD_BLOCK_STATUS, CMD_CACHE, CMD_DISC, CMD_FLAG_FAST_ZERO, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE,
  CMD_FLAG_REQ_ONE, CMD_FLUSH, CMD_READ, CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES, INFO_BLOCK_SIZE, INFO_EXPORT, INFO_NAME, META_BASE_ALLOCATION,
  META_ID_BASE_ALLOCATION, NBD_EINVAL, NBD_ENOSPC, NBD_EOVERFLOW, NBD_EPERM, OPTIONS_MAX, OPT_ABORT, OPT_EXPORT_NAME, OPT_GO, OPT_INFO, OPT_LIST,
  OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT, OPT_STARTTLS, OPT_STRUCTURED_REPLY, PAYLOAD_BYTES_MAX, REP_ACK, REP_ERR_INVALID, REP_ERR_POLICY,
  REP_ERR_TOO_BIG, REP_ERR_UNKNOWN, REP_ERR_UNSUP, REP_INFO, REP_META_CONTEXT, REP_SERVER, REQUEST_BYTES, STATE_HOLE, STATE_ZERO, TFLAG_CAN_MULTI_CONN,
  TFLAG_HAS_FLAGS, TFLAG_READ_ONLY, TFLAG_SEND_CACHE, TFLAG_SEND_FAST_ZERO, TFLAG_SEND_FLUSH, TFLAG_SEND_FUA, TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES, encodeRequest,
} from '../src/nbd/protocol.js';
import { prng, randomBytes } from './helpers/data.js';
import { NbdClient, NbdClosed, type OptionReply, type Reply, concat, goPayload, lengthPrefixed, text, u32, view } from './helpers/nbd-client.js';

const KiB = 1024;
const MiB = 1 << 20;
const SIZE = 16 * MiB;
const NAME = 'vol';
const DESCRIPTION = 'the protocol test volume';
const RW_FLAGS = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_FAST_ZERO |
  TFLAG_SEND_CACHE | TFLAG_CAN_MULTI_CONN;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-nbd-protocol-'));
const sock = path.join(dir, 'rw.sock');
const roSock = path.join(dir, 'ro.sock');
const log: string[] = [];
let volume: Volume;
let roVolume: Volume;
let server: nbd.NbdServer;
let roServer: nbd.NbdServer;
const clients = new Set<NbdClient>();

beforeAll(async () => {
  const roImage = path.join(dir, 'ro.img');
  const seed = await Volume.create(roImage, { logicalSize: SIZE });
  await seed.write(0, pattern(64 * KiB, 7));
  await seed.close();
  roVolume = await Volume.open(roImage, { readOnly: true });
  volume = await Volume.create(path.join(dir, 'rw.img'), { logicalSize: SIZE });
  server = await nbd.NbdServer.listen({ socket: sock, exports: [{ name: NAME, description: DESCRIPTION, target: volume }], log: (l) => log.push(l) });
  roServer = await nbd.NbdServer.listen({ socket: roSock, exports: [{ name: 'ro', target: roVolume, readOnly: true }], log: (l) => log.push(l) });
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await server?.close();
  await roServer?.close();
  await volume?.close();
  await roVolume?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A raw connection (greeting not read yet), destroyed after the run. */
async function connect(where = sock): Promise<NbdClient> {
  const c = await NbdClient.connect(where);
  clients.add(c);
  return c;
}

/** A connection in transmission. */
async function open(o: Parameters<typeof NbdClient.open>[1] = {}, where = sock): Promise<NbdClient> {
  const c = await NbdClient.open(where, o);
  clients.add(c);
  return c;
}

/** Greeting read and client flags sent: ready for options. */
async function haggling(flags = CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES): Promise<NbdClient> {
  const c = await connect();
  await c.handshake(flags);
  return c;
}

function pattern(n: number, seed: number): Uint8Array {
  return randomBytes(n, prng(seed));
}

function types(r: OptionReply[]): number[] {
  return r.map((x) => x.type);
}

/** The connection still negotiates: GO on it succeeds. */
async function stillNegotiates(c: NbdClient): Promise<void> {
  const r = await c.go(NAME);
  expect(types(r).at(-1)).toBe(REP_ACK);
}

function expectOk(r: Reply): void {
  expect(r.error, r.message).toBe(0);
}

function expectError(r: Reply, errno: number): void {
  expect({ error: r.error, message: r.message === '' && r.structured ? 'no message' : 'ok' }).toEqual({ error: errno, message: 'ok' });
}

describe('negotiation', () => {
  it('greets with NBDMAGIC, IHAVEOPT and the FIXED_NEWSTYLE|NO_ZEROES handshake flags', async () => {
    const c = await connect();
    const greeting = await c.read(18);
    expect(Buffer.from(greeting).toString('hex')).toBe(Buffer.from('NBDMAGICIHAVEOPT').toString('hex') + '0003');
  });

  it('closes on unknown client flags, and on a client without FIXED_NEWSTYLE', async () => {
    const before = server.stats().protocolViolations;
    for (const flags of [CLIENT_FLAG_FIXED_NEWSTYLE | 1 << 2, 1 << 31, 0, CLIENT_FLAG_NO_ZEROES]) {
      const c = await connect();
      await c.readGreeting();
      c.sendClientFlags(flags);
      expect(await c.closed(), `client flags 0x${flags.toString(16)}`).toBe(true);
      expect(c.buffered).toBe(0);
    }
    expect(server.stats().protocolViolations).toBe(before + 4);
  });

  it('OPT_LIST lists the export (name and description), then ACK', async () => {
    const c = await haggling();
    const r = await c.option(OPT_LIST);
    expect(types(r)).toEqual([REP_SERVER, REP_ACK]);
    expect(r.every((x) => x.option === OPT_LIST)).toBe(true);
    const v = view(r[0].data);
    expect(v.getUint32(0)).toBe(NAME.length);
    expect(text(r[0].data.subarray(4, 4 + NAME.length))).toBe(NAME);
    expect(text(r[0].data.subarray(4 + NAME.length))).toBe(DESCRIPTION);
    expect(r[1].data.length).toBe(0);
    // OPT_LIST carries no data: a payload is invalid, and haggling goes on.
    expect(types(await c.option(OPT_LIST, new Uint8Array(3)))).toEqual([REP_ERR_INVALID]);
    await stillNegotiates(c);
  });

  it('an unknown option gets NBD_REP_ERR_UNSUP with its number, and haggling continues', async () => {
    const c = await haggling();
    for (const option of [0, 4, 11, 99, 0xffffffff]) {
      const r = await c.option(option, new Uint8Array([1, 2, 3]));
      expect(r.map((x) => [x.option, x.type])).toEqual([[option, REP_ERR_UNSUP]]);
    }
    await stillNegotiates(c);
  });

  it('a malformed GO (name length past the end, information requests miscounted) gets REP_ERR_INVALID, and haggling continues', async () => {
    const c = await haggling();
    const pastEnd = concat(u32(1000), new Uint8Array(10));
    expect(types(await c.option(OPT_GO, pastEnd))).toEqual([REP_ERR_INVALID]);
    const longName = concat(u32(5000), new Uint8Array(5002));
    expect(types(await c.option(OPT_GO, longName))).toEqual([REP_ERR_INVALID]);
    const miscounted = goPayload(NAME, [INFO_NAME]).subarray(0, 4 + NAME.length + 2 + 1);
    expect(types(await c.option(OPT_GO, miscounted))).toEqual([REP_ERR_INVALID]);
    expect(types(await c.option(OPT_GO, new Uint8Array(2)))).toEqual([REP_ERR_INVALID]);
    await stillNegotiates(c);
  });

  it('GO of an unknown export gets REP_ERR_UNKNOWN, and haggling continues', async () => {
    const c = await haggling();
    const r = await c.option(OPT_GO, goPayload('nope'));
    expect(r.map((x) => [x.option, x.type])).toEqual([[OPT_GO, REP_ERR_UNKNOWN]]);
    expect(text(r[0].data)).toContain('nope');
    await stillNegotiates(c);
  });

  it('the empty name reaches the only export', async () => {
    const c = await haggling();
    const r = await c.go('');
    expect(types(r)).toEqual([REP_INFO, REP_INFO, REP_ACK]);
    expect(c.size).toBe(SIZE);
    expect(c.flags).toBe(RW_FLAGS);
  });

  it('INFO returns INFO_EXPORT (size, flags) and INFO_BLOCK_SIZE (1, 4096, 32 MiB), the name when asked, and leaves negotiation open', async () => {
    const c = await haggling();
    const r = await c.option(OPT_INFO, goPayload(NAME, [INFO_NAME, INFO_BLOCK_SIZE]));
    expect(r.map((x) => [x.option, x.type])).toEqual([[OPT_INFO, REP_INFO], [OPT_INFO, REP_INFO], [OPT_INFO, REP_INFO], [OPT_INFO, REP_ACK]]);
    const exp = view(r[0].data);
    expect(r[0].data.length).toBe(12);
    expect(exp.getUint16(0)).toBe(INFO_EXPORT);
    expect(Number(exp.getBigUint64(2))).toBe(SIZE);
    expect(exp.getUint16(10)).toBe(RW_FLAGS);
    const bs = view(r[1].data);
    expect(r[1].data.length).toBe(14);
    expect([bs.getUint16(0), bs.getUint32(2), bs.getUint32(6), bs.getUint32(10)]).toEqual([INFO_BLOCK_SIZE, 1, 4096, 32 * MiB]);
    expect(view(r[2].data).getUint16(0)).toBe(INFO_NAME);
    expect(text(r[2].data.subarray(2))).toBe(NAME);
    await stillNegotiates(c);
  });

  it('LIST_META_CONTEXT offers base:allocation (for it, for "base:", for no query), and nothing for other namespaces', async () => {
    const c = await haggling();
    for (const queries of [[META_BASE_ALLOCATION], ['base:'], [], ['qemu:dirty-bitmap:x', META_BASE_ALLOCATION]]) {
      const r = await c.setMetaContext(NAME, queries, OPT_LIST_META_CONTEXT);
      expect(types(r), queries.join()).toEqual([REP_META_CONTEXT, REP_ACK]);
      expect(text(r[0].data.subarray(4))).toBe(META_BASE_ALLOCATION);
    }
    expect(types(await c.setMetaContext(NAME, ['qemu:dirty-bitmap:x'], OPT_LIST_META_CONTEXT))).toEqual([REP_ACK]);
    expect(types(await c.setMetaContext('nope', [META_BASE_ALLOCATION], OPT_LIST_META_CONTEXT))).toEqual([REP_ERR_UNKNOWN]);
    // Trailing bytes after the queries are malformed.
    const trailing = concat(lengthPrefixed(NAME), u32(0), new Uint8Array(1));
    expect(types(await c.option(OPT_LIST_META_CONTEXT, trailing))).toEqual([REP_ERR_INVALID]);
    await stillNegotiates(c);
  });

  it('SET_META_CONTEXT before STRUCTURED_REPLY is REP_ERR_INVALID; after it, base:allocation gets id 1 and BLOCK_STATUS works', async () => {
    const c = await haggling();
    expect(types(await c.setMetaContext(NAME, [META_BASE_ALLOCATION]))).toEqual([REP_ERR_INVALID]);
    await c.structuredReply();
    const r = await c.setMetaContext(NAME, [META_BASE_ALLOCATION]);
    expect(r.map((x) => [x.option, x.type])).toEqual([[OPT_SET_META_CONTEXT, REP_META_CONTEXT], [OPT_SET_META_CONTEXT, REP_ACK]]);
    expect(view(r[0].data).getUint32(0)).toBe(META_ID_BASE_ALLOCATION);
    expect(text(r[0].data.subarray(4))).toBe(META_BASE_ALLOCATION);
    await c.go(NAME);
    const bs = await c.call(CMD_BLOCK_STATUS, 0, 15 * MiB, 4096);
    expectOk(bs);
    expect(bs.contextId).toBe(META_ID_BASE_ALLOCATION);
    expect(bs.extents).toEqual([{ length: 4096, status: STATE_HOLE | STATE_ZERO }]);
  });

  it('STRUCTURED_REPLY with data is REP_ERR_INVALID', async () => {
    const c = await haggling();
    expect(types(await c.option(OPT_STRUCTURED_REPLY, new Uint8Array(1)))).toEqual([REP_ERR_INVALID]);
    await stillNegotiates(c);
  });

  it('EXPORT_NAME answers size and flags: 10 bytes with NO_ZEROES, 134 (124 zeroes) without', async () => {
    const a = await haggling();
    a.sendOption(OPT_EXPORT_NAME, new TextEncoder().encode(NAME));
    const v = view(await a.read(10));
    expect([Number(v.getBigUint64(0)), v.getUint16(8)]).toEqual([SIZE, RW_FLAGS]);
    // Nothing else follows: the next bytes are the reply to a request.
    expectOk(await a.call(CMD_FLUSH, 0, 0, 0));
    expect(a.buffered).toBe(0);

    const b = await haggling(CLIENT_FLAG_FIXED_NEWSTYLE);
    b.sendOption(OPT_EXPORT_NAME);
    const full = await b.read(134);
    expect(Number(view(full).getBigUint64(0))).toBe(SIZE);
    expect(full.subarray(10).every((x) => x === 0)).toBe(true);
    expectOk(await b.call(CMD_FLUSH, 0, 0, 0));
  });

  it('EXPORT_NAME of an unknown export closes the connection', async () => {
    const c = await haggling();
    c.sendOption(OPT_EXPORT_NAME, new TextEncoder().encode('nope'));
    expect(await c.closed()).toBe(true);
    expect(c.buffered).toBe(0);
  });

  it('ABORT gets ACK, then the server closes', async () => {
    const c = await haggling();
    const r = await c.option(OPT_ABORT);
    expect(r.map((x) => [x.option, x.type, x.data.length])).toEqual([[OPT_ABORT, REP_ACK, 0]]);
    expect(await c.closed()).toBe(true);
  });

  it('an option of 100 KiB gets REP_ERR_TOO_BIG and haggling continues; one of 2 MiB closes the connection', async () => {
    const c = await haggling();
    expect(types(await c.option(OPT_GO, new Uint8Array(100 * KiB)))).toEqual([REP_ERR_TOO_BIG]);
    expect(types(await c.option(12345, new Uint8Array(100 * KiB)))).toEqual([REP_ERR_TOO_BIG]);
    await stillNegotiates(c);

    const d = await haggling();
    d.sendOption(OPT_GO, new Uint8Array(0), 2 * MiB);
    expect(await d.closed()).toBe(true);
    expect(d.buffered).toBe(0);
  });

  it('a bad option magic closes the connection', async () => {
    const c = await haggling();
    c.sendOption(OPT_LIST, new Uint8Array(0), 0, 0x49484156454f5055n);
    expect(await c.closed()).toBe(true);
    expect(c.buffered).toBe(0);
  });

  it('STARTTLS on a server without TLS gets REP_ERR_UNSUP, and haggling continues', async () => {
    const c = await haggling();
    expect((await c.option(OPT_STARTTLS)).map((x) => [x.option, x.type])).toEqual([[OPT_STARTTLS, REP_ERR_UNSUP]]);
    await stillNegotiates(c);
  });

  it(`more than ${OPTIONS_MAX} options get REP_ERR_POLICY and the connection closes`, async () => {
    const c = await haggling();
    const one = new Uint8Array(16);
    view(one).setBigUint64(0, 0x49484156454f5054n);
    view(one).setUint32(8, 99);
    c.send(concat(...Array.from({ length: OPTIONS_MAX + 1 }, () => one)));
    const got: number[] = [];
    try {
      while (got.length <= OPTIONS_MAX) got.push((await c.readOptionReply()).type);
    } catch (err) {
      if (!(err instanceof NbdClosed)) throw err;
    }
    expect(got.length, `option replies before the close (of ${OPTIONS_MAX + 1} options sent)`).toBe(OPTIONS_MAX + 1);
    expect(got.slice(0, OPTIONS_MAX).every((t) => t === REP_ERR_UNSUP)).toBe(true);
    expect(got[OPTIONS_MAX]).toBe(REP_ERR_POLICY);
    expect(await c.closed()).toBe(true);
  });

  it('a client that never finishes negotiating is closed after 30 s (fake clock)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    let c: NbdClient;
    try {
      c = await connect();
      await c.readGreeting();
      let closed = false;
      c.socket.once('close', () => (closed = true));
      vi.advanceTimersByTime(29_900);
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      expect(closed).toBe(false);
      vi.advanceTimersByTime(100);
    } finally {
      vi.useRealTimers();
    }
    expect(await c.closed()).toBe(true);
  });
});

describe('transmission', () => {
  it('WRITE then READ round-trips, with simple replies and with structured ones', async () => {
    for (const structured of [false, true]) {
      const c = await open({ structured });
      const data = pattern(8 * KiB + 123, structured ? 2 : 1);
      const at = structured ? 64 * KiB + 5 : 32 * KiB;
      const w = await c.write(at, data);
      expectOk(w);
      expect(w.structured).toBe(structured);
      const r = await c.readAt(at, data.length);
      expectOk(r);
      expect(r.structured).toBe(structured);
      expect(r.chunks).toBe(1);
      expect(Buffer.from(r.data!).equals(Buffer.from(data))).toBe(true);
      // A zero-length READ and WRITE succeed with no data.
      expectOk(await c.readAt(at, 0));
      expectOk(await c.write(at, new Uint8Array(0)));
    }
  });

  it('READ past the end is EINVAL (22), at any offset up to 2^64-1, and the connection goes on', async () => {
    for (const structured of [false, true]) {
      const c = await open({ structured });
      expectError(await c.readAt(SIZE - 4096, 8192), NBD_EINVAL);
      expectError(await c.readAt(SIZE, 1), NBD_EINVAL);
      expectError(await c.call(CMD_READ, 0, 2n ** 63n, 512), NBD_EINVAL);
      expectError(await c.call(CMD_READ, 0, 2n ** 64n - 1n, 1), NBD_EINVAL);
      expectError(await c.call(CMD_READ, 0, 2n ** 53n - 1n, 1), NBD_EINVAL);
      expectOk(await c.readAt(SIZE - 4096, 4096));
      expectOk(await c.readAt(SIZE, 0));
    }
  });

  it('WRITE past the end is ENOSPC (28), its payload is consumed and the next request works', async () => {
    for (const structured of [false, true]) {
      const c = await open({ structured });
      // The payload is made of request headers: if the server parsed it as requests, the next reply would be theirs.
      const decoy = concat(...Array.from({ length: 64 }, (_, i) => encodeRequest(CMD_FLUSH, 0, BigInt(1000 + i), 0, 0)));
      expectError(await c.write(SIZE - 512, decoy), NBD_ENOSPC);
      expectError(await c.call(CMD_WRITE, 0, 2n ** 64n - 512n, decoy.length, decoy), NBD_ENOSPC);
      const r = await c.readAt(0, 512);
      expectOk(r);
      expect(c.buffered).toBe(0);
    }
  });

  it('an unknown command (99) is EINVAL; an unknown flag bit is EINVAL (a WRITE\'s payload still consumed)', async () => {
    const c = await open();
    expectError(await c.call(99, 0, 0, 4096), NBD_EINVAL);
    expectError(await c.call(0xffff, 0, 0, 0), NBD_EINVAL);
    expectError(await c.call(CMD_READ, 1 << 7, 0, 4096), NBD_EINVAL);
    expectError(await c.call(CMD_FLUSH, 1 << 15, 0, 0), NBD_EINVAL);
    const decoy = concat(...Array.from({ length: 16 }, (_, i) => encodeRequest(CMD_FLUSH, 0, BigInt(2000 + i), 0, 0)));
    expectError(await c.call(CMD_WRITE, 1 << 9, 3 * MiB, decoy.length, decoy), NBD_EINVAL);
    // The rejected write wrote nothing.
    const r = await c.readAt(3 * MiB, decoy.length);
    expect(r.data!.every((x) => x === 0)).toBe(true);
  });

  it('READ longer than 32 MiB is EOVERFLOW (75) and the connection stays open', async () => {
    for (const structured of [false, true]) {
      const c = await open({ structured });
      expectError(await c.readAt(0, PAYLOAD_BYTES_MAX + 1), NBD_EOVERFLOW);
      expectError(await c.readAt(0, 0xffffffff), NBD_EOVERFLOW);
      expectOk(await c.readAt(0, 4096));
    }
  });

  it('a WRITE header longer than 32 MiB closes that connection only', async () => {
    const other = await open();
    const before = server.stats().protocolViolations;
    const c = await open();
    c.request(CMD_WRITE, 0, 0, PAYLOAD_BYTES_MAX + 1);
    expect(await c.closed()).toBe(true);
    expect(c.buffered).toBe(0);
    expect(server.stats().protocolViolations).toBe(before + 1);
    expectOk(await other.readAt(0, 4096));
  });

  it('a WRITE of exactly 32 MiB is accepted (past the end of a 16 MiB export: ENOSPC, payload consumed)', async () => {
    const c = await open();
    expectError(await c.write(0, new Uint8Array(PAYLOAD_BYTES_MAX)), NBD_ENOSPC);
    expectOk(await c.readAt(0, 1));
  });

  it('a bad request magic closes the connection after answering what came before it', async () => {
    const c = await open();
    const ok = c.request(CMD_READ, 0, 0, 4096);
    const bad = encodeRequest(CMD_READ, 0, 77n, 0, 4096);
    bad[0] ^= 0xff;
    c.send(bad);
    const r = await c.readReply();
    expect(r.cookie).toBe(ok);
    expectOk(r);
    expect(await c.closed()).toBe(true);
    expect(c.buffered).toBe(0);
  });

  it('BLOCK_STATUS without a negotiated meta context is EINVAL', async () => {
    for (const o of [{ structured: false }, { structured: true, blockStatus: false }]) {
      const c = await open(o);
      expectError(await c.call(CMD_BLOCK_STATUS, 0, 0, 4096), NBD_EINVAL);
    }
  });

  it('BLOCK_STATUS after a FLUSH reports data (0), zero (2) and hole|zero (3), clipped to the request, exactly one descriptor with REQ_ONE', async () => {
    const c = await open();
    const base = 2 * MiB;
    const seg = 64 * KiB;
    expectOk(await c.write(base, pattern(seg, 3)));
    expectOk(await c.write(base + seg, new Uint8Array(seg)));
    expectOk(await c.write(base + 2 * seg, pattern(seg, 4)));
    expectOk(await c.call(CMD_TRIM, 0, base + 2 * seg, seg));
    // Before a FLUSH, blocks whose writes are still in the volume's pipeline may be reported as data (never as zero).
    const early = await c.call(CMD_BLOCK_STATUS, 0, base, 3 * seg);
    expectOk(early);
    expect(early.extents![0]).toEqual({ length: seg, status: 0 });
    expect(early.extents!.reduce((n, e) => n + e.length, 0)).toBe(3 * seg);
    expectOk(await c.call(CMD_FLUSH, 0, 0, 0));
    const all = await c.call(CMD_BLOCK_STATUS, 0, base, 3 * seg);
    expectOk(all);
    expect(all.contextId).toBe(META_ID_BASE_ALLOCATION);
    expect(all.extents).toEqual([{ length: seg, status: 0 }, { length: seg, status: STATE_ZERO }, { length: seg, status: STATE_HOLE | STATE_ZERO }]);

    const one = await c.call(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, base, 3 * seg);
    expect(one.extents).toEqual([{ length: seg, status: 0 }]);

    // An unaligned start: the first descriptor starts at the requested offset.
    const unaligned = await c.call(CMD_BLOCK_STATUS, 0, base + 100, seg);
    expect(unaligned.extents).toEqual([{ length: seg - 100, status: 0 }, { length: 100, status: STATE_ZERO }]);
    const oneUnaligned = await c.call(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, base + seg + 7, 3 * seg);
    expect(oneUnaligned.extents).toEqual([{ length: seg - 7, status: STATE_ZERO }]);
    // A range running past the end is clipped to it; lengths never sum past the request.
    const tail = await c.call(CMD_BLOCK_STATUS, 0, SIZE - 4096 + 1, 0xffffffff);
    expectOk(tail);
    expect(tail.extents!.reduce((n, e) => n + e.length, 0)).toBeLessThanOrEqual(4095);
    expect(tail.extents![0].length).toBeGreaterThan(0);
    expectError(await c.call(CMD_BLOCK_STATUS, 0, SIZE, 4096), NBD_EINVAL);
    expectError(await c.call(CMD_BLOCK_STATUS, 0, 0, 0), NBD_EINVAL);
  });

  it('BLOCK_STATUS honours each request\'s own REQ_ONE flag when pipelined', async () => {
    const c = await open();
    const base = 2 * MiB + 256 * KiB;
    expectOk(await c.write(base, pattern(4096, 5)));
    expectOk(await c.call(CMD_FLUSH, 0, 0, 0));
    // data, then hole: two descriptors without REQ_ONE.
    const all = c.request(CMD_BLOCK_STATUS, 0, base, 8192);
    const one = c.request(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, base, 8192);
    const replies = new Map<bigint, Reply>();
    for (let i = 0; i < 2; i++) {
      const r = await c.readReply();
      replies.set(r.cookie, r);
    }
    expect(replies.get(all)!.extents).toEqual([{ length: 4096, status: 0 }, { length: 4096, status: STATE_HOLE | STATE_ZERO }]);
    expect(replies.get(one)!.extents).toEqual([{ length: 4096, status: 0 }]);
  });

  it('BLOCK_STATUS with REQ_ONE over a hole longer than a 32-bit descriptor returns exactly one descriptor, alone or pipelined', async () => {
    const bigSock = path.join(dir, 'big.sock');
    const big = await Volume.create(path.join(dir, 'big.img'), { logicalSize: 8 * 2 ** 30, physicalSize: 256 * MiB });
    const s = await nbd.NbdServer.listen({ socket: bigSock, exports: [{ name: 'big', target: big }] });
    try {
      const c = await open({}, bigSock);
      const alone = await c.call(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, 0, 0xffffffff);
      expect(alone.extents).toEqual([{ length: 2 ** 31, status: STATE_HOLE | STATE_ZERO }]);
      // Followed at once by a request without REQ_ONE: the flag is the BLOCK_STATUS's own, not the latest request's.
      const one = c.request(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, 0, 0xffffffff);
      c.request(CMD_FLUSH, 0, 0, 0);
      for (let i = 0; i < 2; i++) {
        const r = await c.readReply();
        if (r.cookie === one) expect(r.extents).toEqual([{ length: 2 ** 31, status: STATE_HOLE | STATE_ZERO }]);
      }
      c.destroy();
    } finally {
      await s.close();
      await big.close();
    }
  });

  it('WRITE_ZEROES without NO_HOLE punches a hole, with NO_HOLE writes zeroes, FAST_ZERO succeeds; both read back as zeroes', async () => {
    const c = await open();
    const base = 3 * MiB + 512 * KiB;
    const seg = 32 * KiB;
    expectOk(await c.write(base, pattern(3 * seg, 6)));
    expectOk(await c.call(CMD_WRITE_ZEROES, 0, base, seg));
    expectOk(await c.call(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, base + seg, seg));
    expectOk(await c.call(CMD_WRITE_ZEROES, CMD_FLAG_FAST_ZERO | CMD_FLAG_FUA, base + 2 * seg, seg));
    const r = await c.readAt(base, 3 * seg);
    expect(r.data!.every((x) => x === 0)).toBe(true);
    expectOk(await c.call(CMD_FLUSH, 0, 0, 0));
    const bs = await c.call(CMD_BLOCK_STATUS, 0, base, 2 * seg);
    expect(bs.extents).toEqual([{ length: seg, status: STATE_HOLE | STATE_ZERO }, { length: seg, status: STATE_ZERO }]);
    // Unaligned edges.
    expectOk(await c.write(base, pattern(seg, 8)));
    expectOk(await c.call(CMD_WRITE_ZEROES, 0, base + 100, 5000));
    const edge = await c.readAt(base, seg);
    const want = pattern(seg, 8);
    want.fill(0, 100, 5100);
    expect(Buffer.from(edge.data!).equals(Buffer.from(want))).toBe(true);
    expectError(await c.call(CMD_WRITE_ZEROES, 0, SIZE - 4096, 8192), NBD_ENOSPC);
  });

  it('TRIM then READ returns zeroes; TRIM past the end is ENOSPC', async () => {
    const c = await open();
    const base = 4 * MiB;
    expectOk(await c.write(base, pattern(128 * KiB, 9)));
    expectOk(await c.call(CMD_TRIM, 0, base + 4096, 64 * KiB));
    const r = await c.readAt(base, 128 * KiB);
    const want = pattern(128 * KiB, 9);
    want.fill(0, 4096, 4096 + 64 * KiB);
    expect(Buffer.from(r.data!).equals(Buffer.from(want))).toBe(true);
    expectError(await c.call(CMD_TRIM, 0, SIZE, 4096), NBD_ENOSPC);
  });

  it('FLUSH, CACHE (in range; past the end EINVAL) and a FUA WRITE succeed', async () => {
    const c = await open();
    expectOk(await c.call(CMD_FLUSH, 0, 0, 0));
    expectOk(await c.call(CMD_CACHE, 0, 0, SIZE));
    expectOk(await c.call(CMD_CACHE, 0, 5 * MiB + 3, 100));
    expectError(await c.call(CMD_CACHE, 0, SIZE - 1, 2), NBD_EINVAL);
    const data = pattern(12 * KiB, 10);
    expectOk(await c.write(5 * MiB, data, CMD_FLAG_FUA));
    expect(Buffer.from((await c.readAt(5 * MiB, data.length)).data!).equals(Buffer.from(data))).toBe(true);
  });

  it('DISC with requests in flight: every one is answered before the close', async () => {
    const c = await open();
    const cookies = new Set<bigint>();
    const base = 6 * MiB;
    const batch: Uint8Array[] = [];
    for (let i = 0; i < 16; i++) {
      cookies.add(c.request(CMD_WRITE, 0, base + i * 8192, 8192, pattern(8192, 100 + i)));
      cookies.add(c.request(CMD_READ, 0, base + i * 8192, 8192));
    }
    batch.push(encodeRequest(CMD_DISC, 0, 9999n, 0, 0));
    c.send(concat(...batch));
    for (let i = 0; i < 32; i++) {
      const r = await c.readReply();
      expectOk(r);
      expect(cookies.delete(r.cookie)).toBe(true);
    }
    expect(cookies.size).toBe(0);
    expect(await c.closed()).toBe(true);
    expect(c.buffered).toBe(0);
    const d = await open();
    for (let i = 0; i < 16; i++) expect(Buffer.from((await d.readAt(base + i * 8192, 8192)).data!).equals(Buffer.from(pattern(8192, 100 + i)))).toBe(true);
  });

  it('a read-only export advertises READ_ONLY and answers WRITE, TRIM and WRITE_ZEROES with EPERM (1)', async () => {
    const c = await open({ name: 'ro' }, roSock);
    expect(c.flags).toBe(TFLAG_HAS_FLAGS | TFLAG_READ_ONLY | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_SEND_CACHE | TFLAG_CAN_MULTI_CONN);
    expectError(await c.write(0, new Uint8Array(4096)), NBD_EPERM);
    expectError(await c.call(CMD_TRIM, 0, 0, 4096), NBD_EPERM);
    expectError(await c.call(CMD_WRITE_ZEROES, 0, 0, 4096), NBD_EPERM);
    expectOk(await c.call(CMD_FLUSH, 0, 0, 0));
    const r = await c.readAt(0, 64 * KiB);
    expect(Buffer.from(r.data!).equals(Buffer.from(pattern(64 * KiB, 7)))).toBe(true);
    const bs = await c.call(CMD_BLOCK_STATUS, 0, 0, 128 * KiB);
    expect(bs.extents).toEqual([{ length: 64 * KiB, status: 0 }, { length: 64 * KiB, status: STATE_HOLE | STATE_ZERO }]);
  });

  it('300 pipelined 1 MiB READs sent without reading replies: the server stops taking requests (back-pressure), then answers every cookie exactly once', async () => {
    const c = await open();
    const n = 300;
    const before = server.stats().reads;
    const cookies = new Set<bigint>();
    for (let i = 0; i < n; i++) cookies.add(c.request(CMD_READ, 0, (i % 16) * MiB, MiB));
    await new Promise((r) => setTimeout(r, 500));
    const taken = server.stats().reads - before;
    // 300 MiB of replies cannot all be queued: in flight and output are bounded (64 MiB each).
    expect(taken).toBeLessThan(n);
    expect(taken).toBeGreaterThan(0);
    for (let i = 0; i < n; i++) {
      const r = await c.readReply();
      expectOk(r);
      expect(r.data!.length).toBe(MiB);
      expect(cookies.delete(r.cookie), `cookie ${r.cookie} answered twice or never sent`).toBe(true);
    }
    expect(cookies.size).toBe(0);
    expect(server.stats().reads - before).toBe(n);
    expect(c.buffered).toBe(0);
  });

  it('200 pipelined WRITEs then READs, sent in one go: every cookie answered once, the data reads back', async () => {
    const c = await open({ structured: false });
    const base = 7 * MiB;
    const cookies = new Set<bigint>();
    for (let i = 0; i < 200; i++) cookies.add(c.request(CMD_WRITE, 0, base + i * 4096, 4096, pattern(4096, 1000 + i)));
    for (let i = 0; i < 200; i++) {
      const r = await c.readReply();
      expectOk(r);
      expect(cookies.delete(r.cookie)).toBe(true);
    }
    for (let i = 0; i < 200; i++) cookies.add(c.request(CMD_READ, 0, base + i * 4096, 4096));
    const seen = new Map<bigint, Uint8Array>();
    for (let i = 0; i < 200; i++) {
      const r = await c.readReply();
      expect(cookies.delete(r.cookie)).toBe(true);
      seen.set(r.cookie, r.data!);
    }
    let i = 0;
    for (const data of [...seen.entries()].sort((a, b) => Number(a[0] - b[0])).map((e) => e[1])) {
      expect(Buffer.from(data).equals(Buffer.from(pattern(4096, 1000 + i++)))).toBe(true);
    }
  });

  it('a client that sends a WRITE header and half its payload then disconnects: the server goes on, acknowledged data is intact', async () => {
    const a = await open();
    const at = 8 * MiB;
    const good = pattern(64 * KiB, 11);
    expectOk(await a.write(at, good));
    expectOk(await a.call(CMD_FLUSH, 0, 0, 0));
    const b = await open();
    const head = encodeRequest(CMD_WRITE, 0, 1n, at, 64 * KiB);
    b.send(concat(head, new Uint8Array(32 * KiB).fill(0xee)));
    await new Promise((r) => setTimeout(r, 50));
    b.destroy();
    // And one that stops in the middle of a request header.
    const h = await open();
    h.send(head.subarray(0, REQUEST_BYTES / 2));
    h.end();
    expect(await h.closed()).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    const c = await open();
    const r = await c.readAt(at, good.length);
    expect(Buffer.from(r.data!).equals(Buffer.from(good))).toBe(true);
    expectOk(await a.readAt(at, 4096));
  });
});

describe('bounds once a connection is over', () => {
  /** What a server that stopped reading may still take: its socket buffers and a chunk in flight, not the flood. */
  const FLOOD_TAKEN_MAX_BYTES = 16 * MiB;
  const FLOOD_BYTES = 256 * MiB;
  const FLOOD_MS = 3_000;

  it.each(['ABORT', 'DISC', 'a bad request magic'])('after %s the server reads no more: a client that keeps sending is held back, not buffered', async (kind) => {
    const c = await NbdClient.connect(sock, { allowHalfOpen: true });
    clients.add(c);
    await c.handshake();
    if (kind === 'ABORT') {
      expect(types(await c.option(OPT_ABORT))).toEqual([REP_ACK]);
    } else {
      await c.go(NAME);
      const head = encodeRequest(CMD_DISC, 0, 1n, 0, 0);
      if (kind !== 'DISC') head[0] ^= 0xff;
      c.send(head);
    }
    const taken = await c.flood(FLOOD_MS, FLOOD_BYTES);
    c.destroy();
    expect(taken, `bytes the server took after ${kind}`).toBeLessThan(FLOOD_TAKEN_MAX_BYTES);
  });
});
