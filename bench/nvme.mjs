// Queue-pair benchmark (issue 5): 4 KiB random writes and reads at queue depth
// 1, 32 and 128 on one file, through flashpack's NVMe-style qpairs (a
// FileBackend: device workers doing positional I/O) against fs.promises
// FileHandle positional I/O at the same depth, in the same process, with fio
// on the same file as the device limit.
//
//   node bench/nvme.mjs            (npm run bench:nvme)
//
// Env: NVME_BENCH_FILE (default: a 256 MiB file in the OS temp dir),
// NVME_BENCH_OPS (I/Os per timed pass, default 20000), NVME_BENCH_WORKERS
// (extra qpair rows with these ioWorkers counts, default "4").
//
// The file is written in full first, so both paths read the same page cache;
// fio uses the libaio engine with buffered I/O (direct=0) for the same reason.
// IOPS come from tinybench's mean pass time; latencies (submit → callback) are
// percentiles over every I/O of every timed pass.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Bench } from 'tinybench';
import * as fp from '../dist/index.js';
import { markdownTable, formatRatio } from './table.mjs';

const FILE_BYTES = 256 << 20;
const BLOCK = 4096;
const OPS = Number(process.env.NVME_BENCH_OPS ?? 20000);
const DEPTHS = [1, 32, 128];
const EXTRA_WORKERS = (process.env.NVME_BENCH_WORKERS ?? '4').split(',').filter(Boolean).map(Number);
const FIO_SECONDS = 5;
const TIME_MS = 2000;
const log = (...a) => console.error(...a);

const file = process.env.NVME_BENCH_FILE ?? path.join(os.tmpdir(), 'flashpack-nvme-bench.img');
prepareFile(file);
const blocks = FILE_BYTES / BLOCK;

/** Random block numbers, the same sequence for every contender. */
const lbas = new Int32Array(1 << 20);
let seed = 0x9e3779b9;
for (let i = 0; i < lbas.length; i++) {
  seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
  lbas[i] = (seed >>> 0) % blocks;
}

function prepareFile(p) {
  if (fs.existsSync(p) && fs.statSync(p).size === FILE_BYTES) return;
  log(`writing ${FILE_BYTES >> 20} MiB to ${p}`);
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 2654435761) >>> 24;
  const fd = fs.openSync(p, 'w');
  for (let off = 0; off < FILE_BYTES; off += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, off);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Runs `pass` (one pass = OPS I/Os, recording latencies) under tinybench. */
async function measure(name, pass) {
  const lat = [];
  const bench = new Bench({ time: TIME_MS, iterations: 3, warmup: true, warmupIterations: 1, warmupTime: 200, throws: true });
  let record = false;
  bench.add(name, async () => {
    const l = await pass();
    if (record) lat.push(l);
  }, { beforeAll: () => { record = true; } });
  await bench.run();
  const t = bench.tasks[0];
  if (t.result.state !== 'completed') throw new Error(`${name} did not complete`, { cause: t.result.error });
  const all = Float64Array.from(lat.flatMap((l) => Array.from(l))).sort();
  return { iops: OPS / (t.result.latency.mean / 1000), p50: percentile(all, 0.5) * 1000, p99: percentile(all, 0.99) * 1000 };
}

// --- flashpack qpairs ---------------------------------------------------------
async function qpairRuns(ioWorkers) {
  const ctrl = await fp.nvme.Controller.open(new fp.nvme.FileBackend(file), ioWorkers ? { ioWorkers } : {});
  const ns = ctrl.ns(1);
  const qp = ctrl.allocIoQpair({ ioQueueSize: 256, ioQueueRequests: 512 });
  const out = {};
  for (const op of ['write', 'read']) {
    for (const qd of DEPTHS) {
      const bufs = Array.from({ length: qd }, () => ctrl.pool.alloc(BLOCK));
      for (const b of bufs) ctrl.pool.bytes(b, true).fill(0x5a);
      const started = new Float64Array(qd);
      let lat;
      let done = 0;
      let failed = null;
      let next = 0;
      const submit = (slot) => {
        started[slot] = performance.now();
        qp[op](ns, bufs[slot], lbas[next++ & (lbas.length - 1)], 1, onDone, slot);
      };
      const onDone = (status, slot) => {
        lat[done++] = performance.now() - started[slot];
        if (status.isError) failed ??= status;
        if (next < pass.end) submit(slot);
      };
      const pass = async () => {
        lat = new Float64Array(OPS);
        done = 0;
        pass.end = next + OPS;
        for (let s = 0; s < qd; s++) submit(s);
        while (done < OPS) {
          if (qp.processCompletions(0) === 0) await qp.waitForCompletions(100);
        }
        if (failed) throw new Error(`qpair ${op}: ${failed}`);
        return lat;
      };
      const r = await measure(`qpair ${op} QD${qd}`, pass);
      log(`  qpair (${ctrl.ioWorkers} device workers) ${op} QD${qd}: ${Math.round(r.iops)} IOPS`);
      out[`${op}/${qd}`] = r;
      for (const b of bufs) ctrl.pool.free(b);
    }
  }
  const workers = ctrl.ioWorkers;
  await ctrl.close();
  return { workers, out };
}

