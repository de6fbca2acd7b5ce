// Create and open cost against logical size (issue 17): a volume image file
// of each logical size over the same physical space, created, given a zero
// block in each of its first OPEN_BENCH_LEAVES block map leaves (tree pages
// for a map walk to read), closed, opened again (clean; five times, each after
// a close: the median and the least, and the time until the dedupe index that
// loads behind the open is in too), then written — 64
// blocks spread over the whole volume (a tree page per level for each) and a
// run that nearly fills the recovery journal — flushed and abandoned without
// a close (a crash). The dirty image is then opened read-only twice (no open
// writes anything): as it is (the reference count snapshot of the last
// checkpoint, the journal replayed on it), and with both snapshot headers
// erased (the counts rebuilt by walking the block map tree); then writable,
// to read it back. Reports wall time, the device commands each step issued
// (stats().biosOut), the bytes the image file holds on disk after create (a
// new image is sparse: what create wrote), the journal entries replayed and
// the tree pages in use. A second table: clean open against physical size.
//
//   node bench/open.mjs            (npm run bench:open)
//
// Env: OPEN_BENCH_SIZES_GIB (default 64,1024,16384,65536: 64 GiB to 64 TiB),
// OPEN_BENCH_DATA_GIB (physical size, default 4), OPEN_BENCH_LEAVES (default
// 20000), OPEN_BENCH_JOURNAL_FILL (blocks written in the run, default 15000:
// with the 64 scattered ones, nearly the 15,360 entries the default 256-block
// journal takes before it checkpoints at half full), OPEN_BENCH_CLEAN_OPENS
// (clean opens timed, each after a close; default 5), OPEN_BENCH_PHYSICAL_GIB
// (the second table: clean open against physical size; default 4,64,256),
// OPEN_BENCH_DIR (default the OS temp dir).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Volume } from '../dist/index.js';
import { markdownTable } from './table.mjs';

const GiB = 2 ** 30;
const BS = 4096;
const env = (name, dflt) => process.env[name] || dflt;
const sizes = env('OPEN_BENCH_SIZES_GIB', '64,1024,16384,65536').split(',').map(Number);
const dataGiB = Number(env('OPEN_BENCH_DATA_GIB', '4'));
const journalFill = Number(env('OPEN_BENCH_JOURNAL_FILL', '15000'));
const leafCount = Number(env('OPEN_BENCH_LEAVES', '20000'));
const CLEAN_OPENS = Number(env('OPEN_BENCH_CLEAN_OPENS', '5'));
const physicalSizes = env('OPEN_BENCH_PHYSICAL_GIB', '4,64,256').split(',').map(Number);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const LEAF_BLOCKS = 424;
const dir = fs.mkdtempSync(path.join(env('OPEN_BENCH_DIR', os.tmpdir()), 'flashpack-open-bench-'));

async function timed(f) {
  const t = performance.now();
  const v = await f();
  return { v, ms: performance.now() - t };
}

