// The volume block size (issue 17): the same data through volumes of 4, 8,
// 16, 32 and 64 KiB blocks in one run, side by side, against the 4 KiB
// default. Per size: ingest of a mixed stream (corpus text and binaries,
// duplicates, zeroes, random bytes) with 1 MiB writes and a flush, the room
// it takes, a sequential read of it all, and 4 KiB random reads and writes at
// queue depth 32 (a write of less than a block is read-modify-write).
//
//   npm run bench:block-size            (BLOCK_BENCH_MB=128 BLOCK_BENCH_RUNS=3 BLOCK_BENCH_TIME_MS=1500; medians)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as fp from '../dist/index.js';
import { loadCorpus } from './corpus.mjs';
import { formatMBps, formatRatio, markdownTable } from './table.mjs';
import { prng, timed } from './helpers/workload.mjs';

const env = (name, dflt) => (process.env[name] === undefined || process.env[name] === '' ? dflt : Number(process.env[name]));
const STREAM_MB = env('BLOCK_BENCH_MB', 128);
const RUNS = env('BLOCK_BENCH_RUNS', 3);
const TIME_MS = env('BLOCK_BENCH_TIME_MS', 1500);
const SIZES = [4096, 8192, 16384, 32768, 65536];
const CHUNK = 65536; // the stream's unit: duplicates are whole 64 KiB chunks, so they dedupe at every block size
const log = (...a) => console.error(...a);


/** 50% corpus, 20% copies of earlier chunks, 10% zeroes, 20% random, in 64 KiB chunks. */
function stream(bytes) {
  const rand = prng(17);
  const corpus = loadCorpus().bytes;
  const out = new Uint8Array(bytes);
  let c = 0;
  for (let at = 0; at < bytes; at += CHUNK) {
    const x = rand();
    if (x < 0.5) {
      if (c + CHUNK > corpus.length) c = 0;
      out.set(corpus.subarray(c, c + CHUNK), at);
      c += CHUNK;
    } else if (x < 0.7 && at > 0) {
      const from = Math.floor((rand() * at) / CHUNK) * CHUNK;
      out.copyWithin(at, from, from + CHUNK);
    } else if (x < 0.8) {
      // zeroes: already
    } else for (let i = 0; i < CHUNK; i += 4) new DataView(out.buffer).setUint32(at + i, (rand() * 2 ** 32) >>> 0);
  }
  return out;
}

/** Runs `n` tasks `depth` at a time. */
async function lanes(n, depth, task) {
  let next = 0;
  await Promise.all(Array.from({ length: depth }, async () => {
    while (next < n) await task(next++);
  }));
}


async function measure(bb, data, dir) {
  const p = path.join(dir, `v${bb}.img`);
  fs.rmSync(p, { force: true });
  const v = await fp.Volume.create(p, { logicalSize: data.length, blockBytes: bb, codec: 'lz4' });
  try {
    const MIB = 1 << 20;
    let t0 = performance.now();
    await lanes(data.length / MIB, 8, (i) => v.write(i * MIB, data.subarray(i * MIB, (i + 1) * MIB)));
    await v.flush();
    const ingest = data.length / 1e6 / ((performance.now() - t0) / 1000);
    const s = v.stats();
    const stored = s.dataBlocksUsed * bb;
    t0 = performance.now();
    let wrong = 0;
    await lanes(data.length / MIB, 4, async (i) => {
      const got = await v.read(i * MIB, MIB);
      if (Buffer.compare(got, data.subarray(i * MIB, (i + 1) * MIB)) !== 0) wrong++;
    });
    if (wrong > 0) throw new Error(`${bb}: ${wrong} MiB read back wrong`);
    const seqRead = data.length / 1e6 / ((performance.now() - t0) / 1000);
    const rand = prng(bb);
    const pages = data.length / 4096;
    const rr = await timed(TIME_MS, 32, () => v.read(Math.floor(rand() * pages) * 4096, 4096));
    const page = new Uint8Array(4096).fill(0x5a);
    const rw = await timed(TIME_MS, 32, () => {
      page[0] = (rand() * 256) | 0;
      return v.write(Math.floor(rand() * pages) * 4096, page);
    });
    await v.flush();
    return { ingest, stored, saving: s.savingPercent, seqRead, randRead: rr.ops / rr.s, randWrite: rw.ops / rw.s };
  } finally {
    await v.close();
    fs.rmSync(p, { force: true });
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-block-size-'));
try {
  const data = stream(STREAM_MB << 20);
  log(`block size bench: ${STREAM_MB} MiB stream (50/20/10/20 corpus/duplicate/zero/random in 64 KiB chunks), ${RUNS} runs per size, LZ4, dedupe, async`);
  const results = new Map(SIZES.map((bb) => [bb, []]));
  // Round robin, so drift on a shared machine falls on every size alike.
  for (let r = 0; r < RUNS; r++) {
    for (const bb of SIZES) {
      const m = await measure(bb, data, dir);
      results.get(bb).push(m);
      log(`  ${bb / 1024} KiB run ${r + 1}: ingest ${formatMBps(m.ingest)} MB/s, stored ${(m.stored / 2 ** 20).toFixed(1)} MiB, seq read ${formatMBps(m.seqRead)} MB/s, 4 KiB rand read ${Math.round(m.randRead)}/s, rand write ${Math.round(m.randWrite)}/s`);
    }
  }
  const base = Object.fromEntries(['ingest', 'stored', 'seqRead', 'randRead', 'randWrite'].map((k) => [k, median(results.get(4096).map((m) => m[k]))]));
  const rows = SIZES.map((bb) => {
    const m = (k) => median(results.get(bb).map((x) => x[k]));
    return [
      `${bb / 1024} KiB`,
      `${formatMBps(m('ingest'))} (${formatRatio(m('ingest') / base.ingest, '×')})`,
      `${(m('stored') / 2 ** 20).toFixed(1)} MiB (${formatRatio(m('stored') / base.stored, '×')})`,
      `${m('saving').toFixed(1)}%`,
      `${formatMBps(m('seqRead'))} (${formatRatio(m('seqRead') / base.seqRead, '×')})`,
      `${Math.round(m('randRead')).toLocaleString('en-US')} (${formatRatio(m('randRead') / base.randRead, '×')})`,
      `${Math.round(m('randWrite')).toLocaleString('en-US')} (${formatRatio(m('randWrite') / base.randWrite, '×')})`,
    ];
  });
  console.log(markdownTable([
    { title: 'block', align: 'left' }, { title: 'ingest MB/s (vs 4 KiB)', align: 'right' }, { title: 'data stored (vs 4 KiB)', align: 'right' },
    { title: 'saving', align: 'right' }, { title: 'seq read MB/s', align: 'right' }, { title: '4 KiB rand read/s, QD32', align: 'right' },
    { title: '4 KiB rand write/s, QD32', align: 'right' },
  ], rows));
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
