/**
 * Deflate (RFC 1951) with zlib (RFC 1950) or gzip (RFC 1952) framing on the
 * caller's thread; assembly/deflate.ts and assembly/inflate.ts do the work.
 *
 * Framing follows an offload engine's shape: `header()` is written before the
 * payload, the raw deflate payload is produced, and `footer()` is computed after
 * it from the checksum taken alongside (Adler-32 for zlib, CRC-32 and ISIZE for
 * gzip), with the existing checksum kernels.
 *
 * Decompression accepts what zlib 1.3 (node:zlib) accepts, with deliberate
 * differences for a storage engine, where extra bytes mean corruption: bytes
 * after the end of a raw or zlib stream are ECORRUPT (node:zlib ignores them),
 * and after the last gzip member only zero bytes may follow (node:zlib stops
 * at the first zero byte and ignores the rest). A zlib stream may not use
 * distances past the window its header declares (CINFO), as zlib's
 * INFLATE_STRICT requires; node:zlib's answer there depends on its output
 * chunking. Concatenated gzip members are all decoded, as `gzip -d` does. A
 * zlib preset dictionary is ENOTSUP. A valid stream that decodes to more than
 * the caller's output room is ENOSPC (the rest of the stream is decoded into a
 * sliding window to tell it from a bad one, and to name its size). Bad
 * arguments are EINVAL, naming the argument or option.
 */
import { FlashpackError, badArgument, checkOptions, corrupt, hex32, type FlashpackErrorCode } from '../errors.js';
import { runtime, outputAfter, type Runtime } from '../wasm/runtime.js';
import { ByteWriter, readU32le } from './byte-writer.js';
import { bytesOf, regionArg, sizeArg, u32Arg } from './input.js';

export type DeflateFormat = 'raw' | 'zlib' | 'gzip';

export interface DeflateOptions {
  /** 0 (stored) to 9 (smallest); default 6, as zlib. */
  level?: number;
  /** 'raw' (default), 'zlib' or 'gzip'. */
  format?: DeflateFormat;
}

export interface InflateOptions {
  /** 'raw' (default), 'zlib' or 'gzip'. */
  format?: DeflateFormat;
}

export interface FooterFields {
  /** Adler-32 (zlib) or CRC-32 (gzip) of the uncompressed data. */
  checksum: number;
  /** Uncompressed length in bytes (gzip stores it mod 2^32). */
  length: number;
}

/** Values of the kernels' FORMAT_* constants (assembly/layout.ts). */
const FORMAT_CODES: Record<DeflateFormat, number> = { raw: 0, zlib: 1, gzip: 2 };
const DEFAULT_LEVEL = 6;

// inflate() results and modes (assembly/layout.ts).
const INFLATE_COMPLETE = 0;
const INFLATE_NEED_INPUT = 1;
const INFLATE_NEED_OUTPUT = 2;
const MODE_NAMES = [
  'the zlib header', 'the gzip header', 'the gzip extra field length', 'the gzip extra field', 'the gzip file name',
  'the gzip comment', 'the gzip header CRC', 'a block header', 'a stored block header', 'a stored block',
  'a dynamic block header', 'a dynamic block header', 'a dynamic block header', 'compressed data', 'compressed data',
  'compressed data', 'the trailer',
];

/** First output region of a one-shot decompression, and how far it grows before output is collected. */
const DECOMPRESS_MIN_REGION_BYTES = 64 << 10;
const DECOMPRESS_MAX_REGION_BYTES = 32 << 20;
const WINDOW_BYTES = 32768;
/** Output region past the window when the rest of an outgrown stream is decoded only to learn its size. */
const MEASURE_REGION_BYTES = 256 << 10;

/** A format argument (undefined: 'raw') as its code; `what` names it ("deflate.compress: options.format"). */
export function formatArg(format: unknown, what: string): number {
  const f = format ?? 'raw';
  if (typeof f !== 'string' || !Object.hasOwn(FORMAT_CODES, f)) throw badArgument(what, "'raw', 'zlib' or 'gzip'", f);
  return FORMAT_CODES[f as DeflateFormat];
}

