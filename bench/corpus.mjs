// Loads the test corpus (test/corpus relative to the project root, see its README)
// as one contiguous buffer and cuts it into fixed-size blocks.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const corpusDir = path.join(projectRoot, 'test', 'corpus');

/**
 * Every file of every corpus folder, sorted by folder then file name, concatenated.
 * Returns a plain Uint8Array (not a Buffer) so that pure-JS peers see the same
 * element kind as everyone else.
 */
export function loadCorpus(dir = corpusDir) {
  if (!fs.existsSync(dir)) throw new Error(`corpus not found at ${dir}`);
  const files = [];
  const folders = fs.readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  for (const folder of folders) {
    for (const name of fs.readdirSync(path.join(dir, folder)).sort()) {
      const file = path.join(dir, folder, name);
      if (fs.statSync(file).isFile()) files.push({ folder, name, bytes: fs.readFileSync(file) });
    }
  }
  const total = files.reduce((n, f) => n + f.bytes.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const f of files) {
    bytes.set(f.bytes, at);
    at += f.bytes.length;
  }
  return {
    dir,
    bytes,
    files: files.map((f) => ({ path: `${f.folder}/${f.name}`, size: f.bytes.length })),
  };
}

/**
 * Views (no copies) of every whole `size`-byte block of `bytes`; the partial tail
 * is dropped so every block of a pass has the same size.
 */
export function splitBlocks(bytes, size) {
  const count = Math.floor(bytes.length / size);
  const blocks = new Array(count);
  for (let i = 0; i < count; i++) blocks[i] = bytes.subarray(i * size, (i + 1) * size);
  return blocks;
}

export function sizeLabel(size) {
  if (size >= 1 << 20 && size % (1 << 20) === 0) return `${size >> 20} MiB`;
  if (size >= 1 << 10 && size % (1 << 10) === 0) return `${size >> 10} KiB`;
  return `${size} B`;
}
