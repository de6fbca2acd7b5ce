// NBD server benchmark: `flashpack serve` against nbdkit's file plugin and
// qemu-nbd, through fio's nbd engine on a unix socket, and qemu-img convert
// of an ext4 disk image into a served volume against a zstd qcow2.
//
//   node bench/nbd.mjs [--quick]       (npm run bench:nbd)
//
// One run, one machine, side by side; servers run one at a time (started for
// each measurement, stopped with SIGTERM after it; fio and the server share
// the machine's cores).
//  1. fio: each server's target (flashpack: a fresh lz4 + dedupe volume of
//     logical size S and physical size 2×S, so random overwrites never run out
//     of free blocks between flushes; nbdkit and qemu-nbd: a raw file of size
//     S) is first written in full (1 MiB sequential writes, read back and
//     verified). Workloads: 4 KiB random read and write at QD 1 and 32, 1 MiB
//     sequential read and write at QD 8, each measured REPS times, interleaved
//     (A B C A B C …), median reported. Reads are time based (ramp, then
//     SECONDS), unverified so fio's checksumming does not throttle the fast
//     servers (every byte is verified at the end instead). Writes carry a
//     crc32c header every 4 KiB and run with --do_verify=1 --verify_fatal=1:
//     fio reads back and checks everything the job wrote after its write
//     phase, and only the write phase counts. fio skips that read-back for
//     time-based jobs ("verification read phase will never start"), so each
//     write measurement is a warm-up of RAMP seconds (time based; its rate
//     sizes the measured job), then a job of about SECONDS worth of I/O
//     (--io_size ≤ S, --loops for more). At the end every server is started
//     once more and the whole device is read and verified (every 4 KiB header
//     and checksum), and the flashpack volume is checked offline.
//  2. qemu-img convert of an ext4 image (mkfs.ext4 -d over copies of
//     test/corpus and some node_modules packages) into a served fresh volume,
//     against qemu-img convert -c to qcow2 with zstd; sizes on disk, and both
//     copies compared with the source by qemu-img compare (untimed).
//
// Env: NBD_BENCH_SIZE_MB (S, default 1024; --quick 256), NBD_BENCH_SECONDS
// (default 6; --quick 5), NBD_BENCH_RAMP (default 2), NBD_BENCH_REPS (default
// 3; --quick 1). Tables to stdout, progress to stderr, numbers to
// bench/results/nbd.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from './corpus.mjs';
import { finishRun } from './helpers/results.mjs';
import { markdownTable, formatMBps, formatRatio } from './table.mjs';
import { tmp, run, runOk, startServer, cleanup, installCleanupHandlers, duBytes, versionOf } from './helpers/nbd-procs.mjs';
import { fio, baseOpts, DATA_OPTS, FioError } from './helpers/nbd-fio.mjs';

const QUICK = process.argv.includes('--quick');
const env = (name, dflt) => Number(process.env[name] || dflt);
const MiB = 1 << 20;
const S = env('NBD_BENCH_SIZE_MB', QUICK ? 256 : 1024) * MiB;
const SECONDS = env('NBD_BENCH_SECONDS', QUICK ? 5 : 6);
const RAMP = env('NBD_BENCH_RAMP', 2);
const REPS = env('NBD_BENCH_REPS', QUICK ? 1 : 3);
const DISK_MB = 256;
const MAX_LOOPS = 16;
const CLI = path.join(projectRoot, 'bin', 'flashpack.mjs');
const RESULTS_FILE = path.join(projectRoot, 'bench', 'results', 'nbd.json');
const log = (...a) => console.error(...a);
const started = performance.now();
const elapsedS = () => (performance.now() - started) / 1000;
const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const fmtInt = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const fmtMiB = (b) => (Number.isFinite(b) ? `${(b / MiB).toFixed(1)} MiB` : 'n/a');
const fmtS = (ms) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : 'n/a');
const cols = (titles) => titles.map((title, i) => ({ title, align: i === 0 ? 'left' : 'right' }));
const problems = [];
const problem = (msg) => { problems.push(msg); log(`  PROBLEM: ${msg}`); };
let failed = false;

