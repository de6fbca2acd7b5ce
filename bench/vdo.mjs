// VDO volume benchmark: 4 KiB workloads on a pre-filled volume, ingest against
// the raw LZ4 rate of one engine worker, and the packer against dm-vdo's.
//
//   node bench/vdo.mjs            (npm run bench:vdo)
//
// One process, side by side:
//  1. Workloads (sequential/random write, sequential/random read, 70/30 random
//     read/write) at queue depth 1 and 32 on a volume whose logical space was
//     written in full and flushed first (steady state). QD n = n operations in
//     flight, a new one issued as each resolves. Latency = call → resolve of
//     each operation. Writes under the 'async' policy resolve when accepted,
//     so write workloads also report the rate with the pass's final flush()
//     counted. The same workloads on a 'sync'-policy volume (writes only, plus
//     the mix), and on a MemoryBackend.
//  2. Ingest: a stream written sequentially at QD 32 onto a fresh volume, then
//     flushed: the corpus mix repeated VDO_BENCH_INGEST_PASSES times (default
//     8, 125 MB), each pass after the first with every non-zero block salted,
//     so the passes are alike in shape and share no data; one row ingests a
//     single pass (15.6 MB), where start-up and the final flush weigh more.
//     Against one engine worker compressing the mix's blocks with
//     LZ4 (batch API), measured again right before every ingest run (this
//     machine's speed drifts within minutes): the ratio is the median of the
//     per-run ratios. Unrecorded warm-up ingests go first. Each run also
//     reports the main thread's GC pauses (perf_hooks 'gc' entries) as a share
//     of its wall time, after a full collection just before it (the previous
//     run's read-back and the probe leave garbage that is not the ingest's).
//  3. Packing: simulatePacking(sizes, 'dm-vdo' | 'flashpack') over the LZ4
//     sizes of the blocks that reach the packer, at several flush intervals,
//     and the volumes' own counts after the ingest.
//
// Data mix (VDO_BENCH_MIX, percent corpus/duplicate/zero/random, default
// 50/20/10/20): corpus = the test corpus cut into 4 KiB blocks; duplicate =
// an exact repeat of an earlier block; zero = all-zero; random = incompressible.
// Workload writes stamp a counter into the first 4 bytes of corpus and random
// blocks, so each is new data (a steady stream of corpus blocks would otherwise
// be all dedupe hits); the ingest writes the corpus blocks as they are.
//
// Env: VDO_BENCH_LOGICAL_MB (workload volume, default 256), VDO_BENCH_PHYSICAL_MB
// (default logical + 12.5%), VDO_BENCH_TIME_MS (tinybench time per workload,
// default 1500), VDO_BENCH_PASS_MS (target pass length, default 400),
// VDO_BENCH_MAX_OPS (cap per pass, default 20000), VDO_BENCH_INGEST_RUNS
// (default 3), VDO_BENCH_INGEST_WARMUP (default 6), VDO_BENCH_INGEST_PASSES (default 8), VDO_BENCH_MEMORY=0 (skip the MemoryBackend), VDO_BENCH_SYNC=0
// (skip the sync policy), VDO_BENCH_WORKLOADS=0 (ingest and packing only), VDO_BENCH_VERIFY (LBAs read back and checked per
// workload volume, default all; 0 = none), VDO_BENCH_MIX, VDO_BENCH_DIR (temp
// files, default the OS temp dir).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { Bench } from 'tinybench';
import * as fp from '../dist/index.js';
import * as P from '../dist/vdo/prepare-job.js';
import { loadCorpus, splitBlocks } from './corpus.mjs';
import { markdownTable, formatMBps, formatRatio } from './table.mjs';
import { runBatch } from './engine-batch.mjs';
import { fullGc } from './helpers/full-gc.mjs';

const BLOCK = 4096;
const env = (name, dflt) => (process.env[name] === undefined || process.env[name] === '' ? dflt : process.env[name]);
const LOGICAL_MB = Number(env('VDO_BENCH_LOGICAL_MB', 256));
// Thin provisioning can run out: the mix needs ~75% of the logical size, plus a
// block reserved per write in the pipeline (up to 256) and packed blocks kept
// alive by one live fragment. Default: logical + 12.5% (at least + 4 MiB).
const PHYSICAL_MB = Number(env('VDO_BENCH_PHYSICAL_MB', Math.max(LOGICAL_MB + 4, Math.ceil(LOGICAL_MB * 1.125))));
const TIME_MS = Number(env('VDO_BENCH_TIME_MS', 1500));
const PASS_MS = Number(env('VDO_BENCH_PASS_MS', 400));
const MAX_OPS = Number(env('VDO_BENCH_MAX_OPS', 20000));
const MIN_OPS = 64;
const INGEST_RUNS = Number(env('VDO_BENCH_INGEST_RUNS', 3));
const INGEST_WARMUP_RUNS = Number(env('VDO_BENCH_INGEST_WARMUP', 6));
const INGEST_PASSES = Number(env('VDO_BENCH_INGEST_PASSES', 8));
const WITH_MEMORY = env('VDO_BENCH_MEMORY', '1') !== '0';
const WITH_SYNC = env('VDO_BENCH_SYNC', '1') !== '0';
const WITH_WORKLOADS = env('VDO_BENCH_WORKLOADS', '1') !== '0';
const VERIFY = env('VDO_BENCH_VERIFY', 'all');
const TMP = env('VDO_BENCH_DIR', os.tmpdir());
const MIX = env('VDO_BENCH_MIX', '50/20/10/20').split('/').map(Number);
if (MIX.length !== 4 || MIX.some((x) => !(x >= 0)) || MIX[0] <= 0) throw new Error(`VDO_BENCH_MIX ${MIX.join('/')}: corpus/duplicate/zero/random percentages, corpus > 0`);
const MIX_SUM = MIX.reduce((a, b) => a + b, 0);
const W = MIX.map((x) => x / MIX_SUM);
const MIX_LABEL = `${MIX.join('/')} corpus/duplicate/zero/random`;
const DEPTHS = [1, 32];
const FILL_QD = 256;
const INGEST_QD = 32;
const FLUSH_INTERVALS = [16, 64, 256, 1024, Infinity];
const log = (...a) => console.error(...a);
const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;

