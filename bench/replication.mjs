// Replicated volumes: 4 KiB random write IOPS and latency of a cluster volume
// (R = 1, 2, 3) against one local flashpack Volume and against the loopback
// transport itself, the wire bytes per logical byte, and the resync rate of a
// returning replica.
//
//   node bench/replication.mjs [--quick]       (npm run bench:replication)
//
// One run, one machine, everything on 127.0.0.1: one etcd, three `flashpack
// store` processes (s0, s1, s2; each replica an lz4 + dedupe volume with one
// engine and one device worker, flushed by its primary every 2 s), and this
// process as the client (helpers/cluster-procs.mjs starts and stops them).
//  1. Configurations: (a) a local Volume in this process (same engine sizing
//     as a replica: 1 engine + 1 device worker; flushed every FLUSH_INTERVAL_MS
//     like a store's shards; physical size 2×S, see LOCAL_PHYSICAL_FACTOR);
//     (b) ClusterVolume with R = 1, 2, 3 (S bytes in shards of SHARD bytes, so
//     primaries spread over the three stores); (c) the transport limit: a
//     64-byte head + 4 KiB payload sent over one loopback TCP connection to an
//     echo server in a child process (helpers/echo-server.mjs), answered by a
//     32-byte reply, QD requests pipelined.
//  2. Every volume is first written in full (1 MiB sequential, QD 8) and
//     flushed, so the measured writes are overwrites, not first allocations.
//  3. Data: random and incompressible (slices of a random pool), every 4 KiB
//     block stamped with a unique 64-bit counter, so nothing deduplicates
//     (helpers/unique-data.mjs).
//  4. Each round runs every configuration at QD 1 and QD 32 (RAMP s warm-up,
//     then SECONDS s measured), interleaved, in a rotated order per round;
//     medians of ROUNDS rounds are reported. Ratios are medians of the
//     per-round ratios (each against the same round's local volume / TCP run).
//  5. Resync (helpers/resync.mjs): a 2-shard R = 3 volume is written in full
//     and flushed; the store that is a secondary of both shards is SIGKILLed;
//     RESYNC_MB of random distinct 1 MiB regions are written (degraded) and
//     flushed; the store is restarted on the same --dir and --id. Timed from
//     its registration in etcd to every shard OK again. Bytes: the dirty map in
//     etcd before the restart (1 MiB a region), and the store's log lines
//     "recovered: N dirty regions (B bytes) copied", one per shard, each
//     counting that recovery's own copies: their sum is what the store copied
//     (a sum other than the dirty map is reported as a problem). The replicas
//     are compared afterwards (verifyVolume).
//  6. Wire bytes, over all of an R's 4 KiB runs: ClusterVolume.stats()
//     .wireBytesSent (each request's own 64-byte head + data), the connections'
//     own totals (Cluster.wireBytes()), and the loopback interface's transmit
//     bytes.
//
// Env: REPL_BENCH_SIZE_MB (S, default 256), REPL_BENCH_SHARD_MB (default 64),
// REPL_BENCH_SECONDS (default 4; --quick 1.25), REPL_BENCH_RAMP (default 1;
// --quick 0.5), REPL_BENCH_ROUNDS (default 5; --quick 3), REPL_BENCH_RESYNC_MB
// (default 96; --quick 64). Tables to stdout, progress to stderr, numbers to
// bench/results/replication.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { finishRun } from './helpers/results.mjs';
import { markdownTable, formatMBps, formatRatio } from './table.mjs';
import { STOP_GRACE_MS, tmp, spawnTracked, stop, stopAll, cleanupSync, installCleanupHandlers, startEtcd, newStore, startStore, storeReady } from './helpers/cluster-procs.mjs';
import { startEchoServer } from './helpers/echo-server.mjs';
import { measureResync, describeResync } from './helpers/resync.mjs';
import { fillUnique, laneBuffers } from './helpers/unique-data.mjs';

const MiB = 1 << 20;
const BLOCK_BYTES = 4096;

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
if (!fs.existsSync(path.join(projectRoot, 'dist', 'index.js')) || !fs.existsSync(path.join(projectRoot, 'dist', 'cli', 'main.js'))) {
  console.error('dist/index.js or dist/cli/main.js missing: npm run build first');
  process.exit(2);
}
const { Volume, Cluster, replication } = await import('../dist/index.js');