installCleanupHandlers(log);
if (!fs.existsSync(CLI) || !fs.existsSync(path.join(projectRoot, 'dist', 'cli', 'main.js'))) {
  console.error(`${CLI} or dist/cli/main.js missing: npm run build first`);
  process.exit(2);
}
const sock = tmp('nbd.sock');
const rawFile = (file, size) => {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
};

const SERVERS = [
  {
    key: 'flashpack', label: 'flashpack serve', image: tmp('flashpack.img'),
    prepare: (s) => runOk(process.execPath, [CLI, 'create', s.image, '--size', String(S), '--physical-size', String(2 * S), '--codec', 'lz4']),
    start: (s, opts = []) => startServer('flashpack serve', process.execPath, [CLI, 'serve', s.image, '--socket', sock, ...opts], sock, { image: s.image }),
  },
  {
    key: 'nbdkit', label: 'nbdkit file', image: tmp('nbdkit.raw'),
    prepare: (s) => rawFile(s.image, S),
    start: (s) => startServer('nbdkit', 'nbdkit', ['-U', sock, '-f', '--exit-with-parent', 'file', s.image], sock),
  },
  {
    key: 'qemu-nbd', label: 'qemu-nbd', image: tmp('qemu-nbd.raw'),
    prepare: (s) => rawFile(s.image, S),
    start: (s) => startServer('qemu-nbd', 'qemu-nbd', ['-k', sock, '-f', 'raw', '-t', '-e', '8', '--cache=writeback', '--aio=threads', s.image], sock),
  },
];

const WORKLOADS = [ // printed in this order; reads run first, right after the prefill
  { key: 'randwrite-4k-qd1', label: '4 KiB random write, QD 1', rw: 'randwrite', bs: 4096, qd: 1 },
  { key: 'randwrite-4k-qd32', label: '4 KiB random write, QD 32', rw: 'randwrite', bs: 4096, qd: 32 },
  { key: 'randread-4k-qd1', label: '4 KiB random read, QD 1', rw: 'randread', bs: 4096, qd: 1 },
  { key: 'randread-4k-qd32', label: '4 KiB random read, QD 32', rw: 'randread', bs: 4096, qd: 32 },
  { key: 'write-1m-qd8', label: '1 MiB sequential write, QD 8', rw: 'write', bs: MiB, qd: 8 },
  { key: 'read-1m-qd8', label: '1 MiB sequential read, QD 8', rw: 'read', bs: MiB, qd: 8 },
].map((w) => ({ ...w, write: w.rw.includes('write'), unit: w.bs === MiB ? 'MB/s' : 'IOPS' }));
const RUN_ORDER = [...WORKLOADS.filter((w) => !w.write), ...WORKLOADS.filter((w) => w.write)];
const valueOf = (w, side) => (w.unit === 'IOPS' ? side.iops : side.bw_bytes / 1e6);
const jobOpts = (w) => [`--rw=${w.rw}`, `--bs=${w.bs}`, `--iodepth=${w.qd}`];

/** Starts server `s`, runs `body`, stops it; server failures become problems. */
async function session(s, what, body, startOpts) {
  const srv = await s.start(s, startOpts);
  let out;
  try {
    out = await body();
  } finally {
    const st = await srv.stop();
    const clean = st.code === 0 && !st.killed && (s.key !== 'flashpack' || /closed cleanly/.test(st.stderr));
    if (!clean) problem(`${s.label} (${what}): stop gave exit ${st.code ?? st.signal}${st.killed ? ' after SIGKILL' : ''}; stderr: ${st.stderr.trim().slice(-600)}`);
    const errs = st.stderr.split('\n').filter((l) => /error|warn|fail|refus/i.test(l));
    if (errs.length) problem(`${s.label} (${what}) logged: ${errs.slice(0, 5).join(' | ')}`);
    if (out && typeof out === 'object') out.stopMs = st.ms;
  }
  return out;
}

const lastRate = new Map(); // server + workload → bytes/s of its last measured write phase

