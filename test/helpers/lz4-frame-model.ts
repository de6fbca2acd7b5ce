/**
 * LZ4 frame decoder built from the spec and the block model, with hash-wasm's
 * xxHash32 for checksums: the oracle for fuzzing decompressFrame. It checks in
 * the same order as src/codec/lz4-frame.ts so error codes can be compared.
 */
import { modelDecodeBlock } from './lz4-model.js';

export type FrameModelResult = { ok: true; bytes: Uint8Array } | { ok: false; code: 'ECORRUPT' | 'ENOTSUP' | 'ENOMEM'; why: string };
type Hash32 = (data: Uint8Array) => number;

const u32 = (b: Uint8Array, at: number) => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
const BLOCK_MAX: Record<number, number> = { 4: 65536, 5: 262144, 6: 1 << 20, 7: 4 << 20 };

export function modelDecodeFrames(src: Uint8Array, xxh32: Hash32): FrameModelResult {
  const bad = (why: string, code: 'ECORRUPT' | 'ENOTSUP' | 'ENOMEM' = 'ECORRUPT'): FrameModelResult => ({ ok: false, code, why });
  if (src.length === 0) return bad('empty');
  const out: number[] = [];
  let pos = 0;
  while (pos < src.length) {
    if (src.length - pos < 4) return bad('truncated magic');
    const magic = u32(src, pos);
    if (magic === 0x184d2204) {
      pos += 4;
      if (src.length - pos < 3) return bad('truncated descriptor');
      const flg = src[pos];
      const bd = src[pos + 1];
      if (flg >> 6 !== 1) return bad('version');
      if (flg & 2) return bad('reserved FLG');
      if (bd & 0x8f) return bad('reserved BD');
      const blockMax = BLOCK_MAX[(bd >> 4) & 7];
      if (!blockMax) return bad('block max code');
      const descLen = 2 + (flg & 8 ? 8 : 0) + (flg & 1 ? 4 : 0);
      if (src.length - pos < descLen + 1) return bad('truncated descriptor');
      if (((xxh32(src.subarray(pos, pos + descLen)) >>> 8) & 0xff) !== src[pos + descLen]) return bad('header checksum');
      let contentSize = -1;
      if (flg & 8) {
        const hi = u32(src, pos + 6);
        if (hi >= 0x200000) return bad('content size >= 2^53', 'ENOMEM');
        contentSize = hi * 2 ** 32 + u32(src, pos + 2);
      }
      if (flg & 1) return bad('dictionary', 'ENOTSUP');
      pos += descLen + 1;
      const frameStart = out.length;
      let history = new Uint8Array(0);
      for (;;) {
        if (src.length - pos < 4) return bad('truncated block size');
        const word = u32(src, pos);
        if (word === 0) {
          pos += 4;
          break;
        }
        const size = word & 0x7fffffff;
        if (size > blockMax) return bad('block too large');
        const bc = flg & 0x10 ? 4 : 0;
        if (src.length - pos - 4 < size + bc) return bad('truncated block');
        const data = src.subarray(pos + 4, pos + 4 + size);
        if (bc && xxh32(data) !== u32(src, pos + 4 + size)) return bad('block checksum');
        let decoded: Uint8Array;
        if (word & 0x80000000) decoded = data.slice();
        else {
          const r = modelDecodeBlock(data, blockMax, flg & 0x20 ? new Uint8Array(0) : history);
          if (!r.ok) return bad(`block: ${r.why}`);
          decoded = r.bytes;
        }
        for (const b of decoded) out.push(b);
        if (!(flg & 0x20)) {
          const joined = new Uint8Array(history.length + decoded.length);
          joined.set(history);
          joined.set(decoded, history.length);
          history = joined.slice(Math.max(0, joined.length - 65536));
        }
        pos += 4 + size + bc;
      }
      if (contentSize >= 0 && out.length - frameStart !== contentSize) return bad('content size');
      if (flg & 4) {
        if (src.length - pos < 4) return bad('truncated content checksum');
        if (xxh32(Uint8Array.from(out.slice(frameStart))) !== u32(src, pos)) return bad('content checksum');
        pos += 4;
      }
    } else if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
      if (src.length - pos < 8) return bad('truncated skippable');
      const size = u32(src, pos + 4);
      if (src.length - pos - 8 < size) return bad('truncated skippable');
      pos += 8 + size;
    } else if (magic === 0x184c2102) {
      pos += 4;
      while (pos < src.length) {
        if (src.length - pos < 4) return bad('truncated legacy size');
        const size = u32(src, pos);
        if (size === 0x184d2204 || size === 0x184c2102 || (size & 0xfffffff0) >>> 0 === 0x184d2a50) break;
        if (size > (8 << 20) + Math.floor((8 << 20) / 255) + 16) return bad('legacy block too large');
        if (src.length - pos - 4 < size) return bad('truncated legacy block');
        const r = modelDecodeBlock(src.subarray(pos + 4, pos + 4 + size), 8 << 20);
        if (!r.ok) return bad(`legacy block: ${r.why}`);
        for (const b of r.bytes) out.push(b);
        pos += 4 + size;
      }
    } else {
      return bad('magic');
    }
  }
  return { ok: true, bytes: Uint8Array.from(out) };
}
