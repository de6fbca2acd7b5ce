/**
 * `flashpack copy <src> <dst>`: moves bytes into, out of and between volumes,
 * as dd does for devices. What each path is decides the direction (a volume
 * is recognised by its superblock):
 *
 *   file → volume       written into the volume from offset 0 (ENOSPC if the
 *                       file is larger than the logical size); the rest of
 *                       the volume is left as it was (dd's conv=notrunc)
 *   file → nothing      a new volume of the file's size (rounded up to its block size)
 *   volume → file       a raw image of the logical size; a regular file is
 *                       written sparse (zero 4 KiB blocks become holes), a
 *                       block device is written whole
 *   volume → volume     logical blocks from one to the other
 *
 * "File" is a regular file or a block device. Chunks of --bs bytes, up to
 * CHUNKS_INFLIGHT_MAX in flight (their ranges never overlap, so their order
 * does not matter). An all-zero chunk is a discard in an existing volume
 * (reads back as zeroes, stores nothing) and is skipped in a new one. File
 * I/O is synchronous and positional (node:fs, the same on Node, Deno and Bun);
 * the volume's hashing, compression and device I/O run in its own threads
 * meanwhile.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Volume } from '../vdo/volume.js';
import { FlashpackError, fromOsError } from '../errors.js';
import { BLOCK_BYTES, SUPERBLOCK_COPIES, decodeSuperblock } from '../vdo/encodings.js';
import { fail, formatBytes, parseCommand, parseSize, print, printJson, runCommand, stringOption } from './args.js';
import { CREATE_OPTIONS, newVolumeSettings } from './create.js';
import { Progress } from './progress.js';

export const copyUsage = `usage: flashpack copy <src> <dst> [options]

Copies a file or block device into a volume, a volume out to a file or block
device, or one volume into another. A volume is recognised by its superblock.

  file   → volume     written from offset 0 (the file must fit the logical size)
  file   → new path   creates a volume of the file's size (rounded up to its block size)
  volume → file       a raw image of the logical size (sparse for a regular file)
  volume → volume     the logical blocks of one into the other

options:
  --bs <n>              chunk size (default 1M; a multiple of 4096, at most 64M)
  --overwrite           replace a non-empty <dst> that is not a volume
  --json                print the summary as JSON
  --quiet               no progress on stderr
  when copy creates the volume (file → new path), also:
  --size <n>            logical size (default: the file's size rounded up to the block size)
  --block-size <n>, --physical-size <n>, --codec lz4|deflate|none, --no-dedupe, --sync
                        as for flashpack create
  -h, --help            this help

A served volume is locked: stop the server, or copy through NBD (nbdcopy).
`;

const DEFAULT_CHUNK_BYTES = 1 << 20;
const MAX_CHUNK_BYTES = 64 << 20;
const CHUNKS_INFLIGHT_MAX = 8;
const BUSY_HINT = 'stop the server or copy through NBD, e.g. nbdcopy';

/** What a path holds: nothing, a volume, or raw bytes (a regular file or a block device). */
type Endpoint =
  | { kind: 'absent'; path: string }
  | { kind: 'volume'; path: string }
  | { kind: 'raw'; path: string; bytes: number; device: boolean; empty: boolean };

interface Source {
  readonly bytes: number;
  /** `length` bytes at `offset`; `buf` (at least `length` long) may be used to hold them. */
  read(offset: number, length: number, buf: Uint8Array): Promise<Uint8Array>;
}

interface Sink {
  write(offset: number, data: Uint8Array, zero: boolean): Promise<void>;
}