// --- bookkeeping: every volume and temp file is closed/removed at the end ------
const openVolumes = new Set();
const tempFiles = new Set();
const tempPath = (name) => {
  const p = path.join(TMP, `flashpack-vdo-bench-${process.pid}-${name}.img`);
  tempFiles.add(p);
  fs.rmSync(p, { force: true });
  return p;
};
async function createVolume(target, opts) {
  const v = await fp.Volume.create(target, opts);
  openVolumes.add(v);
  return v;
}
async function closeVolume(v) {
  openVolumes.delete(v);
  try {
    await v.close();
  } catch (err) {
    log(`  close failed (${err.message}); abandoning`);
    await v.abandon();
    throw err;
  }
}
// Hang handling. A promise that never settles drains the event loop: Node exits
// with 13 and skips `finally`. IoQpair.waitForCompletions(ms) holds the process
// open with a setTimeout exactly as long as its Atomics.waitAsync, so when no
// completion arrives in time (a slow fdatasync, a loaded machine) the process can
// exit in the middle of a run. A ref'd watchdog interval keeps the loop alive
// (VDO_BENCH_KEEPALIVE=0 to see the bug) and stops a run that makes no progress
// for VDO_BENCH_WATCHDOG_S seconds (default 120): a real deadlock.
let phase = 'start';
let progress = 0;
let finished = false;
const setPhase = (p) => {
  phase = p;
  progress++;
};
function diagnose(why) {
  console.error(`\n${why}, during: ${phase}`);
  for (const v of openVolumes) {
    let s;
    try {
      s = v.stats();
    } catch (err) {
      console.error(`  stats() failed: ${err.message}`);
      continue;
    }
    console.error(JSON.stringify({
      inflight: v.inflight?.size, active: v.active, prePacker: v.prePacker, reserved: v.reserved, packerWaiting: v.packer?.waiting,
      pending: v.pending?.size, hashLocks: v.hashLocks?.size, readsInFlight: v.readsInFlight, poolFree4K: v.engine.pool.available(BLOCK),
      qpOutstanding: v.dev?.qp?.outstandingCount, devBacklog: v.dev?.backlog?.length, dataBlocksUsed: s.dataBlocksUsed, biosIn: s.biosIn,
    }));
  }
}
process.on('exit', () => {
  if (!finished) diagnose('HANG or early exit: the event loop drained with work pending');
  for (const p of tempFiles) fs.rmSync(p, { force: true });
});
const WATCHDOG_S = Number(env('VDO_BENCH_WATCHDOG_S', 120));
let seen = -1;
let still = 0;
const watchdog = setInterval(() => {
  if (progress !== seen) {
    seen = progress;
    still = 0;
    return;
  }
  if (++still * 5 >= WATCHDOG_S) {
    diagnose(`HANG: no progress for ${WATCHDOG_S} s`);
    finished = true; // diagnosed already
    process.exit(1);
  }
}, 5000);
if (env('VDO_BENCH_KEEPALIVE', '1') === '0') watchdog.unref();
async function cleanup() {
  for (const v of [...openVolumes]) await closeVolume(v).catch(() => {});
  for (const p of tempFiles) fs.rmSync(p, { force: true });
}

// --- deterministic randomness -----------------------------------------------------
function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}
const median = (xs) => percentile(Float64Array.from(xs).sort(), 0.5);
const fmtInt = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const fmtUs = (v) => (Number.isFinite(v) ? (v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1)) : '—');
const fmtPct = (v) => (Number.isFinite(v) ? `${v.toFixed(1)}%` : '—');
const cols = (titles) => titles.map((title, i) => ({ title, align: i === 0 ? 'left' : 'right' }));
const isZeroBlock = (b) => {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
};
const keyOf = (b) => crypto.createHash('sha1').update(b).digest('base64');

// --- data ----------------------------------------------------------------------------
const corpus = loadCorpus();
const corpusBlocks = splitBlocks(corpus.bytes, BLOCK);
const RANDOM_POOL = 256;
const randomPool = Array.from({ length: RANDOM_POOL }, () => crypto.randomFillSync(new Uint8Array(BLOCK)));

/**
 * The ingest mix: every corpus block once, in order, interleaved (seeded) with
 * duplicates of corpus blocks already written, zero blocks and fresh random
 * blocks in the mix's proportions. Each block its own ArrayBuffer.
 */
function buildIngestMix() {
  const nC = corpusBlocks.length;
  const n = Math.round(nC / W[0]);
  const nDup = Math.round(n * W[1]);
  const nZero = Math.round(n * W[2]);
  const nRand = n - nC - nDup - nZero;
  const labels = [...'c'.repeat(nC), ...'d'.repeat(nDup), ...'z'.repeat(nZero), ...'r'.repeat(Math.max(0, nRand))];
  const rnd = xorshift(0xc0ffee);
  for (let i = labels.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [labels[i], labels[j]] = [labels[j], labels[i]];
  }
  const first = labels.indexOf('c');
  [labels[0], labels[first]] = [labels[first], labels[0]];
  const blocks = [];
  const kinds = [];
  let c = 0;
  for (const l of labels) {
    if (l === 'c') blocks.push(corpusBlocks[c++].slice());
    else if (l === 'd') blocks.push(corpusBlocks[Math.floor(rnd() * c)].slice());
    else if (l === 'z') blocks.push(new Uint8Array(BLOCK));
    else blocks.push(crypto.randomFillSync(new Uint8Array(BLOCK)));
    kinds.push(l);
  }
  return { blocks, kinds, counts: { corpus: nC, duplicate: nDup, zero: nZero, random: Math.max(0, nRand) } };
}

/**
 * Workload data: corpus and random blocks stamped with a counter (new data each
 * time), exact repeats of recent ones, zeros. Every write's recipe is kept per
 * LBA (kind, source, stamp) so the volume can be checked at the end.
 */
