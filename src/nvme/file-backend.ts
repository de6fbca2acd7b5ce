/**
 * A namespace on a regular file or a block device, through node:fs positional
 * I/O (pread/pwrite), which Node, Deno and Bun all provide. Each device worker
 * opens its own descriptor, so commands run in parallel across workers.
 * Flush is fdatasync; a FUA write is the write followed by fdatasync before it
 * completes. Write zeroes and deallocate write zeroes (node:fs has no
 * fallocate), so deallocated blocks read back as zeroes here too.
 *
 * Write-behind (RocksDB's bytes_per_sync): every `bytesPerSync` bytes of
 * completed writes, the host starts an fdatasync in the background on a
 * descriptor of its own, so dirty pages go to the disk while the writer works
 * and the next flush has little left to do. It is only a hint: nothing waits
 * for it and flush is still the device worker's fdatasync. A write-back error
 * it meets is not lost: Linux (4.13+) reports it to every descriptor open when
 * it happened, so the device worker's next flush fails.
 */
import * as fs from 'node:fs';
import { FlashpackError, describe, fromOsError, invalid } from '../errors.js';
import { BLOCK_SIZES, type Backend, type BackendDescription, type Device } from './backend.js';
import { STATUS_SUCCESS, STATUS_INTERNAL_DEVICE_ERROR, STATUS_UNRECOVERED_READ_ERROR, STATUS_WRITE_FAULT } from './spec.js';

export interface FileBackendOptions {
  /** Logical block size: 512 or 4096 (default 4096). */
  blockSize?: number;
  /** Create the file if missing and grow it to this many bytes (regular files only). */
  size?: number;
  /** Start a background fdatasync after this many bytes of completed writes (default 1 MiB; 0 = never). */
  bytesPerSync?: number;
  /** Open read-only (O_RDONLY) in the host and in every device worker: writes fail, the file is never modified. */
  readOnly?: boolean;
}

const DEFAULT_BYTES_PER_SYNC = 1 << 20;

/** Block devices report size 0 to fstat; their size is found by probing reads (at most this many). */
const PROBE_READS_MAX = 64;

export class FileBackend implements Backend {
  readonly path: string;
  readonly blockSize: number;
  /** Capacity in blocks (grow() raises it). */
  blocks: number;
  readonly epoch = 0;
  readonly bytesPerSync: number;
  readonly readOnly: boolean;
  /** Bytes written since the last background sync started. */
  private unsynced = 0;
  private syncing = false;
  /** Background syncs started (for tests and stats). */
  backgroundSyncs = 0;

  /**
   * Errors: EINVAL (a bad argument, named with its type; a path that is not a
   * regular file or block device, or holds less than one block), ENOENT (no
   * such file), EACCES (permission), EIO (any other OS error; the OS error is
   * the `cause`).
   */
  constructor(path: string, opts: FileBackendOptions = {}) {
    if (typeof path !== 'string' || path.length === 0) throw invalid(`file backend: path must be a non-empty string, got ${describe(path)}`);
    if (opts === null || typeof opts !== 'object') throw invalid(`file backend: options must be an object, got ${describe(opts)}`);
    const bs = opts.blockSize ?? 4096;
    if (!BLOCK_SIZES.includes(bs)) throw invalid(`file backend: blockSize must be 512 or 4096, got ${describe(bs)}`);
    const perSync = opts.bytesPerSync ?? DEFAULT_BYTES_PER_SYNC;
    if (!Number.isSafeInteger(perSync) || perSync < 0) throw invalid(`file backend: bytesPerSync must be a whole number of bytes (0 = never), got ${describe(perSync)}`);
    this.bytesPerSync = perSync;
    this.readOnly = opts.readOnly === true;
    if (opts.size !== undefined && (!Number.isSafeInteger(opts.size) || opts.size <= 0 || opts.size % bs !== 0)) {
      throw invalid(`file backend: size must be a positive multiple of the ${bs}-byte block size, got ${describe(opts.size)}`);
    }
    if (this.readOnly && opts.size !== undefined) throw invalid('file backend: a read-only backend cannot create or grow its file (size)');
    let fd: number;
    try {
      const flags = this.readOnly ? fs.constants.O_RDONLY : opts.size !== undefined ? fs.constants.O_RDWR | fs.constants.O_CREAT : fs.constants.O_RDWR;
      fd = fs.openSync(path, flags, 0o644);
    } catch (err) {
      throw fromOsError(err, `file backend: cannot open ${path}`);
    }
    try {
      const st = fs.fstatSync(fd);
      let bytes: number;
      if (st.isBlockDevice()) bytes = probeSize(fd);
      else if (st.isFile()) {
        if (opts.size !== undefined && st.size < opts.size) fs.ftruncateSync(fd, opts.size);
        bytes = opts.size ?? st.size;
      } else throw invalid(`file backend: ${path} is neither a regular file nor a block device`);
      if (bytes < bs) throw invalid(`file backend: ${path} holds ${bytes} bytes, less than one ${bs}-byte block`);
      this.blocks = Math.floor(bytes / bs);
    } finally {
      fs.closeSync(fd);
    }
    this.path = path;
    this.blockSize = bs;
  }

  describe(): BackendDescription {
    return { kind: 'file', blockSize: this.blockSize, blocks: this.blocks, path: this.path, readOnly: this.readOnly };
  }

  present(): boolean {
    return true;
  }