/** A level argument (undefined: 6); `what` names it. */
export function levelArg(level: unknown, what: string): number {
  const l = level ?? DEFAULT_LEVEL;
  if (typeof l !== 'number' || !Number.isInteger(l) || l < 0 || l > 9) throw badArgument(what, 'an integer from 0 to 9', l);
  return l;
}

/** DeflateOptions checked (`what` names the function): its level and format code. */
export function deflateOptionsArg(opts: DeflateOptions | undefined, what: string): { level: number; format: number } {
  const o = checkOptions(`${what}: options`, opts);
  return { level: levelArg(o.level, `${what}: options.level`), format: formatArg(o.format, `${what}: options.format`) };
}

/** InflateOptions checked (`what` names the function): its format code. */
export function inflateOptionsArg(opts: InflateOptions | undefined, what: string): number {
  return formatArg(checkOptions(`${what}: options`, opts).format, `${what}: options.format`);
}

/**
 * The zlib or gzip header for `level` (empty for raw): exactly the bytes zlib
 * writes. Errors: EINVAL for a bad format or level.
 */
export function header(format: DeflateFormat, level: number = DEFAULT_LEVEL): Uint8Array {
  const f = formatArg(format, 'deflate.header: format');
  const l = levelArg(level, 'deflate.header: level');
  const rt = runtime();
  const at = rt.stage(16);
  const n = rt.exports.deflateHeader(at, f, l);
  return rt.u8.slice(at, at + n);
}

/**
 * The zlib trailer (Adler-32, big-endian) or gzip trailer (CRC-32, then the
 * length mod 2^32, little-endian); empty for raw. Errors: EINVAL for a bad
 * format, fields that are not an object, or a field out of range.
 */
export function footer(format: DeflateFormat, fields: FooterFields): Uint8Array {
  const f = formatArg(format, 'deflate.footer: format');
  const o = checkOptions('deflate.footer: fields', fields);
  const checksum = u32Arg(o.checksum, 'deflate.footer: fields.checksum');
  const length = sizeArg(o.length, 'deflate.footer: fields.length');
  const rt = runtime();
  const at = rt.stage(16);
  const n = rt.exports.deflateFooter(at, f, checksum, length % 2 ** 32);
  return rt.u8.slice(at, at + n);
}

/**
 * Worst-case size of `n` bytes compressed in `format`: zlib's deflateBound for
 * blocks it cannot store (9-bit literals and far 3-byte matches can expand),
 * plus the header and footer. Errors: EINVAL for n that is not a whole number
 * or a bad format.
 */
export function compressBound(n: number, format: DeflateFormat = 'raw'): number {
  sizeArg(n, 'deflate.compressBound: n');
  return bound(n, formatArg(format, 'deflate.compressBound: format'));
}

function bound(n: number, format: number): number {
  return n + Math.floor(n / 8) + Math.floor(n / 256) + Math.floor(n / 512) + 64 + WRAPPER_BYTES[format];
}

/** Header plus footer bytes per format code. */
const WRAPPER_BYTES = [0, 2 + 4, 10 + 8];

/**
 * Header, raw deflate payload and footer of [srcPtr, srcPtr+srcLen) into
 * [dstPtr, dstPtr+dstCap); the size, or 0 when it does not fit.
 */