class WriteSource {
  constructor(seed) {
    this.rnd = xorshift(seed);
    this.stamp = 1;
    this.corpusAt = 0;
    this.recent = new Int32Array(3 * 1024); // (kind, src, stamp) ring of unique blocks
    this.recentCount = 0;
  }

  /** Picks the next block's recipe: [kind 1 corpus | 2 zero | 3 random, src, stamp]. */
  next() {
    const r = this.rnd();
    if (r < W[0] || (r < W[0] + W[1] && this.recentCount === 0)) return this.remember(1, this.corpusAt++ % corpusBlocks.length);
    if (r < W[0] + W[1]) {
      const i = 3 * (Math.floor(this.rnd() * Math.min(this.recentCount, 1024)));
      return [this.recent[i], this.recent[i + 1], this.recent[i + 2]];
    }
    if (r < W[0] + W[1] + W[2]) return [2, 0, 0];
    return this.remember(3, Math.floor(this.rnd() * RANDOM_POOL));
  }

  remember(kind, src) {
    const stamp = this.stamp++;
    const i = 3 * (this.recentCount++ % 1024);
    this.recent[i] = kind;
    this.recent[i + 1] = src;
    this.recent[i + 2] = stamp;
    return [kind, src, stamp];
  }
}

/** The bytes of a recipe, into `dst`. */
function materialize(dst, kind, src, stamp) {
  if (kind === 2) dst.fill(0);
  else {
    dst.set(kind === 1 ? corpusBlocks[src] : randomPool[src]);
    dst[0] = stamp; dst[1] = stamp >>> 8; dst[2] = stamp >>> 16; dst[3] = stamp >>> 24;
  }
}

/** A volume under workload, with the recipe of each LBA's newest write. */
class Subject {
  constructor(label, backend, policy, vol, seed) {
    this.label = label;
    this.backend = backend;
    this.policy = policy;
    this.vol = vol;
    this.blocks = vol.logicalSize / BLOCK;
    this.src = new WriteSource(seed);
    this.kind = new Int8Array(this.blocks); // 0 never written, -1 unknown (overlapping writes)
    this.from = new Int32Array(this.blocks);
    this.stamp = new Int32Array(this.blocks);
    this.writing = new Uint16Array(this.blocks);
    this.seq = 0;
    this.rnd = xorshift(seed ^ 0x5bd1e995);
  }

  /** One 4 KiB write of the mix to `lba`, into `buf`. */
  async write(lba, buf, lat, i) {
    const [kind, src, stamp] = this.src.next();
    materialize(buf, kind, src, stamp);
    if (this.writing[lba]++ > 0) this.kind[lba] = -1;
    else {
      this.kind[lba] = kind;
      this.from[lba] = src;
      this.stamp[lba] = stamp;
    }
    const t0 = performance.now();
    try {
      await this.vol.write(lba * BLOCK, buf);
    } finally {
      this.writing[lba]--;
    }
    if (lat) lat[i] = performance.now() - t0;
  }

  async read(lba, lat, i) {
    const t0 = performance.now();
    await this.vol.read(lba * BLOCK, BLOCK);
    if (lat) lat[i] = performance.now() - t0;
  }

  randomLba() {
    return Math.floor(this.rnd() * this.blocks);
  }
}

/** Runs `ops` operations with `qd` in flight; `op(i, slot)` issues one. */
async function runLanes(ops, qd, op) {
  let issued = 0;
  const lane = async (slot) => {
    while (issued < ops) {
      await op(issued++, slot);
      progress++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(qd, ops) }, (_, s) => lane(s)));
}

const WORKLOADS = {
  'seq write': { writes: true, op: (s, bufs) => (i, slot, lat) => s.write(s.seq++ % s.blocks, bufs[slot], lat, i) },
  'rand write': { writes: true, op: (s, bufs) => (i, slot, lat) => s.write(s.randomLba(), bufs[slot], lat, i) },
  'seq read': { writes: false, op: (s) => (i, slot, lat) => s.read(s.seq++ % s.blocks, lat, i) },
  'rand read': { writes: false, op: (s) => (i, slot, lat) => s.read(s.randomLba(), lat, i) },
  'rand 70/30 r/w': {
    writes: true,
    op: (s, bufs) => (i, slot, lat) => (s.rnd() < 0.7 ? s.read(s.randomLba(), lat, i) : s.write(s.randomLba(), bufs[slot], lat, i)),
  },
};

/** One pass: `ops` operations at `qd`, then (for writes) a flush. */
async function pass(subject, workload, qd, ops, lat) {
  const bufs = Array.from({ length: qd }, () => new Uint8Array(BLOCK));
  const op = WORKLOADS[workload].op(subject, bufs);
  const t0 = performance.now();
  await runLanes(ops, qd, (i, slot) => op(i, slot, lat));
  const accepted = performance.now() - t0;
  if (WORKLOADS[workload].writes) await subject.vol.flush();
  return { accepted, total: performance.now() - t0 };
}

/** A workload under tinybench: a probe pass (warmup, sizes the passes), then passes of `ops`. */
async function measure(subject, workload, qd) {
  const probeOps = qd === 1 ? 128 : 512;
  const probe = await pass(subject, workload, qd, probeOps, null);
  const ops = Math.max(MIN_OPS, Math.min(MAX_OPS, Math.round((probeOps / probe.total) * PASS_MS)));
  const passes = [];
  const lats = [];
  const bench = new Bench({ time: TIME_MS, iterations: 3, warmup: false, throws: true });
  bench.add(`${subject.label} ${workload} QD${qd}`, async () => {
    const lat = new Float64Array(ops);
    passes.push(await pass(subject, workload, qd, ops, lat));
    lats.push(lat);
  }, { async: true });
  await bench.run();
  const t = bench.tasks[0];
  if (t.result.state !== 'completed') throw new Error(`${t.name} did not complete`, { cause: t.result.error });
  const all = new Float64Array(lats.length * ops);
  lats.forEach((l, k) => all.set(l, k * ops));
  all.sort();
  const mean = (k) => passes.reduce((a, p) => a + p[k], 0) / passes.length;
  const iops = ops / (mean('accepted') / 1000);
  const iopsFlushed = ops / (mean('total') / 1000);
  const r = {
    workload, qd, ops, passes: passes.length, iops, iopsFlushed,
    flushMs: mean('total') - mean('accepted'), p50: percentile(all, 0.5) * 1000, p99: percentile(all, 0.99) * 1000,
    writes: WORKLOADS[workload].writes,
  };
  log(`  ${subject.label} ${workload} QD${qd}: ${fmtInt(iops)} IOPS${r.writes ? ` (${fmtInt(iopsFlushed)} with flush)` : ''}, p50 ${fmtUs(r.p50)} µs, p99 ${fmtUs(r.p99)} µs; ${passes.length} × ${ops} ops`);
  return r;
}

