// XXH3-128 (xxHash 0.8's XXH3_128bits_withSeed), the dedupe fingerprint of a
// block. Every length class follows the reference xxhash.h exactly: 0, 1–3,
// 4–8, 9–16, 17–128, 129–240 use the default secret with the seed mixed in;
// longer inputs run 64-byte stripes over eight 64-bit accumulators, scrambled
// every 1 KiB, against the default secret (seed 0) or one derived from the seed
// (XXH3_initCustomSecret) in the caller's ctx. The result is written as 16 bytes
// in XXH128's canonical form: high 64 bits, then low 64 bits, each big-endian.
import { CTX_CHECK_OUT, CTX_XXH3_ACC, CTX_XXH3_SECRET, XXH3_SECRET_BYTES } from "./layout";

const P32_1: u64 = 0x9E3779B1;
const P32_2: u64 = 0x85EBCA77;
const P32_3: u64 = 0xC2B2AE3D;
const P64_1: u64 = 0x9E3779B185EBCA87;
const P64_2: u64 = 0xC2B2AE3D27D4EB4F;
const P64_3: u64 = 0x165667B19E3779F9;
const P64_4: u64 = 0x85EBCA77C2B2AE63;
const P64_5: u64 = 0x27D4EB2F165667C5;
const PRIME_MX1: u64 = 0x165667919E3779F9;
const PRIME_MX2: u64 = 0x9FB21C651E98DF25;

const STRIPE_BYTES: usize = 64;
/** Secret bytes each stripe advances by (XXH_SECRET_CONSUME_RATE). */
const SECRET_CONSUME_BYTES: usize = 8;
const STRIPES_PER_BLOCK: usize = (XXH3_SECRET_BYTES - STRIPE_BYTES) / SECRET_CONSUME_BYTES;
const BLOCK_BYTES: usize = STRIPES_PER_BLOCK * STRIPE_BYTES;
const MIDSIZE_MAX_BYTES: usize = 240;
const SECRET_SCRAMBLE_AT: usize = XXH3_SECRET_BYTES - STRIPE_BYTES;
const SECRET_LASTACC_AT: usize = XXH3_SECRET_BYTES - STRIPE_BYTES - 7;
const SECRET_MERGEACCS_AT: usize = 11;
const SECRET_MIDSIZE_START_AT: usize = 3;
const SECRET_MIDSIZE_LAST_AT: usize = 136 - 17 - 16;

/** XXH3_kSecret: the default 192-byte secret (from FARSH). */
const K_SECRET: usize = memory.data<u8>([
  0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
  0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
  0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
  0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
  0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
  0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
  0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
  0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
  0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
  0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
  0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
  0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
], 16);

/** High 64 bits of the 128-bit product (WASM has no 64×64→128 multiply). */
@inline function mulHi(a: u64, b: u64): u64 {
  const aLo = a & 0xffffffff;
  const aHi = a >> 32;
  const bLo = b & 0xffffffff;
  const bHi = b >> 32;
  const loLo = aLo * bLo;
  const hiLo = aHi * bLo;
  const cross = (loLo >> 32) + (hiLo & 0xffffffff) + aLo * bHi;
  return (hiLo >> 32) + (cross >> 32) + aHi * bHi;
}

/** XXH3_mul128_fold64. */
@inline function mulFold(a: u64, b: u64): u64 {
  return (a * b) ^ mulHi(a, b);
}

@inline function avalanche(h: u64): u64 {
  h ^= h >> 37;
  h *= PRIME_MX1;
  return h ^ (h >> 32);
}

@inline function xxh64Avalanche(h: u64): u64 {
  h ^= h >> 33;
  h *= P64_2;
  h ^= h >> 29;
  h *= P64_3;
  return h ^ (h >> 32);
}

@inline function put(out: usize, lo: u64, hi: u64): void {
  store<u64>(out, bswap<u64>(hi));
  store<u64>(out, bswap<u64>(lo), 8);
}

@inline function mix16B(p: usize, s: usize, seed: u64): u64 {
  return mulFold(load<u64>(p) ^ (load<u64>(s) + seed), load<u64>(p, 8) ^ (load<u64>(s, 8) - seed));
}

/**
 * One half of XXH128_mix32B: the low half is half(lo, in1, in2, s), the high
 * half is half(hi, in2, in1, s + 16); the halves do not depend on each other.
 */
