/**
 * A secondary SIGKILLed under load: writes go on (the replica ERROR and the
 * shard DEGRADED in etcd, the client's stats count degraded writes), no
 * acknowledged write is lost; restarted on its data directory, the store's
 * replica turns RECOVERING, copies exactly the shard's dirty regions (the
 * count in etcd before it came back equals the count it reports copying),
 * and turns OK; then every replica is identical and reads what was written.
 * A replica that stops answering on an idle volume is noticed by heartbeats.
 * Real etcd and `flashpack store` processes; imports dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReplicasAgree, startCluster, until, type TestCluster } from './helpers/cluster.js';
import { removeTempDirs } from './helpers/nbd.js';
import { prng, randomBytes } from './helpers/data.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
/** The load keeps to the first HOT bytes, so the dirty map is a known subset of the shard. */
const HOT = 4 * MiB;
const WRITERS = 8;

let t: TestCluster;
beforeAll(async () => {
  t = await startCluster(3, 'degraded');
}, 60_000);
afterAll(async () => {
  await t?.stop();
  removeTempDirs();
}, 60_000);

describe('replicated volume: a secondary dies under load and comes back', () => {
  it('degraded writes lose nothing; resync copies only the dirty regions; replicas identical after', async () => {
    await t.cluster.createVolume('dv', { size: SIZE, replicas: 3, shardSize: SIZE });
    const [{ info }] = await t.meta.shards('dv');
    const victim = t.stores.find((s) => s.id === info.replicas[2].store)!;
    expect(info.primary).not.toBe(victim.id);
    const v = await t.cluster.openVolume('dv');
    const rand = prng(11);
    const model = new Uint8Array(SIZE);
    const whole = randomBytes(SIZE, rand);
    await v.write(0, whole);
    model.set(whole);
    await v.flush();

    // Load: 8 writers of 4–64 KiB into the hot range; the victim is killed while it runs.
    let acked = 0;
    let stop = false;
    const failures: Error[] = [];
    // Each writer keeps to its own stripe of the hot range, so the model does not depend on the order of writes in flight.
    const STRIPE = HOT / WRITERS;
    const writer = async (w: number): Promise<void> => {
      while (!stop) {
        const len = (1 + Math.floor(rand() * 16)) * 4096;
        const off = w * STRIPE + Math.floor(rand() * ((STRIPE - len) / 4096)) * 4096;
        const d = randomBytes(len, rand);
        try {
          await v.write(off, d);
          model.set(d, off);
          acked++;
        } catch (err) {
          failures.push(err as Error);
          return;
        }
      }
    };
    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
    await until('some writes', async () => acked > 50);
    await victim.kill('SIGKILL');
    const afterKill = acked;
    await until('writes after the kill', async () => acked > afterKill + 100);
    stop = true;
    await Promise.all(writers);
    expect(failures).toEqual([]);

    const degraded = (await t.meta.shard('dv', 0))!.info;
    expect(degraded.state).toBe('DEGRADED');
    expect(degraded.replicas.find((r) => r.store === victim.id)!.state).toBe('ERROR');
    expect(degraded.epoch).toBeGreaterThan(info.epoch);
    expect(v.stats().degradedWrites).toBeGreaterThan(0);
    const dirty = await t.meta.dirtyRegions('dv', 0);
    expect(dirty.length).toBeGreaterThan(0);
    expect(dirty.every((r) => r < HOT / MiB), `dirty regions ${dirty}`).toBe(true); // only what the load touched

    // Back: RECOVERING, then OK, having copied exactly the dirty regions.
    victim.restart();
    await victim.ready(t.meta);
    const ok = await until('the replica OK again', async () => {
      const s = (await t.meta.shard('dv', 0))!.info;
      return s.state === 'OK' ? s : null;
    });
    expect(ok.replicas.every((r) => r.state === 'OK')).toBe(true);
    // The store logs its recovery after it has marked the replica OK in etcd: the line may arrive a moment later.
    const line = await until('the recovery logged', async () => /recovered: (\d+) dirty regions \((\d+) bytes\) copied/.exec(victim.log));
    expect(Number(line![1])).toBe(dirty.length);
    expect(await t.meta.dirtyRegions('dv', 0)).toEqual([]);

    await v.flush();
    const back = Buffer.from(await v.read(0, SIZE));
    const at = back.findIndex((b, i) => b !== model[i]);
    expect(at, `first difference from what was acknowledged at byte ${at}`).toBe(-1);
    await expectReplicasAgree(t.cluster, 'dv');
    await v.close();
  }, 180_000);

  it('a replica that stops answering (SIGSTOP) on an idle volume misses its heartbeats and is marked ERROR; once it runs again it recovers to OK', async () => {
    await t.cluster.createVolume('hb', { size: 4 * MiB, replicas: 3, shardSize: 4 * MiB });
    const v = await t.cluster.openVolume('hb');
    await v.write(0, randomBytes(MiB, prng(12)));
    await v.flush();
    const [{ info }] = await t.meta.shards('hb');
    const frozen = t.stores.find((s) => s.id === info.replicas[1].store)!;
    frozen.child.kill('SIGSTOP');
    try {
      // No writes: only the primary's heartbeats on its idle connection can notice (io-timeout 5 s in these stores).
      const marked = await until('the frozen replica marked ERROR', async () => {
        const s = (await t.meta.shard('hb', 0))!.info;
        return s.replicas.find((r) => r.store === frozen.id)!.state === 'ERROR' ? s : null;
      });
      expect(marked.state).toBe('DEGRADED');
      expect(marked.epoch).toBeGreaterThan(info.epoch);
      await v.write(2 * MiB, new Uint8Array(4096).fill(7));
    } finally {
      frozen.child.kill('SIGCONT');
    }
    await until('the replica OK again', async () => (await t.meta.shard('hb', 0))!.info.state === 'OK');
    await v.flush();
    await expectReplicasAgree(t.cluster, 'hb');
    await v.close();
  }, 120_000);
});