export async function copyCommand(argv: string[]): Promise<number> {
  return runCommand('copy', async () => {
    const { values, positionals } = parseCommand(argv, {
      name: 'copy',
      usage: copyUsage,
      options: { ...CREATE_OPTIONS, bs: { type: 'string' }, overwrite: { type: 'boolean' }, json: { type: 'boolean' }, quiet: { type: 'boolean' } },
      positionals: ['src', 'dst'],
    });
    const bs = chunkBytes(stringOption(values, 'bs'));
    const settings = newVolumeSettings(values);
    const createFlags = ['size', 'block-size', 'physical-size', 'codec', 'no-dedupe', 'sync'].filter((k) => values[k] !== undefined);
    const overwrite = values.overwrite === true;
    const src = look(positionals[0]);
    const dst = look(positionals[1]);
    if (src.kind === 'absent') throw new FlashpackError('ENOENT', `${src.path} does not exist`);
    if (dst.kind !== 'absent' && fs.realpathSync(src.path) === fs.realpathSync(dst.path)) {
      throw new FlashpackError('EINVAL', `${src.path} and ${dst.path} are the same file`);
    }
    const creates = src.kind === 'raw' && dst.kind !== 'volume';
    if (!creates && createFlags.length > 0) fail(`--${createFlags[0]} applies only when copy creates a volume (a file copied to a new path)`);
    if (dst.kind === 'raw' && !dst.empty && !overwrite) {
      const what = dst.device ? 'a block device holding data' : `a ${dst.bytes.toLocaleString('en')}-byte file`;
      const then = src.kind === 'volume' ? 'replace it' : 'format a volume over it';
      throw new FlashpackError('EEXIST', `${dst.path} already exists and is ${what}, not a flashpack volume; pass --overwrite to ${then}`);
    }

    let from: Source;
    let into: Sink;
    let report: Volume;
    const volumes: Volume[] = [];
    const files: number[] = [];
    let created = false;
    let progress: Progress | null = null;
    let copied = false;
    try {
      if (src.kind === 'raw') {
        const fd = openFile(src.path, 'r');
        files.push(fd);
        from = fileSource(fd, src.bytes, src.path);
        let v: Volume;
        if (dst.kind === 'volume') {
          v = await openVolume(dst.path, false);
          volumes.push(v);
          if (src.bytes > v.logicalSize) {
            throw new FlashpackError('ENOSPC', `${src.path} is ${src.bytes} bytes, more than the ${v.logicalSize}-byte logical size of ${dst.path}`);
          }
        } else {
          const bb = settings.blockBytes ?? BLOCK_BYTES;
          const logicalSize = settings.logicalSize ?? Math.max(bb, Math.ceil(src.bytes / bb) * bb);
          if (logicalSize < src.bytes) throw new FlashpackError('ENOSPC', `--size ${logicalSize} is less than the ${src.bytes} bytes of ${src.path}`);
          v = await busyHint(() => Volume.create(dst.path, {
            logicalSize,
            ...(settings.blockBytes !== undefined ? { blockBytes: settings.blockBytes } : {}),
            ...(settings.physicalSize !== undefined ? { physicalSize: settings.physicalSize } : {}),
            codec: settings.codec, dedupe: settings.dedupe, writePolicy: settings.writePolicy, overwrite,
          }));
          volumes.push(v);
          created = true;
        }
        into = volumeSink(v, created);
        report = v;
      } else {
        const v = await openVolume(src.path, true);
        volumes.push(v);
        from = volumeSource(v);
        report = v;
        if (dst.kind === 'volume') {
          const w = await openVolume(dst.path, false);
          volumes.push(w);
          if (v.logicalSize > w.logicalSize) {
            throw new FlashpackError('ENOSPC', `${src.path} has a logical size of ${v.logicalSize} bytes, more than the ${w.logicalSize} bytes of ${dst.path}`);
          }
          into = volumeSink(w, false);
          report = w;
        } else {
          const device = dst.kind === 'raw' && dst.device;
          const fd = openFile(dst.path, device ? 'r+' : 'w');
          files.push(fd);
          if (device && deviceBytes(fd) < v.logicalSize) {
            throw new FlashpackError('ENOSPC', `${dst.path} holds ${deviceBytes(fd)} bytes, less than the ${v.logicalSize}-byte logical size of ${src.path}`);
          }
          into = fileSink(fd, !device, dst.path);
        }
      }

      progress = new Progress(from.bytes, { unit: 'bytes', label: 'copy', quiet: values.quiet === true });
      await pump(from, into, bs, progress);
      if (src.kind === 'volume' && dst.kind !== 'volume') finishFile(files[files.length - 1], dst.kind === 'raw' && dst.device, from.bytes, dst.path);
      for (const v of volumes) if (!v.readOnly) await v.flush();
      const seconds = progress.seconds;
      progress.finish();
      const savingPercent = report.stats().savingPercent;
      const doc = {
        source: src.path, destination: dst.path, direction: `${src.kind === 'volume' ? 'volume' : 'file'} to ${dst.kind === 'volume' ? 'volume' : created ? 'new volume' : 'file'}`,
        bytes: from.bytes, seconds: round(seconds, 3), mbPerSecond: round(seconds > 0 ? from.bytes / 1e6 / seconds : 0, 1), savingPercent, created,
      };
      if (values.json === true) printJson(doc);
      else print(`copied ${doc.bytes} bytes (${formatBytes(doc.bytes)}) in ${seconds.toFixed(2)} s, ${doc.mbPerSecond.toFixed(1)} MB/s; volume saving ${Math.round(savingPercent)}%`);
      copied = true;
    } finally {
      progress?.finish(); // an error line starts on a line of its own
      for (const fd of files) fs.closeSync(fd);
      let closeError: unknown = null;
      for (const v of volumes.reverse()) await v.close().catch((e: unknown) => (closeError ??= e));
      if (closeError !== null && copied) throw closeError; // else the copy's own failure is the one to report
    }
    return 0;
  });
}

