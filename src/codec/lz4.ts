/**
 * LZ4 block format on the caller's thread (assembly/lz4.ts does the work).
 *
 * compressBlock output is a raw block (no size prefix) valid per the LZ4 block
 * format, end-of-block rules included. decompressBlock accepts exactly what
 * liblz4's LZ4_decompress_safe accepts for a full block of that size (and rejects
 * offset 0, which liblz4 1.9 lets through); anything else is ECORRUPT naming the
 * byte position.
 */
import { FlashpackError, corrupt, invalid } from '../errors.js';
import { runtime, outputAfter, type Runtime } from '../wasm/runtime.js';
import { bytesOf, sizeArg } from './input.js';

/** Largest input of one block (liblz4's LZ4_MAX_INPUT_SIZE). */
export const LZ4_MAX_BLOCK_BYTES = 0x7e000000;

export interface Lz4CompressOptions {
  /** liblz4's acceleration: 1 (default) is the best ratio, larger is faster. */
  acceleration?: number;
}

function accelerationArg(opts: Lz4CompressOptions | undefined): number {
  const a = opts?.acceleration ?? 1;
  if (typeof a !== 'number' || !Number.isInteger(a) || a < 1 || a > 65537) {
    throw invalid(`lz4: acceleration must be an integer from 1 to 65537, got ${String(a)}`);
  }
  return a;
}

/** Worst-case compressed size (LZ4_compressBound). */
export function compressBound(n: number): number {
  sizeArg(n, 'lz4.compressBound', LZ4_MAX_BLOCK_BYTES);
  return n + Math.floor(n / 255) + 16;
}

/** Compresses `src` into one raw LZ4 block. */
export function compressBlock(src: ArrayBufferView | ArrayBuffer, opts?: Lz4CompressOptions): Uint8Array {
  const input = bytesOf(src, 'lz4.compressBlock');
  const accel = accelerationArg(opts);
  const n = sizeArg(input.length, 'lz4.compressBlock: input length', LZ4_MAX_BLOCK_BYTES);
  const rt = runtime();
  const bound = n + Math.floor(n / 255) + 16;
  const inAt = rt.stageInput(input, bound);
  const outAt = outputAfter(inAt, n);
  const size = rt.exports.lz4Compress(inAt, n, outAt, bound, rt.ctx, accel);
  if (size <= 0) throw new FlashpackError('EINTERNAL', `lz4.compressBlock: ${n} bytes did not fit the bound ${bound}`);
  return rt.u8.slice(outAt, outAt + size);
}

/**
 * Compresses `src` into `dst` and returns the block size, or 0 when the block
 * does not fit in dst.length: the "incompressible" result when dst is a limit.
 * No allocation: the hot-path form of compressBlock.
 */
export function compressBlockInto(src: ArrayBufferView | ArrayBuffer, dst: Uint8Array, opts?: Lz4CompressOptions): number {
  const input = bytesOf(src, 'lz4.compressBlockInto');
  const out = bytesOf(dst, 'lz4.compressBlockInto: dst');
  const accel = accelerationArg(opts);
  const n = sizeArg(input.length, 'lz4.compressBlockInto: input length', LZ4_MAX_BLOCK_BYTES);
  const rt = runtime();
  const inAt = rt.stageInput(input, out.length);
  const outAt = outputAfter(inAt, n);
  const size = rt.exports.lz4Compress(inAt, n, outAt, out.length, rt.ctx, accel);
  if (size > 0) out.set(rt.u8.subarray(outAt, outAt + size));
  return size;
}

/**
 * Decompresses one block into `dst` (its length is the capacity, as for
 * LZ4_decompress_safe) and returns the decoded size. No allocation.
 */
export function decompressBlockInto(src: ArrayBufferView | ArrayBuffer, dst: Uint8Array): number {
  const input = bytesOf(src, 'lz4.decompressBlockInto');
  const out = bytesOf(dst, 'lz4.decompressBlockInto: dst');
  const rt = runtime();
  const n = input.length;
  const inAt = rt.stageInput(input, out.length);
  const outAt = outputAfter(inAt, n);
  const size = rt.exports.lz4Decompress(inAt, n, outAt, out.length, 0, rt.ctx);
  if (size < 0) throw lz4BlockError(rt, rt.ctx, 'lz4 block');
  out.set(rt.u8.subarray(outAt, outAt + size));
  return size;
}