/** One measurement: { value, …details }, or { value: NaN, error }. */
async function measure(s, w) {
  const base = [...baseOpts(sock, S), ...jobOpts(w)];
  try {
    return await session(s, w.label, async () => {
      if (!w.write) {
        const job = await fio([...base, '--time_based', `--runtime=${SECONDS}`, `--ramp_time=${RAMP}`]);
        return { value: valueOf(w, job.read), runtimeMs: job.read.runtime };
      }
      const warm = await fio([...base, ...DATA_OPTS, '--time_based', `--runtime=${RAMP}`]);
      const rate = Math.max(warm.write.bw_bytes, lastRate.get(`${s.key} ${w.key}`) ?? 0); // the warm-up includes start-up
      const want = Math.max(w.bs * w.qd * 16, rate * SECONDS);
      const loops = Math.min(MAX_LOOPS, Math.max(1, Math.round(want / S)));
      const ioSize = Math.min(S, Math.floor(want / loops / w.bs) * w.bs);
      const job = await fio([...base, ...DATA_OPTS, `--io_size=${ioSize}`, `--loops=${loops}`, '--do_verify=1', '--verify_fatal=1'], { expectVerifiedBytes: ioSize * loops });
      lastRate.set(`${s.key} ${w.key}`, job.write.bw_bytes);
      return { value: valueOf(w, job.write), warmup: valueOf(w, warm.write), runtimeMs: job.write.runtime, verifiedBytes: job.read.io_bytes, ioSize, loops };
    });
  } catch (err) {
    failed = true;
    problem(`${s.label}, ${w.label}: ${err.message}${err.detail ? ` [${err.detail.cmd}]` : ''}`);
    return { value: NaN, error: err.message };
  }
}

async function machine() {
  const cpus = os.cpus();
  return {
    node: process.version, cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2))), memGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    fio: await versionOf('fio'), nbdkit: await versionOf('nbdkit'), qemuNbd: await versionOf('qemu-nbd'), qemuImg: await versionOf('qemu-img'),
  };
}

// --- 1. fio --------------------------------------------------------------------
async function fioPart() {
  const prefill = {};
  for (const s of SERVERS) {
    log(`prefill ${s.label}: ${S / MiB} MiB sequential, read back and verified`);
    await s.prepare(s);
    const t0 = performance.now();
    try {
      prefill[s.key] = await session(s, 'prefill', async () => {
        const job = await fio([...baseOpts(sock, S), ...DATA_OPTS, '--rw=write', '--bs=1M', '--iodepth=8', '--do_verify=1', '--verify_fatal=1'], { expectVerifiedBytes: S });
        return { writeMBps: job.write.bw_bytes / 1e6, verifyMBps: job.read.bw_bytes / 1e6 };
      });
    } catch (err) {
      failed = true;
      problem(`${s.label} prefill: ${err.message}`);
      prefill[s.key] = { writeMBps: NaN, verifyMBps: NaN };
    }
    prefill[s.key].seconds = (performance.now() - t0) / 1000;
  }
  const results = {};
  for (const w of RUN_ORDER) {
    results[w.key] = Object.fromEntries(SERVERS.map((s) => [s.key, []]));
    for (let rep = 0; rep < REPS; rep++) {
      for (const s of SERVERS) {
        const r = await measure(s, w);
        results[w.key][s.key].push(r);
        log(`  [${elapsedS().toFixed(0)} s] ${w.label}, ${s.label}, run ${rep + 1}/${REPS}: ${w.unit === 'IOPS' ? fmtInt(r.value) : formatMBps(r.value)} ${w.unit}`
          + `${r.loops ? ` (${r.ioSize / MiB >= 1 ? fmtMiB(r.ioSize) : `${r.ioSize} B`} × ${r.loops}, ${(r.runtimeMs / 1000).toFixed(1)} s, verified)` : ''}`);
      }
    }
  }
  const final = {};
  for (const s of SERVERS) {
    log(`final check ${s.label}: whole device read back and verified`);
    try {
      final[s.key] = await session(s, 'final verify', async () => {
        const job = await fio([...baseOpts(sock, S), '--rw=read', '--bs=1M', '--iodepth=8', '--verify=crc32c', '--verify_interval=4096', '--verify_fatal=1'], { expectVerifiedBytes: S });
        return { verifiedBytes: job.read.io_bytes, MBps: job.read.bw_bytes / 1e6 };
      });
    } catch (err) {
      failed = true;
      problem(`${s.label} final verify: ${err.message}`);
      final[s.key] = { error: err.message };
    }
  }
  const fp = SERVERS[0];
  const stats = await run(process.execPath, [CLI, 'stats', fp.image, '--json']);
  const check = await run(process.execPath, [CLI, 'check', fp.image, '--quiet']);
  if (check.code !== 0) { failed = true; problem(`flashpack check: exit ${check.code}: ${(check.stdout + check.stderr).trim().slice(0, 800)}`); }
  final.flashpackStats = stats.code === 0 ? JSON.parse(stats.stdout).stats : { error: stats.stderr.trim() };
  final.flashpackCheck = { code: check.code, summary: check.stdout.trim().split('\n')[0], ms: check.ms };
  return { prefill, results, final };
}

