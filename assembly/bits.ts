// Bit manipulation shared by the deflate compressor and inflater.

/** The low `len` (1..32) bits of `code`, reversed: deflate sends Huffman codes MSB first into an LSB-first stream. */
export function reverseBits(code: u32, len: u32): u32 {
  let x = code;
  x = ((x >> 1) & 0x55555555) | ((x & 0x55555555) << 1);
  x = ((x >> 2) & 0x33333333) | ((x & 0x33333333) << 2);
  x = ((x >> 4) & 0x0f0f0f0f) | ((x & 0x0f0f0f0f) << 4);
  return bswap<u32>(x) >> (32 - len);
}