// --- fs.promises FileHandle -----------------------------------------------------
async function fsPromisesRuns() {
  const fh = await fsp.open(file, 'r+');
  const out = {};
  let next = 0;
  for (const op of ['write', 'read']) {
    for (const qd of DEPTHS) {
      const bufs = Array.from({ length: qd }, () => new Uint8Array(BLOCK).fill(0x5a));
      const pass = async () => {
        const lat = new Float64Array(OPS);
        let issued = 0;
        let done = 0;
        const lane = async (buf) => {
          while (issued < OPS) {
            issued++;
            const pos = lbas[next++ & (lbas.length - 1)] * BLOCK;
            const t0 = performance.now();
            await fh[op](buf, 0, BLOCK, pos);
            lat[done++] = performance.now() - t0;
          }
        };
        await Promise.all(bufs.map(lane));
        return lat;
      };
      const r = await measure(`fs.promises ${op} QD${qd}`, pass);
      log(`  fs.promises ${op} QD${qd}: ${Math.round(r.iops)} IOPS`);
      out[`${op}/${qd}`] = r;
    }
  }
  await fh.close();
  return out;
}

// --- fio ------------------------------------------------------------------------
function fioRuns() {
  let version;
  try {
    version = execFileSync('fio', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    log('  fio not found (apt-get install fio): no device-limit column');
    return { version: null, out: {} };
  }
  const out = {};
  for (const op of ['write', 'read']) {
    for (const qd of DEPTHS) {
      const json = execFileSync('fio', [
        '--name=flashpack', `--filename=${file}`, `--rw=rand${op}`, '--bs=4k', `--size=${FILE_BYTES}`,
        '--ioengine=libaio', `--iodepth=${qd}`, '--direct=0', '--time_based', `--runtime=${FIO_SECONDS}`,
        '--randrepeat=1', '--norandommap', '--invalidate=0', '--group_reporting', '--output-format=json',
      ], { encoding: 'utf8', maxBuffer: 64 << 20 });
      const job = JSON.parse(json.slice(json.indexOf('{'))).jobs[0][op];
      const pct = job.clat_ns.percentile ?? {};
      out[`${op}/${qd}`] = { iops: job.iops, p50: (pct['50.000000'] ?? NaN) / 1000, p99: (pct['99.000000'] ?? NaN) / 1000 };
      log(`  fio ${op} QD${qd}: ${Math.round(job.iops)} IOPS`);
    }
  }
  return { version, out };
}

const fmtIops = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const fmtUs = (v) => (Number.isFinite(v) ? (v >= 100 ? Math.round(v).toString() : v.toFixed(1)) : 'n/a');

log(`file ${file} (${FILE_BYTES >> 20} MiB), ${OPS} I/Os per pass, ${os.availableParallelism()} cores`);
log('flashpack qpairs (default device workers)');
const main = await qpairRuns(undefined);
const extra = [];
for (const w of EXTRA_WORKERS) {
  if (w === main.workers) continue;
  log(`flashpack qpairs (${w} device workers)`);
  extra.push(await qpairRuns(w));
}
log('fs.promises');
const fsRes = await fsPromisesRuns();
log('fio');
const fio = fioRuns();

const rows = [];
for (const op of ['write', 'read']) {
  for (const qd of DEPTHS) {
    const k = `${op}/${qd}`;
    const q = main.out[k];
    const f = fsRes[k];
    const d = fio.out[k];
    const row = [
      `rand${op}`, String(qd),
      fmtIops(q.iops), fmtUs(q.p50), fmtUs(q.p99),
      fmtIops(f.iops), fmtUs(f.p50), fmtUs(f.p99),
      formatRatio(q.iops / f.iops, '×'),
    ];
    for (const e of extra) row.push(fmtIops(e.out[k].iops), formatRatio(e.out[k].iops / f.iops, '×'));
    row.push(fmtIops(d?.iops), fmtUs(d?.p50), fmtUs(d?.p99), formatRatio(d ? q.iops / d.iops : NaN, '×'));
    rows.push(row);
  }
}
const columns = [
  { title: '4 KiB', align: 'left' }, { title: 'QD', align: 'right' },
  { title: `qpair IOPS (${main.workers} dev. worker${main.workers > 1 ? 's' : ''})`, align: 'right' }, { title: 'p50 µs', align: 'right' }, { title: 'p99 µs', align: 'right' },
  { title: 'fs.promises IOPS', align: 'right' }, { title: 'p50 µs', align: 'right' }, { title: 'p99 µs', align: 'right' },
  { title: 'qpair / fs.promises', align: 'right' },
];
for (const e of extra) columns.push({ title: `qpair IOPS (${e.workers} dev. workers)`, align: 'right' }, { title: 'vs fs.promises', align: 'right' });
columns.push({ title: 'fio IOPS', align: 'right' }, { title: 'p50 µs', align: 'right' }, { title: 'p99 µs', align: 'right' }, { title: 'qpair / fio', align: 'right' });

console.log(`\n### NVMe queue pairs on a file (${FILE_BYTES >> 20} MiB, page cache), Node ${process.version}, ${os.availableParallelism()} cores${fio.version ? `, ${fio.version} libaio buffered` : ''}\n`);
console.log(markdownTable(columns, rows));