function chunkBytes(text: string | undefined): number {
  if (text === undefined) return DEFAULT_CHUNK_BYTES;
  const n = parseSize(text, '--bs');
  if (n === 0 || n % BLOCK_BYTES !== 0 || n > MAX_CHUNK_BYTES) fail(`--bs must be a multiple of 4096 from 4K to 64M, got '${text}'`);
  return n;
}

const round = (v: number, digits: number): number => Math.round(v * 10 ** digits) / 10 ** digits;

/** Reads the chunks of `from` into `into`, CHUNKS_INFLIGHT_MAX at a time; the first failure stops new chunks and is thrown once the rest settle. */
async function pump(from: Source, into: Sink, bs: number, progress: Progress): Promise<void> {
  let next = 0;
  let done = 0;
  let failure: { err: unknown } | null = null;
  const lane = async (buf: Uint8Array): Promise<void> => {
    while (failure === null && next < from.bytes) {
      const offset = next;
      const length = Math.min(bs, from.bytes - offset);
      next += length;
      const data = await from.read(offset, length, buf);
      await into.write(offset, data, isZero(data));
      done += length;
      progress.update(done);
    }
  };
  const lanes = Math.max(1, Math.min(CHUNKS_INFLIGHT_MAX, Math.ceil(from.bytes / bs)));
  await Promise.all(Array.from({ length: lanes }, () => lane(new Uint8Array(bs)).catch((err: unknown) => void (failure ??= { err }))));
  if (failure !== null) throw (failure as { err: unknown }).err;
}

function isZero(b: Uint8Array): boolean {
  const words = b.length >>> 2;
  if ((b.byteOffset & 3) === 0) {
    const w = new Int32Array(b.buffer, b.byteOffset, words);
    for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  } else {
    for (let i = 0; i < words * 4; i++) if (b[i] !== 0) return false;
  }
  for (let i = words * 4; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** What `p` holds; a file that starts with a flashpack superblock magic (even a damaged one) counts as a volume. */
function look(p: string): Endpoint {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') {
      if (!fs.existsSync(path.dirname(path.resolve(p)))) throw fromOsError(err, `the directory of ${p} does not exist`);
      return { kind: 'absent', path: p };
    }
    throw fromOsError(err, `cannot look at ${p}`);
  }
  if (st.isDirectory()) throw new FlashpackError('EINVAL', `${p} is a directory, not a file, block device or volume`);
  if (!st.isFile() && !st.isBlockDevice()) throw new FlashpackError('EINVAL', `${p} is neither a regular file nor a block device`);
  const device = st.isBlockDevice();
  if (!device && st.size === 0) return { kind: 'raw', path: p, bytes: 0, device, empty: true };
  const fd = openFile(p, 'r');
  try {
    const head = new Uint8Array(SUPERBLOCK_COPIES * BLOCK_BYTES);
    const got = readFully(fd, head, 0, head.length, p);
    for (let c = 0; c < SUPERBLOCK_COPIES && (c + 1) * BLOCK_BYTES <= got; c++) {
      const sb = decodeSuperblock(head.subarray(c * BLOCK_BYTES, (c + 1) * BLOCK_BYTES));
      // Anything but a wrong magic is a volume (perhaps damaged, or of another version): Volume.open says which.
      if (typeof sb !== 'string' || !sb.startsWith('bad magic')) return { kind: 'volume', path: p };
    }
    const bytes = device ? deviceBytes(fd) : st.size;
    return { kind: 'raw', path: p, bytes, device, empty: head.subarray(0, got).every((b) => b === 0) && (device || got === st.size) };
  } finally {
    fs.closeSync(fd);
  }
}

