/**
 * Real etcd processes for tests: one member or a three-member cluster on
 * 127.0.0.1 (free ports from the OS), each in a temp data dir, with short
 * raft timeouts so a leader loss is over in about a second. Every wait is
 * bounded; stop() and process exit kill whatever is still running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const HEARTBEAT_INTERVAL_MS = 50;
const ELECTION_TIMEOUT_MS = 500;
const HEALTHY_TIMEOUT_MS = 20_000;
const HEALTH_POLL_MS = 50;
const HEALTH_REQUEST_TIMEOUT_MS = 1_000;
const STOP_GRACE_MS = 2_000;
/** Output kept per member (the tail, where a failed start says why). */
const LOG_TAIL_CHARS = 4_000;

export interface EtcdCluster {
  endpoints: string[];
  /** The current process id of each member (a restart changes it). */
  pids: number[];
  kill(i: number, signal?: NodeJS.Signals): void;
  /** Starts member i again on its data dir (killing it first if it still runs) and waits until it is healthy. */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

interface Member {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess;
  log: string;
}

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

export async function startEtcd(opts: { members?: 1 | 3 } = {}): Promise<EtcdCluster> {
  const count = opts.members ?? 1;
  if (!onPath('etcd')) throw new Error('etcd is not on the PATH: install the Debian package etcd-server (apt-get install etcd-server)');
  const ports = await freePorts(2 * count);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-etcd-'));
  dirs.add(root);
  const members: Member[] = [];
  for (let i = 0; i < count; i++) {
    const m = { name: `m${i}`, clientUrl: `http://127.0.0.1:${ports[2 * i]}`, peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}` };
    members.push({ ...m, dataDir: path.join(root, m.name), proc: null as unknown as ChildProcess, log: '' });
  }
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  const token = `flashpack-${path.basename(root)}`;
  const launch = (m: Member): void => {
    const args = [
      '--name', m.name, '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl, '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl, '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', initialCluster, '--initial-cluster-token', token, '--initial-cluster-state', 'new',
      '--heartbeat-interval', String(HEARTBEAT_INTERVAL_MS), '--election-timeout', String(ELECTION_TIMEOUT_MS),
      '--logger', 'zap', '--log-level', 'warn',
    ];
    const proc = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    m.proc = proc;
    m.log = '';
    const keep = (b: Buffer): void => {
      m.log = (m.log + b.toString()).slice(-LOG_TAIL_CHARS);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
  };
  const stop = async (): Promise<void> => {
    await Promise.all(members.map((m) => terminate(m.proc)));
    fs.rmSync(root, { recursive: true, force: true });
    dirs.delete(root);
  };
  members.forEach(launch);
  try {
    await Promise.all(members.map(waitHealthy));
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    endpoints: members.map((m) => m.clientUrl),
    get pids() {
      return members.map((m) => m.proc.pid ?? -1);
    },
    kill(i, signal = 'SIGKILL') {
      members[i].proc.kill(signal);
    },
    async restart(i) {
      await terminate(members[i].proc, 0);
      launch(members[i]); // on an existing data dir etcd ignores the --initial-* flags
      await waitHealthy(members[i]);
    },
    stop,
  };
}

/** The index of the member that is raft leader, per POST /v3/maintenance/status (header.member_id == leader). */
export async function findLeader(endpoints: string[]): Promise<number> {
  for (let i = 0; i < endpoints.length; i++) {
    try {
      const res = await fetch(`${endpoints[i]}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(HEALTH_REQUEST_TIMEOUT_MS) });
      const s = (await res.json()) as { header?: { member_id?: string }; leader?: string };
      if (s.leader !== undefined && s.header?.member_id === s.leader) return i;
    } catch {
      // a dead member: ask the next
    }
  }
  throw new Error(`no leader among ${endpoints.join(', ')}`);
}

async function waitHealthy(m: Member): Promise<void> {
  const deadline = Date.now() + HEALTHY_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    if (m.proc.exitCode !== null || m.proc.signalCode !== null) {
      throw new Error(`etcd ${m.name} exited (${m.proc.exitCode ?? m.proc.signalCode}) before it was healthy:\n${m.log}`);
    }
    try {
      const res = await fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(HEALTH_REQUEST_TIMEOUT_MS) });
      last = await res.text();
      if ((JSON.parse(last) as { health?: string }).health === 'true') return;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
  }
  throw new Error(`etcd ${m.name} at ${m.clientUrl} not healthy within ${HEALTHY_TIMEOUT_MS} ms (last: ${last}):\n${m.log}`);
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
async function terminate(proc: ChildProcess, graceMs = STOP_GRACE_MS): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Distinct free ports: all listened on at once (so none repeats), then closed for etcd to take. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((d) => {
    try {
      fs.accessSync(path.join(d, name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