/** Decompresses one raw LZ4 block that decodes to exactly `originalSize` bytes. */
export function decompressBlock(src: ArrayBufferView | ArrayBuffer, originalSize: number): Uint8Array {
  const input = bytesOf(src, 'lz4.decompressBlock');
  sizeArg(originalSize, 'lz4.decompressBlock: originalSize', LZ4_MAX_BLOCK_BYTES);
  const rt = runtime();
  const n = input.length;
  const inAt = rt.stageInput(input, originalSize);
  const outAt = outputAfter(inAt, n);
  const size = rt.exports.lz4Decompress(inAt, n, outAt, originalSize, 0, rt.ctx);
  if (size < 0) throw lz4BlockError(rt, rt.ctx, 'lz4 block');
  if (size !== originalSize) throw corrupt(`lz4 block: decoded ${size} bytes, expected originalSize ${originalSize}`);
  return rt.u8.slice(outAt, outAt + size);
}

/**
 * Pointer-level compression of bytes already in the shared memory. `ctx` is a
 * codec context (runtime().ctx on the main thread). Returns the block size, or 0
 * when the block does not fit `dstCap`: the "incompressible" result.
 */
export function compressBlockAt(srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, ctx: number, opts?: Lz4CompressOptions): number {
  return runtime().exports.lz4Compress(srcPtr, srcLen, dstPtr, dstCap, ctx, accelerationArg(opts)) >>> 0;
}

/**
 * Pointer-level decompression into [dstPtr, dstPtr+dstCap). Matches may reach
 * `prefixLen` bytes before dstPtr (linked blocks). Returns the decoded size;
 * ECORRUPT on a bad block.
 */
export function decompressBlockAt(srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, ctx: number, prefixLen = 0): number {
  return decompressRegion(runtime(), srcPtr, srcLen, dstPtr, dstCap, ctx, prefixLen);
}

/** decompressBlockAt on a given runtime (an engine's or a volume's memory). */
export function decompressRegion(rt: Runtime, srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, ctx: number, prefixLen = 0): number {
  const size = rt.exports.lz4Decompress(srcPtr, srcLen, dstPtr, dstCap, prefixLen, ctx);
  if (size < 0) throw lz4BlockError(rt, ctx, 'lz4 block');
  return size;
}

/** Decodes the error record a failed lz4Decompress left in `ctx` (assembly/layout.ts). */
export function lz4BlockError(rt: Runtime, ctx: number, where: string, basePos = 0): FlashpackError {
  const [kind, pos, value, value2] = new Uint32Array(rt.memory.buffer, ctx, 4);
  const message = lz4ErrorMessage(where, kind, basePos + pos, value, value2);
  return new FlashpackError(kind >= 1 && kind <= 10 ? 'ECORRUPT' : 'EINTERNAL', message);
}

/** The message for an LZ4 block error kind (E_LZ4_* in assembly/layout.ts). */
export function lz4ErrorMessage(where: string, kind: number, pos: number, value: number, value2: number): string {
  switch (kind) {
    case 1: return `${where}: empty input (a block holds at least one token byte) at byte ${pos}`;
    case 2: return `${where}: literal length field at byte ${pos} leaves fewer than 15 input bytes for the literals`;
    case 3: return `${where}: literal run of ${value} bytes in the sequence at byte ${pos} exceeds the ${value2} input bytes left`;
    case 4: return `${where}: sequence at byte ${pos} writes up to output byte ${value}, beyond the output size ${value2}`;
    case 5: return `${where}: sequence at byte ${pos} (output byte ${value} of ${value2}) is within 12 bytes of the output end or 8 bytes of the input end, so it must be the last, but the input continues`;
    case 6: return `${where}: match offset 0 at byte ${pos}`;
    case 7: return `${where}: match offset ${value} at byte ${pos} exceeds window of ${value2} bytes`;
    case 8: return `${where}: match length field at byte ${pos} runs into the last 5 input bytes`;
    case 9: return `${where}: match in the sequence at byte ${pos} ends at output byte ${value}, inside the last 5 bytes of the output size ${value2}, which must be literals`;
    case 10: return `${where}: output size is 0 but the input has ${value} bytes (only a single 0x00 token decodes to nothing)`;
    default: return `${where}: unknown error kind ${kind} at byte ${pos}`;
  }
}
