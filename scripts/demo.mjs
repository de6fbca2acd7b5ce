// `npm run tour`: a tour of the codecs over
// test/corpus: every file compressed as 4 KiB LZ4 blocks (the volume's unit)
// and as one LZ4 frame, everything verified by decompressing, with CRC-32C of
// each file and the MB/s this machine achieved. Prints one table.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as fp from '../dist/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const corpus = join(root, 'test', 'corpus');
if (!existsSync(corpus)) {
  console.error(`corpus not found at ${corpus}`);
  process.exit(1);
}

const rows = [];
let totalIn = 0;
let totalBlocks = 0;
let totalFrame = 0;
let compressMs = 0;
let decompressMs = 0;
for (const dir of ['cantrbry', 'calgary', 'snappy']) {
  for (const name of readdirSync(join(corpus, dir)).sort()) {
    const data = new Uint8Array(readFileSync(join(corpus, dir, name)));
    let t = performance.now();
    const blocks = [];
    for (let off = 0; off < data.length; off += 4096) blocks.push(fp.lz4.compressBlock(data.subarray(off, off + 4096)));
    compressMs += performance.now() - t;
    t = performance.now();
    for (let i = 0, off = 0; i < blocks.length; i++, off += 4096) {
      const want = Math.min(4096, data.length - off);
      const back = fp.lz4.decompressBlock(blocks[i], want);
      if (fp.crc32(back) !== fp.crc32(data.subarray(off, off + want))) throw new Error(`${dir}/${name}: block ${i} did not round-trip`);
    }
    decompressMs += performance.now() - t;
    const frame = fp.lz4.compressFrame(data);
    if (fp.crc32c(fp.lz4.decompressFrame(frame)) !== fp.crc32c(data)) throw new Error(`${dir}/${name}: frame did not round-trip`);
    const blockBytes = blocks.reduce((a, b) => a + b.length, 0);
    totalIn += data.length;
    totalBlocks += blockBytes;
    totalFrame += frame.length;
    rows.push([`${dir}/${name}`, data.length, (data.length / blockBytes).toFixed(3), (data.length / frame.length).toFixed(3), fp.crc32c(data).toString(16).padStart(8, '0')]);
  }
}
rows.push(['total', totalIn, (totalIn / totalBlocks).toFixed(3), (totalIn / totalFrame).toFixed(3), '']);

const header = ['file', 'bytes', 'lz4 4K-block ratio', 'lz4 frame ratio', 'crc32c'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
const line = (cells) => '| ' + cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join(' | ') + ' |';
console.log(line(header));
console.log('|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|');
for (const r of rows) console.log(line(r));
console.log(`\n4 KiB blocks, verified: compress ${(totalIn / 1e3 / compressMs).toFixed(0)} MB/s, decompress + verify ${(totalIn / 1e3 / decompressMs).toFixed(0)} MB/s (one pass, this machine; see npm run bench for measured comparisons)`);
