/**
 * Hostile peers against a live `flashpack store`: garbage instead of a
 * handshake, malformed and corrupt frames after one, more requests than the
 * granted depth, and a peer that asks for megabytes of reads and never reads
 * the replies. Each bad connection is closed with a logged reason; the store
 * stays up, its memory stays bounded, and a good client's data is intact.
 * Real etcd and store processes; imports dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { replication } from '../dist/index.js';
import { startCluster, type TestCluster } from './helpers/cluster.js';
import { removeTempDirs } from './helpers/nbd.js';
import { prng, randomBytes } from './helpers/data.js';

const { wire } = replication;
const MiB = 1 << 20;
const SEED = process.env.REPL_HOSTILE_SEED !== undefined ? Number(process.env.REPL_HOSTILE_SEED) >>> 0 : (Date.now() >>> 0);
const CONNECTIONS = 300;
/** The store's resident memory with those replies held back (it starts near 150 MiB: a volume's shared memory and workers). */
const STORE_RSS_MIB_MAX = 400;

let t: TestCluster;
let address = '';
let shardId = 0;
let epoch = 0;
beforeAll(async () => {
  t = await startCluster(1, 'hostile');
  await t.cluster.createVolume('hv', { size: 8 * MiB, replicas: 1, shardSize: 8 * MiB });
  const [{ info }] = await t.meta.shards('hv');
  address = (await t.meta.store(info.primary))!.address;
  shardId = info.volumeId * 65536;
  epoch = info.epoch;
}, 60_000);
afterAll(async () => {
  await t?.stop();
  removeTempDirs();
}, 60_000);

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) / 1024;
}

/** Connects, writes `bytes`, and resolves true once the store closes the connection (false if it is still open after 3 s). */
function closedAfter(bytes: Uint8Array[]): Promise<boolean> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const s = net.connect({ host, port: Number(port) });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 3000);
    s.on('error', () => {});
    s.on('data', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    s.on('connect', () => {
      for (const b of bytes) s.write(b);
    });
  });
}

const handshake = (queueDepth = 4): Uint8Array => wire.encodeHandshake({ version: wire.PROTOCOL_VERSION, role: 0, queueDepth, status: 0, ioTimeoutMs: 1000, shardId: 0 });
const head = (over: Partial<replication.wire.Head> = {}): replication.wire.Head => ({
  opcode: wire.OP_WRITE, flags: 0, commandId: 0, snapSeq: wire.SNAP_SEQ_HEAD, shardId, epoch, offset: 0, length: 4096, commandSeq: 1, dataBytes: 0, dataCrc: 0, ...over,
});

