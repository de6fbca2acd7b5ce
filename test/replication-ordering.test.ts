/**
 * Overlapping writes in flight, from several client connections, must land
 * in the same order on every replica — PureFlash leaves that to the host. The
 * stores here delay each REPLICATE_* by a random 0–3 ms (paths of different
 * latency, as on a network; a test-only switch): with the primary's range
 * lock every replica still ends identical; with the lock switched off (the
 * unordered fan-out, another test-only switch) the same workload leaves
 * replicas that differ — so the first assertion has the power to fail.
 * Real etcd and `flashpack store` processes; imports dist/.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster, replication } from '../dist/index.js';
import { startCluster, type TestCluster } from './helpers/cluster.js';
import { removeTempDirs } from './helpers/nbd.js';
import { prng, randomBytes } from './helpers/data.js';

const MiB = 1 << 20;
const JITTER = { FLASHPACK_TEST_FANOUT_JITTER_MS: '3' };
const running: TestCluster[] = [];
afterAll(async () => {
  for (const t of running) await t.stop();
  removeTempDirs();
}, 60_000);

/** 20 rounds of 64 writes over sixteen 4 KiB blocks from four connections; resolves to the regions that differ between replicas. */
async function overlapping(env: NodeJS.ProcessEnv): Promise<number> {
  const t = await startCluster(3, 'order', env);
  running.push(t);
  await t.cluster.createVolume('ov', { size: 2 * MiB, replicas: 3, shardSize: 2 * MiB });
  const clients = await Promise.all(Array.from({ length: 4 }, () => Cluster.connect({ etcd: t.endpoints })));
  try {
    const vols = await Promise.all(clients.map((c) => c.openVolume('ov')));
    const rand = prng(7);
    for (let round = 0; round < 20; round++) {
      const writes: Promise<void>[] = [];
      for (let k = 0; k < 64; k++) {
        const off = Math.floor(rand() * 16) * 4096;
        writes.push(vols[k % 4].write(off, randomBytes(4096 * (1 + Math.floor(rand() * 2)), rand)));
      }
      await Promise.all(writes);
    }
    await Promise.all(vols.map((v) => v.flush()));
    const report = await replication.verifyVolume(t.cluster, 'ov');
    expect(report.skipped).toEqual([]);
    for (const v of vols) await v.close();
    return report.differences.length;
  } finally {
    for (const c of clients) c.close();
  }
}

describe('replication ordering: overlapping writes from four connections, replication paths of random latency', () => {
  it('with the primary ordering them: every replica identical', async () => {
    expect(await overlapping(JITTER)).toBe(0);
  }, 120_000);

  it('with an unordered fan-out (PureFlash\'s): replicas differ — the check above can fail', async () => {
    expect(await overlapping({ ...JITTER, FLASHPACK_TEST_UNORDERED_FANOUT: '1' })).toBeGreaterThan(0);
  }, 120_000);
});
