// CRC-32 (IEEE 802.3, reflected 0xEDB88320) and CRC-32C (Castagnoli, 0x82F63B78).
//
// WebAssembly has no carry-less multiply. Whole 4 KiB chunks go through a SIMD
// kernel (generated, see scripts/gen-tables.mjs): 16 streams advanced one byte
// per step with i8x16.swizzle nibble lookups, folded by a shift table. The rest
// uses slicing-by-16 on two lanes folded the same way (exact because the raw CRC
// register is linear over GF(2)). Tables are constant static data.
import {
  CRC32_SHIFT_LANE, CRC32C_SHIFT_LANE, CRC_LANE_BYTES, TABLES,
  step16Crc32, step16Crc32c, step1Crc32, step1Crc32c, crcChunksCrc32, crcChunksCrc32c, CRC_STREAM_BYTES,
} from "./generated/tables";

const CHUNK_BYTES: usize = 16 * CRC_STREAM_BYTES;

// The polynomial is a compile-time choice: u8 selects CRC-32, u16 CRC-32C.
@inline function step16<P>(crc: u32, p: usize): u32 {
  return sizeof<P>() == 1 ? step16Crc32(crc, p) : step16Crc32c(crc, p);
}
@inline function step1<P>(crc: u32, byte: u32): u32 {
  return sizeof<P>() == 1 ? step1Crc32(crc, byte) : step1Crc32c(crc, byte);
}

@inline function shiftLane(shift: usize, r: u32): u32 {
  return load<u32>(shift + ((r << 2) & 0x3fc)) ^ load<u32>(shift + 1024 + ((r >> 6) & 0x3fc)) ^
    load<u32>(shift + 2048 + ((r >> 14) & 0x3fc)) ^ load<u32>(shift + 3072 + ((r >> 22) & 0x3fc));
}

// Raw register update (no pre/post inversion).
@inline function crcRaw<P>(shift: usize, crc: u32, p: usize, len: usize): u32 {
  const chunks = len / CHUNK_BYTES;
  if (chunks > 0) {
    crc = sizeof<P>() == 1 ? crcChunksCrc32(crc, p, chunks) : crcChunksCrc32c(crc, p, chunks);
    p += chunks * CHUNK_BYTES;
    len -= chunks * CHUNK_BYTES;
  }
  const lanes3 = CRC_LANE_BYTES * 2;
  while (len >= lanes3) {
    let a = crc;
    let b: u32 = 0;
    const end = p + CRC_LANE_BYTES;
    let q = p;
    while (q < end) {
      a = step16<P>(a, q);
      b = step16<P>(b, q + CRC_LANE_BYTES);
      q += 16;
    }
    crc = shiftLane(shift, a) ^ b;
    p += lanes3;
    len -= lanes3;
  }
  while (len >= 16) {
    crc = step16<P>(crc, p);
    p += 16;
    len -= 16;
  }
  while (len > 0) {
    crc = step1<P>(crc, load<u8>(p));
    p++;
    len--;
  }
  return crc;
}

/** CRC-32 of [ptr, ptr+len), continuing from `crc` (0 to start). */
export function crc32(ptr: usize, len: usize, crc: u32): u32 {
  return ~crcRaw<u8>(CRC32_SHIFT_LANE, ~crc, ptr, len);
}

/** CRC-32C of [ptr, ptr+len), continuing from `crc` (0 to start). */
export function crc32c(ptr: usize, len: usize, crc: u32): u32 {
  return ~crcRaw<u16>(CRC32C_SHIFT_LANE, ~crc, ptr, len);
}

/** Where the constant tables landed; must equal TABLES_BASE (checked by the runtime). */
export function tablesBase(): usize {
  return TABLES;
}
