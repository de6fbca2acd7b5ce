/**
 * A namespace held in a SharedArrayBuffer: every device worker copies straight
 * between it and the slab buffers. Writes are durable once completed (there is
 * no cache to lose); wrap it in a FaultBackend to get one.
 */
import { FlashpackError, badArgument, checkOptions } from '../errors.js';
import { BLOCK_SIZES, type Backend, type BackendDescription, type Device } from './backend.js';
import { STATUS_SUCCESS } from './spec.js';

export interface MemoryBackendOptions {
  /** Logical block size: 512 or 4096 (default 4096). */
  blockSize?: number;
  /** Capacity in bytes, a multiple of the block size. */
  size: number;
  /** Bytes held in reserve for grow(): a multiple of the block size, at least `size` (default `size`: it cannot grow). */
  maxSize?: number;
}

export class MemoryBackend implements Backend {
  readonly blockSize: number;
  /** Capacity in blocks (grow() raises it, up to maxSize). */
  blocks: number;
  readonly storage: SharedArrayBuffer;
  readonly epoch = 0;

  /**
   * A namespace of `size` bytes in memory. Errors: EINVAL for options that are
   * not an object, a missing or bad size, or a block size other than 512 or
   * 4096; ENOMEM for a size the runtime cannot allocate.
   */
  constructor(opts: MemoryBackendOptions) {
    const o = checkOptions('nvme.MemoryBackend: options', opts);
    const bs = o.blockSize ?? 4096;
    if (!BLOCK_SIZES.includes(bs)) throw badArgument('nvme.MemoryBackend: options.blockSize', '512 or 4096', bs);
    const size = o.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0 || size % bs !== 0) {
      throw badArgument('nvme.MemoryBackend: options.size', `a positive multiple of the ${bs}-byte block size`, size);
    }
    const max = o.maxSize ?? size;
    if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < size || max % bs !== 0) {
      throw badArgument('nvme.MemoryBackend: options.maxSize', `a multiple of the ${bs}-byte block size, at least size ${size}`, max);
    }
    this.blockSize = bs;
    this.blocks = size / bs;
    try {
      this.storage = new SharedArrayBuffer(max);
    } catch (err) {
      throw new FlashpackError('ENOMEM', `nvme.MemoryBackend: cannot allocate ${max} bytes`, { cause: err });
    }
  }

  /** Raises the capacity to `blocks` within maxSize (ENOSPC past it). */
  grow(blocks: number): void {
    const max = this.storage.byteLength / this.blockSize;
    if (blocks > max) throw new FlashpackError('ENOSPC', `nvme.MemoryBackend: ${blocks} blocks is more than its maxSize of ${max} blocks (${this.storage.byteLength} bytes)`);
    if (blocks > this.blocks) this.blocks = blocks;
  }

  describe(): BackendDescription {
    return { kind: 'memory', blockSize: this.blockSize, blocks: this.blocks, storage: this.storage };
  }

  present(): boolean {
    return true;
  }

  /** The namespace's bytes (for tests: what the medium holds now). */
  bytes(): Uint8Array {
    return new Uint8Array(this.storage);
  }
}

const ZERO_CHUNK_BYTES = 64 * 1024;
const zeroChunk = new Uint8Array(ZERO_CHUNK_BYTES);

export class MemoryDevice implements Device {
  private readonly data: Uint8Array;
  private readonly bs: number;

  constructor(desc: Extract<BackendDescription, { kind: 'memory' }>) {
    this.data = new Uint8Array(desc.storage);
    this.bs = desc.blockSize;
  }

  read(lba: number, blocks: number, mem: Uint8Array, at: number): number {
    const from = lba * this.bs;
    mem.set(this.data.subarray(from, from + blocks * this.bs), at);
    return STATUS_SUCCESS;
  }

  write(lba: number, blocks: number, mem: Uint8Array, at: number): number {
    this.data.set(mem.subarray(at, at + blocks * this.bs), lba * this.bs);
    return STATUS_SUCCESS;
  }

  flush(): number {
    return STATUS_SUCCESS;
  }

  writeZeroes(lba: number, blocks: number): number {
    // TypedArray.fill on shared memory takes V8's slow path; copying zeroes does not.
    const end = (lba + blocks) * this.bs;
    for (let at = lba * this.bs; at < end; at += ZERO_CHUNK_BYTES) {
      const n = Math.min(ZERO_CHUNK_BYTES, end - at);
      this.data.set(n === ZERO_CHUNK_BYTES ? zeroChunk : zeroChunk.subarray(0, n), at);
    }
    return STATUS_SUCCESS;
  }

  deallocate(lba: number, blocks: number): number {
    return this.writeZeroes(lba, blocks);
  }

  close(): void {}
}
