/**
 * What a path holds before Volume.create formats it. Create formats only
 * what is absent or empty — a missing path, a zero-length file, or a block
 * device whose first 64 KiB are zero — unless told `overwrite`, so a typo
 * cannot reformat a disk image, a volume full of data or a text file.
 */
import * as fs from 'node:fs';
import { dirname } from 'node:path';
import { FlashpackError, fromOsError } from '../errors.js';
import { BLOCK_BYTES, SUPERBLOCK_COPIES, decodeSuperblock } from './encodings.js';

/** Bytes of a block device (or of a backend) that must be zero for it to count as empty. */
export const EMPTY_PROBE_BYTES = 64 << 10;

export type Found =
  | { kind: 'absent' }
  | { kind: 'empty-file' }
  | { kind: 'file'; bytes: number; what: string }
  | { kind: 'device'; empty: boolean; what: string };

/** What `path` holds now (ENOENT for a missing parent directory, EINVAL for a directory, EACCES…). */
export function inspect(path: string): Found {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') {
      if (!fs.existsSync(dirname(path))) throw fromOsError(err, `Volume.create: the directory of ${path} does not exist`);
      return { kind: 'absent' };
    }
    throw fromOsError(err, `Volume.create: cannot look at ${path}`);
  }
  if (st.isDirectory()) throw new FlashpackError('EINVAL', `Volume.create: ${path} is a directory, not an image file or block device`);
  if (!st.isFile() && !st.isBlockDevice()) throw new FlashpackError('EINVAL', `Volume.create: ${path} is neither a regular file nor a block device`);
  if (st.isFile() && st.size === 0) return { kind: 'empty-file' };
  const head = readHead(path, st.isFile() ? Math.min(st.size, EMPTY_PROBE_BYTES) : EMPTY_PROBE_BYTES);
  if (st.isBlockDevice()) {
    const empty = head.every((b) => b === 0);
    return { kind: 'device', empty, what: empty ? 'a block device' : `a block device holding ${describeHead(head)}` };
  }
  return { kind: 'file', bytes: st.size, what: `a ${st.size.toLocaleString('en')}-byte file holding ${describeHead(head)}` };
}

/** EEXIST unless `found` may be formatted (absent or empty, or `overwrite`). */
export function refuseUnlessEmpty(path: string, found: Found, overwrite: boolean): void {
  if (overwrite || found.kind === 'absent' || found.kind === 'empty-file' || (found.kind === 'device' && found.empty)) return;
  throw new FlashpackError('EEXIST', `Volume.create: ${path} already exists and is ${found.what}; pass { overwrite: true } to format over it`);
}

/** Words for the first bytes of an image: a flashpack volume, all zeroes, text, or other data. */
export function describeHead(head: Uint8Array): string {
  for (let c = 0; c < SUPERBLOCK_COPIES && (c + 1) * BLOCK_BYTES <= head.length; c++) {
    const sb = decodeSuperblock(head.subarray(c * BLOCK_BYTES, (c + 1) * BLOCK_BYTES));
    if (typeof sb !== 'string') {
      return `a flashpack volume (logical size ${sb.logicalBlocks * sb.blockBytes} bytes, codec ${sb.codec}, generation ${sb.generation})`;
    }
  }
  if (head.every((b) => b === 0)) return `zeroes in its first ${head.length} bytes`;
  const sample = head.subarray(0, 64);
  const text = sample.every((b) => b === 9 || b === 10 || b === 13 || (b >= 32 && b < 127));
  if (text) return `text ("${new TextDecoder().decode(sample.subarray(0, 24)).replace(/\s+/g, ' ')}${sample.length > 24 ? '…' : ''}")`;
  return `data (first bytes ${Array.from(head.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ')})`;
}

function readHead(path: string, n: number): Uint8Array {
  const head = new Uint8Array(n);
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    throw fromOsError(err, `Volume.create: cannot read ${path} to see what it holds`);
  }
  try {
    let got = 0;
    while (got < n) {
      const r = fs.readSync(fd, head, got, n - got, got);
      if (r === 0) break;
      got += r;
    }
    return head.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}
