/**
 * A replicated cluster for tests: a real etcd (helpers/etcd.ts) and real
 * `flashpack store` processes on loopback, each with its own data directory.
 * Stores can be SIGKILLed, SIGSTOPped and restarted on the same directory (same id).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { flashpackBin, tempDir } from './nbd.js';
import { startEtcd, type EtcdCluster } from './etcd.js';
import { expect } from 'vitest';
import { Cluster, replication } from '../../dist/index.js';

const READY_MS = 20_000;
const STOP_MS = 30_000;

export class StoreProcess {
  child: ChildProcess;
  log = '';
  constructor(readonly id: string, readonly dir: string, readonly etcd: string[], readonly env: NodeJS.ProcessEnv = {}) {
    this.child = this.spawn();
  }

  private spawn(): ChildProcess {
    this.log = '';
    const child = spawn(process.execPath, [flashpackBin, 'store', '--etcd', this.etcd.join(','), '--dir', this.dir, '--listen', '127.0.0.1:0', '--id', this.id, '--lease-ttl', '2', '--io-timeout', '5000'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.env } });
    const keep = (b: Buffer): void => {
      this.log = (this.log + b.toString()).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    live.add(child);
    child.once('exit', () => live.delete(child));
    return child;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits until the store is registered in etcd by this process. */
  async ready(meta: replication.ClusterMeta): Promise<this> {
    const deadline = Date.now() + READY_MS;
    for (;;) {
      if (!this.running) throw new Error(`store ${this.id} exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.log}`);
      const s = await meta.store(this.id).catch(() => null);
      if (s !== null && s.pid === this.child.pid) return this;
      if (Date.now() > deadline) throw new Error(`store ${this.id} did not register within ${READY_MS} ms:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const exited = new Promise<void>((r) => (this.running ? this.child.once('exit', () => r()) : r()));
    this.child.kill(signal);
    return exited;
  }

  restart(): void {
    this.child = this.spawn();
  }

  /** SIGTERM; resolves to the exit code (SIGKILL after STOP_MS). */
  async stop(): Promise<number | null> {
    if (!this.running) return this.child.exitCode;
    const exited = new Promise<number | null>((r) => this.child.once('exit', (code) => r(code)));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_MS);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface TestCluster {
  etcd: EtcdCluster;
  endpoints: string[];
  stores: StoreProcess[];
  cluster: Cluster;
  meta: replication.ClusterMeta;
  stop(): Promise<void>;
}

/** etcd plus `n` stores (s0, s1, …), all registered; the Cluster client connected. */
export async function startCluster(n: number, prefix = 'cluster', env: NodeJS.ProcessEnv = {}, opts: { etcdMembers?: 1 | 3 } = {}): Promise<TestCluster> {
  const etcd = await startEtcd({ members: opts.etcdMembers ?? 1 });
  const root = tempDir(prefix);
  const cluster = await Cluster.connect({ etcd: etcd.endpoints });
  const stores = Array.from({ length: n }, (_, i) => new StoreProcess(`s${i}`, path.join(root, `s${i}`), etcd.endpoints, env));
  try {
    await Promise.all(stores.map((s) => s.ready(cluster.meta)));
  } catch (err) {
    for (const s of stores) await s.kill();
    cluster.close();
    await etcd.stop();
    throw err;
  }
  return {
    etcd, endpoints: etcd.endpoints, stores, cluster, meta: cluster.meta,
    async stop() {
      cluster.close();
      for (const s of stores) await s.stop();
      await etcd.stop();
    },
  };
}

/**
 * Polls `f` every 100 ms until it returns something truthy (an error thrown by
 * f counts as not yet: etcd may be between leaders); throws after `ms`.
 */
export async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `cluster verify` of a quiet volume: every replica read (none skipped) and all identical. */
export async function expectReplicasAgree(cluster: Cluster, name: string, onDiffer?: () => void): Promise<void> {
  const report = await replication.verifyVolume(cluster, name);
  if (report.differences.length > 0) onDiffer?.();
  expect(report.skipped).toEqual([]);
  expect(report.differences).toEqual([]);
}