const rows = [];
try {
  for (const gib of sizes) {
    const p = path.join(dir, `v${gib}.img`);
    const logicalSize = gib * GiB;
    const physicalSize = dataGiB * GiB;
    const created = await timed(() => Volume.create(p, { logicalSize, physicalSize }));
    const createWrites = created.v.stats().biosOut.write;
    const createBytes = fs.statSync(p).blocks * 512;
    await created.v.write(0, new Uint8Array(BS).fill(1));
    await created.v.write(logicalSize - BS, new Uint8Array(BS).fill(2));
    const zero = new Uint8Array(BS);
    for (let leaf = 1; leaf < leafCount; leaf++) await created.v.write(leaf * LEAF_BLOCKS * BS, zero);
    await created.v.close();
    // Clean opens, CLEAN_OPENS times (the median is reported): until open() returns, and until
    // what it leaves to the background (the saved dedupe index) is in too.
    const cleanMs = [];
    const loadedMs = [];
    let clean;
    for (let i = 0; i < CLEAN_OPENS; i++) {
      if (clean !== undefined) await clean.v.close();
      const t = performance.now();
      clean = await timed(() => Volume.open(p));
      await clean.v.loaded;
      cleanMs.push(clean.ms);
      loadedMs.push(performance.now() - t);
    }
    const cleanReads = clean.v.stats().biosOut.read;
    const cleanWrites = clean.v.stats().biosOut.write;
    for (let i = 1; i < 64; i++) await clean.v.write(Math.floor((i / 64) * (logicalSize / BS)) * BS, new Uint8Array(BS).fill(i));
    // A run of distinct, compressible blocks: journal entries for the dirty open to replay.
    const run = 16 * BS;
    const buf = new Uint8Array(run);
    const words = new Uint32Array(buf.buffer);
    for (let b = 0; b < journalFill; b += run / BS) {
      for (let w = 0; w < words.length; w++) words[w] = b * 1024 + (w >> 6);
      await clean.v.write(GiB + b * BS, buf.subarray(0, Math.min(run, (journalFill - b) * BS)));
    }
    await clean.v.flush();
    await clean.v.abandon();
    const dirty = await timed(() => Volume.open(p, { readOnly: true }));
    const dirtyReads = dirty.v.stats().biosOut.read;
    const replayed = dirty.v.entriesReplayed;
    const fromSnapshot = dirty.v.referencesLoaded;
    await dirty.v.close();
    // The same dirty image without its snapshots: the counts come from a walk of the tree.
    const fd = fs.openSync(p, 'r+');
    const slotBlocks = dirty.v.sb.refsBlocks / 2;
    for (const slot of [0, 1]) fs.writeSync(fd, new Uint8Array(BS), 0, BS, (dirty.v.sb.refsStart + slot * slotBlocks) * BS);
    fs.closeSync(fd);
    const walked = await timed(() => Volume.open(p, { readOnly: true }));
    const walkReads = walked.v.stats().biosOut.read;
    const walkedLoaded = walked.v.referencesLoaded;
    await walked.v.close();
    const v = await Volume.open(p);
    const treePages = v.stats().overheadBlocksUsed - v.sb.dataStart;
    const right = (await v.read(logicalSize - BS, BS)).every((b) => b === 2) && (await v.read(GiB + 5 * BS, BS)).some((b) => b !== 0);
    await v.close();
    fs.rmSync(p, { force: true });
    rows.push([gib >= 1024 ? `${gib / 1024} TiB` : `${gib} GiB`, created.ms.toFixed(0), createWrites, (createBytes / 1024).toFixed(0), median(cleanMs).toFixed(0), Math.min(...cleanMs).toFixed(0), median(loadedMs).toFixed(0), cleanReads, cleanWrites, dirty.ms.toFixed(0), dirtyReads, fromSnapshot ? 'yes' : 'NO', walked.ms.toFixed(0), walkReads, walkedLoaded ? 'YES' : 'no', replayed, treePages, right ? 'yes' : 'NO']);
    console.error(`${gib} GiB done`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(markdownTable(
  [
    { title: 'logical size' }, { title: 'create ms', align: 'right' }, { title: 'create writes', align: 'right' },
    { title: 'KiB on disk after create', align: 'right' }, { title: 'clean open ms (median)', align: 'right' }, { title: 'clean open ms (min)', align: 'right' },
    { title: 'clean open + index loaded ms', align: 'right' }, { title: 'clean open reads', align: 'right' }, { title: 'clean open writes', align: 'right' },
    { title: 'dirty open ms', align: 'right' }, { title: 'dirty open reads', align: 'right' }, { title: 'snapshot taken', align: 'right' },
    { title: 'dirty open, map walk ms', align: 'right' }, { title: 'map walk reads', align: 'right' }, { title: 'snapshot taken', align: 'right' },
    { title: 'entries replayed', align: 'right' }, { title: 'tree pages', align: 'right' }, { title: 'reads back', align: 'right' },
  ],
  rows,
));
console.log(`\n${dataGiB} GiB physical; ${leafCount} leaves written; ${journalFill} blocks written after the last checkpoint; Node ${process.version}, ${os.cpus().length} CPUs.`);

// Clean open against physical size: a 1 TiB volume over each, 2,000 blocks written, closed;
// then CLEAN_OPENS times: open, a 4 KiB write acknowledged (it waits for the reference
// counts, which load behind the open), everything the open left to the background done.
const physRows = [];
const physDir = fs.mkdtempSync(path.join(env('OPEN_BENCH_DIR', os.tmpdir()), 'flashpack-open-phys-'));
try {
  for (const gib of physicalSizes) {
    const p = path.join(physDir, `p${gib}.img`);
    const v0 = await Volume.create(p, { logicalSize: 1024 * GiB, physicalSize: gib * GiB });
    for (let i = 0; i < 2000; i++) await v0.write(i * LEAF_BLOCKS * BS, new Uint8Array(BS).fill(i & 255));
    await v0.close();
    const open = [];
    const firstWrite = [];
    const all = [];
    for (let r = 0; r < CLEAN_OPENS; r++) {
      const t = performance.now();
      const v = await Volume.open(p);
      open.push(performance.now() - t);
      await v.write(7 * BS, new Uint8Array(BS).fill(r));
      firstWrite.push(performance.now() - t);
      await v.loaded;
      all.push(performance.now() - t);
      await v.close();
    }
    fs.rmSync(p, { force: true });
    physRows.push([`${gib} GiB`, median(open).toFixed(0), median(firstWrite).toFixed(0), median(all).toFixed(0)]);
    console.error(`${gib} GiB physical done`);
  }
} finally {
  fs.rmSync(physDir, { recursive: true, force: true });
}
console.log('');
console.log(markdownTable(
  [
    { title: 'physical size' }, { title: 'clean open ms (median)', align: 'right' },
    { title: 'open + first write acknowledged ms', align: 'right' }, { title: 'open + counts and index loaded ms', align: 'right' },
  ],
  physRows,
));
console.log(`\n1 TiB logical; 2,000 blocks written; ${CLEAN_OPENS} opens each.`);
