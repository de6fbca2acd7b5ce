// Packer benchmark (issue 16): physical blocks for the fragments a volume
// packs, against an offline best-fit-decreasing packing of the same fragments,
// with dm-vdo's 16-bin policy beside, on two streams:
//
//  - the corpus stream: test/corpus cut into 4 KiB blocks, 8 passes, every
//    block of a pass after the first salted (alike in shape, no shared data),
//    as bench:vdo's ingest stream without its synthetic duplicates and zeroes;
//  - an ext4 image pair: a VM image made with mkfs.ext4 -d over a tree
//    (test/corpus four times and three packages' sources), and its drifted
//    clone: some files changed, some added, a tree copied.
//
//   node bench/packing.mjs          (npm run bench:packing)
//
// Part 1 runs the sizes through the packer's own code (simulatePacking) for
// each policy. Part 2 ingests the image pair into real volumes (a file
// backend, QD 32, then a flush), one per policy, reads every block back, and
// reports the data blocks they use, MB/s and the main thread's GC share.
//
// Offline best-fit-decreasing: every fragment known in advance, sorted by size
// (largest first), each into the fullest open bin it fits (at most 14 per
// bin); a fragment that does not fit a packed block at all takes a block of
// its own. A lower bound no online packer can beat on these fragments in
// practice, only approach.
//
// Env: PACKING_BENCH_DISK_MB (each image, default 96), PACKING_BENCH_DIR (temp
// files, default the OS temp dir), PACKING_BENCH_RUNS (volume ingests per
// policy, default 2).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import * as fp from '../dist/index.js';
import { loadCorpus, projectRoot, splitBlocks } from './corpus.mjs';
import { markdownTable, formatMBps } from './table.mjs';
import { fullGc } from './helpers/full-gc.mjs';

const BLOCK = 4096;
const CAPACITY = 4096 - 36; // a packed block's room for fragments (CB_CAPACITY)
const SLOTS = 14;
const DISK_MB = Number(process.env.PACKING_BENCH_DISK_MB || 96);
const RUNS = Number(process.env.PACKING_BENCH_RUNS || 2);
const TMP = fs.mkdtempSync(path.join(process.env.PACKING_BENCH_DIR || os.tmpdir(), 'flashpack-packing-'));
const log = (...a) => console.error(...a);
process.on('exit', () => fs.rmSync(TMP, { recursive: true, force: true }));

// --- streams ----------------------------------------------------------------------------
function corpusStream() {
  const blocks = splitBlocks(loadCorpus().bytes, BLOCK);
  const out = [];
  for (let pass = 0; pass < 8; pass++) {
    for (const b of blocks) {
      const c = new Uint8Array(b);
      if (pass > 0) new DataView(c.buffer).setUint32(0, (pass * 2654435761) >>> 0); // salted: new data, same shape
      out.push(c);
    }
  }
  return out;
}

/** The ext4 image pair as two files of DISK_MB MiB. */
function imagePair() {
  const tree = path.join(TMP, 'tree');
  const sources = [...Array.from({ length: 4 }, (_, i) => ['test/corpus', `corpus-${i + 1}`]),
    ['node_modules/typescript/lib', 'typescript'], ['node_modules/assemblyscript/std', 'assemblyscript'], ['src', 'flashpack-src']];
  for (const [src, dst] of sources) {
    if (fs.existsSync(path.join(projectRoot, src))) fs.cpSync(path.join(projectRoot, src), path.join(tree, dst), { recursive: true, dereference: true });
  }
  const a = path.join(TMP, 'a.raw');
  const b = path.join(TMP, 'b.raw');
  mkfs(tree, a);
  // The clone drifts: every 7th file changed in a few places, new files, one tree copied.
  const files = [];
  const walk = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) (e.isDirectory() ? walk : (p) => files.push(p))(path.join(d, e.name)); };
  walk(tree);
  files.sort();
  let changed = 0;
  files.forEach((f, i) => {
    if (i % 7 !== 0) return;
    const bytes = fs.readFileSync(f);
    for (let k = 0; k < 3 && bytes.length > 0; k++) bytes[(k * 7919 + i * 104729) % bytes.length] ^= 0x20;
    fs.writeFileSync(f, bytes);
    changed++;
  });
  const added = path.join(tree, 'added');
  fs.mkdirSync(added);
  for (let i = 0; i < 40; i++) {
    const src = fs.readFileSync(files[(i * 37) % files.length]);
    fs.writeFileSync(path.join(added, `log-${i}.txt`), Buffer.concat([Buffer.from(`entry ${i}\n`), src.subarray(0, Math.min(src.length, 200_000)), Buffer.from(`end ${i}\n`)]));
  }
  fs.cpSync(path.join(tree, 'typescript'), path.join(tree, 'typescript-copy'), { recursive: true });
  mkfs(tree, b);
  fs.rmSync(tree, { recursive: true, force: true });
  return { a, b, changed, files: files.length };
}

