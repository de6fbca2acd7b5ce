/**
 * The same replicated-volume client smoke suite (test/smoke/replication-client.mjs)
 * under Node, Deno and Bun, against one real etcd and three `flashpack store`
 * processes this Node test starts: each runtime imports the built dist/,
 * creates its own volume, writes across a shard boundary, recovers from a
 * stale epoch, closes, and exits on its own (a handle left open is a timeout
 * here). Afterwards every replica of its volume is identical (verifyVolume).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { replication } from '../dist/index.js';
import { startCluster, type TestCluster } from './helpers/cluster.js';
import { explain, removeTempDirs, repoRoot, run } from './helpers/nbd.js';

const MiB = 1 << 20;
/** The script's whole run, etcd round trips and the 1 s epoch wait included; a hang fails here. */
const SCRIPT_TIMEOUT_MS = 60_000;
const script = path.join(repoRoot, 'test', 'smoke', 'replication-client.mjs');
const bin = (name: string): string => path.join(repoRoot, 'node_modules', '.bin', name);

// [label, command line before the script, what report.mjs names the runtime]
// Deno: the network (etcd's HTTP gateway, the stores' TCP port) and reading dist/ and its wasm; nothing else.
const runtimes: [string, string[], string][] = [
  ['Node', [process.execPath], 'node'],
  ['Deno', [bin('deno'), 'run', '--allow-net=127.0.0.1', '--allow-read'], 'deno'],
  ['Bun', [bin('bun')], 'bun'],
];

let t: TestCluster;
beforeAll(async () => {
  t = await startCluster(3, 'repl-runtimes');
}, 60_000);
afterAll(async () => {
  await t?.stop();
  removeTempDirs();
}, 60_000);

describe('the replicated-volume client smoke suite under each runtime', () => {
  for (const [label, runtime, reports] of runtimes) {
    it(`${label}: create, write across a shard boundary, REOPEN, read back, close, exit on its own; replicas identical`, async () => {
      const name = `rt-${label.toLowerCase()}-${process.pid}`;
      const r = await run(runtime[0], [...runtime.slice(1), script, t.endpoints.join(','), name], { cwd: repoRoot, timeoutMs: SCRIPT_TIMEOUT_MS, env: { ...process.env, NO_COLOR: '1' } });
      expect(r.timedOut, `the script did not exit on its own\n${explain(r)}`).toBe(false);
      expect(r.code, explain(r)).toBe(0);
      const [result, summary] = r.stdout.trim().split('\n').slice(-2).map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(String(summary.runtime).startsWith(reports), `ran under ${String(summary.runtime)}`).toBe(true);
      expect(summary.failures).toEqual([]);
      expect(summary.checks).toBeGreaterThanOrEqual(12);
      expect(result).toMatchObject({ volume: name, shards: 2, bytesWritten: 3 * MiB / 2 + 2 * 64 * 1024 + 128 * 1024 });
      expect(result.reopens).toBeGreaterThanOrEqual(1);

      // Written by another runtime, checked from this one: every replica of both shards the same bytes.
      const report = await replication.verifyVolume(t.cluster, name);
      expect(report.skipped).toEqual([]);
      expect(report.differences).toEqual([]);
      expect(report.replicasRead).toBe(6);
      expect(report.bytesCompared).toBe(3 * 8 * MiB);
    }, SCRIPT_TIMEOUT_MS + 30_000);
  }
});
