// Create and open cost against logical size (issue 17): a volume image file
// of each logical size over the same data space, created, written a little,
// closed, opened again (clean), then written, flushed and abandoned without a
// close (a crash), and opened again (dirty: the journal replays, the counts
// are rebuilt from the whole block map). Reports wall time, the device
// commands each step issued (stats().biosOut) and the bytes the image file
// holds on disk after create (a new image is sparse: what create wrote).
//
//   node bench/open.mjs            (npm run bench:open)
//
// Env: OPEN_BENCH_SIZES_GIB (default 64,256,1024), OPEN_BENCH_DATA_GIB (data
// space beside the block map, default 4), OPEN_BENCH_DIR (default the OS temp dir).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Volume } from '../dist/index.js';
import { markdownTable } from './table.mjs';

const GiB = 2 ** 30;
const BS = 4096;
const env = (name, dflt) => process.env[name] || dflt;
const sizes = env('OPEN_BENCH_SIZES_GIB', '64,256,1024').split(',').map(Number);
const dataGiB = Number(env('OPEN_BENCH_DATA_GIB', '4'));
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
    // Room for the block map (one 4 KiB page per 424 logical blocks) plus the data space.
    const physicalSize = Math.ceil(logicalSize / BS / 424) * BS + dataGiB * GiB;
    const created = await timed(() => Volume.create(p, { logicalSize, physicalSize }));
    const createWrites = created.v.stats().biosOut.write;
    const createBytes = fs.statSync(p).blocks * 512;
    await created.v.write(0, new Uint8Array(BS).fill(1));
    await created.v.write(logicalSize - BS, new Uint8Array(BS).fill(2));
    await created.v.close();
    const clean = await timed(() => Volume.open(p));
    const cleanReads = clean.v.stats().biosOut.read;
    for (let i = 1; i < 64; i++) await clean.v.write(Math.floor((i / 64) * (logicalSize / BS)) * BS, new Uint8Array(BS).fill(i));
    await clean.v.flush();
    await clean.v.abandon();
    const dirty = await timed(() => Volume.open(p));
    const dirtyReads = dirty.v.stats().biosOut.read;
    const right = (await dirty.v.read(logicalSize - BS, BS)).every((b) => b === 2);
    await dirty.v.close();
    fs.rmSync(p, { force: true });
    rows.push([`${gib} GiB`, created.ms.toFixed(0), createWrites, (createBytes / 1024).toFixed(0), clean.ms.toFixed(0), cleanReads, dirty.ms.toFixed(0), dirtyReads, right ? 'yes' : 'NO']);
    console.error(`${gib} GiB done`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(markdownTable(
  [
    { title: 'logical size' }, { title: 'create ms', align: 'right' }, { title: 'create writes', align: 'right' },
    { title: 'KiB on disk after create', align: 'right' }, { title: 'clean open ms', align: 'right' }, { title: 'clean open reads', align: 'right' },
    { title: 'dirty open ms', align: 'right' }, { title: 'dirty open reads', align: 'right' }, { title: 'reads back', align: 'right' },
  ],
  rows,
));
console.log(`\n${dataGiB} GiB of data space beside the block map; Node ${process.version}, ${os.cpus().length} CPUs.`);
