// xxHash32 (the LZ4 frame format's header, block and content checksum), one-shot
// and streaming. The streaming state lives in the caller's ctx (layout.ts).
import { CTX_XXH32_STATE } from "./layout";

const P1: u32 = 2654435761;
const P2: u32 = 2246822519;
const P3: u32 = 3266489917;
const P4: u32 = 668265263;
const P5: u32 = 374761393;

// State: v1..v4 at 0..16, total length (u64) at 16, buffered byte count at 24,
// seed at 28, buffered bytes (< 16) at 32.
const S_V: usize = 0;
const S_TOTAL: usize = 16;
const S_BUFLEN: usize = 24;
const S_SEED: usize = 28;
const S_BUF: usize = 32;

@inline function round(acc: u32, input: u32): u32 {
  return rotl<u32>(acc + input * P2, 13) * P1;
}

@inline function tail(h: u32, p: usize, end: usize): u32 {
  while (p + 4 <= end) {
    h = rotl<u32>(h + load<u32>(p) * P3, 17) * P4;
    p += 4;
  }
  while (p < end) {
    h = rotl<u32>(h + <u32>load<u8>(p) * P5, 11) * P1;
    p++;
  }
  h ^= h >> 15;
  h *= P2;
  h ^= h >> 13;
  h *= P3;
  h ^= h >> 16;
  return h;
}

export function xxh32(ptr: usize, len: usize, seed: u32): u32 {
  const end = ptr + len;
  let h: u32;
  if (len >= 16) {
    let v1 = seed + P1 + P2;
    let v2 = seed + P2;
    let v3 = seed;
    let v4 = seed - P1;
    const limit = end - 16;
    do {
      v1 = round(v1, load<u32>(ptr));
      v2 = round(v2, load<u32>(ptr, 4));
      v3 = round(v3, load<u32>(ptr, 8));
      v4 = round(v4, load<u32>(ptr, 12));
      ptr += 16;
    } while (ptr <= limit);
    h = rotl<u32>(v1, 1) + rotl<u32>(v2, 7) + rotl<u32>(v3, 12) + rotl<u32>(v4, 18);
  } else {
    h = seed + P5;
  }
  h += <u32>len;
  return tail(h, ptr, end);
}

export function xxh32Init(ctx: usize, seed: u32): void {
  const s = ctx + CTX_XXH32_STATE;
  store<u32>(s + S_V, seed + P1 + P2);
  store<u32>(s + S_V + 4, seed + P2);
  store<u32>(s + S_V + 8, seed);
  store<u32>(s + S_V + 12, seed - P1);
  store<u64>(s + S_TOTAL, 0);
  store<u32>(s + S_BUFLEN, 0);
  store<u32>(s + S_SEED, seed);
}

export function xxh32Update(ctx: usize, ptr: usize, len: usize): void {
  const s = ctx + CTX_XXH32_STATE;
  store<u64>(s + S_TOTAL, load<u64>(s + S_TOTAL) + <u64>len);
  let bufLen = <usize>load<u32>(s + S_BUFLEN);
  if (bufLen + len < 16) {
    memory.copy(s + S_BUF + bufLen, ptr, len);
    store<u32>(s + S_BUFLEN, <u32>(bufLen + len));
    return;
  }
  let v1 = load<u32>(s + S_V);
  let v2 = load<u32>(s + S_V + 4);
  let v3 = load<u32>(s + S_V + 8);
  let v4 = load<u32>(s + S_V + 12);
  const end = ptr + len;
  if (bufLen > 0) {
    const fill: usize = 16 - bufLen;
    memory.copy(s + S_BUF + bufLen, ptr, fill);
    ptr += fill;
    const b = s + S_BUF;
    v1 = round(v1, load<u32>(b));
    v2 = round(v2, load<u32>(b, 4));
    v3 = round(v3, load<u32>(b, 8));
    v4 = round(v4, load<u32>(b, 12));
  }
  while (ptr + 16 <= end) {
    v1 = round(v1, load<u32>(ptr));
    v2 = round(v2, load<u32>(ptr, 4));
    v3 = round(v3, load<u32>(ptr, 8));
    v4 = round(v4, load<u32>(ptr, 12));
    ptr += 16;
  }
  bufLen = end - ptr;
  memory.copy(s + S_BUF, ptr, bufLen);
  store<u32>(s + S_BUFLEN, <u32>bufLen);
  store<u32>(s + S_V, v1);
  store<u32>(s + S_V + 4, v2);
  store<u32>(s + S_V + 8, v3);
  store<u32>(s + S_V + 12, v4);
}

export function xxh32Digest(ctx: usize): u32 {
  const s = ctx + CTX_XXH32_STATE;
  const total = load<u64>(s + S_TOTAL);
  let h: u32;
  if (total >= 16) {
    h = rotl<u32>(load<u32>(s + S_V), 1) + rotl<u32>(load<u32>(s + S_V + 4), 7) +
      rotl<u32>(load<u32>(s + S_V + 8), 12) + rotl<u32>(load<u32>(s + S_V + 12), 18);
  } else {
    h = load<u32>(s + S_SEED) + P5;
  }
  h += <u32>total;
  const b = s + S_BUF;
  return tail(h, b, b + <usize>load<u32>(s + S_BUFLEN));
}
