// Chaos for replicated volumes (Vitastor's test_heal.sh, Ceph's thrashosds,
// Jepsen's nemesis, on a small scale): three etcd members and four
// `flashpack store` processes on loopback, a 3-replica volume, and a model
// client writing with verification while each round injects one fault:
//
//   kill-primary      SIGKILL the primary of a shard; restart it after the failover
//   kill-secondary    SIGKILL a replica that is not primary; restart it
//   pause-primary     SIGSTOP a primary for longer than its lease; SIGCONT after the failover
//   kill-etcd-leader  SIGKILL the etcd leader; restart it
//   restart-store     SIGTERM a store (clean stop) and start it again
//   partition-primary (--netns) cut a primary's network for longer than its lease; then heal it
//
// With --netns (root and iproute2) each store runs in a network namespace of
// its own, joined by a veth pair to a bridge here, where etcd and the client
// listen: a partition is that store's link down.
//
// then waits until every shard is OK again and checks: every acknowledged
// write reads back (the model: 8 writers, each in its own stripe, one write
// at a time; a probe block per shard); all replicas identical (`cluster
// verify`); no shard had two stores acknowledge changes in the same epoch.
//
//   node bench/chaos.mjs [--rounds N] [--seed S] [--json] [--netns]     (npm run chaos)
//
// Prints the seed (a run replays with --seed: the same faults on the same
// stores; timing still varies; every run of FAULTS.length rounds has each fault once), one line per round, then a table: failover
// time (SIGKILL or SIGSTOP of a primary → the first write acknowledged by the
// new primary, p50/p99 over the rounds; lease TTL 2 s), and the client's write
// rate while a returning store resyncs against its steady rate before the
// fault. With --json, the last stdout line is the report as JSON. Exit 1 on
// any problem.
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, replication } from '../dist/index.js';
import { installCleanupHandlers, newStore, startEtcdCluster, startStore, stop, stopAll, storeReady } from './helpers/cluster-procs.mjs';
import { createNet, netnsAvailable } from './helpers/netns.mjs';
import { markdownTable } from './table.mjs';

const { values: opt } = parseArgs({ options: { rounds: { type: 'string', default: '30' }, seed: { type: 'string' }, json: { type: 'boolean', default: false }, netns: { type: 'boolean', default: false } } });
const ROUNDS = Number(opt.rounds);
const SEED = opt.seed === undefined ? (Math.random() * 2 ** 32) >>> 0 : Number(opt.seed);
if (!Number.isInteger(ROUNDS) || ROUNDS < 0 || !Number.isInteger(SEED) || SEED < 0 || SEED >= 2 ** 32) {
  console.error(`usage: node bench/chaos.mjs [--rounds N] [--seed 0..4294967295] [--json] [--netns]  (got --rounds ${opt.rounds} --seed ${opt.seed})`);
  process.exit(2);
}
if (opt.netns && !netnsAvailable()) {
  console.error('chaos: --netns needs root and iproute2 (ip netns)');
  process.exit(2);
}
const MiB = 1 << 20;
const SIZE = 16 * MiB;
const SHARD = 4 * MiB;
const STORES = 4;
const WRITERS = 8;
const LEASE_TTL_S = 2;
/** A paused primary stays stopped this long past its lease. */
const PAUSE_EXTRA_MS = 1500;
const SETTLE_MS = 120_000;
/** Compares of the replicas per round when an epoch moves under one (verifyQuiet). */
const VERIFY_ATTEMPTS = 3;
/** Writes measured before each fault for the steady rate. */
const STEADY_MS = 500;
const FAULTS = ['kill-primary', 'kill-secondary', 'pause-primary', 'kill-etcd-leader', 'restart-store', ...(opt.netns ? ['partition-primary'] : [])];

const log = (...a) => console.error(...a);
const problems = [];
const started = performance.now();

/** xorshift32: the faults and the data, from the seed. */
function prng(seed) {
  let x = seed || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}
const rand = prng(SEED);
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const bytes = (n, r) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const v = (r() * 2 ** 32) >>> 0;
    out[i] = v;
    out[i + 1] = v >>> 8;
    out[i + 2] = v >>> 16 & 0x7f; // half-compressible
    out[i + 3] = 0;
  }
  return out;
};
const quantile = (xs, q) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length === 0 ? NaN : v[Math.min(v.length - 1, Math.ceil(q * v.length) - 1)];
};