/** Writes every LBA once (sequential, QD 256), then flushes: the steady state. */
async function fill(subject) {
  const bufs = Array.from({ length: FILL_QD }, () => new Uint8Array(BLOCK));
  const t0 = performance.now();
  await runLanes(subject.blocks, FILL_QD, (i, slot) => subject.write(i, bufs[slot], null, 0));
  await subject.vol.flush();
  const ms = performance.now() - t0;
  log(`  filled ${subject.blocks} blocks in ${(ms / 1000).toFixed(1)} s (${fmtInt(subject.blocks / (ms / 1000))} IOPS)`);
  return ms;
}

/** Reads back LBAs (all, or an even sample) and compares them with their recipes. */
async function verify(subject) {
  const want = VERIFY === 'all' ? subject.blocks : Math.min(subject.blocks, Number(VERIFY));
  if (!(want > 0)) return { checked: 0, bad: [] };
  const step = subject.blocks / want;
  const expect = new Uint8Array(BLOCK);
  const bad = [];
  let checked = 0;
  await runLanes(want, 32, async (i) => {
    const lba = Math.floor(i * step);
    const got = await subject.vol.read(lba * BLOCK, BLOCK);
    const kind = subject.kind[lba];
    if (kind < 0) return;
    checked++;
    if (kind === 0) expect.fill(0);
    else materialize(expect, kind, subject.from[lba], subject.stamp[lba]);
    if (Buffer.compare(got, expect) !== 0) bad.push({ lba, kind, stamp: subject.stamp[lba] });
  });
  log(`  verified ${checked} LBAs: ${bad.length ? `${bad.length} WRONG` : 'all correct'}`);
  return { checked, bad };
}

// --- 1. workloads -------------------------------------------------------------------
async function workloadRuns(backendKind, policy, workloads) {
  const logical = LOGICAL_MB << 20;
  const target = backendKind === 'file' ? tempPath(`workload-${policy}`) : new fp.nvme.MemoryBackend({ size: PHYSICAL_MB << 20 });
  const label = `${backendKind}/${policy}`;
  log(`${label}: ${LOGICAL_MB} MiB logical, ${PHYSICAL_MB} MiB physical volume${backendKind === 'file' ? ` at ${target}` : ''}`);
  const physical = PHYSICAL_MB << 20;
  setPhase(`${label} create`);
  const vol = await createVolume(target, { logicalSize: logical, physicalSize: physical, writePolicy: policy });
  const subject = new Subject(label, backendKind, policy, vol, backendKind === 'file' ? 0x1234567 : 0x7654321);
  const results = [];
  let fillMs;
  let check;
  let stats;
  try {
    setPhase(`${label} fill`);
    fillMs = await fill(subject);
    for (const w of workloads) {
      for (const qd of DEPTHS) {
        setPhase(`${label} ${w} QD${qd}`);
        results.push({ backend: backendKind, policy, ...(await measure(subject, w, qd)) });
      }
    }
    setPhase(`${label} verify`);
    check = await verify(subject);
    stats = vol.stats();
  } finally {
    await closeVolume(vol);
    if (typeof target === 'string') fs.rmSync(target, { force: true });
  }
  return { label, results, fillMs, check, stats, blocks: subject.blocks };
}

// --- 2. raw LZ4 of one engine worker -------------------------------------------------
/**
 * Raw LZ4 of one engine worker on the ingest blocks, measured right before each
 * ingest run: this machine's speed drifts by a third within minutes, so each
 * run is compared with a baseline taken under the same conditions (the median
 * of three batch passes).
 */
async function openRawProbe(blocks) {
  const engine = await fp.Engine.start({ workers: 1, runtime: new fp.Runtime(), classes: [{ size: BLOCK, count: 2 * blocks.length + 64 }] });
  const jobs = blocks.map((b) => {
    const d = engine.pool.alloc(BLOCK);
    engine.pool.write(d, b);
    engine.prepare(d, fp.jobs.OP_LZ4_COMPRESS, engine.pool.alloc(BLOCK), 1);
    return d;
  });
  const pass = async () => {
    const t0 = performance.now();
    await runBatch(engine, jobs);
    return (blocks.length * BLOCK) / 1e6 / ((performance.now() - t0) / 1000);
  };
  await pass();
  return {
    measure: async () => median([await pass(), await pass(), await pass()]),
    close: () => engine.close(),
  };
}

