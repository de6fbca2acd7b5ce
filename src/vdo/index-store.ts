/**
 * The dedupe index saved across a clean close: its image in the index region,
 * behind a header sector naming the superblock generation of the close that
 * wrote it and the image's CRC-32C.
 *
 * Invariant: an index is loaded only when both checks pass — the header's
 * generation is the current superblock's and the image's CRC matches — so a
 * torn save, or one whose superblock never landed, leaves the volume with an
 * empty index (its answers are advice; an empty one costs only dedupe).
 */
import type { SlabPool } from '../shm/slab.js';
import type { BlockDevice } from './block-device.js';
import { STAGING_BYTES } from './data-writer.js';
import { DedupeIndex } from './dedupe.js';
import { BLOCK_BYTES, INDEX_MAGIC, crc32cOfLarge, SECTOR_VALID, openSector, sealSector, type SectorHeader, type Superblock } from './encodings.js';

/** Writes the image, then the header naming `generation` (the superblock the close writes next). */
export async function saveIndex(index: DedupeIndex, sb: Superblock, dev: BlockDevice, pool: SlabPool, generation: number): Promise<void> {
  const bytes = DedupeIndex.imageBytes(sb.indexMemory);
  const image = new Uint8Array(Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES);
  index.save(image);
  const buf = await pool.allocAsync(STAGING_BYTES);
  try {
    for (let at = 0; at < image.length; at += STAGING_BYTES) {
      const chunk = image.subarray(at, Math.min(image.length, at + STAGING_BYTES));
      pool.bytes(buf, true).set(chunk);
      await dev.write(sb.indexStart + 1 + at / BLOCK_BYTES, buf, false, chunk.length / BLOCK_BYTES);
    }
    const head = pool.bytes(buf, true).subarray(0, BLOCK_BYTES);
    head.set(new Uint8Array(BLOCK_BYTES));
    sealSector(head, 0, INDEX_MAGIC, sb.nonce, { index: 0, count: 0, key: generation, aux: crc32cOfLarge(image.subarray(0, bytes)) });
    await dev.write(sb.indexStart, buf, false, 1);
  } finally {
    pool.free(buf);
  }
}

/** Loads the index the close that wrote the current superblock saved, if it is whole; else leaves it empty. */
export async function loadIndex(index: DedupeIndex, sb: Superblock, dev: BlockDevice, pool: SlabPool): Promise<void> {
  const bytes = DedupeIndex.imageBytes(sb.indexMemory);
  const buf = await pool.allocAsync(STAGING_BYTES);
  const image = new Uint8Array(Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES);
  try {
    await dev.read(sb.indexStart, buf, 1);
    const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
    if (openSector(pool.bytes(buf, true), 0, INDEX_MAGIC, sb.nonce, h) !== SECTOR_VALID || h.key !== sb.generation) return;
    for (let at = 0; at < image.length; at += STAGING_BYTES) {
      const n = Math.min(image.length - at, STAGING_BYTES);
      await dev.read(sb.indexStart + 1 + at / BLOCK_BYTES, buf, n / BLOCK_BYTES);
      image.set(pool.bytes(buf, true).subarray(0, n), at);
    }
    if (crc32cOfLarge(image.subarray(0, bytes)) !== h.aux) return;
  } finally {
    pool.free(buf);
  }
  index.load(image);
}
