/**
 * LZ4 block format on the caller's thread (assembly/lz4.ts does the work).
 *
 * compressBlock output is a raw block (no size prefix) valid per the LZ4 block
 * format, end-of-block rules included. decompressBlock accepts exactly what
 * liblz4's LZ4_decompress_safe accepts for a full block of that size (and rejects
 * offset 0, which liblz4 1.9 lets through); anything else is ECORRUPT naming the
 * byte position. A valid block that decodes to more than the caller's output
 * room is ENOSPC (the decoder parses the rest of the block to tell the two
 * apart), except where the size is a claim about the data (originalSize, a
 * frame's block maximum): there it is ECORRUPT. Bad arguments are EINVAL.
 */
import { FlashpackError, checkInteger, checkOptions, corrupt, type FlashpackErrorCode } from '../errors.js';
import { runtime, outputAfter, type Runtime } from '../wasm/runtime.js';
import { bytesOf, regionArg, sizeArg } from './input.js';

/** Largest input of one block (liblz4's LZ4_MAX_INPUT_SIZE). */
export const LZ4_MAX_BLOCK_BYTES = 0x7e000000;

export interface Lz4CompressOptions {
  /** liblz4's acceleration: 1 (default) is the best ratio, larger is faster. */
  acceleration?: number;
}

/** E_LZ4_OUTPUT_TOO_SMALL (assembly/layout.ts): a valid block that decodes past the output room. */
const E_LZ4_OUTPUT_TOO_SMALL = 11;

/** options.acceleration (`what` names the function), EINVAL unless 1 to 65537. */
export function accelerationArg(opts: Lz4CompressOptions | undefined, what: string): number {
  const a = checkOptions(`${what}: options`, opts).acceleration ?? 1;
  return checkInteger(`${what}: options.acceleration`, a, 1, 65537);
}

/** Worst-case compressed size (LZ4_compressBound). EINVAL unless n is an integer from 0 to MAX_BLOCK_BYTES. */
export function compressBound(n: number): number {
  sizeArg(n, 'lz4.compressBound: n', LZ4_MAX_BLOCK_BYTES);
  return n + Math.floor(n / 255) + 16;
}

/**
 * Compresses `src` into one raw LZ4 block. Errors: EINVAL for src that is not
 * bytes, longer than MAX_BLOCK_BYTES, or a bad options.acceleration.
 */