async function rawEngine(blocks) {
  // Room for the batch tasks' staged descriptors and the promise task's own.
  const engine = await fp.Engine.start({ workers: 1, runtime: new fp.Runtime(), jobs: [P.PREPARE_JOB_MODULE], classes: [{ size: BLOCK, count: 6 * blocks.length + 64 }] });
  try {
    const jobs = blocks.map((b) => {
      const d = engine.pool.alloc(BLOCK);
      const o = engine.pool.alloc(BLOCK);
      engine.pool.write(d, b);
      engine.prepare(d, fp.jobs.OP_LZ4_COMPRESS, o, 1);
      return d;
    });
    // The volume's worker work per block: one prepare job trip (XXH3-128 and LZ4).
    const volumeJobs = blocks.map((b) => {
      const d = engine.pool.alloc(BLOCK);
      engine.pool.write(d, b);
      engine.prepare(d, P.OP_PREPARE_BLOCK, engine.pool.alloc(BLOCK), P.prepareArg(P.PREPARE_CODEC_LZ4, 0, 0));
      return d;
    });
    const tasks = [
      { name: 'engine batch API (1 worker)', fn: () => runBatch(engine, jobs) },
      { name: 'engine.lz4.compressBlock (1 worker)', fn: async () => {
        await Promise.all(blocks.map((b) => engine.lz4.compressBlock(b)));
      } },
      { name: 'engine batch API (1 worker), prepare job (XXH3-128 + LZ4)', volume: true, fn: () => runBatch(engine, volumeJobs) },
    ];
    const bench = new Bench({ time: TIME_MS, iterations: 5, warmup: true, warmupTime: 300, warmupIterations: 2, throws: true });
    // async: true, or tinybench calls a plain function once, unawaited, to see
    // whether it returns a promise (that stray pass would steal completions).
    for (const t of tasks) bench.add(t.name, t.fn, { async: true });
    await bench.run();
    return bench.tasks.map((task) => {
      if (task.result.state !== 'completed') throw new Error(`${task.name} did not complete`, { cause: task.result.error });
      const mbps = (blocks.length * BLOCK) / 1e6 / (task.result.latency.mean / 1000);
      log(`  ${task.name}: ${formatMBps(mbps)} MB/s`);
      return { name: task.name, mbps, volume: tasks.find((t) => t.name === task.name).volume };
    });
  } finally {
    await engine.close();
  }
}

// --- 2/3. ingest ----------------------------------------------------------------------
// Every row ingests the whole stream onto a fresh volume, but 'one pass'.
const INGEST_CONFIGS = [
  { label: 'file, flashpack packer, async', backend: 'file', packer: 'flashpack', policy: 'async', main: true },
  { label: 'file, dm-vdo packer, async', backend: 'file', packer: 'dm-vdo', policy: 'async' },
  { label: 'memory, flashpack packer, async', backend: 'memory', packer: 'flashpack', policy: 'async', memory: true },
  { label: 'memory, dm-vdo packer, async', backend: 'memory', packer: 'dm-vdo', policy: 'async', memory: true },
  { label: 'file, flashpack packer, sync', backend: 'file', packer: 'flashpack', policy: 'sync', sync: true },
  { label: 'file, dm-vdo packer, sync', backend: 'file', packer: 'dm-vdo', policy: 'sync', sync: true },
  // Diagnostic: the pipeline without hashing or compression (codec 'none', no dedupe).
  { label: 'memory, codec none, no dedupe, async', backend: 'memory', packer: 'flashpack', policy: 'async', memory: true, codec: 'none', dedupe: false },
  { label: 'file, flashpack packer, async, one pass', backend: 'file', packer: 'flashpack', policy: 'async', onePass: true },
];

/** The mix with a salt in the first word of every non-zero block: the same shape, none of the same data. */
function salted(blocks, salt) {
  return blocks.map((b) => {
    if (isZeroBlock(b)) return b;
    const c = b.slice();
    new DataView(c.buffer).setUint32(0, new DataView(b.buffer, b.byteOffset).getUint32(0) ^ salt);
    return c;
  });
}

/** The mix, then passes − 1 salted copies of it. */
function ingestStream(mix, passes) {
  const blocks = [...mix.blocks];
  for (let p = 1; p < passes; p++) blocks.push(...salted(mix.blocks, 0x5a17 + p));
  return blocks;
}

/** The main thread's garbage collections (perf_hooks 'gc' entries), kept until gcShare() reads them. */
const gcEntries = [];
const gcObserver = new PerformanceObserver((list) => gcEntries.push(...list.getEntries()));
gcObserver.observe({ entryTypes: ['gc'] });

/** Time the main thread spent in GC pauses that started in [t0, t1], as a share of t1 − t0; forgets older entries. */
function gcShare(t0, t1) {
  gcEntries.push(...gcObserver.takeRecords());
  let ms = 0;
  for (const e of gcEntries) if (e.startTime >= t0 && e.startTime <= t1) ms += e.duration;
  gcEntries.length = 0;
  return ms / (t1 - t0);
}

async function ingestRuns(stream, mix, config, probe, count = INGEST_RUNS) {
  const blocks = config.onePass ? mix.blocks : stream;
  const n = blocks.length;
  const logical = n * BLOCK;
  const physical = logical + (2 << 20); // room for the journal and the block map
  const runs = [];
  // Run −1 warms up (JIT, worker start-up, page cache) and is not counted: without it
  // whichever configuration goes first pays for everyone.
  for (let r = -1; r < count; r++) {
    setPhase(`ingest ${config.label} ${r < 0 ? 'warm-up' : `run ${r + 1}`}`);
    const target = config.backend === 'file' ? tempPath(`ingest-${config.packer}-${config.policy}`) : new fp.nvme.MemoryBackend({ size: physical });
    const vol = await createVolume(target, {
      logicalSize: logical, physicalSize: physical, writePolicy: config.policy, packer: config.packer,
      codec: config.codec ?? 'lz4', dedupe: config.dedupe ?? true,
    });
    try {
      const rawMbps = r < 0 ? 0 : await probe.measure();
      fullGc(); // the last run's read-back and the probe are not this run's garbage
      const t0 = performance.now();
      await runLanes(n, INGEST_QD, (i) => vol.write(i * BLOCK, blocks[i]));
      const accepted = performance.now() - t0;
      await vol.flush();
      const total = performance.now() - t0;
      const gc = gcShare(t0, t0 + total);
      const stats = vol.stats();
      // Read back every block.
      let wrong = 0;
      await runLanes(n, 32, async (i) => {
        const got = await vol.read(i * BLOCK, BLOCK);
        if (Buffer.compare(got, blocks[i]) !== 0) wrong++;
      });
      if (r < 0 && wrong === 0) continue;
      const mbps = (n * BLOCK) / 1e6 / (total / 1000);
      runs.push({ accepted, total, mbps, acceptedMbps: (n * BLOCK) / 1e6 / (accepted / 1000), rawMbps, ratio: mbps / rawMbps, gc, stats, wrong, path: typeof target === 'string' ? target : 'MemoryBackend' });
      log(`  ${config.label} run ${r + 1}: ${formatMBps(mbps)} MB/s with flush (raw LZ4 just before: ${formatMBps(rawMbps)} MB/s, ${formatRatio(mbps / rawMbps, '×')}); GC ${(gc * 100).toFixed(1)}% of wall; ${stats.dataBlocksUsed} data blocks${wrong ? `; ${wrong} blocks read back WRONG` : ''}`);
    } finally {
      await closeVolume(vol);
      if (typeof target === 'string') fs.rmSync(target, { force: true });
    }
  }
  return { config, runs };
}