installCleanupHandlers(log);
log(`chaos: seed ${SEED}, ${ROUNDS} rounds (replay: node bench/chaos.mjs --rounds ${ROUNDS} --seed ${SEED})`);
// With --netns each store runs in a network namespace of its own, bridged to this one.
const net = opt.netns ? createNet(STORES) : null;
const etcd = await startEtcdCluster(3, { host: net?.hostIp ?? '127.0.0.1' });
const stores = Array.from({ length: STORES }, (_, i) => {
  const args = ['--lease-ttl', String(LEASE_TTL_S), '--io-timeout', '3000', ...(net ? ['--listen', `${net.stores[i].ip}:0`] : [])];
  return startStore(newStore(`s${i}`, etcd.urls.join(','), args, net ? (cmd, a) => net.exec(i, cmd, a) : undefined));
});
const cluster = await Cluster.connect({ etcd: etcd.urls, retryMs: 60_000 });
await Promise.all(stores.map((s) => storeReady(s, cluster.meta)));
await cluster.createVolume('chaos', { size: SIZE, replicas: 3, shardSize: SHARD });
const v = await cluster.openVolume('chaos');
const model = bytes(SIZE, prng(SEED ^ 0x5a5a5a5a));
await v.write(0, model);
await v.flush();

// ---- the model client ------------------------------------------------------------------
// Each shard's last 4 KiB is its probe block; the writers keep to their stripes of the rest.
const probeAt = (shard) => (shard + 1) * SHARD - 4096;
const load = { stop: true, done: Promise.resolve(), acks: 0, failures: [] };
function startLoad() {
  load.stop = false;
  const stripe = SIZE / WRITERS;
  const writer = async (w) => {
    const r = prng((SEED + 7919 * (w + 1) + load.acks) >>> 0);
    while (!load.stop) {
      const len = (1 + Math.floor(r() * 8)) * 4096;
      let off = w * stripe + Math.floor(r() * ((stripe - len) / 4096)) * 4096;
      const shard = Math.floor(off / SHARD);
      if (off + len > probeAt(shard)) off = probeAt(shard) - len; // not over the probe block
      const d = bytes(len, r);
      try {
        await v.write(off, d);
        model.set(d, off);
        load.acks++;
      } catch (err) {
        load.failures.push(`writer ${w} at ${off}+${len}: ${err.message}`);
        return;
      }
    }
  };
  load.done = Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
}
async function stopLoad() {
  load.stop = true;
  await load.done;
}

/** Writes the shard's probe block; resolves when acknowledged (the client resends across a failover). */
async function probe(shard) {
  const d = bytes(4096, rand);
  await v.write(probeAt(shard), d);
  model.set(d, probeAt(shard));
}

async function shards() {
  return (await cluster.meta.shards('chaos')).map((r) => r.info);
}

/** Until every store is registered by its current process and every shard is OK; false after SETTLE_MS. */
async function settle() {
  const deadline = Date.now() + SETTLE_MS;
  while (Date.now() < deadline) {
    try {
      const regs = await cluster.meta.stores();
      const live = stores.every((s) => regs.some((r) => r.id === s.id && r.pid === s.rec.child.pid));
      if (live && (await shards()).every((s) => s.state === 'OK')) return true;
    } catch {
      // etcd between leaders: ask again
    }
    await sleep(100);
  }
  return false;
}

/**
 * verifyVolume once the cluster is quiet. A store answers EPOCH or REOPEN
 * when a shard's epoch moves under the compare, and a replica that went
 * RECOVERING meanwhile is skipped: a late handoff or recovery that settle()
 * could not see coming, not a difference between replicas. So
 * settle again and compare again, at most VERIFY_ATTEMPTS times; each retry is
 * counted in the round's row.
 */
async function verifyQuiet(n, row) {
  for (let attempt = 1; ; attempt++) {
    try {
      const report = await replication.verifyVolume(cluster, 'chaos');
      // A replica that turned RECOVERING after settle() (the same late handoff or recovery) is skipped: settle and compare again.
      if (report.skipped.length === 0 || attempt >= VERIFY_ATTEMPTS) return report;
      row.verifyRetries = attempt;
      log(`round ${n}: ${report.skipped.map((s) => `shard ${s.shard} on ${s.store} ${s.state}`).join(', ')} during the compare: settling and comparing again`);
      await settle();
    } catch (err) {
      if (attempt >= VERIFY_ATTEMPTS || !/answered (EPOCH|REOPEN)/.test(err.message)) throw err;
      row.verifyRetries = attempt;
      log(`round ${n}: ${err.message}: settling and comparing again`);
      await settle();
    }
  }
}

