/**
 * CRC-32 (IEEE), CRC-32C (Castagnoli) and Adler-32 over bytes on the caller's
 * thread, plus their combine functions. The kernels run in WASM
 * (assembly/crc32.ts, assembly/adler32.ts); `*At` variants take a pointer into
 * the shared memory and copy nothing.
 *
 * Errors: EINVAL for data that is not an ArrayBufferView or ArrayBuffer, a seed
 * or checksum that is not an integer from 0 to 0xffffffff, a length that is not
 * a whole number, or a region outside the shared memory.
 */
import { runtime } from '../wasm/runtime.js';
import { bytesOf, regionArg, seedArg, sizeArg, u32Arg } from './input.js';

type Kernel = 'crc32' | 'crc32c' | 'adler32' | 'xxh32';

function run(kernel: Kernel, data: ArrayBufferView | ArrayBuffer, seed: number): number {
  const rt = runtime();
  const src = bytesOf(data, `${kernel}: data`);
  const at = rt.stageInput(src, 0);
  return rt.exports[kernel](at, src.length, seed) >>> 0;
}

/** CRC-32 (IEEE 802.3, as zlib and gzip); `seed` continues a previous value. */
export function crc32(data: ArrayBufferView | ArrayBuffer, seed?: number): number {
  return run('crc32', data, seedArg(seed, 'crc32', 0));
}

/** CRC-32C (Castagnoli, as iSCSI, ext4 and NVMe); `seed` continues a previous value. */
export function crc32c(data: ArrayBufferView | ArrayBuffer, seed?: number): number {
  return run('crc32c', data, seedArg(seed, 'crc32c', 0));
}

/** Adler-32 (RFC 1950, the zlib trailer); `seed` continues a previous value (default 1). */
export function adler32(data: ArrayBufferView | ArrayBuffer, seed?: number): number {
  return run('adler32', data, seedArg(seed, 'adler32', 1));
}

function runAt(kernel: Kernel, ptr: number, length: number, seed: number): number {
  const rt = runtime();
  const len = sizeArg(length, `${kernel}At: length`);
  return rt.exports[kernel](regionArg(rt, ptr, len, `${kernel}At: ptr`), len, u32Arg(seed, `${kernel}At: seed`)) >>> 0;
}

/** Checksums of [ptr, ptr+length) in the process's shared memory (runtime()). */
export function crc32At(ptr: number, length: number, seed = 0): number {
  return runAt('crc32', ptr, length, seed);
}
export function crc32cAt(ptr: number, length: number, seed = 0): number {
  return runAt('crc32c', ptr, length, seed);
}
export function adler32At(ptr: number, length: number, seed = 1): number {
  return runAt('adler32', ptr, length, seed);
}

// Combination (zlib 1.2.12's method): the CRC of A‖B is crc(A)·x^(8·|B|) + crc(B)
// modulo the polynomial, with x^(2^k) mod P precomputed.
const CRC32_POLY = 0xedb88320;
const CRC32C_POLY = 0x82f63b78;

function multModP(a: number, b: number, poly: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ poly : b >>> 1;
  }
  return p >>> 0;
}

// x^(2^k) mod P for k < 64. zlib keeps 32 entries and wraps k, which is exact
// only because squaring cycles with period 32 modulo the IEEE polynomial; it
// does not modulo Castagnoli's, so both get the full range a 2^53 length needs.
function powerTable(poly: number): Uint32Array {
  const t = new Uint32Array(64);
  let p = 1 << 30; // x^1
  t[0] = p;
  for (let n = 1; n < 64; n++) t[n] = p = multModP(p, p, poly);
  return t;
}

const CRC32_X2N = powerTable(CRC32_POLY);
const CRC32C_X2N = powerTable(CRC32C_POLY);

/** x^(n·2^k) mod P for n up to 2^53. */
function x2nModP(n: number, k: number, table: Uint32Array, poly: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(table[k], p, poly);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

function crcCombine(a: number, b: number, lengthB: number, table: Uint32Array, poly: number, what: string): number {
  u32Arg(a, `${what}: crcA`);
  u32Arg(b, `${what}: crcB`);
  sizeArg(lengthB, `${what}: lengthB`);
  return (multModP(x2nModP(lengthB, 3, table, poly), a, poly) ^ b) >>> 0;
}

/** CRC-32 of A‖B from crc32(A), crc32(B) and B's length. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return crcCombine(crcA, crcB, lengthB, CRC32_X2N, CRC32_POLY, 'crc32Combine');
}

/** CRC-32C of A‖B from crc32c(A), crc32c(B) and B's length. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  return crcCombine(crcA, crcB, lengthB, CRC32C_X2N, CRC32C_POLY, 'crc32cCombine');
}

const ADLER_BASE = 65521;

/** Adler-32 of A‖B from adler32(A), adler32(B) and B's length (zlib's adler32_combine). */
export function adler32Combine(adlerA: number, adlerB: number, lengthB: number): number {
  u32Arg(adlerA, 'adler32Combine: adlerA');
  u32Arg(adlerB, 'adler32Combine: adlerB');
  sizeArg(lengthB, 'adler32Combine: lengthB');
  const rem = lengthB % ADLER_BASE;
  let sum1 = adlerA & 0xffff;
  let sum2 = (rem * sum1) % ADLER_BASE;
  sum1 += (adlerB & 0xffff) + ADLER_BASE - 1;
  sum2 += ((adlerA >>> 16) & 0xffff) + ((adlerB >>> 16) & 0xffff) + ADLER_BASE - rem;
  if (sum1 >= ADLER_BASE) sum1 -= ADLER_BASE;
  if (sum1 >= ADLER_BASE) sum1 -= ADLER_BASE;
  if (sum2 >= ADLER_BASE * 2) sum2 -= ADLER_BASE * 2;
  if (sum2 >= ADLER_BASE) sum2 -= ADLER_BASE;
  return (sum1 | (sum2 << 16)) >>> 0;
}

/** xxHash32 (the LZ4 frame checksum). */
export function xxh32(data: ArrayBufferView | ArrayBuffer, seed?: number): number {
  return run('xxh32', data, seedArg(seed, 'xxh32', 0));
}