@inline function mix32Half(acc: u64, a: usize, b: usize, s: usize, seed: u64): u64 {
  return (acc + mix16B(a, s, seed)) ^ (load<u64>(b) + load<u64>(b, 8));
}

/** The last step of XXH3_len_17to128_128b and XXH3_len_129to240_128b. */
@inline function putMid(out: usize, len: usize, seed: u64, lo: u64, hi: u64): void {
  const h = lo * P64_1 + hi * P64_4 + (<u64>len - seed) * P64_2;
  put(out, avalanche(lo + hi), 0 - avalanche(h));
}

function len0to16(p: usize, len: usize, seed: u64, out: usize): void {
  const s = K_SECRET;
  if (len > 8) {
    const bitflipLo = (load<u64>(s, 32) ^ load<u64>(s, 40)) - seed;
    const bitflipHi = (load<u64>(s, 48) ^ load<u64>(s, 56)) + seed;
    let inputHi = load<u64>(p + len - 8);
    const x = load<u64>(p) ^ inputHi ^ bitflipLo;
    let mLo = x * P64_1 + ((<u64>len - 1) << 54);
    let mHi = mulHi(x, P64_1);
    inputHi ^= bitflipHi;
    // The 64-bit form of "high 32 bits of inputHi + low 32 bits × PRIME32_2".
    mHi += inputHi + (inputHi & 0xffffffff) * (P32_2 - 1);
    mLo ^= bswap<u64>(mHi);
    const hLo = mLo * P64_2;
    const hHi = mulHi(mLo, P64_2) + mHi * P64_2;
    put(out, avalanche(hLo), avalanche(hHi));
  } else if (len >= 4) {
    seed ^= <u64>bswap<u32>(<u32>seed) << 32;
    const input = <u64>load<u32>(p) | (<u64>load<u32>(p + len - 4) << 32);
    const keyed = input ^ ((load<u64>(s, 16) ^ load<u64>(s, 24)) + seed);
    // len << 2 keeps the multiplier odd.
    const m = P64_1 + (<u64>len << 2);
    let mLo = keyed * m;
    let mHi = mulHi(keyed, m);
    mHi += mLo << 1;
    mLo ^= mHi >> 3;
    mLo ^= mLo >> 35;
    mLo *= PRIME_MX2;
    mLo ^= mLo >> 28;
    put(out, mLo, avalanche(mHi));
  } else if (len > 0) {
    const c1 = <u32>load<u8>(p);
    const c2 = <u32>load<u8>(p + (len >> 1));
    const c3 = <u32>load<u8>(p + len - 1);
    const combinedLo = (c1 << 16) | (c2 << 24) | c3 | (<u32>len << 8);
    const combinedHi = rotl<u32>(bswap<u32>(combinedLo), 13);
    const bitflipLo = <u64>(load<u32>(s) ^ load<u32>(s, 4)) + seed;
    const bitflipHi = <u64>(load<u32>(s, 8) ^ load<u32>(s, 12)) - seed;
    put(out, xxh64Avalanche(<u64>combinedLo ^ bitflipLo), xxh64Avalanche(<u64>combinedHi ^ bitflipHi));
  } else {
    put(out,
      xxh64Avalanche(seed ^ load<u64>(s, 64) ^ load<u64>(s, 72)),
      xxh64Avalanche(seed ^ load<u64>(s, 80) ^ load<u64>(s, 88)));
  }
}

function len17to128(p: usize, len: usize, seed: u64, out: usize): void {
  const s = K_SECRET;
  let lo = <u64>len * P64_1;
  let hi: u64 = 0;
  // Pairs of 16-byte pieces from both ends, outermost pair last.
  let i = (len - 1) / 32;
  while (true) {
    const a = p + 16 * i;
    const b = p + len - 16 * (i + 1);
    lo = mix32Half(lo, a, b, s + 32 * i, seed);
    hi = mix32Half(hi, b, a, s + 32 * i + 16, seed);
    if (i == 0) break;
    i--;
  }
  putMid(out, len, seed, lo, hi);
}