/** Every version of a shard's record etcd still has (its history, for a problem report). */
async function shardHistory(index) {
  const key = Buffer.from(`flashpack/shards/chaos/${String(index).padStart(5, '0')}`).toString('base64');
  const call = async (body) => (await fetch(`${etcd.urls[0]}/v3/kv/range`, { method: 'POST', body: JSON.stringify(body) })).json();
  const out = [];
  let rev = Number((await call({ key })).kvs?.[0]?.mod_revision ?? 0);
  while (rev > 0 && out.length < 64) {
    const kv = (await call({ key, revision: String(rev) })).kvs?.[0];
    if (kv === undefined) break;
    const info = JSON.parse(Buffer.from(kv.value, 'base64').toString());
    out.unshift(`rev ${kv.mod_revision} epoch ${info.epoch} primary ${info.primary} ${info.replicas.map((r) => `${r.store}:${r.state}`).join(' ')}`);
    rev = Number(kv.mod_revision) - 1;
  }
  return out;
}

async function restart(s) {
  startStore(s);
  await storeReady(s, cluster.meta);
}

// ---- one round ---------------------------------------------------------------------------
const rounds = [];
/** Round n's fault: each run of FAULTS.length rounds is a seeded permutation, so every fault recurs evenly. */
const schedule = [];
function faultOf(n) {
  while (schedule.length < n) {
    const block = [...FAULTS];
    for (let i = block.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [block[i], block[j]] = [block[j], block[i]];
    }
    schedule.push(...block);
  }
  return schedule[n - 1];
}

async function round(n) {
  const fault = faultOf(n);
  const shard = Math.floor(rand() * (SIZE / SHARD));
  const info = (await shards())[shard];
  const row = { round: n, fault, shard, target: '', failoverMs: null, steadyWps: 0, resyncWps: null, settleMs: 0 };
  const acks0 = load.acks;
  await sleep(STEADY_MS);
  row.steadyWps = ((load.acks - acks0) * 1000) / STEADY_MS;
  // The resync window: from a store's return (restart or SIGCONT) until every shard is OK.
  let resync = null;
  const returned = () => (resync = { acks: load.acks, at: performance.now() });
  const t0 = performance.now();
  switch (fault) {
    case 'kill-primary':
    case 'pause-primary':
    case 'partition-primary': {
      const victim = stores.find((s) => s.id === info.primary);
      const at = stores.indexOf(victim);
      row.target = victim.id;
      if (fault === 'partition-primary') net.cut(at);
      else victim.rec.child.kill(fault === 'kill-primary' ? 'SIGKILL' : 'SIGSTOP');
      await probe(shard);
      row.failoverMs = performance.now() - t0;
      const now = (await shards())[shard];
      if (now.primary === victim.id) problems.push(`round ${n}: shard ${shard} probe acknowledged while ${victim.id} is still its primary (epoch ${now.epoch})`);
      if (fault !== 'kill-primary') {
        // Cut off or stopped for longer than its lease, then back.
        await sleep(Math.max(0, LEASE_TTL_S * 1000 + PAUSE_EXTRA_MS - (performance.now() - t0)));
        if (fault === 'partition-primary') net.heal(at);
        else victim.rec.child.kill('SIGCONT');
        returned();
      } else {
        await victim.rec.exited;
        returned();
        await restart(victim);
      }
      break;
    }
    case 'kill-secondary': {
      const id = pick(info.replicas.filter((r) => r.store !== info.primary)).store;
      const victim = stores.find((s) => s.id === id);
      row.target = victim.id;
      victim.rec.child.kill('SIGKILL');
      await victim.rec.exited;
      await sleep(500);
      returned();
      await restart(victim);
      break;
    }
    case 'kill-etcd-leader': {
      const leader = await etcd.leader();
      row.target = `etcd m${leader}`;
      if (leader < 0) {
        problems.push(`round ${n}: no etcd leader to kill`);
        break;
      }
      etcd.kill(leader);
      await sleep(1000);
      await etcd.restart(leader);
      break;
    }
    case 'restart-store': {
      const victim = pick(stores);
      row.target = victim.id;
      const exit = await stop(victim.rec, 30_000);
      if (exit.killed || exit.code !== 0) problems.push(`round ${n}: store ${victim.id} did not stop cleanly on SIGTERM (${JSON.stringify(exit)})`);
      returned();
      await restart(victim);
      break;
    }
  }
  const t1 = performance.now();
  if (!(await settle())) {
    problems.push(`round ${n}: not settled within ${SETTLE_MS} ms: ${JSON.stringify(await shards().catch((e) => e.message))}`);
    for (let i = 0; i < SIZE / SHARD; i++) log(`shard ${i} history:\n  ${(await shardHistory(i).catch((e) => [e.message])).join('\n  ')}`);
  }
  row.settleMs = performance.now() - t1;
  if (resync !== null) row.resyncWps = ((load.acks - resync.acks) * 1000) / Math.max(1, performance.now() - resync.at);

  // Check, with the load stopped.
  await stopLoad();
  problems.push(...load.failures.map((f) => `round ${n}: ${f}`));
  load.failures = [];
  await v.flush();
  const back = await v.read(0, SIZE);
  const at = back.findIndex((b, i) => b !== model[i]);
  if (at >= 0) problems.push(`round ${n}: byte ${at} (shard ${Math.floor(at / SHARD)}) reads ${back[at]}, acknowledged ${model[at]}`);
  const report = await verifyQuiet(n, row);
  for (const d of report.differences) problems.push(`round ${n}: replicas differ: shard ${d.shard} at ${d.offset}+${d.length} (${d.stores.join(', ')})`);
  for (const s of report.skipped) problems.push(`round ${n}: replica of shard ${s.shard} on ${s.store} not compared (${s.state})`);
  const by = new Map();
  for (const a of v.stats().acknowledgedBy) {
    const k = `${a.shard}@${a.epoch}`;
    if (by.has(k) && by.get(k) !== a.store) problems.push(`round ${n}: shard ${a.shard} epoch ${a.epoch} acknowledged by ${by.get(k)} and ${a.store}`);
    by.set(k, a.store);
  }
  rounds.push(row);
  log(`round ${n}: ${fault} ${row.target} (shard ${shard})${row.failoverMs === null ? '' : `, failover ${row.failoverMs.toFixed(0)} ms`}, settled in ${row.settleMs.toFixed(0)} ms; writes/s ${row.steadyWps.toFixed(0)} before${row.resyncWps === null ? '' : `, ${row.resyncWps.toFixed(0)} while resyncing`}; ${problems.length} problems`);
  startLoad();
}

