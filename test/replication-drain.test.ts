/**
 * `flashpack cluster drain` and `rm-store` on real etcd and four real
 * `flashpack store` processes: a store that leads one shard and follows
 * another is drained while a client writes (each shard keeps three OK
 * replicas, the drained store's files are deleted, nothing acknowledged is
 * lost, replicas identical); rm-store refuses a running store, forgets a
 * drained one, and moves the replicas of a dead one to a live store.
 * `cluster status` shows a recovering replica's copy with a bar. Runs
 * bin/flashpack.mjs and imports dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expectReplicasAgree, startCluster, type TestCluster } from './helpers/cluster.js';
import { flashpack, ok, removeTempDirs } from './helpers/nbd.js';
import { prng, randomBytes } from './helpers/data.js';
import { replication } from '../dist/index.js';

const MiB = 1 << 20;
const SIZE = 8 * MiB;
const SHARD = 4 * MiB;
const COMMAND_TIMEOUT_MS = 120_000;

let t: TestCluster;
beforeAll(async () => {
  t = await startCluster(4, 'drain');
}, 60_000);
afterAll(async () => {
  await t?.stop();
  removeTempDirs();
}, 60_000);

const cluster = (args: string[]) => flashpack(['cluster', ...args, '--etcd', t.endpoints.join(',')], { timeoutMs: COMMAND_TIMEOUT_MS });

describe('cluster drain and rm-store', () => {
  it('drains a store that leads one shard and follows another while a client writes; every shard keeps three OK replicas; nothing lost', async () => {
    await t.cluster.createVolume('dr', { size: SIZE, replicas: 3, shardSize: SHARD });
    const before = (await t.meta.shards('dr')).map((r) => r.info);
    const s1 = t.stores.find((s) => s.id === 's1')!;
    expect(before[1].primary).toBe('s1');
    expect(before[0].replicas.map((r) => r.store)).toContain('s1');
    const v = await t.cluster.openVolume('dr');
    const model = randomBytes(SIZE, prng(61));
    await v.write(0, model);
    await v.flush();

    const rand = prng(62);
    let stop = false;
    const failures: Error[] = [];
    let acked = 0;
    const writer = (async () => {
      while (!stop) {
        const off = Math.floor(rand() * (SIZE / 4096 - 4)) * 4096;
        const d = randomBytes(16384, rand);
        try {
          await v.write(off, d);
          model.set(d, off);
          acked++;
        } catch (err) {
          failures.push(err as Error);
          return;
        }
      }
    })();
    const r = ok(await cluster(['drain', 's1', '--json']));
    stop = true;
    await writer;
    expect(failures).toEqual([]);
    expect(acked).toBeGreaterThan(0);
    const report = JSON.parse(r.stdout) as replication.DrainReport;
    expect(report.moved.map((m) => m.shard).sort()).toEqual([0, 1]);
    expect(r.stderr).toMatch(/handing-off/); // s1 led shard 1

    const after = (await t.meta.shards('dr')).map((x) => x.info);
    for (const s of after) {
      expect(s.replicas.map((x) => x.store)).not.toContain('s1');
      expect(s.replicas).toHaveLength(3);
      expect(s.replicas.every((x) => x.state === 'OK')).toBe(true);
      expect(s.state).toBe('OK');
    }
    // s1 deletes its files once it sees the records.
    const deadline = Date.now() + 10_000;
    while ((fs.existsSync(path.join(s1.dir, 'dr', '0.img')) || fs.existsSync(path.join(s1.dir, 'dr', '1.img'))) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    expect(fs.existsSync(path.join(s1.dir, 'dr', '0.img'))).toBe(false);
    expect(fs.existsSync(path.join(s1.dir, 'dr', '1.img'))).toBe(false);

    await v.flush();
    const back = Buffer.from(await v.read(0, SIZE));
    expect(back.findIndex((b, i) => b !== model[i])).toBe(-1);
    await expectReplicasAgree(t.cluster, 'dr');
    await v.close();
  }, 180_000);

  it('rm-store refuses a running store, forgets a stopped drained one, and moves a dead store\'s replicas to a live store', async () => {
    const s1 = t.stores.find((s) => s.id === 's1')!;
    const busy = await cluster(['rm-store', 's1']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/EBUSY/);
    expect(await s1.stop()).toBe(0);
    const none = JSON.parse(ok(await cluster(['rm-store', 's1', '--json'])).stdout) as replication.DrainReport;
    expect(none.moved).toEqual([]);

    // A dead store that holds replicas: with s1 gone there is no store outside the shards to move to …
    const held = (await t.meta.shards('dr')).map((x) => x.info);
    const victimId = held[0].replicas.find((x) => x.store !== held[0].primary)!.store;
    const victim = t.stores.find((s) => s.id === victimId)!;
    await victim.kill('SIGKILL');
    const gone = Date.now() + 20_000; // its registration lasts until its lease runs out
    while ((await t.meta.store(victimId)) !== null && Date.now() < gone) await new Promise((res) => setTimeout(res, 100));
    const stuck = await cluster(['rm-store', victimId]);
    expect(stuck.code).toBe(1);
    expect(stuck.stderr).toMatch(/EBUSY|ETIMEDOUT|registered/);
    // … until s1 comes back (empty: its replicas were moved) and takes them.
    s1.restart();
    await s1.ready(t.meta);
    const moved = JSON.parse(ok(await cluster(['rm-store', victimId, '--json'])).stdout) as replication.DrainReport;
    expect(moved.moved.length).toBeGreaterThan(0);
    expect(moved.moved.every((m) => m.to === 's1')).toBe(true);
    for (const s of (await t.meta.shards('dr')).map((x) => x.info)) {
      expect(s.replicas.map((x) => x.store)).not.toContain(victimId);
      expect(s.state).toBe('OK');
    }
    await expectReplicasAgree(t.cluster, 'dr');
  }, 240_000);

  it('cluster status shows a recovering replica\'s copy with a bar', async () => {
    await t.cluster.createVolume('bar', { size: 4 * MiB, replicas: 3, shardSize: 4 * MiB });
    const [{ info }] = await t.meta.shards('bar');
    // Held where a recovery would be: the follower paused, its replica RECOVERING, 3 of 8 regions copied.
    const follower = t.stores.find((s) => s.id === info.replicas[2].store)!;
    follower.child.kill('SIGSTOP');
    try {
      await t.meta.setReplicaState('bar', 0, follower.id, 'RECOVERING');
      await t.meta.etcd.put(`flashpack/progress/bar/00000/${follower.id}`, JSON.stringify({ copied: 3, total: 8 }));
      const text = ok(await cluster(['status'])).stdout;
      expect(text).toMatch(/RESYNC/);
      expect(text).toContain(`${follower.id} [####......] 3/8`);
      const doc = JSON.parse(ok(await cluster(['status', '--json'])).stdout) as { volumes: { name: string; shards: { replicas: { store: string; resync?: unknown }[] }[] }[] };
      const rep = doc.volumes.find((x) => x.name === 'bar')!.shards[0].replicas.find((r) => r.store === follower.id)!;
      expect(rep.resync).toEqual({ copied: 3, total: 8 });
    } finally {
      follower.child.kill('SIGCONT');
    }
    // Resumed, it recovers for real and the progress goes away with the shard OK.
    const deadline = Date.now() + 60_000;
    while ((await t.meta.shard('bar', 0))!.info.state !== 'OK' && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    expect((await t.meta.shard('bar', 0))!.info.state, follower.log).toBe('OK');
    expect(ok(await cluster(['status'])).stdout).not.toMatch(/\] \d+\/\d+/);
  }, 120_000);
});