const QUICK = process.argv.includes('--quick');
if (process.argv.includes('-h') || process.argv.includes('--help')) {
  console.log('usage: node bench/replication.mjs [--quick]   (env: REPL_BENCH_SIZE_MB, REPL_BENCH_SHARD_MB, REPL_BENCH_SECONDS, REPL_BENCH_RAMP, REPL_BENCH_ROUNDS, REPL_BENCH_RESYNC_MB)');
  process.exit(0);
}
const env = (name, dflt) => Number(process.env[name] || dflt);
const S = env('REPL_BENCH_SIZE_MB', 256) * MiB;
const SHARD = env('REPL_BENCH_SHARD_MB', 64) * MiB;
const SECONDS = env('REPL_BENCH_SECONDS', QUICK ? 1.25 : 4);
const RAMP = env('REPL_BENCH_RAMP', QUICK ? 0.5 : 1);
const ROUNDS = env('REPL_BENCH_ROUNDS', QUICK ? 3 : 5);
const RESYNC_MB = env('REPL_BENCH_RESYNC_MB', QUICK ? 64 : 96);
const RESYNC_SHARD = SHARD;
const RESYNC_SHARDS = 2; // shard i's primary is store i (metadata.ts places by rotation): s2 leads neither
const RESYNC_SIZE = RESYNC_SHARD * RESYNC_SHARDS;
const STORES = 3;
const QDS = [1, 32];
const PREFILL_QD = 8;
const PREFILL_IO_BYTES = MiB;
const FLUSH_INTERVAL_MS = 2000; // a store's default flushMs
// A full default-sized volume (spare of 1,024 blocks) fails random 4 KiB
// overwrites at QD 32 with ENOSPC: reserveSpace() flushes once, and the
// writers waiting on that flush race for the blocks it frees. Twice the
// logical size leaves room between the periodic flushes.
const LOCAL_PHYSICAL_FACTOR = 2;
const LATENCY_SAMPLES_MAX = 1 << 21;
const RESULTS_FILE = path.join(projectRoot, 'bench', 'results', 'replication.json');
if (!(S % SHARD === 0 && SHARD % MiB === 0 && RESYNC_MB >= 1 && RESYNC_MB <= RESYNC_SIZE / MiB && ROUNDS >= 1 && SECONDS > 0)) {
  console.error(`bad settings: S ${S}, shard ${SHARD}, resync ${RESYNC_MB} MiB of ${RESYNC_SIZE / MiB}, rounds ${ROUNDS}, seconds ${SECONDS}`);
  process.exit(2);
}

const log = (...a) => console.error(...a);
const started = performance.now();
const elapsedS = () => (performance.now() - started) / 1000;
/** A progress line stamped with the seconds since the start. */
const progress = (msg) => log(`  [${elapsedS().toFixed(0)} s] ${msg}`);
const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const fmtInt = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const fmtUs = (ms) => (Number.isFinite(ms) ? (ms * 1000 >= 100 ? Math.round(ms * 1000).toLocaleString('en-US') : (ms * 1000).toFixed(1)) : 'n/a');
const cols = (titles) => titles.map((title, i) => ({ title, align: i < 2 ? 'left' : 'right' }));
const problems = [];
const problem = (msg) => { problems.push(msg); log(`  PROBLEM: ${msg}`); };
let failed = false;

installCleanupHandlers(log); // processes and temp files: all removed on exit, Ctrl-C included

const lanes4k = laneBuffers(Math.max(...QDS), BLOCK_BYTES);
const lanesPrefill = laneBuffers(PREFILL_QD, PREFILL_IO_BYTES);
const latencies = new Float64Array(LATENCY_SAMPLES_MAX);

/**
 * Random 4 KiB writes by `qd` lanes for RAMP s (not counted), then SECONDS s:
 * { iops, p50, p99 (ms), ops }.
 */
async function drive(write, qd, blocks) {
  let measuring = false;
  let stopped = false;
  let ops = 0;
  let samples = 0;
  let errors = 0;
  let firstError = null;
  const lane = async (k) => {
    const { buf, view } = lanes4k[k];
    while (!stopped) {
      fillUnique(buf, view);
      const offset = Math.floor(Math.random() * blocks) * BLOCK_BYTES;
      const t0 = performance.now();
      try {
        await write(offset, buf);
      } catch (err) {
        errors++;
        firstError ??= err;
        if (errors > 10) stopped = true;
        continue;
      }
      if (!measuring) continue;
      ops++;
      if (samples < LATENCY_SAMPLES_MAX) latencies[samples++] = performance.now() - t0;
    }
  };
  const running = Promise.all(Array.from({ length: qd }, (_, k) => lane(k)));
  await sleep(RAMP * 1000);
  measuring = true;
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  measuring = false;
  const ms = performance.now() - t0;
  stopped = true;
  await running;
  if (firstError) throw new Error(`${errors} write error(s), the first: ${firstError.message}`);
  const sorted = latencies.subarray(0, samples).sort();
  const pct = (p) => (samples ? sorted[Math.min(samples - 1, Math.floor(p * samples))] : NaN);
  return { iops: ops / (ms / 1000), p50: pct(0.5), p99: pct(0.99), ops, ms };
}

