/**
 * The dedupe index saved across a clean close: its image in the index region
 * (saved-region.ts: behind a header sector naming the superblock generation
 * of the close that wrote it and the image's CRC-32C).
 *
 * Invariant: an index is loaded only when both checks pass — the header's
 * generation is the current superblock's and the image's CRC matches — so a
 * torn save, or one whose superblock never landed, leaves the volume with an
 * empty index (its answers are advice; an empty one costs only dedupe).
 */
import type { SlabPool } from '../shm/slab.js';
import type { BlockDevice } from './block-device.js';
import { DedupeIndex } from './dedupe.js';
import { BLOCK_BYTES, INDEX_MAGIC, type Superblock } from './encodings.js';
import { readSaved, writeSaved, type SavedRegion } from './saved-region.js';

const regionOf = (sb: Superblock): SavedRegion => ({ start: sb.indexStart, magic: INDEX_MAGIC, nonce: sb.nonce });

/** Writes the image, then the header naming `generation` (the superblock the close writes next). */
export async function saveIndex(index: DedupeIndex, sb: Superblock, dev: BlockDevice, pool: SlabPool, generation: number): Promise<void> {
  const bytes = DedupeIndex.imageBytes(sb.indexMemory);
  const image = new Uint8Array(Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES);
  index.save(image);
  await writeSaved(regionOf(sb), dev, pool, image, bytes, generation);
}

/** Loads the index the close that wrote the current superblock saved, if it is whole; else leaves it empty. */
export async function loadIndex(index: DedupeIndex, sb: Superblock, dev: BlockDevice, pool: SlabPool): Promise<void> {
  const bytes = DedupeIndex.imageBytes(sb.indexMemory);
  const image = await readSaved(regionOf(sb), dev, pool, Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES, bytes, sb.generation);
  if (image !== null) index.load(image);
}
