/**
 * The dedupe index saved across a clean close: its image in the index region
 * (saved-region.ts: behind a header sector naming the superblock generation
 * of the close that wrote it and the image's CRC-32C).
 *
 * Invariant: an index is loaded only when both checks pass — the header's
 * generation is that of the last clean close's superblock and the image's CRC
 * matches — so a torn save, or one whose superblock never landed, leaves the
 * volume with an empty index (its answers are advice; an empty one costs only
 * dedupe).
 *
 * The load runs behind the open (dm-vdo's index, too, comes online after the
 * volume): updates made meanwhile are kept and applied again over the image.
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

/**
 * Starts loading the index the close that wrote superblock `generation`
 * saved; settles once it is in (with the updates made meanwhile applied
 * again) or found missing, torn or unreadable (the index keeps what it has).
 * Never rejects.
 */
export function loadIndex(index: DedupeIndex, sb: Superblock, dev: BlockDevice, pool: SlabPool, generation: number): Promise<void> {
  const bytes = DedupeIndex.imageBytes(sb.indexMemory);
  index.beginLoad();
  return readSaved(regionOf(sb), dev, pool, Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES, bytes, generation).then(
    (image) => index.finishLoad(image),
    () => index.finishLoad(null),
  );
}