function mkfs(tree, file) {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, DISK_MB << 20);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-d', tree, file]);
}

function blocksOf(file) {
  const bytes = new Uint8Array(fs.readFileSync(file));
  const out = [];
  for (let o = 0; o + BLOCK <= bytes.length; o += BLOCK) out.push(bytes.subarray(o, o + BLOCK));
  return out;
}

const isZero = (b) => { for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false; return true; };

/** LZ4 sizes of the blocks that reach the packer: not zero, not a duplicate of an earlier block. */
function packerSizes(blocks) {
  const seen = new Set();
  const sizes = [];
  for (const b of blocks) {
    if (isZero(b)) continue;
    const k = crypto.createHash('sha256').update(b).digest('base64');
    if (seen.has(k)) continue;
    seen.add(k);
    sizes.push(fp.lz4.compressBlock(b).length);
  }
  return sizes;
}

// --- offline best-fit-decreasing -----------------------------------------------------------
function offlineBestFitDecreasing(sizes) {
  const fits = sizes.filter((s) => s > 0 && s < CAPACITY).sort((x, y) => y - x);
  let blocks = sizes.length - fits.length; // each stored raw
  // Open bins by free bytes: byFree[f] = bins with f bytes free and a slot left.
  const byFree = Array.from({ length: CAPACITY + 1 }, () => []);
  const slots = [];
  for (const s of fits) {
    let f = s;
    while (f <= CAPACITY && byFree[f].length === 0) f++;
    let bin;
    if (f > CAPACITY) {
      bin = slots.length;
      slots.push(0);
      blocks++;
      f = CAPACITY;
    } else bin = byFree[f].pop();
    slots[bin]++;
    if (slots[bin] < SLOTS) byFree[f - s].push(bin);
  }
  return blocks;
}

// --- part 2: real volumes -------------------------------------------------------------------
const gcEntries = [];
new PerformanceObserver((list) => gcEntries.push(...list.getEntries())).observe({ entryTypes: ['gc'] });
const gcShare = (t0, t1) => gcEntries.filter((e) => e.startTime >= t0 && e.startTime < t1).reduce((a, e) => a + e.duration, 0) / (t1 - t0);

async function ingest(blocks, packer) {
  const file = path.join(TMP, `vol-${packer}.img`);
  fs.rmSync(file, { force: true });
  const v = await fp.Volume.create(file, { logicalSize: blocks.length * BLOCK, codec: 'lz4', packer });
  try {
    gcEntries.length = 0;
    fullGc(); // the image build and the last run's read-back are not this run's garbage
    const t0 = performance.now();
    let next = 0;
    const lane = async () => {
      while (next < blocks.length) {
        const i = next++;
        await v.write(i * BLOCK, blocks[i]);
      }
    };
    await Promise.all(Array.from({ length: 32 }, lane));
    await v.flush();
    const t1 = performance.now();
    const s = v.stats();
    let wrong = 0;
    for (let i = 0; i < blocks.length; i += 256) {
      const n = Math.min(256, blocks.length - i);
      const got = await v.read(i * BLOCK, n * BLOCK);
      for (let k = 0; k < n; k++) if (Buffer.compare(got.subarray(k * BLOCK, (k + 1) * BLOCK), blocks[i + k]) !== 0) wrong++;
    }
    return { mbps: (blocks.length * BLOCK) / 1e6 / ((t1 - t0) / 1000), gc: gcShare(t0, t1), dataBlocks: s.dataBlocksUsed, packed: s.compressedBlocksWritten, fragments: s.compressedFragmentsWritten, shared: s.dedupeAdviceValid + s.dedupeConcurrentShared, zero: s.zeroBlocksWritten, wrong };
  } finally {
    await v.close();
    fs.rmSync(file, { force: true });
  }
}

const pct = (x, base) => `${x >= base ? '+' : ''}${((x / base - 1) * 100).toFixed(1)}%`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