export function compressRegion(rt: Pick<Runtime, "exports">, scratch: number, srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, level: number, format: number): number {
  const ex = rt.exports;
  const wrapper = WRAPPER_BYTES[format];
  if (dstCap < wrapper) return 0;
  const headerBytes = ex.deflateHeader(dstPtr, format, level);
  const payload = ex.deflateCompress(scratch, srcPtr, srcLen, dstPtr + headerBytes, dstCap - wrapper, level) >>> 0;
  if (payload === 0) return 0;
  const end = dstPtr + headerBytes + payload;
  if (format === 0) return end - dstPtr;
  const check = format === 1 ? ex.adler32(srcPtr, srcLen, 1) : ex.crc32(srcPtr, srcLen, 0);
  return end + ex.deflateFooter(end, format, check >>> 0, srcLen >>> 0) - dstPtr;
}

/**
 * Compresses `src` into one stream (header, payload, footer). Errors: EINVAL
 * for src that is not bytes or bad options (options.level, options.format).
 */
export function compress(src: ArrayBufferView | ArrayBuffer, opts?: DeflateOptions): Uint8Array {
  const input = bytesOf(src, 'deflate.compress: src');
  const { level, format } = deflateOptionsArg(opts, 'deflate.compress');
  const n = input.length;
  const rt = runtime();
  const cap = bound(n, format);
  const inAt = rt.stageInput(input, cap);
  const outAt = outputAfter(inAt, n);
  const size = compressRegion(rt, rt.deflateScratch, inAt, n, outAt, cap, level, format);
  if (size === 0) throw new FlashpackError('EINTERNAL', `deflate.compress: ${n} bytes did not fit the bound ${cap}`);
  return rt.u8.slice(outAt, outAt + size);
}

/**
 * Compresses `src` into `dst` and returns the stream's size, or 0 when it does
 * not fit in dst.length: the "incompressible" result when dst is a limit (a
 * packer's largest fragment). Compression stops at the first block that
 * overflows. No allocation. Errors: EINVAL, as compress, and for dst that is
 * not bytes.
 */
export function compressInto(src: ArrayBufferView | ArrayBuffer, dst: Uint8Array, opts?: DeflateOptions): number {
  const input = bytesOf(src, 'deflate.compressInto: src');
  const out = bytesOf(dst, 'deflate.compressInto: dst');
  const { level, format } = deflateOptionsArg(opts, 'deflate.compressInto');
  const n = input.length;
  const rt = runtime();
  const inAt = rt.stageInput(input, out.length);
  const outAt = outputAfter(inAt, n);
  const size = compressRegion(rt, rt.deflateScratch, inAt, n, outAt, out.length, level, format);
  if (size > 0) out.set(rt.u8.subarray(outAt, outAt + size));
  return size;
}

/**
 * Pointer-level compression of bytes in the shared memory with a
 * caller-provided deflate scratch (`Runtime.deflateScratch`, or
 * DEFLATE_SCRATCH_BYTES reserved by the caller): header, payload and footer
 * into [dstPtr, dstPtr+dstCap). Returns the size, or 0 when it does not fit
 * (the "incompressible" result). Writes only inside the destination. Errors:
 * EINVAL for a region outside the shared memory or bad options.
 */
export function compressAt(srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, scratch: number, opts?: DeflateOptions): number {
  const rt = runtime();
  regionsArg(rt, 'deflate.compressAt', srcPtr, srcLen, dstPtr, dstCap, scratch, rt.exports.DEFLATE_SCRATCH_BYTES.value as number);
  const { level, format } = deflateOptionsArg(opts, 'deflate.compressAt');
  return compressRegion(rt, scratch, srcPtr, srcLen, dstPtr, dstCap, level, format);
}

/** Checks a pointer-level call's regions in the process's memory (`what` names the function). */
function regionsArg(rt: Runtime, what: string, srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, scratch: number, scratchBytes: number): void {
  regionArg(rt, srcPtr, sizeArg(srcLen, `${what}: srcLen`), `${what}: srcPtr`);
  regionArg(rt, dstPtr, sizeArg(dstCap, `${what}: dstCap`), `${what}: dstPtr`);
  regionArg(rt, scratch, scratchBytes, `${what}: scratch`);
}