function len129to240(p: usize, len: usize, seed: u64, out: usize): void {
  const s = K_SECRET;
  let lo = <u64>len * P64_1;
  let hi: u64 = 0;
  for (let i: usize = 0; i < 128; i += 32) {
    lo = mix32Half(lo, p + i, p + i + 16, s + i, seed);
    hi = mix32Half(hi, p + i + 16, p + i, s + i + 16, seed);
  }
  lo = avalanche(lo);
  hi = avalanche(hi);
  // `i <= len`, as the reference: a length that is a multiple of 32 mixes its
  // last 32 bytes twice.
  for (let i: usize = 160; i <= len; i += 32) {
    const k = s + SECRET_MIDSIZE_START_AT + i - 160;
    lo = mix32Half(lo, p + i - 32, p + i - 16, k, seed);
    hi = mix32Half(hi, p + i - 16, p + i - 32, k + 16, seed);
  }
  const k = s + SECRET_MIDSIZE_LAST_AT;
  lo = mix32Half(lo, p + len - 16, p + len - 32, k, 0 - seed);
  hi = mix32Half(hi, p + len - 32, p + len - 16, k + 16, 0 - seed);
  putMid(out, len, seed, lo, hi);
}

// --- inputs > 240 bytes: stripes over eight accumulators --------------------
//
// Per stripe, per 64-bit lane i: acc[i] += lo32(data[i] ^ key[i]) × hi32(data[i] ^ key[i]);
// acc[i ^ 1] += data[i]. The accumulators are four i64x2. The products take the
// low and high halves of two lanes' data ^ key, unzipped into one vector each,
// to i64x2.extmul (xxHash's NEON/WASM path does the same). The lane-swapped data
// sum is linear, so it is summed unswapped and swapped once per call, before
// the (non-linear) scramble. Measured (Node 20, V8 x64, best of 15) on 4 KiB /
// 1 MiB inputs: 14.5 / 15.9 GB/s; the same with the swap per stripe 13.2 / 14.4;
// products as i64x2.mul of masked halves 8.3 / 8.8 (V8 lowers i64x2.mul to three
// pmuludq); scalar u64 lanes 9.0 / 9.5; two stripes per iteration no faster.

/** XXH3_accumulate: `stripes` 64-byte stripes, the secret advancing 8 bytes per stripe. */
function accumulate(acc: usize, p: usize, secret: usize, stripes: usize): void {
  let a0 = v128.load(acc), a1 = v128.load(acc, 16), a2 = v128.load(acc, 32), a3 = v128.load(acc, 48);
  let s0 = i64x2.splat(0), s1 = i64x2.splat(0), s2 = i64x2.splat(0), s3 = i64x2.splat(0);
  const end = p + stripes * STRIPE_BYTES;
  while (p < end) {
    const d0 = v128.load(p), d1 = v128.load(p, 16), d2 = v128.load(p, 32), d3 = v128.load(p, 48);
    const k0 = v128.xor(d0, v128.load(secret));
    const k1 = v128.xor(d1, v128.load(secret, 16));
    const k2 = v128.xor(d2, v128.load(secret, 32));
    const k3 = v128.xor(d3, v128.load(secret, 48));
    const lo01 = i32x4.shuffle(k0, k1, 0, 2, 4, 6);
    const hi01 = i32x4.shuffle(k0, k1, 1, 3, 5, 7);
    const lo23 = i32x4.shuffle(k2, k3, 0, 2, 4, 6);
    const hi23 = i32x4.shuffle(k2, k3, 1, 3, 5, 7);
    a0 = i64x2.add(a0, i64x2.extmul_low_i32x4_u(lo01, hi01));
    a1 = i64x2.add(a1, i64x2.extmul_high_i32x4_u(lo01, hi01));
    a2 = i64x2.add(a2, i64x2.extmul_low_i32x4_u(lo23, hi23));
    a3 = i64x2.add(a3, i64x2.extmul_high_i32x4_u(lo23, hi23));
    s0 = i64x2.add(s0, d0);
    s1 = i64x2.add(s1, d1);
    s2 = i64x2.add(s2, d2);
    s3 = i64x2.add(s3, d3);
    p += STRIPE_BYTES;
    secret += SECRET_CONSUME_BYTES;
  }
  v128.store(acc, i64x2.add(a0, i64x2.shuffle(s0, s0, 1, 0)));
  v128.store(acc, i64x2.add(a1, i64x2.shuffle(s1, s1, 1, 0)), 16);
  v128.store(acc, i64x2.add(a2, i64x2.shuffle(s2, s2, 1, 0)), 32);
  v128.store(acc, i64x2.add(a3, i64x2.shuffle(s3, s3, 1, 0)), 48);
}

