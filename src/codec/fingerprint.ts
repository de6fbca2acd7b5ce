/**
 * Dedupe fingerprints: XXH3-128 (xxHash's XXH3_128bits_withSeed) of a block.
 * dm-vdo keys its dedupe index by a 128-bit hash of every 4 KiB block (it uses
 * MurmurHash3); flashpack uses XXH3-128, seed 0 and the default secret unless
 * told otherwise. The kernel is assembly/xxh3.ts.
 *
 * A fingerprint is 16 bytes in XXH128's canonical order: the high 64 bits, then
 * the low 64 bits, each big-endian — the bytes of the hex that `xxhsum -H2` and
 * hash-wasm's `xxhash128` print. The same order is what `fingerprintAt` writes
 * into the shared memory, so a fingerprint never changes form between the two.
 */
import { badArgument } from '../errors.js';
import { runtime, outputAfter } from '../wasm/runtime.js';
import { bytesOf, regionArg, sizeArg, u32Arg } from './input.js';

/** Bytes of one fingerprint. */
export const FINGERPRINT_BYTES = 16;

const TWO_POW_32 = 2 ** 32;
const SEED_MAX = (1n << 64n) - 1n;

// The seed as two u32 halves, set by splitSeed (no tuple per call).
let splitLo = 0;
let splitHi = 0;

function splitSeed(seed: unknown, what: string): void {
  if (seed === undefined || seed === 0) {
    splitLo = 0;
    splitHi = 0;
  } else if (typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0) {
    splitLo = seed % TWO_POW_32;
    splitHi = Math.floor(seed / TWO_POW_32);
  } else if (typeof seed === 'bigint' && seed >= 0n && seed <= SEED_MAX) {
    splitLo = Number(seed & 0xffffffffn);
    splitHi = Number(seed >> 32n);
  } else {
    throw badArgument(`${what}: seed`, 'an integer from 0 to 2^64-1 (a bigint beyond 2^53-1)', seed);
  }
}

/**
 * The XXH3-128 fingerprint of `data` (16 bytes, canonical order). `seed` is a
 * 64-bit seed, 0 by default; a fingerprint is only comparable with fingerprints
 * made with the same seed. Errors: EINVAL for data that is not bytes or a
 * seed out of range.
 */
export function fingerprint(data: ArrayBufferView | ArrayBuffer, seed?: bigint | number): Uint8Array {
  const src = bytesOf(data, 'fingerprint: data');
  splitSeed(seed, 'fingerprint');
  const rt = runtime();
  const n = src.length;
  const inAt = rt.stageInput(src, FINGERPRINT_BYTES);
  const outAt = outputAfter(inAt, n);
  rt.exports.xxh128(inAt, n, splitLo, splitHi, outAt, rt.ctx);
  return rt.u8.slice(outAt, outAt + FINGERPRINT_BYTES);
}

/**
 * Pointer-level fingerprint of bytes already in the shared memory: writes the
 * 16-byte fingerprint of [ptr, ptr+length) to [outPtr, outPtr+16), copying
 * nothing. The seed is given as its two 32-bit halves. `ctx` is a codec context
 * (runtime().ctx by default), scratch for inputs over 240 bytes; the output may
 * overlap the input (it is written last), not the ctx. Errors: EINVAL for a
 * length, seed half or region that is not a whole number inside the memory.
 */
export function fingerprintAt(ptr: number, length: number, outPtr: number, seedLo = 0, seedHi = 0, ctx?: number): void {
  const rt = runtime();
  const len = sizeArg(length, 'fingerprintAt: length');
  const at = regionArg(rt, ptr, len, 'fingerprintAt: ptr');
  const out = regionArg(rt, outPtr, FINGERPRINT_BYTES, 'fingerprintAt: outPtr');
  const c = ctx === undefined ? rt.ctx : regionArg(rt, ctx, rt.ctxBytes, 'fingerprintAt: ctx');
  rt.exports.xxh128(at, len, u32Arg(seedLo, 'fingerprintAt: seedLo'), u32Arg(seedHi, 'fingerprintAt: seedHi'), out, c);
}
