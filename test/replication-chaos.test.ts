/**
 * The chaos run, bounded: bench/chaos.mjs with three etcd members, four
 * stores and a 3-replica volume under a model client, CHAOS_ROUNDS rounds
 * (default 30; every fault five or six times; with root, each store in a
 * network namespace and partitions among the faults), a fresh seed each run (printed; replay
 * with `node bench/chaos.mjs --rounds N --seed S`). Each round checks that every
 * acknowledged write reads back, that all replicas are identical, and that no
 * shard had two stores acknowledge writes in the same epoch. Imports dist/
 * (through the script).
 */
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';

const root = path.join(import.meta.dirname, '..');
const ROUNDS = Number(process.env.CHAOS_ROUNDS ?? 30);
// Network partitions need network namespaces: root and iproute2 (CI has both).
const NETNS = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status === 0;
const FAULTS = ['kill-primary', 'kill-secondary', 'pause-primary', 'kill-etcd-leader', 'restart-store', ...(NETNS ? ['partition-primary'] : [])];

describe('replicated volume chaos', () => {
  it.skipIf(ROUNDS === 0)(`${ROUNDS} rounds of faults under a verifying client lose nothing acknowledged; replicas identical; one primary per epoch`, async () => {
    const child = spawn(process.execPath, [path.join(root, 'bench', 'chaos.mjs'), '--rounds', String(ROUNDS), '--json', ...(NETNS ? ['--netns'] : [])], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-20_000)));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    console.log(err.split('\n').find((l) => l.startsWith('chaos: seed')));
    console.log(out);
    let report: { rounds: number; faults: Record<string, number>; problems: string[]; failoverMs: { count: number } };
    try {
      report = JSON.parse(out.trim().split('\n').pop()!);
    } catch {
      throw new Error(`chaos exited ${code} without a report:\n${err}`);
    }
    expect(report.problems, err).toEqual([]);
    expect(code).toBe(0);
    expect(report.rounds).toBe(ROUNDS);
    for (const f of FAULTS) expect(report.faults[f], f).toBeGreaterThanOrEqual(Math.floor(ROUNDS / FAULTS.length));
    expect(report.failoverMs.count).toBe(report.faults['kill-primary'] + report.faults['pause-primary'] + (report.faults['partition-primary'] ?? 0));
  }, 1_200_000);
});
