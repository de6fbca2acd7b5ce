/**
 * Primary failover and fencing on a real three-member etcd and real
 * `flashpack store` processes (lease TTL 2 s):
 * - a primary SIGKILLed under load is replaced by the next OK replica (one
 *   etcd transaction, epoch + 1); the client resends what was in flight;
 *   nothing acknowledged is lost; back on its data directory, the old primary
 *   recovers and every replica is identical;
 * - a primary paused (SIGSTOP) past its lease is deposed; resumed, it cannot
 *   get a write acknowledged (its replicas answer its epoch with REOPEN), and
 *   the bytes it wrote alone are undone when it recovers;
 * - a store whose data directory was wiped gets a full copy when it returns;
 * - etcd: losing the leader does not stop I/O; losing quorum stops metadata
 *   changes, and I/O on a healthy shard goes on.
 * Imports dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expectReplicasAgree, startCluster, until, type TestCluster } from './helpers/cluster.js';
import { findLeader } from './helpers/etcd.js';
import { removeTempDirs } from './helpers/nbd.js';
import { prng, randomBytes } from './helpers/data.js';
import { replication, type ClusterVolume } from '../dist/index.js';

const MiB = 1 << 20;
const WAIT_MS = 60_000; // until()'s default
const WRITERS = 8;

let t: TestCluster;
beforeAll(async () => {
  t = await startCluster(3, 'failover', {}, { etcdMembers: 3 });
}, 60_000);
afterAll(async () => {
  await t?.stop();
  removeTempDirs();
}, 90_000);

/** Writers that each keep to their own stripe of [0, span), applying what is acknowledged to `model`. */
function load(v: ClusterVolume, model: Uint8Array, span: number, seed: number) {
  const rand = prng(seed);
  const st = { acked: 0, stop: false, failures: [] as Error[], done: null as unknown as Promise<unknown> };
  const stripe = span / WRITERS;
  const writer = async (w: number): Promise<void> => {
    while (!st.stop) {
      const len = (1 + Math.floor(rand() * 8)) * 4096;
      const off = w * stripe + Math.floor(rand() * ((stripe - len) / 4096)) * 4096;
      const d = randomBytes(len, rand);
      try {
        await v.write(off, d);
        model.set(d, off);
        st.acked++;
      } catch (err) {
        st.failures.push(err as Error);
        return;
      }
    }
  };
  st.done = Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
  return st;
}

/** No shard had two stores acknowledge changes in the same epoch. */
function onePrimaryPerEpoch(v: ClusterVolume): void {
  const seen = new Map<string, string>();
  for (const a of v.stats().acknowledgedBy) {
    const k = `${a.shard}@${a.epoch}`;
    expect(seen.get(k) ?? a.store, `shard ${a.shard} epoch ${a.epoch} acknowledged by ${seen.get(k)} and ${a.store}`).toBe(a.store);
    seen.set(k, a.store);
  }
}

async function expectSame(v: ClusterVolume, model: Uint8Array): Promise<void> {
  const back = Buffer.from(await v.read(0, model.length));
  const at = back.findIndex((b, i) => b !== model[i]);
  expect(at, `first difference from what was acknowledged at byte ${at}`).toBe(-1);
}