// --- 3. packing simulation -------------------------------------------------------
/** LZ4 sizes of the blocks that reach the packer: non-zero and not seen before, in order. */
function packerStream(blocks) {
  const seen = new Set();
  const sizes = [];
  for (const b of blocks) {
    if (isZeroBlock(b)) continue;
    const k = keyOf(b);
    if (seen.has(k)) continue;
    seen.add(k);
    sizes.push(fp.lz4.compressBlock(b).length);
  }
  return sizes;
}

function vdostats(name, s) {
  const lines = [
    ['version', 'flashpack'],
    ['logical blocks', s.logicalBlocks], ['physical blocks', s.physicalBlocks],
    ['data blocks used', s.dataBlocksUsed], ['overhead blocks used', s.overheadBlocksUsed],
    ['logical blocks used', s.logicalBlocksUsed],
    ['1K-blocks', s.physicalBlocks * 4], ['1K-blocks used', (s.dataBlocksUsed + s.overheadBlocksUsed) * 4],
    ['1K-blocks available', (s.physicalBlocks - s.dataBlocksUsed - s.overheadBlocksUsed) * 4],
    ['used percent', Math.round(((s.dataBlocksUsed + s.overheadBlocksUsed) / s.physicalBlocks) * 100)],
    ['saving percent', s.savingPercent],
    ['dedupe advice valid', s.dedupeAdviceValid], ['dedupe advice stale', s.dedupeAdviceStale],
    ['concurrent data matches', s.dedupeConcurrentShared], ['zero blocks written', s.zeroBlocksWritten],
    ['compressed fragments written', s.compressedFragmentsWritten], ['compressed blocks written', s.compressedBlocksWritten],
    ['compressed fragments in packer', s.compressedFragmentsInPacker],
    ['journal entries written', s.journalEntriesWritten], ['journal blocks written', s.journalBlocksWritten],
    ['block map cache hits', s.blockMapCacheHits], ['block map cache misses', s.blockMapCacheMisses],
    ['block map pages written', s.blockMapPagesWritten],
    ['bios in read', s.biosIn.read], ['bios in write', s.biosIn.write], ['bios in discard', s.biosIn.discard], ['bios in flush', s.biosIn.flush],
    ['bios out read', s.biosOut.read], ['bios out write', s.biosOut.write], ['bios out flush', s.biosOut.flush],
    ['write amplification ratio', s.writeAmplification],
  ];
  const w = Math.max(...lines.map(([k]) => k.length));
  return [`${name} :`, ...lines.map(([k, v]) => `  ${k.padEnd(w)} : ${v}`)].join('\n');
}

