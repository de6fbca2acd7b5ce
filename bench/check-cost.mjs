// What the data check on every read costs (issue 17: ≤ 5% against reads that
// check nothing). Two builds of the read path in one process, alternating,
// on the same data:
//
//   check    this build: every block a read returns is hashed (WASM
//            dataCheck, XXH3-128) and compared with the block map's check
//   none     the same build with the check skipped: what a read costs
//            without one (the baseline of the ratios; never a product mode)
//
// The variant is a copy of dist/ in a temp directory with one expression of
// dist/vdo/read-path.js replaced (the bench refuses to run if it does not
// match exactly once). Workloads on a 4 KiB-block LZ4 + dedupe volume filled
// with random bytes (every block stored whole, so every block read is
// hashed): sequential 1 MiB reads at QD 1 and 4, and 4 KiB random reads at
// QD 1 and 32, in slices that alternate between the builds. The fill (1 MiB
// writes) is shown too, but once per build and in order, so it is not a
// paired measure: writes compute the check with the fingerprint in the
// engine (one XXH3-128 for both), and the check costs them nothing here.
//
// CHECK_BENCH_BASE=<another build's dist/> adds that build as a third row
// (an A/B of read-path changes in the same run).
//
//   npm run bench:check     (CHECK_BENCH_MB=256 CHECK_BENCH_SLICES=15 CHECK_BENCH_SLICE_MS=300
//                            CHECK_BENCH_BACKEND=file|memory CHECK_BENCH_BASE=)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatMBps, formatRatio, markdownTable } from './table.mjs';
import { prng, timed } from './helpers/workload.mjs';

const env = (name, dflt) => (process.env[name] === undefined || process.env[name] === '' ? dflt : Number(process.env[name]));
const DATA_MB = env('CHECK_BENCH_MB', 256);
const SLICES = env('CHECK_BENCH_SLICES', 15);
const SLICE_MS = env('CHECK_BENCH_SLICE_MS', 300);
/** 'file' (an image in the temp dir: device reads are pread from the page cache) or 'memory' (nvme.MemoryBackend: a copy in the device worker). */
const BACKEND = process.env.CHECK_BENCH_BACKEND || 'file';
const MIB = 1 << 20;
const log = (...a) => console.error(...a);

const DIST = new URL('../dist/', import.meta.url);
const CHECK_EXPR = 'rt.exports.dataCheck(from, this.bb, rt.ctx) >>> 0';

/** A copy of dist/ in `dir` with read-path.js's expressions replaced; its index.js, imported. */
async function variant(dir, replacements) {
  fs.cpSync(DIST, dir, { recursive: true });
  const file = path.join(dir, 'vdo', 'read-path.js');
  let js = fs.readFileSync(file, 'utf8');
  for (const [from, to] of replacements) {
    const n = js.split(from).length - 1;
    if (n !== 1) throw new Error(`check-cost bench: "${from}" occurs ${n} times in dist/vdo/read-path.js (expected once): rebuild, or update the bench`);
    js = js.replace(from, to);
  }
  fs.writeFileSync(file, js);
  return import(pathToFileURL(path.join(dir, 'index.js')).href);
}


/** Runs `task` `depth` at a time for SLICE_MS: operations per second. */
async function rate(depth, task) {
  const { ops, s } = await timed(SLICE_MS, depth, task);
  return ops / s;
}

/** A volume of the variant `fp` holding `data` (1 MiB writes 8 at a time, then a flush), read back and compared once; and its ingest MB/s. */
async function filled(fp, data, file) {
  fs.rmSync(file, { force: true });
  const target = BACKEND === 'memory' ? new fp.nvme.MemoryBackend({ size: data.length + (data.length >> 2) }) : file;
  const v = await fp.Volume.create(target, { logicalSize: data.length, codec: 'lz4' });
  const mibs = data.length / MIB;
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < mibs) {
      const i = next++;
      await v.write(i * MIB, data.subarray(i * MIB, (i + 1) * MIB));
    }
  }));
  await v.flush();
  const ingest = data.length / 1e6 / ((performance.now() - t0) / 1000);
  for (let i = 0; i < mibs; i++) {
    const got = await v.read(i * MIB, MIB);
    if (Buffer.compare(got, data.subarray(i * MIB, (i + 1) * MIB)) !== 0) throw new Error(`MiB ${i} read back wrong`);
  }
  return { v, ingest };
}