/** Writes [0, size) with 1 MiB sequential writes at QD PREFILL_QD, then flushes: MB/s. */
async function prefill(vol, size) {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(lanesPrefill.map(async ({ buf, view }) => {
    for (let at = next; at < size; at = next) {
      next += PREFILL_IO_BYTES;
      fillUnique(buf, view);
      await vol.write(at, buf);
    }
  }));
  await vol.flush();
  return size / 1e6 / ((performance.now() - t0) / 1000);
}

/** Transmit bytes of the loopback interface so far (all processes), or NaN. */
function loopbackTxBytes() {
  try {
    const line = fs.readFileSync('/proc/net/dev', 'utf8').split('\n').find((l) => l.trim().startsWith('lo:'));
    return Number(line.split(':')[1].trim().split(/\s+/)[8]);
  } catch {
    return NaN;
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    node: process.version, cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2))), memGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
  };
}

// --- the run ---------------------------------------------------------------------------
const out = { config: { S, SHARD, SECONDS, RAMP, ROUNDS, RESYNC_MB, RESYNC_SHARD, QUICK } };
const ctx = { cluster: null, local: null, echo: null, etcd: null, stores: [] };
try {
  const mi = machine();
  out.machine = mi;
  console.log('# Replicated volumes: 4 KiB random writes, local Volume vs cluster (R = 1, 2, 3) vs loopback TCP; resync\n');
  console.log(`- Node ${mi.node}, ${mi.cpus} CPUs (${mi.cpuModel}), ${mi.os}, ${mi.memGiB} GiB RAM, load average ${mi.loadavg.join(' ')} at start; one etcd, ${STORES} stores, the echo server and this client share the ${mi.cpus} CPUs${QUICK ? '; --quick' : ''}`);
  console.log(`- volumes: ${S / MiB} MiB (cluster: shards of ${SHARD / MiB} MiB), lz4 + dedupe, written in full first; data random and incompressible, every 4 KiB block unique (no dedupe hits)`);
  console.log(`- local Volume: 1 engine + 1 device worker (as a replica), physical size ${LOCAL_PHYSICAL_FACTOR}×S, flushed every ${FLUSH_INTERVAL_MS} ms (as a store flushes its shards); acknowledged on acceptance, as a replica's write`);
  console.log(`- ${ROUNDS} rounds × (5 configurations × QD ${QDS.join(' and ')}), interleaved, rotated per round; each ${RAMP} s warm-up + ${SECONDS} s measured; medians reported`);

  log('starting etcd, 3 stores, the echo server');
  ctx.etcd = await startEtcd();
  ctx.cluster = await Cluster.connect({ etcd: ctx.etcd.url });
  ctx.stores = Array.from({ length: STORES }, (_, i) => startStore(newStore(`s${i}`, ctx.etcd.url)));
  await Promise.all(ctx.stores.map((s) => storeReady(s, ctx.cluster.meta)));
  ctx.echo = await startEchoServer(spawnTracked, problem);
  progress(`etcd ${ctx.etcd.url}, stores ${ctx.stores.map((s) => s.id).join(' ')} registered`);

  ctx.local = await Volume.create(tmp('local.img'), { logicalSize: S, physicalSize: LOCAL_PHYSICAL_FACTOR * S, workers: 1, ioWorkers: 1 });
  const vols = {};
  for (const r of [1, 2, 3]) {
    await ctx.cluster.createVolume(`r${r}`, { size: S, replicas: r, shardSize: SHARD });
    vols[r] = await ctx.cluster.openVolume(`r${r}`);
  }
  await ctx.cluster.createVolume('resync', { size: RESYNC_SIZE, replicas: 3, shardSize: RESYNC_SHARD });
  const resyncVol = await ctx.cluster.openVolume('resync');

  const prefillMBps = {};
  for (const [key, vol, size] of [['local', ctx.local, S], ['r1', vols[1], S], ['r2', vols[2], S], ['r3', vols[3], S], ['resync (R=3)', resyncVol, RESYNC_SIZE]]) {
    prefillMBps[key] = await prefill(vol, size);
    progress(`prefill ${key}: ${size / MiB} MiB at ${formatMBps(prefillMBps[key])} MB/s (1 MiB writes, QD ${PREFILL_QD}, + flush)`);
  }
  out.prefillMBps = prefillMBps;

  // --- 1. IOPS rounds --------------------------------------------------------------------
  const blocks = S / BLOCK_BYTES;
  let flushTimer = null;
  const CONFIGS = [
    { key: 'local', label: 'local Volume', write: (o, b) => ctx.local.write(o, b),
      before: () => {
        let busy = false;
        flushTimer = setInterval(() => {
          if (busy) return;
          busy = true;
          ctx.local.flush().catch((e) => problem(`local flush: ${e.message}`)).finally(() => { busy = false; });
        }, FLUSH_INTERVAL_MS);
      },
      after: () => clearInterval(flushTimer) },
    ...[1, 2, 3].map((r) => ({ key: `r${r}`, label: `cluster R=${r}`, vol: vols[r], write: (o, b) => vols[r].write(o, b) })),
    { key: 'tcp', label: 'TCP limit (64 B + 4 KiB → 32 B)', write: () => ctx.echo.write() },
  ];
  const wireOf = () => ({ logical: 0, statsSent: 0, connSent: 0, lo: 0, degradedWrites: 0, retries: 0, reopens: 0 });
  const wire = Object.fromEntries([1, 2, 3].map((r) => [`r${r}`, wireOf()]));
  const results = Object.fromEntries(QDS.map((qd) => [qd, Object.fromEntries(CONFIGS.map((c) => [c.key, []]))]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const qd of QDS) {
      const order = CONFIGS.map((_, i) => CONFIGS[(i + round) % CONFIGS.length]);
      for (const c of order) {
        const st0 = c.vol?.stats();
        const conn0 = c.vol ? await ctx.cluster.wireBytes() : null;
        const lo0 = loopbackTxBytes();
        c.before?.();
        let r;
        try {
          r = await drive(c.write, qd, blocks);
        } catch (err) {
          failed = true;
          problem(`${c.label}, QD ${qd}, round ${round + 1}: ${err.message}`);
          r = { iops: NaN, p50: NaN, p99: NaN };
        } finally {
          c.after?.();
        }
        if (c.vol) {
          const lo = loopbackTxBytes();
          const st = c.vol.stats();
          const w = wire[c.key];
          w.logical += st.bytesWritten - st0.bytesWritten;
          w.statsSent += st.wireBytesSent - st0.wireBytesSent;
          w.connSent += (await ctx.cluster.wireBytes()).sent - conn0.sent;
          w.lo += lo - lo0;
          for (const k of ['degradedWrites', 'retries', 'reopens']) w[k] += st[k] - st0[k];
        }
        results[qd][c.key].push(r);
        progress(`round ${round + 1}/${ROUNDS}, QD ${qd}, ${c.label}: ${fmtInt(r.iops)} IOPS, p50 ${fmtUs(r.p50)} µs, p99 ${fmtUs(r.p99)} µs`);
      }
    }
  }
  for (const [k, w] of Object.entries(wire)) {
    if (w.degradedWrites || w.retries || w.reopens) problem(`${k}: ${w.degradedWrites} degraded writes, ${w.retries} retries, ${w.reopens} reopens during the IOPS runs`);
  }
  out.results = results;
  out.wire = wire;
  for (const vol of Object.values(vols)) await vol.flush();

  // --- 2. resync -------------------------------------------------------------------------
  out.resync = await measureResync({
    cluster: ctx.cluster, stores: ctx.stores, volume: resyncVol, name: 'resync', size: RESYNC_SIZE, otherVolumes: Object.values(vols),
    writeMB: RESYNC_MB, verifyVolume: replication.verifyVolume, log, progress, problem,
  });
  if (out.resync.verify.differences || out.resync.verify.skipped) failed = true;

  // --- report ------------------------------------------------------------------------------
  report(CONFIGS, results, wire, prefillMBps, out.resync);
} catch (err) {
  failed = true;
  problem(`aborted: ${err.stack ?? err}`);
} finally {
  await shutdown();
}

