// Adler-32 (RFC 1950) with WASM SIMD: 32 bytes per step. s1 lanes sum bytes; s2
// gains the byte weights (32..1) through i32x4.dot_i16x8_s, plus 32 × the s1 value
// at the start of each step (kept as a running sum of s1 lanes, `ps`).
// Reduction modulo 65521 every ADLER_NMAX_BYTES keeps every lane below 2^32.
const BASE: u32 = 65521;
// zlib's NMAX (5552) rounded down to a multiple of the 32-byte step.
const ADLER_NMAX_BYTES: usize = 5536;

export function adler32(ptr: usize, len: usize, adler: u32): u32 {
  let s1 = adler & 0xffff;
  let s2 = adler >> 16;
  const w_hi_a = i16x8(32, 31, 30, 29, 28, 27, 26, 25);
  const w_hi_b = i16x8(24, 23, 22, 21, 20, 19, 18, 17);
  const w_lo_a = i16x8(16, 15, 14, 13, 12, 11, 10, 9);
  const w_lo_b = i16x8(8, 7, 6, 5, 4, 3, 2, 1);
  while (len >= 32) {
    let n = len < ADLER_NMAX_BYTES ? len & ~31 : ADLER_NMAX_BYTES;
    len -= n;
    let vs1 = i32x4.splat(0);
    let vs2 = i32x4.splat(0);
    let vps = i32x4.splat(0);
    const end = ptr + n;
    while (ptr < end) {
      const x = v128.load(ptr);
      const y = v128.load(ptr, 16);
      vps = i32x4.add(vps, vs1);
      const x16 = i16x8.extadd_pairwise_i8x16_u(x);
      const y16 = i16x8.extadd_pairwise_i8x16_u(y);
      vs1 = i32x4.add(vs1, i32x4.extadd_pairwise_i16x8_u(i16x8.add(x16, y16)));
      vs2 = i32x4.add(vs2, i32x4.add(
        i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(x), w_hi_a), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(x), w_hi_b)),
        i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(y), w_lo_a), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(y), w_lo_b))));
      ptr += 32;
    }
    const sum1 = <u64>i32x4.extract_lane(vs1, 0) + <u64>i32x4.extract_lane(vs1, 1) + <u64>i32x4.extract_lane(vs1, 2) + <u64>i32x4.extract_lane(vs1, 3);
    const sumPs = <u64>i32x4.extract_lane(vps, 0) + <u64>i32x4.extract_lane(vps, 1) + <u64>i32x4.extract_lane(vps, 2) + <u64>i32x4.extract_lane(vps, 3);
    const sum2 = <u64>i32x4.extract_lane(vs2, 0) + <u64>i32x4.extract_lane(vs2, 1) + <u64>i32x4.extract_lane(vs2, 2) + <u64>i32x4.extract_lane(vs2, 3);
    const total2 = <u64>s2 + <u64>s1 * <u64>n + (sumPs << 5) + sum2;
    s1 = <u32>((<u64>s1 + sum1) % BASE);
    s2 = <u32>(total2 % BASE);
  }
  while (len > 0) {
    s1 += load<u8>(ptr);
    s2 += s1;
    ptr++;
    len--;
  }
  return (s2 % BASE) << 16 | (s1 % BASE);
}