/** XXH3_scrambleAcc: acc = (acc ^ acc >> 47 ^ key) × PRIME32_1 per lane. */
function scramble(acc: usize, secret: usize): void {
  const prime = i64x2.splat(P32_1);
  for (let i: usize = 0; i < 64; i += 16) {
    let a = v128.load(acc + i);
    a = v128.xor(v128.xor(a, i64x2.shr_u(a, 47)), v128.load(secret + i));
    v128.store(acc + i, i64x2.mul(a, prime));
  }
}

/** XXH3_mergeAccs. */
function mergeAccs(acc: usize, s: usize, start: u64): u64 {
  let h = start;
  for (let i: usize = 0; i < 64; i += 16) {
    h += mulFold(load<u64>(acc + i) ^ load<u64>(s + i), load<u64>(acc + i, 8) ^ load<u64>(s + i, 8));
  }
  return avalanche(h);
}

/** XXH3_hashLong_128b_internal: `secret` is XXH3_SECRET_BYTES long. */
function hashLong(p: usize, len: usize, secret: usize, out: usize, ctx: usize): void {
  const acc = ctx + CTX_XXH3_ACC;
  store<u64>(acc, P32_3);
  store<u64>(acc, P64_1, 8);
  store<u64>(acc, P64_2, 16);
  store<u64>(acc, P64_3, 24);
  store<u64>(acc, P64_4, 32);
  store<u64>(acc, P32_2, 40);
  store<u64>(acc, P64_5, 48);
  store<u64>(acc, P32_1, 56);
  // Whole blocks of the input before its last byte, each followed by a
  // scramble; then the rest of the stripes before the last byte; then one
  // stripe ending at the last byte, against the secret 7 bytes off alignment.
  const blocks = (len - 1) / BLOCK_BYTES;
  let q = p;
  for (let n: usize = 0; n < blocks; n++) {
    accumulate(acc, q, secret, STRIPES_PER_BLOCK);
    scramble(acc, secret + SECRET_SCRAMBLE_AT);
    q += BLOCK_BYTES;
  }
  accumulate(acc, q, secret, (p + len - 1 - q) / STRIPE_BYTES);
  accumulate(acc, p + len - STRIPE_BYTES, secret + SECRET_LASTACC_AT, 1);
  put(out,
    mergeAccs(acc, secret + SECRET_MERGEACCS_AT, <u64>len * P64_1),
    mergeAccs(acc, secret + XXH3_SECRET_BYTES - 64 - SECRET_MERGEACCS_AT, ~(<u64>len * P64_2)));
}

/** XXH3_initCustomSecret: each 16 bytes of the default secret, + seed then − seed. */
function deriveSecret(dst: usize, seed: u64): void {
  const delta = i64x2(seed, 0 - seed);
  for (let i: usize = 0; i < XXH3_SECRET_BYTES; i += 16) {
    v128.store(dst + i, i64x2.add(v128.load(K_SECRET + i), delta));
  }
}

/**
 * XXH3-128 of [ptr, ptr+len) with the 64-bit seed seedHi:seedLo, written to
 * [out, out+16) in canonical order (big-endian high half, then low half: the
 * bytes of xxhsum's hex). Uses the ctx's XXH3 scratch for inputs > 240 bytes.
 */
export function xxh128(ptr: usize, len: usize, seedLo: u32, seedHi: u32, out: usize, ctx: usize): void {
  const seed = (<u64>seedHi << 32) | <u64>seedLo;
  if (len <= 16) {
    len0to16(ptr, len, seed, out);
  } else if (len <= 128) {
    len17to128(ptr, len, seed, out);
  } else if (len <= MIDSIZE_MAX_BYTES) {
    len129to240(ptr, len, seed, out);
  } else if (seed == 0) {
    hashLong(ptr, len, K_SECRET, out, ctx);
  } else {
    const secret = ctx + CTX_XXH3_SECRET;
    deriveSecret(secret, seed);
    hashLong(ptr, len, secret, out, ctx);
  }
}

/**
 * A volume's data check of [ptr, ptr+len): bits 64–95 of its seed-0 XXH3-128,
 * as the little-endian u32 at bytes 8–11 of the canonical digest (what
 * src/vdo's dataCheckOf reads from a fingerprint). The block map records it
 * for every stored block and every read verifies it; one call, no copy.
 */
export function dataCheck(ptr: usize, len: usize, ctx: usize): u32 {
  const out = ctx + CTX_CHECK_OUT;
  xxh128(ptr, len, 0, 0, out, ctx);
  return load<u32>(out + 8);
}
