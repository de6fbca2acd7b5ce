// Bulk copies inside the shared memory for the host. A TypedArray copy within a
// SharedArrayBuffer at unaligned offsets takes V8's byte-at-a-time path (about
// four times slower than memory.copy); the volume packs fragments at any offset.

/** Copies `len` bytes from `src` to `dst` (the ranges may overlap). */
export function copyBytes(dst: usize, src: usize, len: usize): void {
  memory.copy(dst, src, len);
}

/** Zeroes `len` bytes at `dst`. */
export function zeroBytes(dst: usize, len: usize): void {
  memory.fill(dst, 0, len);
}