describe(`store under hostile peers (seed ${SEED}; replay: REPL_HOSTILE_SEED=${SEED})`, () => {
  it(`${CONNECTIONS} malformed connections are each closed; the store stays up and a good client's data is intact`, async () => {
    const v = await t.cluster.openVolume('hv');
    const good = randomBytes(MiB, prng(1));
    await v.write(0, good);
    await v.flush();
    const rand = prng(SEED);
    const kinds: Record<string, number> = {};
    for (let i = 0; i < CONNECTIONS; i++) {
      const k = Math.floor(rand() * 6);
      let bytes: Uint8Array[];
      let kind: string;
      if (k === 0) {
        kind = 'garbage instead of a handshake';
        bytes = [randomBytes(32 + Math.floor(rand() * 200), rand)];
        if (new DataView(bytes[0].buffer).getUint32(0, true) === wire.MAGIC) bytes[0][0] ^= 1;
      } else if (k === 1) {
        kind = 'garbage frames';
        bytes = [handshake(), randomBytes(64 + Math.floor(rand() * 4096), rand)];
      } else if (k === 2) {
        kind = 'a frame whose data fails its CRC';
        const data = randomBytes(4096, rand);
        const [h, d] = wire.encodeFrame(head(), data);
        const bad = Uint8Array.from(d);
        bad[Math.floor(rand() * 4096)] ^= 0x40;
        bytes = [handshake(), h, bad];
      } else if (k === 3) {
        kind = 'a head announcing more than 1 MiB of data';
        const h = wire.encodeHead(head({ dataBytes: 0 }));
        new DataView(h.buffer, h.byteOffset).setUint32(48, MiB + 1 + Math.floor(rand() * 1e6), true);
        bytes = [handshake(), h];
      } else if (k === 4) {
        kind = 'more requests in flight than the granted depth';
        const frames = [];
        for (let n = 0; n < 64; n++) frames.push(...wire.encodeFrame(head({ opcode: wire.OP_READ, offset: 7 * MiB, length: MiB, commandId: n })));
        bytes = [handshake(), ...frames];
      } else {
        kind = 'a reserved field set';
        const h = wire.encodeHead(head({ opcode: wire.OP_FLUSH, length: 0 }));
        h[56 + Math.floor(rand() * 8)] = 1 + Math.floor(rand() * 255);
        bytes = [handshake(), h];
      }
      kinds[kind] = (kinds[kind] ?? 0) + 1;
      expect(await closedAfter(bytes), `${kind} (connection ${i})`).toBe(true);
    }
    console.log(`hostile seed ${SEED}: ${JSON.stringify(kinds)}`);
    expect(t.stores[0].running).toBe(true);
    expect(t.stores[0].log).toMatch(/closing the connection: malformed frame/);
    expect(Buffer.from(await v.read(0, MiB)).equals(Buffer.from(good))).toBe(true);
    // The stale-depth connection's reads were of unwritten space; nothing it sent was written.
    expect((await v.read(MiB, MiB)).every((b) => b === 0)).toBe(true);
    await v.close();
  }, 120_000);

  it('a compressed WRITE whose payload does not decode is answered CORRUPT and writes nothing; the connection goes on', async () => {
    const c = await replication.DataClient.connect({ address, role: 'client' });
    try {
      const rand = prng(SEED ^ 1);
      for (let i = 0; i < 50; i++) {
        const junk = randomBytes(1 + Math.floor(rand() * 4000), rand);
        const r = await c.send({ opcode: wire.OP_WRITE, flags: wire.FLAG_COMPRESSED, shardId, epoch, offset: 3 * MiB, length: 4096 }, junk);
        // Junk that happens to decode to exactly 4096 bytes is a valid write; anything else is refused.
        if (r.reply.status !== wire.ST_OK) expect(r.reply.status).toBe(wire.ST_CORRUPT);
      }
      const ok = await c.send({ opcode: wire.OP_READ, shardId, epoch, offset: 5 * MiB, length: 4096 });
      expect(ok.reply.status).toBe(wire.ST_OK);
      expect(ok.data!.every((b) => b === 0)).toBe(true);
    } finally {
      c.close();
    }
  }, 60_000);

  it('a peer that asks for 128 MiB of reads and never reads the replies: the store stops making them, its memory stays bounded, others are served', async () => {
    const [host, port] = address.split(':');
    const s = net.connect({ host, port: Number(port) });
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.pause();
    s.write(handshake(128));
    let sent = 0;
    // The store grants 128: as many 1 MiB reads, all in flight, none of the replies read.
    for (let n = 0; n < 128; n++) {
      for (const part of wire.encodeFrame(head({ opcode: wire.OP_READ, offset: 0, length: MiB, commandId: n }))) s.write(part);
      sent++;
    }
    const pid = t.stores[0].child.pid!;
    let rss = 0;
    for (let i = 0; i < 20; i++) {
      rss = Math.max(rss, rssMiB(pid));
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(sent).toBe(128);
    expect(rss).toBeLessThan(STORE_RSS_MIB_MAX);
    const v = await t.cluster.openVolume('hv');
    await v.write(2 * MiB, new Uint8Array(4096).fill(5));
    expect((await v.read(2 * MiB, 4096)).every((b) => b === 5)).toBe(true);
    await v.close();
    s.destroy();
    expect(t.stores[0].running).toBe(true);
  }, 60_000);
});