/** The read workloads: name, unit, and a slice of it on volume v (per second). */
function workloads(bytes) {
  const mibs = bytes / MIB;
  const pages = bytes / 4096;
  const rand = prng(bytes);
  let seq = 0;
  const seqRead = (depth) => async (v) => (await rate(depth, () => v.read((seq++ % mibs) * MIB, MIB))) * MIB / 1e6;
  const randRead = (depth) => (v) => rate(depth, () => v.read(Math.floor(rand() * pages) * 4096, 4096));
  return [
    ['seq read 1 MiB QD1 MB/s', seqRead(1)], ['seq read 1 MiB QD4 MB/s', seqRead(4)],
    ['4 KiB rand read QD1/s', randRead(1)], ['4 KiB rand read QD32/s', randRead(32)],
  ];
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-check-cost-'));
try {
  const variants = [
    ['check', await import(new URL('index.js', DIST).href)],
    ['none', await variant(path.join(dir, 'none'), [[CHECK_EXPR, 'check']])],
  ];
  if (process.env.CHECK_BENCH_BASE) variants.push(['base', await import(pathToFileURL(path.join(path.resolve(process.env.CHECK_BENCH_BASE), 'index.js')).href)]);
  const rand = prng(0xc0ffee);
  const data = new Uint8Array(DATA_MB * MIB);
  const dv = new DataView(data.buffer);
  for (let i = 0; i < data.length; i += 4) dv.setUint32(i, (rand() * 2 ** 32) >>> 0);
  log(`check cost bench: ${DATA_MB} MiB of random bytes (every block stored whole), 4 KiB blocks, LZ4, dedupe, ${BACKEND} backend; ${SLICES} slices of ${SLICE_MS} ms per workload and build, the builds taking turns`);
  const vols = [];
  try {
    for (const [name, fp] of variants) {
      const f = await filled(fp, data, path.join(dir, `${name}.img`));
      vols.push({ name, ...f });
      log(`  ${name}: ingest ${formatMBps(f.ingest)} MB/s`);
    }
    const rows = vols.map(({ name, ingest }) => [name, name === 'none' ? formatMBps(ingest) : `${formatMBps(ingest)} (${formatRatio(ingest / vols[1].ingest, '×')})`]);
    for (const [title, slice] of workloads(data.length)) {
      const rates = vols.map(() => []);
      // Slice by slice, every build in turn (the first one rotating): neighbours on a shared
      // machine change its speed from second to second, so each ratio compares slices side by side.
      for (let s = 0; s < SLICES; s++) {
        for (let j = 0; j < vols.length; j++) {
          const i = (s + j) % vols.length;
          rates[i].push(await slice(vols[i].v));
        }
      }
      const shown = (x) => (title.includes('MB/s') ? formatMBps(x) : Math.round(x).toLocaleString('en-US'));
      vols.forEach(({ name }, i) => {
        if (name === 'none') rows[i].push(shown(median(rates[i])));
        else rows[i].push(`${shown(median(rates[i]))} (${formatRatio(median(rates[i].map((r, s) => r / rates[1][s])), '×')})`);
      });
      log(`  ${title}: ${vols.map(({ name }, i) => `${name} ${shown(median(rates[i]))}`).join(', ')}`);
    }
    console.log(markdownTable(
      [{ title: 'read path', align: 'left' }, { title: 'fill MB/s (once each, in order)', align: 'right' }, ...workloads(MIB).map(([title]) => ({ title, align: 'right' }))],
      rows,
    ));
    console.log('\nMedians of the slices; a ratio is the median of each slice against the same slice of `none`.');
  } finally {
    for (const { v } of vols) await v.close();
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
