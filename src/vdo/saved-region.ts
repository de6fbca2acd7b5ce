/**
 * A region a clean close saves and the next open may load (the dedupe index,
 * the reference counts): a header sector, then the payload. The header names
 * the superblock generation of the close that wrote it and the CRC-32C of the
 * payload's first `checked` bytes, and is written last, so a torn save or one
 * whose superblock never landed is never loaded.
 */
import type { SlabPool } from '../shm/slab.js';
import type { BlockDevice } from './block-device.js';
import { STAGING_BYTES } from './data-writer.js';
import { BLOCK_BYTES, SECTOR_VALID, crc32cOfLarge, openSector, sealSector, type SectorHeader } from './encodings.js';

/** Where a saved region lives and whose it is. */
export interface SavedRegion {
  /** The header block; the payload follows. */
  start: number;
  magic: number;
  nonce: number;
}

/** Writes `payload` (whole blocks), then the header naming `generation` and the CRC of its first `checked` bytes. */
export async function writeSaved(r: SavedRegion, dev: BlockDevice, pool: SlabPool, payload: Uint8Array, checked: number, generation: number): Promise<void> {
  const buf = await pool.allocAsync(STAGING_BYTES);
  try {
    for (let at = 0; at < payload.length; at += STAGING_BYTES) {
      const chunk = payload.subarray(at, Math.min(payload.length, at + STAGING_BYTES));
      pool.bytes(buf, true).set(chunk);
      await dev.write(r.start + 1 + at / BLOCK_BYTES, buf, false, chunk.length / BLOCK_BYTES);
    }
    const head = pool.bytes(buf, true).subarray(0, BLOCK_BYTES);
    head.fill(0);
    sealSector(head, 0, r.magic, r.nonce, { index: 0, count: 0, key: generation, aux: crc32cOfLarge(payload.subarray(0, checked)) });
    await dev.write(r.start, buf, false, 1);
  } finally {
    pool.free(buf);
  }
}

/** The CRC a header block records, when `head` is region r's header for superblock `generation`; else null. */
export function savedCrc(head: Uint8Array, r: SavedRegion, generation: number): number | null {
  const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
  return openSector(head, 0, r.magic, r.nonce, h) === SECTOR_VALID && h.key === generation ? h.aux : null;
}

/** The payload (`bytes` long, whole blocks) the close that wrote superblock `generation` saved, if whole; else null. */
export async function readSaved(r: SavedRegion, dev: BlockDevice, pool: SlabPool, bytes: number, checked: number, generation: number): Promise<Uint8Array | null> {
  const payload = new Uint8Array(bytes);
  const buf = await pool.allocAsync(STAGING_BYTES);
  let crc: number | null;
  try {
    await dev.read(r.start, buf, 1);
    crc = savedCrc(pool.bytes(buf, true), r, generation);
    if (crc === null) return null;
    for (let at = 0; at < bytes; at += STAGING_BYTES) {
      const n = Math.min(bytes - at, STAGING_BYTES);
      await dev.read(r.start + 1 + at / BLOCK_BYTES, buf, n / BLOCK_BYTES);
      payload.set(pool.bytes(buf, true).subarray(0, n), at);
    }
  } finally {
    pool.free(buf);
  }
  return crc32cOfLarge(payload.subarray(0, checked)) === crc ? payload : null;
}