function report(CONFIGS, results, wire, prefillMBps, rs) {
  const paired = (qd, key, base) => median(results[qd][key].map((r, i) => r.iops / results[qd][base][i].iops));
  const rows = [];
  const med = {};
  for (const qd of QDS) {
    med[qd] = {};
    for (const c of CONFIGS) {
      const runs = results[qd][c.key];
      const m = { iops: median(runs.map((r) => r.iops)), p50: median(runs.map((r) => r.p50)), p99: median(runs.map((r) => r.p99)), vsLocal: paired(qd, c.key, 'local'), vsTcp: paired(qd, c.key, 'tcp') };
      med[qd][c.key] = m;
      rows.push([c.label, String(qd), fmtInt(m.iops), fmtUs(m.p50), fmtUs(m.p99), formatRatio(m.vsLocal, '×'), formatRatio(m.vsTcp, '×')]);
    }
  }
  console.log(`\n## 4 KiB random writes (median of ${ROUNDS} rounds, ${SECONDS} s each)\n`);
  console.log(markdownTable(cols(['configuration', 'QD', 'IOPS', 'p50 (µs)', 'p99 (µs)', 'vs local', 'vs TCP limit']), rows));
  console.log('\nRatios: median over rounds of the IOPS ratio within a round (the runs of one round are minutes apart at most).');
  console.log(`\nEvery run's IOPS (round 1 / 2 / …):\n`);
  console.log(markdownTable(cols(['configuration', 'QD', 'IOPS per round']), QDS.flatMap((qd) => CONFIGS.map((c) => [c.label, String(qd), results[qd][c.key].map((r) => fmtInt(r.iops)).join(' / ')]))));
  console.log(`\n## Wire bytes per logical byte written (4 KiB runs, QD ${QDS.join(' and ')} together)\n`);
  console.log(markdownTable(cols(['replicas', 'logical written', 'stats().wireBytesSent / logical', 'connection bytes sent / logical', 'loopback TX / logical']), [1, 2, 3].map((r) => {
    const w = wire[`r${r}`];
    return [`R=${r}`, `${(w.logical / MiB).toFixed(0)} MiB`, formatRatio(w.statsSent / w.logical), formatRatio(w.connSent / w.logical), formatRatio(w.lo / w.logical)];
  })));
  console.log('\nstats().wireBytesSent: ClusterVolume.stats(), client → primary, each request\'s own 64-byte head + data (4 KiB writes: 1.016). Connection bytes sent: Cluster.wireBytes() before and after each run, the client\'s connections\' own totals (heartbeats included). Loopback TX: /proc/net/dev lo transmit bytes over the same runs, all processes: adds the primaries\' fan-out to R − 1 replicas, the replies, and etcd and heartbeat traffic.');
  console.log(`\nPrefill (1 MiB sequential, QD ${PREFILL_QD}, + flush), MB/s: ${Object.entries(prefillMBps).map(([k, v]) => `${k} ${formatMBps(v)}`).join(', ')}.`);
  if (rs) {
    console.log(`\n## Resync\n`);
    console.log(describeResync(rs, RESYNC_SHARDS, RESYNC_SHARD));
  }
  const ratio = med[32].r3.vsLocal;
  console.log(`\nTarget (3-replica QD 32 IOPS ≥ 0.5× the single local volume): ${formatRatio(ratio, '×')} — ${ratio >= 0.5 ? 'met' : 'NOT met'}.`);
  out.medians = med;
}

async function shutdown() {
  ctx.cluster?.close();
  if (ctx.local) {
    let timer;
    const late = new Promise((r) => { timer = setTimeout(() => r(problem(`local volume close: not done within ${STOP_GRACE_MS} ms`)), STOP_GRACE_MS); });
    await Promise.race([ctx.local.close().catch((e) => problem(`local volume close: ${e.message}`)), late]);
    clearTimeout(timer);
  }
  ctx.echo?.socket.destroy();
  for (const s of ctx.stores) {
    if (!s.rec || s.rec.exit) continue;
    const st = await stop(s.rec);
    if (st.code !== 0 || st.killed || !/closed cleanly/.test(s.rec.log)) problem(`store ${s.id}: stop gave exit ${st.code ?? st.signal}${st.killed ? ' after SIGKILL' : ''}: ${s.rec.log.trim().slice(-600)}`);
  }
  await stopAll(5000);
  cleanupSync();
  process.exitCode = finishRun({
    file: RESULTS_FILE, command: `node bench/replication.mjs${QUICK ? ' --quick' : ''}`, elapsedSeconds: elapsedS(), out, problems, failed, log,
  });
}