describe('replicated volume: primary failover and fencing', () => {
  it('a primary SIGKILLed under load is replaced by the next OK replica; nothing acknowledged is lost; it comes back, recovers, replicas identical', async () => {
    const SIZE = 16 * MiB;
    await t.cluster.createVolume('fo', { size: SIZE, replicas: 3, shardSize: SIZE });
    const [{ info }] = await t.meta.shards('fo');
    const victim = t.stores.find((s) => s.id === info.primary)!;
    const v = await t.cluster.openVolume('fo');
    const model = new Uint8Array(SIZE);
    const whole = randomBytes(SIZE, prng(21));
    await v.write(0, whole);
    model.set(whole);
    await v.flush();

    const st = load(v, model, SIZE, 22);
    await until('some writes', async () => st.acked > 50);
    await victim.kill('SIGKILL');
    const killedAt = Date.now();
    const after = await until('a new primary in etcd', async () => {
      const s = (await t.meta.shard('fo', 0))!.info;
      return s.primary !== victim.id ? s : null;
    });
    const failoverMs = Date.now() - killedAt;
    const afterKill = st.acked;
    await until('writes on the new primary', async () => st.acked > afterKill + 100);
    st.stop = true;
    await st.done;
    expect(st.failures).toEqual([]);

    // The next OK replica in the shard's list took over in one transaction; the old one is out.
    expect(after.primary).toBe(info.replicas[1].store);
    expect(after.replicas.find((r) => r.store === victim.id)!.state).toBe('ERROR');
    expect(after.epoch).toBeGreaterThan(info.epoch);
    expect(failoverMs).toBeLessThan(WAIT_MS);
    onePrimaryPerEpoch(v);
    await expectSame(v, model);

    victim.restart();
    await victim.ready(t.meta);
    const ok = await until('every replica OK again', async () => {
      const s = (await t.meta.shard('fo', 0))!.info;
      return s.state === 'OK' ? s : null;
    });
    expect(ok.primary).toBe(after.primary);
    // The store logs its recovery once etcd has the replica OK.
    await until('the old primary logs its recovery', async () => /recovered: \d+ dirty regions/.test(victim.log), 10_000);
    await v.flush();
    await expectSame(v, model);
    await expectReplicasAgree(t.cluster, 'fo', () => {
      for (const s of t.stores) console.log(`==== ${s.id}\n${s.log}`);
    });
    await v.close();
  }, 180_000);

  it('a primary paused past its lease is deposed; resumed, it cannot get a write acknowledged, and what it wrote alone is undone', async () => {
    const SIZE = 4 * MiB;
    await t.cluster.createVolume('fence', { size: SIZE, replicas: 3, shardSize: SIZE });
    const [{ info }] = await t.meta.shards('fence');
    const paused = t.stores.find((s) => s.id === info.primary)!;
    const address = (await t.meta.store(paused.id))!.address;
    const v = await t.cluster.openVolume('fence');
    const model = randomBytes(SIZE, prng(31));
    await v.write(0, model);
    await v.flush();
    // A connection made before the pause, as a client with the old shard map would have.
    const stale = await replication.DataClient.connect({ address, role: 'client', ioTimeoutMs: 30_000, heartbeatMs: 0 });

    paused.child.kill('SIGSTOP');
    let resumed = false;
    try {
      const after = await until('a new primary in etcd', async () => {
        const s = (await t.meta.shard('fence', 0))!.info;
        return s.primary !== paused.id ? s : null;
      });
      expect(after.epoch).toBeGreaterThan(info.epoch);
      const fresh = randomBytes(64 * 1024, prng(32));
      await v.write(MiB, fresh); // through the new primary
      model.set(fresh, MiB);
      // Resumed, the deposed primary gets a write in its old epoch before anything else.
      const rogue = stale.send(
        { opcode: replication.wire.OP_WRITE, shardId: info.volumeId * 65536, epoch: info.epoch, offset: 2 * MiB, length: 4096 },
        new Uint8Array(4096).fill(0xee),
      );
      paused.child.kill('SIGCONT');
      resumed = true;
      const { reply } = await rogue;
      expect((reply.status & 0xff) === replication.wire.ST_OK && (reply.status & replication.wire.ST_REOPEN) === 0, `status 0x${reply.status.toString(16)}`).toBe(false);
      expect(reply.status & replication.wire.ST_REOPEN).not.toBe(0);
    } finally {
      if (!resumed) paused.child.kill('SIGCONT');
      stale.close();
    }
    await until('every replica OK again', async () => (await t.meta.shard('fence', 0))!.info.state === 'OK');
    await v.flush();
    await expectSame(v, model);
    await expectReplicasAgree(t.cluster, 'fence');
    onePrimaryPerEpoch(v);
    await v.close();
  }, 120_000);

  it('a store that comes back with its data gone gets a full copy, not just the dirty regions', async () => {
    const SIZE = 4 * MiB;
    await t.cluster.createVolume('lost', { size: SIZE, replicas: 3, shardSize: SIZE });
    const [{ info }] = await t.meta.shards('lost');
    const victim = t.stores.find((s) => s.id === info.replicas[2].store)!;
    const v = await t.cluster.openVolume('lost');
    const model = randomBytes(SIZE, prng(51));
    await v.write(0, model);
    await v.flush();
    await victim.kill('SIGKILL');
    // A replaced disk: the data directory keeps only the store's id.
    fs.rmSync(path.join(victim.dir, 'lost'), { recursive: true, force: true });
    const d = randomBytes(4096, prng(52));
    await v.write(0, d); // one dirty region of four
    model.set(d, 0);
    expect(await t.meta.dirtyRegions('lost', 0)).toEqual([0]);
    victim.restart();
    await victim.ready(t.meta);
    await until('every replica OK again', async () => (await t.meta.shard('lost', 0))!.info.state === 'OK');
    await v.flush();
    await expectSame(v, model);
    await expectReplicasAgree(t.cluster, 'lost');
    expect(victim.log).toMatch(/lost#0: the replica's file was gone/);
    const line = await until('the store logs its recovery', async () => /lost#0: recovered: (\d+) dirty regions/.exec(victim.log), 10_000);
    expect(Number(line?.[1]), victim.log).toBe(4);
    await v.close();
  }, 120_000);

  it('etcd: I/O goes on without the leader, and without quorum on a healthy shard; metadata changes wait for quorum', async () => {
    const SIZE = 4 * MiB;
    await t.cluster.createVolume('quorum', { size: SIZE, replicas: 3, shardSize: SIZE });
    const v = await t.cluster.openVolume('quorum');
    const model = randomBytes(SIZE, prng(41));
    await v.write(0, model);
    await v.flush();
    const [{ info }] = await t.meta.shards('quorum');
    const rand = prng(42);
    const some = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const off = Math.floor(rand() * (SIZE / 4096)) * 4096;
        const d = randomBytes(4096, rand);
        await v.write(off, d);
        model.set(d, off);
      }
      await v.flush();
    };

    const leader = await findLeader(t.endpoints);
    t.etcd.kill(leader);
    await some(100);
    await t.etcd.restart(leader);

    const down = [0, 1, 2].filter((i) => i !== leader).slice(0, 2);
    for (const i of down) t.etcd.kill(i);
    try {
      await some(100);
      const meta = new replication.ClusterMeta(new replication.Etcd(t.endpoints, { timeoutMs: 2000 }));
      await expect(meta.createVolume('no-quorum', { size: MiB, replicas: 1, shardSize: MiB })).rejects.toThrow();
      meta.etcd.close();
    } finally {
      for (const i of down) await t.etcd.restart(i);
    }
    await some(20);
    await expectSame(v, model);
    // Nothing failed over or degraded meanwhile.
    const now = (await t.meta.shard('quorum', 0))!.info;
    expect(now.primary).toBe(info.primary);
    expect(now.state).toBe('OK');
    await v.close();
  }, 120_000);
});