/**
 * Decompresses a whole stream (all members of a gzip file). Output may be any
 * size: the region in shared memory grows up to 32 MiB, then fills and is
 * collected in turns with the last 32 KiB kept as the window. Errors:
 * ECORRUPT for a bad stream, ENOTSUP for a preset dictionary, EINVAL for src
 * that is not bytes or bad options.
 */
export function decompress(src: ArrayBufferView | ArrayBuffer, opts?: InflateOptions): Uint8Array {
  const input = bytesOf(src, 'deflate.decompress: src');
  const format = inflateOptionsArg(opts, 'deflate.decompress');
  const rt = runtime();
  const ex = rt.exports;
  const n = input.length;
  const inBytes = outputAfter(0, n);
  let region = Math.min(DECOMPRESS_MAX_REGION_BYTES, Math.max(DECOMPRESS_MIN_REGION_BYTES, 4 * n + WINDOW_BYTES));
  const inAt = rt.stage(inBytes + region);
  const outAt = inAt + inBytes;
  rt.u8.set(input, inAt);
  const s = rt.inflateScratch;
  ex.inflateInit(s, format);
  let r = ex.inflate(s, inAt, n, outAt, 0, region, 1);
  if (r === INFLATE_COMPLETE) return rt.u8.slice(outAt, outAt + usedOut(rt, s));
  let inPos = 0;
  let collected: ByteWriter | undefined;
  let outPos = 0;
  while (r === INFLATE_NEED_OUTPUT) {
    inPos += usedIn(rt, s);
    outPos = usedOut(rt, s);
    if (region < DECOMPRESS_MAX_REGION_BYTES) {
      // Grow in place: stage() keeps its base address, so the output stays put.
      region = Math.min(DECOMPRESS_MAX_REGION_BYTES, region * 4);
      rt.stage(inBytes + region);
    } else {
      collected ??= new ByteWriter(2 * region);
      collected.write(rt.u8.subarray(outAt + (collected.length === 0 ? 0 : WINDOW_BYTES), outAt + outPos));
      rt.u8.copyWithin(outAt, outAt + outPos - WINDOW_BYTES, outAt + outPos);
      outPos = WINDOW_BYTES;
    }
    r = ex.inflate(s, inAt + inPos, n - inPos, outAt, outPos, region, 1);
  }
  if (r < 0) throw inflateError(rt, s, formatName(format));
  const end = usedOut(rt, s);
  if (!collected) return rt.u8.slice(outAt, outAt + end);
  collected.write(rt.u8.subarray(outAt + WINDOW_BYTES, outAt + end));
  return collected.bytes();
}

/**
 * Decompresses a whole stream into `dst` (its length is the capacity) and
 * returns the decoded size. No allocation: the hot-path form of decompress.
 * Errors: ECORRUPT for a bad stream; ENOSPC for a valid stream that decodes to
 * more than dst.length bytes (the message gives its size); ENOTSUP and EINVAL
 * as decompress, and EINVAL for dst that is not bytes.
 */
export function decompressInto(src: ArrayBufferView | ArrayBuffer, dst: Uint8Array, opts?: InflateOptions): number {
  const input = bytesOf(src, 'deflate.decompressInto: src');
  const out = bytesOf(dst, 'deflate.decompressInto: dst');
  const format = inflateOptionsArg(opts, 'deflate.decompressInto');
  const rt = runtime();
  const n = input.length;
  const inAt = rt.stageInput(input, out.length);
  const outAt = outputAfter(inAt, n);
  const size = inflateRegion(rt, rt.inflateScratch, inAt, n, outAt, out.length, format, 'dst.length');
  out.set(rt.u8.subarray(outAt, outAt + size));
  return size;
}