/** A block device's size: node:fs stats say 0, so find the end by reading (a read at or past it returns nothing). */
function deviceBytes(fd: number): number {
  const one = new Uint8Array(1);
  const readable = (n: number): boolean => n === 0 || fs.readSync(fd, one, 0, 1, n - 1) === 1;
  let lo = 0;
  let hi = BLOCK_BYTES;
  while (readable(hi) && hi < 2 ** 52) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (readable(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

function openFile(p: string, flags: string): number {
  try {
    return fs.openSync(p, flags, 0o644);
  } catch (err) {
    throw fromOsError(err, `cannot open ${p}`);
  }
}

/** Reads until `length` bytes or the end of the file; the count read. */
function readFully(fd: number, buf: Uint8Array, at: number, length: number, p: string): number {
  let got = 0;
  try {
    while (got < length) {
      const n = fs.readSync(fd, buf, got, length - got, at + got);
      if (n === 0) break;
      got += n;
    }
  } catch (err) {
    throw fromOsError(err, `cannot read ${p} at byte ${at + got}`);
  }
  return got;
}

function fileSource(fd: number, bytes: number, p: string): Source {
  return {
    bytes,
    async read(offset, length, buf) {
      const got = readFully(fd, buf, offset, length, p);
      if (got !== length) throw new FlashpackError('EIO', `${p} ended at byte ${offset + got} while being copied (it was ${bytes} bytes)`);
      return buf.subarray(0, length);
    },
  };
}

function volumeSource(v: Volume): Source {
  return { bytes: v.logicalSize, read: (offset, length) => v.read(offset, length) };
}

/** Into a volume: a zero chunk is a discard, or nothing at all in a volume just created. */
function volumeSink(v: Volume, fresh: boolean): Sink {
  return {
    async write(offset, data, zero) {
      if (!zero) await v.write(offset, data);
      else if (!fresh) await v.discard(offset, data.length);
    },
  };
}

/** Into a file: on a regular file only the runs of non-zero 4 KiB blocks are written (the rest are holes; finishFile sets the size); a device gets every byte. */
function fileSink(fd: number, sparse: boolean, p: string): Sink {
  const put = (data: Uint8Array, offset: number): void => {
    try {
      for (let done = 0; done < data.length;) done += fs.writeSync(fd, data, done, data.length - done, offset + done);
    } catch (err) {
      throw fromOsError(err, `cannot write ${p} at byte ${offset}`);
    }
  };
  return {
    async write(offset, data, zero) {
      if (!sparse) return put(data, offset);
      if (zero) return;
      let run = -1; // start of the current run of non-zero blocks
      for (let b = 0; b < data.length; b += BLOCK_BYTES) {
        const blockZero = isZero(data.subarray(b, Math.min(b + BLOCK_BYTES, data.length)));
        if (!blockZero && run < 0) run = b;
        else if (blockZero && run >= 0) {
          put(data.subarray(run, b), offset + run);
          run = -1;
        }
      }
      if (run >= 0) put(data.subarray(run), offset + run);
    },
  };
}

/** A raw image's end: a regular file gets its full size (holes included); both are made durable. */
function finishFile(fd: number, device: boolean, bytes: number, p: string): void {
  try {
    if (!device) fs.ftruncateSync(fd, bytes);
    fs.fdatasyncSync(fd);
  } catch (err) {
    throw fromOsError(err, `cannot finish ${p}`);
  }
}

async function openVolume(p: string, readOnly: boolean): Promise<Volume> {
  return busyHint(() => Volume.open(p, { readOnly }));
}

/** EBUSY gets the way round it: a served volume is copied through its server. */
async function busyHint<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof FlashpackError && err.code === 'EBUSY') throw new FlashpackError('EBUSY', `${err.message}; ${BUSY_HINT}`, { cause: err });
    throw err;
  }
}