let failed = false;
log(`building the ext4 image pair (${DISK_MB} MiB each)…`);
const pair = imagePair();
const pairBlocks = [...blocksOf(pair.a), ...blocksOf(pair.b)];
const streams = [['corpus stream (8 passes, salted)', corpusStream()], ['ext4 image pair (VM + drifted clone)', pairBlocks]];

console.log('# flashpack packer benchmark\n');
console.log(`- ${os.cpus()[0]?.model ?? 'cpu'}, ${os.availableParallelism()} cores; Node ${process.version}`);
console.log(`- image pair: two ${DISK_MB} MiB ext4 images (mkfs.ext4 -d); the clone has ${pair.changed} of ${pair.files} files changed, 40 added and typescript/ copied\n`);
console.log('## 1. Packing the same fragments (simulatePacking: the packer\'s own code)\n');
const rows = [];
for (const [name, blocks] of streams) {
  const sizes = packerSizes(blocks);
  const offline = offlineBestFitDecreasing(sizes);
  const f = fp.simulatePacking(sizes, 'flashpack').blocks;
  const f32 = fp.simulatePacking(sizes, 'flashpack', Infinity, { bins: 32, waitingMax: 32 * 14 }).blocks;
  const d = fp.simulatePacking(sizes, 'dm-vdo').blocks;
  rows.push([name, sizes.length.toLocaleString('en-US'), offline.toLocaleString('en-US'), f.toLocaleString('en-US'), pct(f, offline), d.toLocaleString('en-US'), pct(d, offline), f32.toLocaleString('en-US'), pct(f32, offline)]);
  log(`  ${name}: ${sizes.length} fragments; offline ${offline}, flashpack ${f}, dm-vdo ${d}, 32 bins ${f32}`);
}
console.log(markdownTable([
  { title: 'stream', align: 'left' }, { title: 'fragments', align: 'right' }, { title: 'offline BFD blocks', align: 'right' },
  { title: 'flashpack (1,024 bins)', align: 'right' }, { title: 'vs offline', align: 'right' },
  { title: 'dm-vdo (16 bins)', align: 'right' }, { title: 'vs offline', align: 'right' },
  { title: 'before: 32 bins', align: 'right' }, { title: 'vs offline', align: 'right' },
], rows));

console.log(`\n## 2. Ingest of the image pair into a volume (QD 32, then flush; median of ${RUNS})\n`);
const pairSizes = packerSizes(pairBlocks);
const offlinePair = offlineBestFitDecreasing(pairSizes);
const zeroPair = pairBlocks.filter(isZero).length;
log(`  image pair: ${pairBlocks.length} blocks, ${zeroPair} zero, ${pairBlocks.length - zeroPair - pairSizes.length} duplicates, ${pairSizes.length} unique (${pairSizes.filter((x) => x >= CAPACITY).length} do not fit a packed block)`);
const vrows = [];
for (const packer of ['flashpack', 'dm-vdo']) {
  const runs = [];
  for (let r = 0; r < RUNS; r++) {
    const res = await ingest(pairBlocks, packer);
    if (res.wrong > 0) { failed = true; log(`  ${packer}: ${res.wrong} blocks read back WRONG`); }
    log(`  ${packer} run ${r + 1}: ${formatMBps(res.mbps)} MB/s, ${res.dataBlocks} data blocks (${res.fragments} fragments in ${res.packed} packed blocks; ${res.shared} shared, ${res.zero} zero), GC ${(res.gc * 100).toFixed(1)}%`);
    runs.push(res);
  }
  const dataBlocks = median(runs.map((r) => r.dataBlocks));
  vrows.push([packer, formatMBps(median(runs.map((r) => r.mbps))), dataBlocks.toLocaleString('en-US'), offlinePair.toLocaleString('en-US'), pct(dataBlocks, offlinePair),
    `${(median(runs.map((r) => r.gc)) * 100).toFixed(1)}%`, runs.every((r) => r.wrong === 0) ? 'yes' : 'NO']);
}
console.log(markdownTable([
  { title: 'packer policy', align: 'left' }, { title: 'MB/s with flush', align: 'right' }, { title: 'data blocks used', align: 'right' },
  { title: 'offline BFD', align: 'right' }, { title: 'vs offline', align: 'right' }, { title: 'GC share', align: 'right' }, { title: 'read back exact', align: 'right' },
], vrows));
console.log('\n"data blocks used" also counts blocks stored raw (incompressible, or too large to pack) and any duplicate the dedupe index missed; the offline count has the raw ones and no missed duplicates.');
if (failed) process.exitCode = 1;