/**
 * Pointer-level decompression of [srcPtr, srcPtr+srcLen) into
 * [dstPtr, dstPtr+dstCap) with a caller-provided inflate scratch
 * (`Runtime.inflateScratch`, or INFLATE_SCRATCH_BYTES reserved by the caller).
 * Returns the decoded size. Bytes of dst past the decoded size may be
 * overwritten. Errors: ECORRUPT on a bad stream; ENOSPC for a valid stream that
 * decodes to more than dstCap bytes; EINVAL for a region outside the shared
 * memory or bad options.
 */
export function decompressAt(srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, scratch: number, opts?: InflateOptions): number {
  const rt = runtime();
  regionsArg(rt, 'deflate.decompressAt', srcPtr, srcLen, dstPtr, dstCap, scratch, rt.exports.INFLATE_SCRATCH_BYTES.value as number);
  return inflateRegion(rt, scratch, srcPtr, srcLen, dstPtr, dstCap, inflateOptionsArg(opts, 'deflate.decompressAt'));
}

/**
 * decompressAt on a given runtime (an engine's or a volume's memory), format as
 * a number (0 raw, 1 zlib, 2 gzip), unchecked; `room` names dstCap in the
 * ENOSPC message.
 */
export function inflateRegion(rt: Runtime, scratch: number, srcPtr: number, srcLen: number, dstPtr: number, dstCap: number, format: number, room = 'dstCap'): number {
  rt.exports.inflateInit(scratch, format);
  const r = rt.exports.inflate(scratch, srcPtr, srcLen, dstPtr, 0, dstCap, 1);
  if (r < 0) throw inflateError(rt, scratch, formatName(format));
  if (r === INFLATE_NEED_OUTPUT) throw outgrownError(rt, scratch, srcPtr, srcLen, dstPtr, format, `${room} ${dstCap}`, 'ENOSPC');
  return usedOut(rt, scratch);
}

/**
 * After inflate() filled the output room: decodes the rest of the stream into
 * a sliding window in the staging area, to tell a valid stream that does not
 * fit (`tooSmall`, naming its size) from a bad one (its own error). Cold path.
 */
function outgrownError(rt: Runtime, s: number, srcPtr: number, srcLen: number, dstPtr: number, format: number, room: string, tooSmall: FlashpackErrorCode): FlashpackError {
  const ex = rt.exports;
  let total = usedOut(rt, s);
  const keep = Math.min(WINDOW_BYTES, total);
  const rest = rt.u8.slice(srcPtr + usedIn(rt, s), srcPtr + srcLen);
  const window = rt.u8.slice(dstPtr + total - keep, dstPtr + total);
  const region = WINDOW_BYTES + MEASURE_REGION_BYTES;
  const inAt = rt.stage(outputAfter(0, rest.length) + region);
  const outAt = outputAfter(inAt, rest.length);
  rt.u8.set(rest, inAt);
  rt.u8.set(window, outAt);
  let outPos = keep;
  let used = 0;
  for (;;) {
    const r = ex.inflate(s, inAt + used, rest.length - used, outAt, outPos, region, 1);
    if (r < 0) return inflateError(rt, s, formatName(format));
    const end = usedOut(rt, s);
    total += end - outPos;
    used += usedIn(rt, s);
    if (r !== INFLATE_NEED_OUTPUT) break;
    rt.u8.copyWithin(outAt, outAt + end - WINDOW_BYTES, outAt + end);
    outPos = WINDOW_BYTES;
  }
  return new FlashpackError(tooSmall, `${formatName(format)}: the stream decodes to ${total} bytes, more than ${room}`);
}

/** Input bytes the last inflate() call consumed. */
export function usedIn(rt: Runtime, s: number): number {
  return readU32le(rt.u8, s + (rt.exports.INFLATE_IN_USED.value as number));
}

/** The dst position the last inflate() call reached. */
export function usedOut(rt: Runtime, s: number): number {
  return readU32le(rt.u8, s + (rt.exports.INFLATE_OUT_USED.value as number));
}

export function formatName(format: number): string {
  return format === 1 ? 'zlib' : format === 2 ? 'gzip' : 'deflate';
}

