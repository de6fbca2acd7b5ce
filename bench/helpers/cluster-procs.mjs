// Child processes for bench/replication.mjs and bench/chaos.mjs: a private
// temp directory, etcd (one member or a cluster), the `flashpack store` processes (started, restarted on the same --dir,
// and awaited until registered in etcd), and cleanup that leaves nothing
// running and nothing in the temp dir, also on SIGINT/SIGTERM or a crash.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'flashpack.mjs');
const LOG_TAIL_CHARS = 32_000;
const ETCD_HEALTHY_MS = 20_000;
const STORE_READY_MS = 30_000;
const POLL_MS = 20;
const EVENTS_MAX = 10_000;
/** A stop's default grace before SIGKILL. */
export const STOP_GRACE_MS = 30_000;

const live = new Set(); // every child still running
let tmpRoot = null;

/**
 * Timestamped store log lines about recovery, { ms, store, line }, in arrival
 * order (bounded: only lines that mention "recovered:", RECOVERING or
 * "marked ERROR").
 */
export const storeEvents = [];

/** The private temp directory (created on first use), or `name` in it. */
export function tmp(name = '') {
  tmpRoot ??= fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-repl-bench-'));
  return path.join(tmpRoot, name);
}

/**
 * Spawns a child in the temp directory, keeping its output's tail in `rec.log`;
 * `onLine(line, ms)` hears each stderr/stdout line as it arrives. Returns
 * { label, child, log, exit, exited } (`exited` resolves { code, signal }).
 */