// --- 2. qemu-img convert ------------------------------------------------------------
async function convertPart() {
  const tree = tmp('tree');
  const sources = [...Array.from({ length: 4 }, (_, i) => ['test/corpus', `corpus-${i + 1}`]),
    ['node_modules/typescript', 'typescript'], ['node_modules/binaryen', 'binaryen'], ['node_modules/assemblyscript', 'assemblyscript']];
  for (const [src, dst] of sources) {
    if (fs.existsSync(path.join(projectRoot, src))) fs.cpSync(path.join(projectRoot, src), path.join(tree, dst), { recursive: true, dereference: true });
  }
  const treeBytes = Number((await runOk('du', ['-sb', tree])).stdout.split(/\s/)[0]);
  const disk = tmp('disk.raw');
  rawFile(disk, DISK_MB * MiB);
  await runOk('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', tree, disk]);
  fs.rmSync(tree, { recursive: true, force: true });
  const raw = { apparentBytes: fs.statSync(disk).size, duBytes: await duBytes(disk), treeBytes, sources: sources.map((x) => x[0]) };
  log(`disk image: ${fmtMiB(raw.apparentBytes)} ext4, ${fmtMiB(treeBytes)} of files, ${fmtMiB(raw.duBytes)} allocated`);
  const uri = `nbd+unix:///?socket=${sock}`;
  const fp = { label: 'flashpack serve', key: 'flashpack', image: tmp('convert.img'), start: SERVERS[0].start };
  const runs = { flashpack: [], qcow2: [] };
  for (let rep = 0; rep < REPS; rep++) {
    try {
      fs.rmSync(fp.image, { force: true });
      await runOk(process.execPath, [CLI, 'create', fp.image, '--size', String(raw.apparentBytes), '--codec', 'lz4']);
      const r = await session(fp, 'convert', async () => ({ convertMs: (await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', disk, uri])).ms }));
      const st = JSON.parse((await runOk(process.execPath, [CLI, 'stats', fp.image, '--json'])).stdout).stats;
      r.closeMs = r.stopMs;
      r.usedBytes = (st.dataBlocksUsed + st.overheadBlocksUsed) * 4096;
      r.dataBytes = st.dataBlocksUsed * 4096;
      r.savingPercent = st.savingPercent;
      r.duBytes = await duBytes(fp.image);
      r.imageBytes = fs.statSync(fp.image).size;
      const cmp = await session(fp, 'compare', () => run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', disk, uri]), ['--read-only']);
      r.identical = cmp.code === 0;
      if (!r.identical) { failed = true; problem(`convert into flashpack: qemu-img compare exit ${cmp.code}: ${(cmp.stdout + cmp.stderr).trim()}`); }
      runs.flashpack.push(r);
      log(`  convert into flashpack, run ${rep + 1}: ${fmtS(r.convertMs)} s + close ${fmtS(r.closeMs)} s, ${fmtMiB(r.usedBytes)} used${r.identical ? ', identical' : ''}`);
    } catch (err) {
      failed = true;
      problem(`convert into flashpack: ${err.message}`);
    }
    const out = tmp('out.qcow2');
    fs.rmSync(out, { force: true });
    const c = await runOk('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'compression_type=zstd', disk, out]);
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', disk, out]);
    if (cmp.code !== 0) { failed = true; problem(`qcow2: qemu-img compare exit ${cmp.code}: ${(cmp.stdout + cmp.stderr).trim()}`); }
    runs.qcow2.push({ convertMs: c.ms, duBytes: await duBytes(out), imageBytes: fs.statSync(out).size, identical: cmp.code === 0 });
    log(`  convert to qcow2 zstd, run ${rep + 1}: ${fmtS(c.ms)} s, ${fmtMiB(runs.qcow2.at(-1).duBytes)}`);
  }
  return { raw, runs };
}

// --- report -----------------------------------------------------------------------
function fioTables({ prefill, results, final }) {
  const fmt = (w, v) => (w.unit === 'IOPS' ? fmtInt(v) : formatMBps(v));
  const med = {};
  const rows = WORKLOADS.map((w) => {
    med[w.key] = Object.fromEntries(SERVERS.map((s) => [s.key, median(results[w.key][s.key].map((r) => r.value))]));
    const m = med[w.key];
    return [w.label, w.unit, ...SERVERS.map((s) => fmt(w, m[s.key])), formatRatio(m.flashpack / m.nbdkit, '×'), formatRatio(m.flashpack / m['qemu-nbd'], '×')];
  });
  console.log(`\n## fio, nbd engine over a unix socket (median of ${REPS}, ${SECONDS} s each)\n`);
  console.log(markdownTable(cols(['workload', 'unit', ...SERVERS.map((s) => s.label), 'flashpack / nbdkit', 'flashpack / qemu-nbd']), rows));
  console.log(`\nEvery run (${REPS > 1 ? 'interleaved A B C A B C …' : 'one each'}):\n`);
  console.log(markdownTable(cols(['workload', ...SERVERS.map((s) => s.label)]), WORKLOADS.map((w) => [w.label,
    ...SERVERS.map((s) => results[w.key][s.key].map((r) => fmt(w, r.value)).join(' / '))])));
  console.log('\nPrefill of the fresh target (1 MiB sequential writes of the whole device, QD 8) and the final whole-device verification:\n');
  console.log(markdownTable(cols(['', ...SERVERS.map((s) => s.label)]), [
    ['prefill write MB/s', ...SERVERS.map((s) => formatMBps(prefill[s.key].writeMBps))],
    ['prefill read-back + verify MB/s', ...SERVERS.map((s) => formatMBps(prefill[s.key].verifyMBps))],
    ['final verify of all bytes (MB/s)', ...SERVERS.map((s) => (final[s.key].error ? 'FAILED' : `ok (${formatMBps(final[s.key].MBps)})`))],
    ['median server stop after a write run (s)', ...SERVERS.map((s) => fmtS(median(WORKLOADS.filter((w) => w.write).flatMap((w) => results[w.key][s.key].map((r) => r.stopMs)))))],
  ]));
  const st = final.flashpackStats;
  if (!st.error) {
    console.log(`\nflashpack volume after the run: ${st.logicalBlocksUsed} logical blocks mapped, ${st.dataBlocksUsed} data blocks + ${st.overheadBlocksUsed} overhead (${fmtMiB((st.dataBlocksUsed + st.overheadBlocksUsed) * 4096)} of ${fmtMiB(2 * S)}), saving ${st.savingPercent.toFixed(1)}%; \`flashpack check\`: ${final.flashpackCheck.summary || `exit ${final.flashpackCheck.code}`}`);
  }
  const target = (k) => `${formatRatio(med[k].flashpack / med[k].nbdkit, '×')} ${med[k].flashpack >= med[k].nbdkit ? 'met' : 'NOT met'}`;
  console.log(`\nTarget (flashpack ≥ 1.0× nbdkit file): 4 KiB QD 32 random write ${target('randwrite-4k-qd32')}, random read ${target('randread-4k-qd32')}; sequential write ${target('write-1m-qd8')}, sequential read ${target('read-1m-qd8')}.`);
  return med;
}

function convertTable({ raw, runs }) {
  const m = (xs, k) => median(xs.map((r) => r[k]));
  const f = runs.flashpack;
  const q = runs.qcow2;
  const mbps = (ms) => formatMBps(raw.apparentBytes / 1e6 / (ms / 1000));
  console.log(`\n## qemu-img convert of a ${DISK_MB} MiB ext4 image (median of ${REPS})\n`);
  console.log(`The image: mkfs.ext4 -d over ${[...new Set(raw.sources)].join(', ')} (test/corpus 4 times): ${fmtMiB(raw.treeBytes)} of files; the raw file has ${fmtMiB(raw.duBytes)} allocated.\n`);
  console.log(markdownTable(cols(['target', 'convert s', 'MB/s of image', 'close s', 'convert + close s', 'size on disk', 'du', 'vs raw allocated', 'identical']), [
    ['flashpack volume (lz4 + dedupe), over NBD', fmtS(m(f, 'convertMs')), mbps(m(f, 'convertMs')), fmtS(m(f, 'closeMs')), fmtS(median(f.map((r) => r.convertMs + r.closeMs))),
      `${fmtMiB(m(f, 'usedBytes'))} (data ${fmtMiB(m(f, 'dataBytes'))})`, fmtMiB(m(f, 'duBytes')), formatRatio(m(f, 'usedBytes') / raw.duBytes, '×'), f.every((r) => r.identical) ? 'yes' : 'NO'],
    ['qcow2, -c zstd', fmtS(m(q, 'convertMs')), mbps(m(q, 'convertMs')), '', '', fmtMiB(m(q, 'duBytes')), fmtMiB(m(q, 'duBytes')), formatRatio(m(q, 'duBytes') / raw.duBytes, '×'), q.every((r) => r.identical) ? 'yes' : 'NO'],
    ['raw image (reference)', '', '', '', '', fmtMiB(raw.apparentBytes), fmtMiB(raw.duBytes), '1.00×', ''],
  ]));
  console.log('\nflashpack size on disk = (dataBlocksUsed + overheadBlocksUsed) × 4096 from `flashpack stats --json` after the clean close; du = blocks the image file has allocated.');
}

// --- main -----------------------------------------------------------------------
let out = {};
try {
  const mi = await machine();
  console.log('# NBD servers: flashpack serve vs nbdkit file vs qemu-nbd\n');
  console.log(`- Node ${mi.node}, ${mi.cpus} CPUs (${mi.cpuModel}), ${mi.os}, ${mi.memGiB} GiB RAM, load average ${mi.loadavg.join(' ')} at start`);
  console.log(`- ${mi.fio}, ${mi.nbdkit}, ${mi.qemuNbd}, ${mi.qemuImg}`);
  console.log(`- servers run one at a time, each started for a measurement and stopped after it; fio and the server share the ${mi.cpus} CPUs${QUICK ? '; --quick' : ''}`);
  console.log(`- S = ${S / MiB} MiB; flashpack: lz4 + dedupe, async writes, physical size 2×S; nbdkit: file plugin; qemu-nbd: -f raw -e 8 --cache=writeback --aio=threads`);
  console.log(`- reads: ${RAMP} s ramp + ${SECONDS} s; writes: ${RAMP} s warm-up, then about ${SECONDS} s of I/O read back and verified by fio (crc32c every 4 KiB), write phase timed; data: ${DATA_OPTS.slice(0, 3).join(' ')}`);
  out = { machine: mi, config: { S, SECONDS, RAMP, REPS, QUICK } };
  out.fio = await fioPart();
  out.convert = await convertPart();
  out.fio.medians = fioTables(out.fio);
  convertTable(out.convert);
} catch (err) {
  failed = true;
  problem(`aborted: ${err.stack ?? err}`);
} finally {
  await cleanup();
}
process.exitCode = finishRun({
  file: RESULTS_FILE, command: `node bench/nbd.mjs${QUICK ? ' --quick' : ''}`, elapsedSeconds: elapsedS(), out, problems, failed, log,
});