  /**
   * Extends a regular file to `blocks` blocks (a hole: it reads as zeroes), or
   * takes a block device's new size once it has grown to at least that
   * (lvextend, a resized LUN). ENOSPC if the device is smaller, EROFS when
   * read-only, EIO for an OS error (its `cause`).
   */
  grow(blocks: number): void {
    if (this.readOnly) throw new FlashpackError('EROFS', `file backend: ${this.path} is open read-only; it cannot grow`);
    if (blocks <= this.blocks) return;
    let fd: number;
    try {
      fd = fs.openSync(this.path, fs.constants.O_RDWR);
    } catch (err) {
      throw fromOsError(err, `file backend: cannot open ${this.path} to grow it`);
    }
    try {
      const st = fs.fstatSync(fd);
      if (st.isBlockDevice()) {
        const bytes = probeSize(fd);
        if (bytes < blocks * this.blockSize) {
          throw new FlashpackError('ENOSPC', `file backend: the block device ${this.path} holds ${bytes} bytes, less than the ${blocks * this.blockSize} asked (grow the device first)`);
        }
      } else if (st.size < blocks * this.blockSize) fs.ftruncateSync(fd, blocks * this.blockSize);
    } catch (err) {
      throw err instanceof FlashpackError ? err : fromOsError(err, `file backend: cannot grow ${this.path} to ${blocks * this.blockSize} bytes`);
    } finally {
      fs.closeSync(fd);
    }
    this.blocks = blocks;
  }

  wrote(bytes: number): void {
    if (this.bytesPerSync === 0 || this.readOnly) return;
    this.unsynced += bytes;
    if (this.unsynced < this.bytesPerSync || this.syncing) return;
    this.unsynced = 0;
    this.syncing = true;
    this.backgroundSyncs++;
    const done = (): void => {
      this.syncing = false;
    };
    fs.open(this.path, 'r+', (err, fd) => {
      if (err) return done();
      fs.fdatasync(fd, () => fs.close(fd, done));
    });
  }
}

/** The size of a block device: the first offset where a 1-byte read returns nothing. */
function probeSize(fd: number): number {
  const b = new Uint8Array(1);
  const readsAt = (pos: number): boolean => fs.readSync(fd, b, 0, 1, pos) === 1;
  let hi = 512;
  let probes = 0;
  while (readsAt(hi - 1)) {
    hi *= 2;
    if (++probes > PROBE_READS_MAX) throw invalid('file backend: cannot find the block device size');
  }
  let lo = hi / 2; // a byte at lo - 1 reads; one at hi - 1 does not
  while (hi - lo > 1 && probes++ < 2 * PROBE_READS_MAX) {
    const mid = Math.floor((lo + hi) / 2);
    if (readsAt(mid - 1)) lo = mid;
    else hi = mid;
  }
  return lo;
}

const ZERO_CHUNK_BYTES = 1 << 20;

export class FileDevice implements Device {
  private readonly fd: number;
  private readonly bs: number;
  private zeroes: Uint8Array | null = null;

  constructor(desc: Extract<BackendDescription, { kind: 'file' }>) {
    this.fd = fs.openSync(desc.path, desc.readOnly === true ? fs.constants.O_RDONLY : fs.constants.O_RDWR);
    this.bs = desc.blockSize;
  }

  read(lba: number, blocks: number, mem: Uint8Array, at: number): number {
    const len = blocks * this.bs;
    let done = 0;
    try {
      while (done < len) {
        const n = fs.readSync(this.fd, mem, at + done, len - done, lba * this.bs + done);
        if (n === 0) break; // past the end of a file that shrank underneath us
        done += n;
      }
    } catch (err) {
      return ioStatus(err, STATUS_UNRECOVERED_READ_ERROR);
    }
    if (done < len) mem.fill(0, at + done, at + len);
    return STATUS_SUCCESS;
  }

  write(lba: number, blocks: number, mem: Uint8Array, at: number, fua: boolean): number {
    try {
      writeAll(this.fd, mem, at, blocks * this.bs, lba * this.bs);
      if (fua) fs.fdatasyncSync(this.fd);
    } catch (err) {
      return ioStatus(err, STATUS_WRITE_FAULT);
    }
    return STATUS_SUCCESS;
  }

  flush(): number {
    try {
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      return ioStatus(err, STATUS_WRITE_FAULT);
    }
    return STATUS_SUCCESS;
  }

  writeZeroes(lba: number, blocks: number, fua: boolean): number {
    const zeroes = (this.zeroes ??= new Uint8Array(ZERO_CHUNK_BYTES));
    try {
      const end = (lba + blocks) * this.bs;
      for (let pos = lba * this.bs; pos < end; pos += ZERO_CHUNK_BYTES) {
        writeAll(this.fd, zeroes, 0, Math.min(ZERO_CHUNK_BYTES, end - pos), pos);
      }
      if (fua) fs.fdatasyncSync(this.fd);
    } catch (err) {
      return ioStatus(err, STATUS_WRITE_FAULT);
    }
    return STATUS_SUCCESS;
  }

  deallocate(lba: number, blocks: number): number {
    return this.writeZeroes(lba, blocks, false);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

function writeAll(fd: number, buf: Uint8Array, at: number, len: number, pos: number): void {
  let done = 0;
  while (done < len) done += fs.writeSync(fd, buf, at + done, len - done, pos + done);
}

/** EIO is a media error; anything else (EBADF, ENOSPC on a sparse file, …) is an internal device error. */
function ioStatus(err: unknown, media: number): number {
  return (err as { code?: string }).code === 'EIO' ? media : STATUS_INTERNAL_DEVICE_ERROR;
}