try {
  startLoad();
  for (let n = 1; n <= ROUNDS && problems.length === 0; n++) await round(n);
  await stopLoad();
  problems.push(...load.failures);
} catch (err) {
  problems.push(`aborted: ${err.stack ?? err}`);
}

// ---- report ------------------------------------------------------------------------------
const failovers = rounds.filter((r) => r.failoverMs !== null).map((r) => r.failoverMs);
const resync = rounds.filter((r) => r.resyncWps !== null);
const sum = (xs, f) => xs.reduce((a, x) => a + f(x), 0);
const steady = sum(rounds, (r) => r.steadyWps) / Math.max(1, rounds.length);
const during = sum(resync, (r) => r.resyncWps) / Math.max(1, resync.length);
const result = {
  seed: SEED, rounds: rounds.length, leaseTtlSeconds: LEASE_TTL_S, netns: net !== null,
  faults: Object.fromEntries(FAULTS.map((f) => [f, rounds.filter((r) => r.fault === f).length])),
  failoverMs: { count: failovers.length, p50: quantile(failovers, 0.5), p99: quantile(failovers, 0.99), max: Math.max(...failovers, 0) },
  writesPerSecond: { steady, duringResync: during, ratio: steady > 0 ? during / steady : NaN },
  acknowledgedWrites: load.acks, elapsedSeconds: (performance.now() - started) / 1000, problems,
};
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');
console.log(markdownTable(
  [{ title: 'measure', align: 'left' }, { title: 'value', align: 'right' }],
  [
    ['rounds (seed)', `${rounds.length} (${SEED})`],
    ['faults', Object.entries(result.faults).map(([f, c]) => `${f} ${c}`).join(', ')],
    [`failover ms p50 / p99 / max (${failovers.length}; lease TTL ${LEASE_TTL_S} s)`, `${fmt(result.failoverMs.p50)} / ${fmt(result.failoverMs.p99)} / ${fmt(result.failoverMs.max)}`],
    ['client writes/s: steady / during resync (ratio)', `${fmt(steady)} / ${fmt(during)} (${Number.isFinite(result.writesPerSecond.ratio) ? result.writesPerSecond.ratio.toFixed(2) : 'n/a'})`],
    ['acknowledged writes', String(load.acks)],
    ['problems', String(problems.length)],
  ],
));
for (const p of problems.slice(0, 20)) log(`PROBLEM: ${p}`);
if (problems.length > 0) for (const s of stores) log(`==== store ${s.id} (log tail)\n${s.rec.log.slice(-6000)}`);
if (opt.json) console.log(JSON.stringify(result));
cluster.close();
await stopAll(10_000);
net?.destroy();
process.exit(problems.length === 0 ? 0 : 1);