/** Decodes the error record a failed inflate() left at the start of scratch `s`. */
export function inflateError(rt: Runtime, s: number, where: string, basePos = 0): FlashpackError {
  const u8 = rt.u8;
  const [kind, low, value, value2, high] = [0, 4, 8, 12, 16].map((at) => readU32le(u8, s + at));
  const at = `at byte ${basePos + high * 2 ** 32 + low}`;
  const hex16 = (v: number) => '0x' + v.toString(16).padStart(4, '0');
  const why = (v: number) => (v === 1 ? 'over-subscribed' : v === 2 ? 'incomplete' : 'empty');
  switch (kind) {
    case 20: return corrupt(`${where}: input ends inside ${MODE_NAMES[value] ?? 'the stream'} ${at}`);
    case 21: return corrupt(`zlib header: CMF/FLG ${hex16(value)} ${at} fails its check (not a multiple of 31)`);
    case 22: return corrupt(`zlib header: compression method ${value} ${at} (only 8, deflate, exists)`);
    case 23: return corrupt(`zlib header: window size CINFO ${value} ${at} exceeds 7 (32 KiB)`);
    case 24: return new FlashpackError('ENOTSUP', `zlib header: FLG ${hex16(value)} ${at} asks for a preset dictionary; flashpack has no dictionary support`);
    case 25: return corrupt(`gzip header: magic ${hex16(value)} ${at} (expected 0x1f8b)`);
    case 26: return corrupt(`gzip header: compression method ${value} ${at} (only 8, deflate, exists)`);
    case 27: return corrupt(`gzip header: reserved flag bits set in FLG ${hex16(value)} ${at}`);
    case 28: return corrupt(`gzip header: header CRC ${hex16(value)} ${at} does not match the header's ${hex16(value2)}`);
    case 29: return corrupt(`${where}: invalid block type 3 ${at}`);
    case 30: return corrupt(`${where}: stored block LEN ${value} and NLEN ${value2} ${at} are not complements`);
    case 31: return corrupt(`${where}: dynamic block header ${at} declares ${value} literal/length codes (at most 286) and ${value2} distance codes (at most 30)`);
    case 32: return corrupt(`${where}: code length code ${at} is ${why(value)}`);
    case 33: return corrupt(`${where}: code length repeat (16) with no previous length ${at}`);
    case 34: return corrupt(`${where}: code length repeat ${at} runs to ${value} lengths, past the ${value2} declared`);
    case 35: return corrupt(`${where}: dynamic block ${at} has no end-of-block code`);
    case 36: return corrupt(`${where}: literal/length code ${at} is ${why(value)}`);
    case 37: return corrupt(`${where}: distance code ${at} is ${why(value)}`);
    case 38: return corrupt(`${where}: invalid literal/length code ${at}`);
    case 39: return corrupt(`${where}: invalid distance code ${at}`);
    case 40: return corrupt(`${where}: distance ${value} exceeds the ${value2} bytes of output ${at}`);
    case 41: return corrupt(`${where} trailer: ${where === 'zlib' ? 'Adler-32' : 'CRC-32'} ${hex32(value)} ${at} does not match the data's ${hex32(value2)}`);
    case 42: return corrupt(`gzip trailer: ISIZE ${value} ${at} does not match the data's length mod 2^32, ${value2}`);
    case 45: return corrupt(`zlib: distance ${value} ${at} exceeds the ${value2}-byte window the zlib header declares`);
    case 43: {
      const byte = `0x${value.toString(16).padStart(2, '0')}`;
      return corrupt(where === 'gzip'
        ? `gzip: byte ${byte} ${at} follows the last member (only another member or zero padding may)`
        : `${where}: trailing byte ${byte} ${at} after the end of the stream`);
    }
    default: return new FlashpackError('EINTERNAL', `${where}: inflate error kind ${kind} (${value}, ${value2}) ${at}`);
  }
}