// --- main -------------------------------------------------------------------------------
let failed = false;
try {
  const mix = buildIngestMix();
  const n = mix.blocks.length;
  const stream = ingestStream(mix, INGEST_PASSES);
  console.log('# flashpack VDO volume benchmark\n');
  console.log(`- ${os.cpus()[0]?.model ?? 'cpu'}, ${os.availableParallelism()} cores; Node ${process.version}; tinybench, one process; temp files in ${TMP}`);
  const built = fs.statSync(new URL('../dist/vdo/volume.js', import.meta.url)).mtime;
  console.log(`- dist/vdo/volume.js built ${built.toISOString()}`);
  console.log(`- data mix ${MIX_LABEL}; ingest mix = ${mix.counts.corpus} corpus blocks (${corpus.files.length} files of test/corpus, 4 KiB, tail dropped) + ${mix.counts.duplicate} duplicates + ${mix.counts.zero} zero + ${mix.counts.random} random = ${n} blocks (${(n * BLOCK / 1e6).toFixed(1)} MB); ingest stream = the mix × ${INGEST_PASSES} passes, salted after the first = ${stream.length} blocks (${(stream.length * BLOCK / 1e6).toFixed(1)} MB)`);
  console.log(`- workload volumes: ${LOGICAL_MB} MiB logical, ${PHYSICAL_MB} MiB physical (VDO_BENCH_LOGICAL_MB, VDO_BENCH_PHYSICAL_MB); filled sequentially (QD ${FILL_QD}) and flushed before measuring; workload writes are new data (stamped) in the same mix`);
  if (env('VDO_BENCH_KEEPALIVE', '1') !== '0') console.log('- a ref\'d watchdog timer holds the process open (works around IoQpair.waitForCompletions letting Node exit mid-I/O; VDO_BENCH_KEEPALIVE=0 to see it)');
  console.log(`- volume engine workers: default (cores − 1 = ${Math.max(1, os.availableParallelism() - 1)}); tinybench time ${TIME_MS} ms, ≥ 3 passes of up to ${MAX_OPS} ops (sized to ~${PASS_MS} ms)\n`);

  // Packing simulation first (cheap, deterministic).
  setPhase('packing simulation');
  log('packing simulation…');
  const streamSizes = packerStream(stream);
  const mixSizes = packerStream(mix.blocks);
  const corpusSizes = packerStream(corpusBlocks);
  const sims = [];
  for (const [name, sizes] of [['ingest stream', streamSizes], ['ingest mix, one pass', mixSizes], ['corpus only', corpusSizes]]) {
    for (const every of FLUSH_INTERVALS) {
      const d = fp.simulatePacking(sizes, 'dm-vdo', every);
      const f = fp.simulatePacking(sizes, 'flashpack', every);
      sims.push({ stream: name, fragments: sizes.length, every, d, f });
    }
  }

  // Raw LZ4, one engine worker, the same blocks.
  setPhase('raw LZ4, one engine worker');
  log('raw LZ4, one engine worker…');
  const raw = await rawEngine(mix.blocks);

  // Ingest. The JIT needs several 3,810-block runs to settle (three warm-up runs
  // still went 82, 98, 114 MB/s): without these unrecorded one-pass runs the first
  // configuration measured ran about 35% slower than the same one measured later.
  const probe = await openRawProbe(mix.blocks);
  const ingests = [];
  try {
    for (let w = 0; w < INGEST_WARMUP_RUNS; w++) {
      log(`ingest warm-up ${w + 1}/${INGEST_WARMUP_RUNS}…`);
      await ingestRuns(stream, mix, { ...INGEST_CONFIGS.find((c) => c.onePass), label: 'warm-up' }, probe, 1);
    }
    for (const c of INGEST_CONFIGS) {
      if ((c.memory && !WITH_MEMORY) || (c.sync && !WITH_SYNC)) continue;
      log(`ingest: ${c.label}…`);
      ingests.push(await ingestRuns(stream, mix, c, probe));
    }
  } finally {
    await probe.close();
  }

  // Workloads.
  const all = Object.keys(WORKLOADS);
  const writesAndMix = ['seq write', 'rand write', 'rand 70/30 r/w'];
  const volumes = [];
  if (WITH_WORKLOADS) volumes.push(await workloadRuns('file', 'async', all));
  if (WITH_WORKLOADS && WITH_SYNC) volumes.push(await workloadRuns('file', 'sync', writesAndMix));
  if (WITH_WORKLOADS && WITH_MEMORY) {
    volumes.push(await workloadRuns('memory', 'async', all));
    if (WITH_SYNC) volumes.push(await workloadRuns('memory', 'sync', ['rand write']));
  }

  // --- report -------------------------------------------------------------------------
  if (volumes.length > 0) {
  console.log('## 1. 4 KiB workloads on a full volume\n');
  console.log('IOPS/MB/s: operations resolved per second (async writes resolve when accepted). "with flush": the pass\'s final flush() counted. Latency: call → resolve of each operation.\n');
  const rows = [];
  for (const v of volumes) {
    for (const r of v.results) {
      rows.push([
        v.label, r.workload, String(r.qd), fmtInt(r.iops), formatMBps((r.iops * BLOCK) / 1e6), fmtUs(r.p50), fmtUs(r.p99),
        r.writes ? fmtInt(r.iopsFlushed) : '—', r.writes ? formatMBps((r.iopsFlushed * BLOCK) / 1e6) : '—',
        r.writes ? r.flushMs.toFixed(1) : '—', `${r.passes} × ${r.ops}`,
      ]);
    }
  }
  console.log(markdownTable(cols(['backend/policy', 'workload', 'QD', 'IOPS', 'MB/s', 'p50 µs', 'p99 µs', 'IOPS with flush', 'MB/s with flush', 'flush ms/pass', 'passes × ops']), rows));
  console.log('\nFill (sequential, QD 256, then flush) and read-back check:\n');
  console.log(markdownTable(cols(['backend/policy', 'blocks', 'fill s', 'fill IOPS', 'LBAs checked', 'wrong', 'saving %', 'data blocks used', 'write amp.']), volumes.map((v) => [
    v.label, fmtInt(v.blocks), (v.fillMs / 1000).toFixed(1), fmtInt(v.blocks / (v.fillMs / 1000)), fmtInt(v.check.checked), String(v.check.bad.length),
    fmtPct(v.stats.savingPercent), fmtInt(v.stats.dataBlocksUsed), String(v.stats.writeAmplification),
  ])));
  const rateSync = volumes.find((v) => v.label === 'file/sync')?.results.find((r) => r.workload === 'rand write' && r.qd === 32);
  const rateAsync = volumes.find((v) => v.label === 'file/async')?.results.find((r) => r.workload === 'rand write' && r.qd === 32);
  if (rateSync && rateAsync) {
    console.log(`\nRandom write QD 32 on a file: async ${fmtInt(rateAsync.iops)} IOPS accepted, ${fmtInt(rateAsync.iopsFlushed)} with flush; sync ${fmtInt(rateSync.iops)} IOPS (${formatRatio(rateSync.iops / rateAsync.iopsFlushed, '×')} of async with flush).`);
  }
  }

  console.log(`\n## 2. Ingest (${stream.length} blocks, ${(stream.length * BLOCK / 1e6).toFixed(1)} MB — one pass: ${n} blocks — sequential at QD ${INGEST_QD}, then flush) vs raw LZ4\n`);
  const rawBatch = raw[0].mbps;
  const ingestRows = [];
  for (const ig of ingests) {
    const mbps = ig.runs.map((r) => r.mbps);
    const accepted = ig.runs.map((r) => r.acceptedMbps);
    const rawRuns = ig.runs.map((r) => r.rawMbps);
    ingestRows.push([
      ig.config.label, formatMBps(median(mbps)), formatMBps(Math.max(...mbps)), formatMBps(median(accepted)),
      `${formatMBps(Math.min(...rawRuns))}–${formatMBps(Math.max(...rawRuns))}`,
      formatRatio(median(ig.runs.map((r) => r.ratio)), '×'), `${(median(ig.runs.map((r) => r.gc)) * 100).toFixed(1)}%`,
      String(ig.runs.reduce((a, r) => a + r.wrong, 0)),
    ]);
  }
  for (const r of raw) ingestRows.push([`no volume: ${r.name}, same blocks (tinybench)`, formatMBps(r.mbps), '—', '—', '—', formatRatio(r.mbps / rawBatch, '×') + ' of the first row', '—', '—']);
  console.log(markdownTable(cols(['ingest', `MB/s with flush (median of ${INGEST_RUNS})`, 'best', 'MB/s accepted', 'raw LZ4 MB/s just before each run', 'vs raw LZ4 (median of per-run ratios)', 'main-thread GC, % of wall (median)', 'blocks read back wrong']), ingestRows));
  const main = ingests.find((i) => i.config.main);
  const onePass = ingests.find((i) => i.config.onePass);
  if (main) {
    const ratio = median(main.runs.map((r) => r.ratio));
    const both = raw.find((r) => r.volume);
    const short = onePass ? `; one pass (${(n * BLOCK / 1e6).toFixed(1)} MB, where start-up and the final flush weigh more): ${formatRatio(median(onePass.runs.map((r) => r.ratio)), '×')}` : '';
    console.log(`\nIngest / raw LZ4 of one worker: ${formatRatio(ratio, '×')} (target ≥ 0.50×: ${ratio >= 0.5 ? 'met' : 'NOT met'})${short}. The volume's worker also fingerprints every non-zero block (against the worker's whole per-block job on every block, "${both.name.replace(/^engine batch API \(1 worker\), /, '')}": ${formatRatio(median(main.runs.map((r) => r.mbps)) / both.mbps, '×')}); packing, mapping and journaling run on the main thread.`);
  }

  console.log(`\n## 3. Packing\n`);
  console.log(`Compressed sizes: LZ4 (the volume's codec) of the blocks that reach the packer, in order: the ingest stream and one pass of it without zero and repeated blocks (${streamSizes.length} and ${mixSizes.length} fragments, ${streamSizes.filter((s) => s >= 4060).length} and ${mixSizes.filter((s) => s >= 4060).length} too large to pack), and the corpus alone (${corpusSizes.length}). Physical blocks = packed blocks + fragments stored raw.\n`);
  const half = (sizes) => sizes.filter((x) => x > 4060 / 2 && x < 4060).length;
  const meanOf = (sizes) => {
    const p = sizes.filter((x) => x < 4060);
    return p.reduce((a, b) => a + b, 0) / p.length;
  };
  console.log(`Fragment sizes (packable ones, < 4060 B): ingest mix mean ${Math.round(meanOf(mixSizes))} B, ${half(mixSizes)} packable fragments over half a block (${4060 / 2} B) — each can share a block only with smaller ones; corpus alone mean ${Math.round(meanOf(corpusSizes))} B, ${half(corpusSizes)} over half.\n`);
  console.log(markdownTable(cols(['stream', 'flush every', 'dm-vdo blocks', 'packed', 'raw', 'flashpack blocks', 'packed', 'raw', 'flashpack − dm-vdo', 'fewer?']), sims.map((s) => [
    s.stream, s.every === Infinity ? 'never' : String(s.every),
    fmtInt(s.d.blocks), fmtInt(s.d.packedBlocks), fmtInt(s.d.rawBlocks),
    fmtInt(s.f.blocks), fmtInt(s.f.packedBlocks), fmtInt(s.f.rawBlocks),
    `${s.f.blocks - s.d.blocks} (${fmtPct(((s.f.blocks - s.d.blocks) / s.d.blocks) * 100)})`, s.f.blocks < s.d.blocks ? 'yes' : 'NO',
  ])));
  const simNever = sims.find((s) => s.stream === 'ingest stream' && s.every === Infinity);
  console.log(`\nThe volumes after the ingest (runs: ${INGEST_RUNS}; counts are per run, min–max when runs differ — the volume writes its bins out whenever no write in flight can still feed the packer, so timing matters). Reference: simulation without flushes, dm-vdo ${simNever.d.blocks}, flashpack ${simNever.f.blocks} blocks.\n`);
  const range = (xs, f = fmtInt) => {
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    return lo === hi ? f(lo) : `${f(lo)}–${f(hi)}`;
  };
  // The volumes that took the whole stream with a packer.
  const packingIngests = ingests.filter((ig) => ig.config.codec === undefined && !ig.config.onePass);
  console.log(markdownTable(cols(['volume', 'dataBlocksUsed', 'compressedFragmentsWritten', 'compressedBlocksWritten', 'raw data blocks', 'savingPercent', 'vs dm-vdo sim (never)']), packingIngests.map((ig) => {
    const s = ig.runs.map((r) => r.stats);
    const used = s.map((x) => x.dataBlocksUsed);
    return [
      ig.config.label, range(used), range(s.map((x) => x.compressedFragmentsWritten)), range(s.map((x) => x.compressedBlocksWritten)),
      range(s.map((x) => x.dataBlocksUsed - x.compressedBlocksWritten)), range(s.map((x) => x.savingPercent), fmtPct),
      `${Math.round(median(used)) - simNever.d.blocks}`,
    ];
  })));
  const dm = ingests.find((i) => i.config.backend === 'file' && i.config.packer === 'dm-vdo' && i.config.policy === 'async' && !i.config.onePass);
  if (main && dm) {
    const a = median(main.runs.map((r) => r.stats.dataBlocksUsed));
    const b = median(dm.runs.map((r) => r.stats.dataBlocksUsed));
    console.log(`\nTarget (flashpack uses fewer physical blocks than the dm-vdo simulation): simulation ${simNever.f.blocks < simNever.d.blocks ? 'met' : 'NOT met'} (${simNever.f.blocks} vs ${simNever.d.blocks}); volume ${a < simNever.d.blocks ? 'met' : 'NOT met'} (median ${a} vs ${simNever.d.blocks}); flashpack volume vs dm-vdo-packer volume: ${a} vs ${b}.`);
  }
  if (main) {
    console.log('\nvdostats-style stats() of the ingest volume (last run of "file, flashpack packer, async"):\n');
    console.log('```');
    console.log(vdostats(main.runs.at(-1).path, main.runs.at(-1).stats));
    console.log('```');
  }

  const wrongVolumes = volumes.filter((v) => v.check.bad.length > 0);
  const wrongIngest = ingests.filter((i) => i.runs.some((r) => r.wrong > 0));
  if (wrongVolumes.length || wrongIngest.length) {
    failed = true;
    console.log('\n## WRONG DATA\n');
    for (const v of wrongVolumes) console.log(`- ${v.label}: ${v.check.bad.length} LBAs read back wrong, e.g. ${JSON.stringify(v.check.bad.slice(0, 5))}`);
    for (const i of wrongIngest) console.log(`- ingest ${i.config.label}: ${i.runs.map((r) => r.wrong).join(', ')} blocks wrong per run`);
  }
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  await cleanup();
  finished = true;
  clearInterval(watchdog);
  log(`done in ${elapsed()}`);
}
process.exitCode = failed ? 1 : 0;
