// Bulk copies and comparisons inside the shared memory for the host. A
// TypedArray copy within a SharedArrayBuffer at unaligned offsets takes V8's
// byte-at-a-time path (about four times slower than memory.copy); the volume
// packs fragments at any offset. A 4 KiB zero check or comparison in a JS loop
// is 1,024 element loads; here it is 256 SIMD ones.

/** Copies `len` bytes from `src` to `dst` (the ranges may overlap). */
export function copyBytes(dst: usize, src: usize, len: usize): void {
  memory.copy(dst, src, len);
}

/** Zeroes `len` bytes at `dst`. */
export function zeroBytes(dst: usize, len: usize): void {
  memory.fill(dst, 0, len);
}

/** Whether the `len` bytes at `p` are all zero (16 at a time, then the tail). */
export function allZero(p: usize, len: usize): bool {
  const end = p + len;
  for (; p + 64 <= end; p += 64) {
    const v = v128.or(v128.or(v128.load(p), v128.load(p, 16)), v128.or(v128.load(p, 32), v128.load(p, 48)));
    if (v128.any_true(v)) return false;
  }
  for (; p + 16 <= end; p += 16) if (v128.any_true(v128.load(p))) return false;
  for (; p < end; p++) if (load<u8>(p) != 0) return false;
  return true;
}

/** Whether the `len` bytes at `a` equal those at `b` (16 at a time, then the tail). */
export function bytesEqual(a: usize, b: usize, len: usize): bool {
  let i: usize = 0;
  for (; i + 64 <= len; i += 64) {
    const x = v128.or(v128.xor(v128.load(a + i), v128.load(b + i)), v128.xor(v128.load(a + i, 16), v128.load(b + i, 16)));
    const y = v128.or(v128.xor(v128.load(a + i, 32), v128.load(b + i, 32)), v128.xor(v128.load(a + i, 48), v128.load(b + i, 48)));
    if (v128.any_true(v128.or(x, y))) return false;
  }
  for (; i + 16 <= len; i += 16) if (v128.any_true(v128.xor(v128.load(a + i), v128.load(b + i)))) return false;
  for (; i < len; i++) if (load<u8>(a + i) != load<u8>(b + i)) return false;
  return true;
}
