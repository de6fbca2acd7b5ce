// `npm start`: the main job. Creates a volume with default settings in ./data,
// ingests a real directory tree (node_modules, or the path given as the first
// argument) as a stream of 4 KiB blocks — each file starts on a block boundary —
// flushes, reads everything back and compares it with the files, and prints a
// vdostats-style summary: savings, dedupe, compression, MB/s in and out.
//
//   npm start                      ingest node_modules
//   npm start -- <dir> [limit-MiB] ingest another tree, optionally only its first files up to limit-MiB
//   CHUNK_BLOCKS=n npm start       write() n blocks at a time (default 64, 256 KiB), 32 writes in flight
import { readdirSync, readFileSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Volume } from '../dist/index.js';

const BLOCK = 4096;
const QUEUE_DEPTH = 32;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tree = process.argv[2] ?? join(root, 'node_modules');
const limit = process.argv[3] ? Number(process.argv[3]) * 2 ** 20 : Infinity;
const dataDir = join(root, 'data');
const image = join(dataDir, 'volume.img');

function walk(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) walk(p, out);
    else if (st.isFile() && st.size > 0) out.push({ path: p, size: st.size });
  }
  return out;
}

const files = [];
let bytes = 0;
for (const f of walk(tree, [])) {
  if (bytes + f.size > limit) break;
  f.offset = files.length === 0 ? 0 : files.at(-1).offset + Math.ceil(files.at(-1).size / BLOCK) * BLOCK;
  files.push(f);
  bytes += f.size;
}
const logicalSize = Math.max(BLOCK * 1024, files.length ? files.at(-1).offset + Math.ceil(files.at(-1).size / BLOCK) * BLOCK : 0);
console.error(`ingesting ${files.length} files, ${(bytes / 2 ** 20).toFixed(1)} MiB from ${relative(root, tree) || tree}`);

mkdirSync(dataDir, { recursive: true });
rmSync(image, { force: true });
const volume = await Volume.create(image, { logicalSize: Math.ceil(logicalSize / BLOCK) * BLOCK });

/** Runs `task(i)` for i in [0, n) with at most `depth` in flight. */
async function pipeline(n, depth, task) {
  let next = 0;
  const lane = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(depth, n) }, lane));
}

// Ingest: each file in 256 KiB writes (64 blocks), 32 writes in flight.
const CHUNK = Number(process.env.CHUNK_BLOCKS ?? 64) * BLOCK;
const chunks = [];
for (const f of files) for (let at = 0; at < f.size; at += CHUNK) chunks.push([f, at]);
// Files are read ahead in the background (libuv's threads), PREFETCH_FILES at a
// time, so reading the tree overlaps the volume's work instead of stalling it.
const PREFETCH_FILES = 16;
const reading = new Map();
const fileIndex = new Map(files.map((f, i) => [f, i]));
const load = async (f) => {
  const i = fileIndex.get(f);
  for (let k = i; k < Math.min(files.length, i + PREFETCH_FILES); k++) {
    if (!reading.has(k)) reading.set(k, readFile(files[k].path));
  }
  for (const k of reading.keys()) {
    if (k >= i - QUEUE_DEPTH) break;
    reading.delete(k); // behind every lane: done with
  }
  return reading.get(i);
};
const t0 = performance.now();
await pipeline(chunks.length, QUEUE_DEPTH, async (i) => {
  const [f, at] = chunks[i];
  const data = await load(f);
  const end = Math.min(f.size, at + CHUNK);
  let piece = data.subarray(at, end);
  // The file's last block is written whole, zero-padded, so every write is block-aligned.
  if (end === f.size && piece.length % BLOCK !== 0) {
    const padded = new Uint8Array(Math.ceil(piece.length / BLOCK) * BLOCK);
    padded.set(piece);
    piece = padded;
  }
  await volume.write(f.offset + at, piece);
});
await volume.flush();
const ingestMs = performance.now() - t0;

// Read back and verify.
let mismatches = 0;
let cached = { path: null, data: null };
const loadSync = (f) => (cached.path === f.path ? cached.data : (cached = { path: f.path, data: readFileSync(f.path) }).data);
const t1 = performance.now();
await pipeline(chunks.length, QUEUE_DEPTH, async (i) => {
  const [f, at] = chunks[i];
  const end = Math.min(f.size, at + CHUNK);
  const got = await volume.read(f.offset + at, end - at);
  const want = loadSync(f).subarray(at, end);
  if (Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.length), want) !== 0) {
    mismatches++;
    if (mismatches <= 5) console.error(`MISMATCH: ${f.path} at ${at}`);
  }
});
const readMs = performance.now() - t1;
const s = volume.stats();
await volume.close();

const mib = bytes / 2 ** 20;
const kb = (blocks) => String(blocks * 4).padStart(12);
console.log(`\nDevice               1K-blocks         Used    Available Use% Space saving%`);
console.log(
  `${relative(root, image).padEnd(16)}${kb(s.physicalBlocks)} ${kb(s.dataBlocksUsed + s.overheadBlocksUsed)} ${kb(s.physicalBlocks - s.dataBlocksUsed - s.overheadBlocksUsed)}` +
    ` ${String(Math.round(((s.dataBlocksUsed + s.overheadBlocksUsed) / s.physicalBlocks) * 100)).padStart(3)}% ${String(Math.round(s.savingPercent)).padStart(12)}%`,
);
const rows = [
  ['files ingested', files.length],
  ['bytes ingested', `${mib.toFixed(1)} MiB`],
  ['ingest (write + flush)', `${(mib / (ingestMs / 1000)).toFixed(1)} MB/s`],
  ['read back and verified', `${(mib / (readMs / 1000)).toFixed(1)} MB/s, ${mismatches === 0 ? 'every byte matches' : `${mismatches} MISMATCHES`}`],
  ['logical blocks used', s.logicalBlocksUsed],
  ['data blocks used', s.dataBlocksUsed],
  ['overhead blocks used', s.overheadBlocksUsed],
  ['saving percent', `${s.savingPercent}%`],
  ['zero blocks written', s.zeroBlocksWritten],
  ['dedupe advice valid', s.dedupeAdviceValid],
  ['dedupe advice stale', s.dedupeAdviceStale],
  ['concurrent duplicates shared', s.dedupeConcurrentShared],
  ['compressed fragments written', s.compressedFragmentsWritten],
  ['compressed blocks written', s.compressedBlocksWritten],
  ['journal entries written', s.journalEntriesWritten],
  ['journal blocks written', s.journalBlocksWritten],
  ['block map cache hits / misses', `${s.blockMapCacheHits} / ${s.blockMapCacheMisses}`],
  ['bios in (read/write/discard/flush)', `${s.biosIn.read}/${s.biosIn.write}/${s.biosIn.discard}/${s.biosIn.flush}`],
  ['bios out (read/write/flush)', `${s.biosOut.read}/${s.biosOut.write}/${s.biosOut.flush}`],
  ['write amplification', s.writeAmplification],
];
console.log('');
for (const [k, v] of rows) console.log(`  ${k.padEnd(36)} ${v}`);
if (mismatches > 0) process.exit(1);