export function spawnTracked(label, cmd, args, onLine) {
  const child = spawn(cmd, args, { cwd: tmp(), stdio: ['pipe', 'pipe', 'pipe'] });
  const rec = { label, child, log: '', exit: null };
  let partial = '';
  const keep = (d) => {
    const text = d.toString();
    rec.log = (rec.log + text).slice(-LOG_TAIL_CHARS);
    if (!onLine) return;
    const now = performance.now();
    const lines = (partial + text).split('\n');
    partial = lines.pop();
    for (const line of lines) onLine(line, now);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.stdin.on('error', () => {});
  live.add(rec);
  rec.exited = new Promise((resolve) => {
    child.on('error', (err) => { rec.log += `\nspawn error: ${err.message}`; });
    child.on('close', (code, signal) => {
      live.delete(rec);
      rec.exit = { code, signal };
      resolve(rec.exit);
    });
  });
  return rec;
}

/** SIGTERM (SIGKILL after graceMs); resolves { code, signal, killed }. */
export async function stop(rec, graceMs = STOP_GRACE_MS, sig = 'SIGTERM') {
  let killed = false;
  if (!rec.exit) rec.child.kill(sig);
  const timer = setTimeout(() => { killed = true; rec.child.kill('SIGKILL'); }, graceMs);
  const exit = await rec.exited;
  clearTimeout(timer);
  return { ...exit, killed };
}

/** Stops every child still running (SIGKILL after graceMs). */
export async function stopAll(graceMs) {
  await Promise.all([...live].map((rec) => stop(rec, graceMs)));
}

/** Synchronous last resort (also on process 'exit'): SIGKILL what is left, remove the temp dir. */
export function cleanupSync() {
  for (const rec of live) {
    try { rec.child.kill('SIGKILL'); } catch { /* gone */ }
  }
  if (tmpRoot) fs.rmSync(tmpRoot, { recursive: true, force: true });
}

/** Installs SIGINT/SIGTERM and exit handlers: stop the children, remove the temp dir, exit 130/143. */
export function installCleanupHandlers(log = console.error) {
  let stopping = false;
  const onSignal = (sig) => {
    if (stopping) return;
    stopping = true;
    log(`\n${sig}: stopping the stores, etcd and the echo server; removing ${tmp()}`);
    stopAll(5000).catch(() => {}).finally(() => {
      cleanupSync();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('exit', cleanupSync);
}

/** Distinct free ports: all listened on at once (so none repeats), then closed for etcd to take. */
async function freePorts(n) {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Starts a one-member etcd on free loopback ports and waits until it is healthy: { rec, url }. */
export async function startEtcd() {
  const c = await startEtcdCluster(1);
  return { rec: c.members[0].rec, url: c.urls[0] };
}

/**
 * Starts an etcd cluster of `n` members on free loopback ports (short raft
 * timeouts, so a lost leader is replaced in about a second) and waits until
 * every member is healthy; clients reach them on `host` (default 127.0.0.1).
 * Returns { urls, members, kill(i, signal), restart(i), leader() }.
 */
export async function startEtcdCluster(n, { host = '127.0.0.1' } = {}) {
  const ports = await freePorts(2 * n);
  const members = Array.from({ length: n }, (_, i) => ({
    name: `m${i}`, url: `http://${host}:${ports[2 * i]}`, peer: `http://127.0.0.1:${ports[2 * i + 1]}`, rec: null,
  }));
  const initial = members.map((m) => `${m.name}=${m.peer}`).join(',');
  const launch = (m) => {
    m.rec = spawnTracked(`etcd ${m.name}`, 'etcd', [
      '--name', m.name, '--data-dir', tmp(`etcd-${m.name}`),
      '--listen-client-urls', m.url, '--advertise-client-urls', m.url, '--listen-peer-urls', m.peer, '--initial-advertise-peer-urls', m.peer,
      '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', path.basename(tmp()),
      '--heartbeat-interval', '50', '--election-timeout', '500', '--logger', 'zap', '--log-level', 'warn',
    ]);
  };
  members.forEach(launch);
  await Promise.all(members.map(etcdHealthy));
  return {
    urls: members.map((m) => m.url),
    members,
    kill(i, signal = 'SIGKILL') {
      members[i].rec.child.kill(signal);
    },
    /** Starts member i again on its data dir (killing it first) and waits until it is healthy. */
    async restart(i) {
      await stop(members[i].rec, 0, 'SIGKILL');
      launch(members[i]);
      await etcdHealthy(members[i]);
    },
    /** The index of the raft leader (per /v3/maintenance/status), or -1. */
    async leader() {
      for (let i = 0; i < n; i++) {
        try {
          const res = await fetch(`${members[i].url}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) });
          const st = await res.json();
          if (st.leader !== undefined && st.header?.member_id === st.leader) return i;
        } catch {
          // a dead member: ask the next
        }
      }
      return -1;
    },
  };
}

async function etcdHealthy(m) {
  const deadline = Date.now() + ETCD_HEALTHY_MS;
  for (let last = ''; ;) {
    if (m.rec.exit) throw new Error(`etcd ${m.name} exited (${m.rec.exit.code ?? m.rec.exit.signal}) before it was healthy (is it installed? apt-get install etcd-server):\n${m.rec.log}`);
    try {
      const res = await fetch(`${m.url}/health`, { signal: AbortSignal.timeout(1000) });
      last = await res.text();
      if (JSON.parse(last).health === 'true') return;
    } catch (e) {
      last = String(e);
    }
    if (Date.now() > deadline) throw new Error(`etcd ${m.name} at ${m.url} not healthy within ${ETCD_HEALTHY_MS} ms (last: ${last}):\n${m.rec.log}`);
    await sleep(50);
  }
}

/**
 * A store record, not started yet: { id, dir, etcdUrl, args, wrap, rec }; `args`
 * are more `flashpack store` options; `wrap(cmd, args)` → [cmd, args] runs it
 * some other way (in a network namespace).
 */
export function newStore(id, etcdUrl, args = [], wrap = (cmd, a) => [cmd, a]) {
  return { id, dir: tmp(id), etcdUrl, args, wrap, rec: null };
}

/** Starts (or restarts, on the same --dir and --id) `flashpack store` for record `s`; returns `s`. */
export function startStore(s) {
  const listen = s.args?.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const [cmd, args] = (s.wrap ?? ((c, a) => [c, a]))(process.execPath, [CLI, 'store', '--etcd', s.etcdUrl, '--dir', s.dir, ...listen, '--id', s.id, ...(s.args ?? [])]);
  s.rec = spawnTracked(`store ${s.id}`, cmd, args, (line, ms) => {
    if (storeEvents.length < EVENTS_MAX && /recovered:|RECOVERING|marked ERROR/.test(line)) storeEvents.push({ ms, store: s.id, line });
  });
  return s;
}

/** Waits until store `s` is registered in etcd by its current process; resolves that moment (performance.now()). */
export async function storeReady(s, meta) {
  const deadline = Date.now() + STORE_READY_MS;
  for (;;) {
    if (s.rec.exit) throw new Error(`store ${s.id} exited (${s.rec.exit.code ?? s.rec.exit.signal}):\n${s.rec.log}`);
    const info = await meta.store(s.id).catch(() => null);
    if (info !== null && info.pid === s.rec.child.pid) return performance.now();
    if (Date.now() > deadline) throw new Error(`store ${s.id} did not register within ${STORE_READY_MS} ms:\n${s.rec.log}`);
    await sleep(POLL_MS);
  }
}
