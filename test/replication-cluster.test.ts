/**
 * Replicated volumes end to end: a real etcd and three `flashpack store`
 * processes on loopback (helpers/cluster.ts). A 3-replica volume written
 * through the client reads back and its replicas are byte-identical (through
 * the stores, and as volume files once the stores stop); a stale epoch is
 * refused REOPEN and the client recovers (ordering: replication-ordering;
 * failures and resync: replication-degraded).
 * Imports the built package: `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Cluster, Volume, replication } from '../dist/index.js';
import { startCluster, type TestCluster } from './helpers/cluster.js';
import { removeTempDirs } from './helpers/nbd.js';
import { prng, randomBytes } from './helpers/data.js';

const MiB = 1 << 20;
const { wire } = replication;

let t: TestCluster;
beforeAll(async () => {
  t = await startCluster(3, 'repl');
}, 60_000);
afterAll(async () => {
  await t?.stop();
  removeTempDirs();
}, 60_000);

/** Text-like data (compresses) or random, `n` bytes. */
function data(rand: () => number, n: number): Uint8Array {
  if (rand() < 0.5) return randomBytes(n, rand);
  const out = new Uint8Array(n);
  const word = `block ${Math.floor(rand() * 1e9)} `;
  for (let i = 0; i < n; i++) out[i] = word.charCodeAt(i % word.length);
  return out;
}