export function compressBlock(src: ArrayBufferView | ArrayBuffer, opts?: Lz4CompressOptions): Uint8Array {
  const input = bytesOf(src, 'lz4.compressBlock: src');
  const accel = accelerationArg(opts, 'lz4.compressBlock');
  const n = sizeArg(input.length, 'lz4.compressBlock: src.length', LZ4_MAX_BLOCK_BYTES);
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
 * No allocation: the hot-path form of compressBlock. Errors: EINVAL, as
 * compressBlock, and for dst that is not bytes.
 */
export function compressBlockInto(src: ArrayBufferView | ArrayBuffer, dst: Uint8Array, opts?: Lz4CompressOptions): number {
  const input = bytesOf(src, 'lz4.compressBlockInto: src');
  const out = bytesOf(dst, 'lz4.compressBlockInto: dst');
  const accel = accelerationArg(opts, 'lz4.compressBlockInto');
  const n = sizeArg(input.length, 'lz4.compressBlockInto: src.length', LZ4_MAX_BLOCK_BYTES);
  const rt = runtime();
  const inAt = rt.stageInput(input, out.length);
  const outAt = outputAfter(inAt, n);
  const size = rt.exports.lz4Compress(inAt, n, outAt, out.length, rt.ctx, accel);
  if (size > 0) out.set(rt.u8.subarray(outAt, outAt + size));
  return size;
}

/**
 * Decompresses one block into `dst` (its length is the capacity, as for
 * LZ4_decompress_safe) and returns the decoded size. No allocation. Errors:
 * ECORRUPT for a bad block; ENOSPC for a valid block that decodes to more
 * than dst.length bytes (the message gives its size); EINVAL for src or dst
 * that is not bytes.
 */
export function decompressBlockInto(src: ArrayBufferView | ArrayBuffer, dst: Uint8Array): number {
  const input = bytesOf(src, 'lz4.decompressBlockInto: src');
  const out = bytesOf(dst, 'lz4.decompressBlockInto: dst');
  const rt = runtime();
  const n = input.length;
  const inAt = rt.stageInput(input, out.length);
  const outAt = outputAfter(inAt, n);
  const size = rt.exports.lz4Decompress(inAt, n, outAt, out.length, 0, rt.ctx);
  if (size < 0) throw lz4BlockError(rt, rt.ctx, 'lz4 block', 0, 'ENOSPC', 'dst.length');
  out.set(rt.u8.subarray(outAt, outAt + size));
  return size;
}

/**
 * Decompresses one raw LZ4 block that decodes to exactly `originalSize` bytes.
 * Errors: ECORRUPT for a bad block or one that decodes to any other size —
 * more than originalSize included, since the size is a claim about the block;
 * EINVAL for src that is not bytes or originalSize that is not an integer
 * from 0 to MAX_BLOCK_BYTES.
 */
export function decompressBlock(src: ArrayBufferView | ArrayBuffer, originalSize: number): Uint8Array {
  const input = bytesOf(src, 'lz4.decompressBlock: src');
  sizeArg(originalSize, 'lz4.decompressBlock: originalSize', LZ4_MAX_BLOCK_BYTES);
  const rt = runtime();
  const n = input.length;
  const inAt = rt.stageInput(input, originalSize);
  const outAt = outputAfter(inAt, n);
  const size = rt.exports.lz4Decompress(inAt, n, outAt, originalSize, 0, rt.ctx);
  if (size < 0) throw lz4BlockError(rt, rt.ctx, 'lz4 block', 0, 'ECORRUPT', 'originalSize');
  if (size !== originalSize) throw corrupt(`lz4 block: decoded ${size} bytes, expected originalSize ${originalSize}`);
  return rt.u8.slice(outAt, outAt + size);
}

/** Checks a pointer-level call's regions in the process's memory (`what` names the function). */
function regionsArg(rt: Runtime, what: string, srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, ctx: number): void {
  regionArg(rt, srcPtr, sizeArg(srcLen, `${what}: srcLen`, LZ4_MAX_BLOCK_BYTES), `${what}: srcPtr`);
  regionArg(rt, dstPtr, sizeArg(dstCap, `${what}: dstCap`), `${what}: dstPtr`);
  regionArg(rt, ctx, rt.ctxBytes, `${what}: ctx`);
}

/**
 * Pointer-level compression of bytes already in the shared memory. `ctx` is a
 * codec context (runtime().ctx on the main thread). Returns the block size, or 0
 * when the block does not fit `dstCap`: the "incompressible" result. Errors:
 * EINVAL for a length over MAX_BLOCK_BYTES, a region outside the memory or a
 * bad options.acceleration.
 */
export function compressBlockAt(srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, ctx: number, opts?: Lz4CompressOptions): number {
  const rt = runtime();
  regionsArg(rt, 'lz4.compressBlockAt', srcPtr, srcLen, dstPtr, dstCap, ctx);
  return rt.exports.lz4Compress(srcPtr, srcLen, dstPtr, dstCap, ctx, accelerationArg(opts, 'lz4.compressBlockAt')) >>> 0;
}

/**
 * Pointer-level decompression into [dstPtr, dstPtr+dstCap). Matches may reach
 * `prefixLen` bytes before dstPtr (linked blocks). Returns the decoded size.
 * Errors: ECORRUPT on a bad block; ENOSPC for a valid block that decodes to
 * more than dstCap bytes; EINVAL as compressBlockAt, or a prefixLen reaching
 * below the memory.
 */
export function decompressBlockAt(srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, ctx: number, prefixLen = 0): number {
  const rt = runtime();
  regionsArg(rt, 'lz4.decompressBlockAt', srcPtr, srcLen, dstPtr, dstCap, ctx);
  sizeArg(prefixLen, 'lz4.decompressBlockAt: prefixLen', dstPtr);
  return decompressRegion(rt, srcPtr, srcLen, dstPtr, dstCap, ctx, prefixLen);
}

/** decompressBlockAt on a given runtime (an engine's or a volume's memory), unchecked. */
export function decompressRegion(rt: Runtime, srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, ctx: number, prefixLen = 0): number {
  const size = rt.exports.lz4Decompress(srcPtr, srcLen, dstPtr, dstCap, prefixLen, ctx);
  if (size < 0) throw lz4BlockError(rt, ctx, 'lz4 block', 0, 'ENOSPC', 'dstCap');
  return size;
}

/**
 * Decodes the error record a failed lz4Decompress left in `ctx`
 * (assembly/layout.ts). A valid block that outgrew its output room is
 * `tooSmall` (ENOSPC for a caller's buffer, ECORRUPT where the room is a size
 * the data claims), and `room` names that room in the message.
 */
export function lz4BlockError(rt: Runtime, ctx: number, where: string, basePos: number, tooSmall: FlashpackErrorCode, room: string): FlashpackError {
  const [kind, pos, value, value2] = new Uint32Array(rt.memory.buffer, ctx, 4);
  return lz4KindError(kind, basePos + pos, value, value2, where, tooSmall, room);
}

/** lz4BlockError from an error record's fields (an engine job copies them into its descriptor). */
export function lz4KindError(kind: number, pos: number, value: number, value2: number, where: string, tooSmall: FlashpackErrorCode, room: string): FlashpackError {
  if (kind === E_LZ4_OUTPUT_TOO_SMALL) return new FlashpackError(tooSmall, outputTooSmallMessage(where, value, value2, room));
  return new FlashpackError(kind >= 1 && kind <= 10 ? 'ECORRUPT' : 'EINTERNAL', lz4ErrorMessage(where, kind, pos, value, value2));
}

function outputTooSmallMessage(where: string, size: number, room: number, roomName: string): string {
  return `${where}: decodes to ${size === 0xffffffff ? 'over 4 GiB' : `${size} bytes`}, more than ${roomName} ${room}`;
}

/** The message for an LZ4 block error kind (E_LZ4_* in assembly/layout.ts). */
export function lz4ErrorMessage(where: string, kind: number, pos: number, value: number, value2: number): string {
  switch (kind) {
    case E_LZ4_OUTPUT_TOO_SMALL: return outputTooSmallMessage(where, value, value2, 'the output room of');
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