describe('replicated volume: three stores, one etcd', () => {
  it('create, write through the client, read back; every replica identical through the stores', async () => {
    const info = await t.cluster.createVolume('vol1', { size: 16 * MiB, replicas: 3, shardSize: 4 * MiB });
    expect(info).toMatchObject({ shards: 4, replicas: 3, codec: 'lz4' });
    const shards = await t.meta.shards('vol1');
    expect(new Set(shards.map((s) => s.info.primary)).size).toBe(3); // primaries spread
    const v = await t.cluster.openVolume('vol1');
    const rand = prng(1);
    const model = new Uint8Array(16 * MiB);
    for (let i = 0; i < 60; i++) {
      const len = (1 + Math.floor(rand() * 64)) * 4096;
      const off = Math.floor(rand() * ((16 * MiB - len) / 512)) * 512;
      const d = data(rand, len);
      await v.write(off, d);
      model.set(d, off);
    }
    // Across a shard boundary, and more than 1 MiB at once.
    const big = data(rand, 3 * MiB);
    await v.write(4 * MiB - MiB, big);
    model.set(big, 3 * MiB);
    await v.discard(8 * MiB, MiB);
    model.fill(0, 8 * MiB, 9 * MiB);
    await v.flush();
    expect(Buffer.from(await v.read(0, 16 * MiB)).equals(Buffer.from(model))).toBe(true);
    const report = await replication.verifyVolume(t.cluster, 'vol1');
    expect(report.differences).toEqual([]);
    expect(report.skipped).toEqual([]);
    expect(report.replicasRead).toBe(12);
    expect(report.bytesCompared).toBe(3 * 16 * MiB);
    const s = v.stats();
    expect(s.reopens).toBe(0);
    // Half the data compresses: it crosses the wire in fewer bytes than were written.
    expect(s.wireBytesPerByteWritten).toBeLessThan(0.9);
    await v.close();
  }, 120_000);

  it('blocks travel compressed where that saves bytes: text at a fraction of its size, random data at its size plus heads', async () => {
    await t.cluster.createVolume('volz', { size: 8 * MiB, replicas: 3, shardSize: 8 * MiB });
    for (const kind of ['text', 'random'] as const) {
      const c = await Cluster.connect({ etcd: t.endpoints });
      const v = await c.openVolume('volz');
      const rand = prng(kind === 'text' ? 5 : 6);
      const written: [number, Uint8Array][] = [];
      for (let i = 0; i < 64; i++) {
        const d = kind === 'random' ? randomBytes(64 * 1024, rand) : new TextEncoder().encode(`line ${i} of some text that repeats `.repeat(2000).slice(0, 64 * 1024));
        await v.write(i * 64 * 1024, d);
        written.push([i * 64 * 1024, d]);
      }
      const ratio = v.stats().wireBytesPerByteWritten;
      if (kind === 'text') expect(ratio).toBeLessThan(0.2);
      else {
        expect(ratio).toBeGreaterThanOrEqual(1);
        expect(ratio).toBeLessThan(1.01);
      }
      if (kind === 'random') {
        // Each request counts its own bytes, however many share the connection at once.
        const before = v.stats();
        const blocks = Array.from({ length: 32 }, () => randomBytes(4096, rand));
        await Promise.all(blocks.map((b, i) => v.write(4 * MiB + i * 4096, b)));
        const after = v.stats();
        expect(after.wireBytesSent - before.wireBytesSent).toBe(32 * (64 + 4096));
        expect(after.wireBytesReceived - before.wireBytesReceived).toBe(32 * 32);
        blocks.forEach((b, i) => written.push([4 * MiB + i * 4096, b]));
      }
      for (const [off, d] of written) expect(Buffer.from(await v.read(off, d.length)).equals(Buffer.from(d))).toBe(true);
      await v.close();
      c.close();
    }
    const report = await replication.verifyVolume(t.cluster, 'volz');
    expect(report.differences).toEqual([]);
  }, 60_000);

  it('a request with a stale epoch is refused REOPEN; the client re-reads the shard and resends', async () => {
    await t.cluster.createVolume('vol2', { size: 4 * MiB, replicas: 3, shardSize: 4 * MiB });
    // Without the shard watch: the client must learn the new epoch from REOPEN.
    const c = await Cluster.connect({ etcd: t.endpoints, watch: false });
    const v = await c.openVolume('vol2');
    await v.write(0, new Uint8Array(4096).fill(1));
    const [{ info }] = await t.meta.shards('vol2');
    // The epoch moves (an operator's no-op change): the client's copy is now stale.
    const bumped = await t.meta.updateShard('vol2', 0, (s) => s);
    expect(bumped.info.epoch).toBe(info.epoch + 1);
    // The stores learn it from their etcd watch (and their reconcile pass, every 500 ms).
    await new Promise((r) => setTimeout(r, 1000));
    const primary = (await t.meta.store(info.primary))!;
    const raw = await replication.DataClient.connect({ address: primary.address, role: 'client' });
    try {
      const r = await raw.send({ opcode: wire.OP_WRITE, shardId: info.volumeId * 65536, epoch: info.epoch, offset: 0, length: 4096 }, new Uint8Array(4096).fill(9));
      expect(r.reply.status & wire.ST_REOPEN).toBe(wire.ST_REOPEN);
      expect(r.reply.epoch).toBe(info.epoch + 1);
      // A secondary refuses a stale replicated write too (a deposed primary is fenced).
      const secondary = (await t.meta.store(info.replicas[1].store))!;
      const peer = await replication.DataClient.connect({ address: secondary.address, role: 'peer' });
      const rr = await peer.send({ opcode: wire.OP_REPLICATE_WRITE, shardId: info.volumeId * 65536, epoch: info.epoch, offset: 0, length: 4096 }, new Uint8Array(4096).fill(9));
      expect(rr.reply.status & wire.ST_REOPEN).toBe(wire.ST_REOPEN);
      peer.close();
    } finally {
      raw.close();
    }
    await v.write(4096, new Uint8Array(4096).fill(2));
    expect(v.stats().reopens).toBeGreaterThanOrEqual(1);
    const back = await v.read(0, 8192);
    expect(back.subarray(0, 4096).every((b) => b === 1)).toBe(true); // the stale write did not land
    expect(back.subarray(4096).every((b) => b === 2)).toBe(true);
    await v.close();
    c.close();
  }, 60_000);

  it('read repair: a block that rots on the primary is served and rewritten from a replica; rotten on every replica, the read fails ECORRUPT', async () => {
    await t.cluster.createVolume('volrot', { size: 4 * MiB, replicas: 2, shardSize: 4 * MiB });
    const v = await t.cluster.openVolume('volrot');
    const rand = prng(17);
    const a = randomBytes(4096, rand); // random: stored whole, so it can be found in the image files
    const b = randomBytes(4096, rand);
    await v.write(40 * 4096, a);
    await v.write(80 * 4096, b);
    await v.flush();
    const [{ info }] = await t.meta.shards('volrot');
    const primary = t.stores.find((s) => s.id === info.primary)!;
    const other = t.stores.find((s) => s.id === info.replicas.find((r) => r.store !== info.primary)!.store)!;
    /** Flips a byte of `block`'s stored copy in a store's replica file (under the running store: one page cache). */
    const rot = (store: typeof primary, block: Uint8Array): void => {
      const file = path.join(store.dir, 'volrot', '0.img');
      const img = fs.readFileSync(file);
      const at = img.indexOf(Buffer.from(block));
      expect(at, `${store.id} holds the block`).toBeGreaterThan(0);
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, Buffer.from([img[at + 1000] ^ 0x44]), 0, 1, at + 1000);
      fs.closeSync(fd);
    };
    rot(primary, a);
    expect(Buffer.from(await v.read(40 * 4096, 4096)).equals(Buffer.from(a))).toBe(true);
    expect(primary.log).toMatch(new RegExp(`volrot#0: read repair at ${40 * 4096}: rewritten from store ${other.id}`));
    // Rewritten: the next read is local, and the replicas agree again.
    const logged = primary.log.length;
    expect(Buffer.from(await v.read(0, 4 * MiB)).subarray(40 * 4096, 41 * 4096).equals(Buffer.from(a))).toBe(true);
    expect(primary.log.slice(logged)).not.toMatch(/read repair/);
    expect((await replication.verifyVolume(t.cluster, 'volrot')).differences).toEqual([]);

    // Rot on the secondary alone: verify names that replica's range (its RECOVERY_READ answers CORRUPT).
    rot(other, b);
    const found = await replication.verifyVolume(t.cluster, 'volrot');
    expect(found.differences).toEqual([]);
    expect(found.corrupt).toEqual([{ shard: 0, offset: 0, length: expect.any(Number), volumeOffset: 0, store: other.id }]);
    rot(primary, b);
    const err = await v.read(80 * 4096, 4096).then(() => null, (e: unknown) => e);
    expect((err as { code?: string })?.code).toBe('ECORRUPT');
    expect(primary.log).toMatch(/no OK replica gave the block back/);
    await v.write(80 * 4096, b); // a whole-block write replaces the rotten copies
    expect(Buffer.from(await v.read(80 * 4096, 4096)).equals(Buffer.from(b))).toBe(true);
    await v.close();
  }, 60_000);

  it('replica files are ordinary volumes: once the stores stop, they open read-only and hold the same bytes', async () => {
    const shards = await t.meta.shards('vol1');
    for (const s of t.stores) expect(await s.stop()).toBe(0);
    for (const { info } of shards) {
      const images = [];
      for (const r of info.replicas) {
        const store = t.stores.find((s) => s.id === r.store)!;
        const vol = await Volume.open(path.join(store.dir, 'vol1', `${info.index}.img`), { readOnly: true });
        images.push(Buffer.from(await vol.read(0, info.size)));
        await vol.close();
      }
      for (const img of images.slice(1)) expect(img.equals(images[0]), `shard ${info.index}`).toBe(true);
    }
    for (const s of t.stores) s.restart();
    await Promise.all(t.stores.map((s) => s.ready(t.meta)));
  }, 120_000);
});
