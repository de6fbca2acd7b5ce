/**
 * Online growth of the logical size (dm-vdo's growLogical, PureFlash's
 * `qbd --resize`): with the block map a tree allocated on demand, a larger
 * logical size is only a larger bound, so growing writes the superblock and
 * nothing else, while reads and writes go on.
 *
 * Invariants:
 * - both superblock copies name the new size, written through one after the
 *   other (generation + 1, then + 2) under the metadata lock, before any
 *   caller may address a block past the old size: a crash before they land
 *   opens at the old size, with nothing written past it to lose;
 * - the size never shrinks (mapped data past the new end would be dropped).
 */
import { FlashpackError, checkOptions, invalid } from '../errors.js';
import type { Engine } from '../engine/engine.js';
import type { BlockDevice } from './block-device.js';
import type { BlockMap } from './block-map.js';
import type { Mutex } from './mapping.js';
import { writeSuperblocks } from './attach.js';
import { checkResizeSize } from './volume-options.js';
import { BLOCK_BYTES, SUPERBLOCK_COPIES, type Superblock } from './encodings.js';

export interface ResizeOptions {
  /** The new logical size in bytes: a multiple of 4096, at least the current one, at most 1 PiB. */
  logicalSize?: number;
  /** Not supported yet: ENOTSUP. */
  physicalSize?: number;
}

/** What growing needs of an open volume. */
export interface Resizable {
  sb: Superblock;
  map: BlockMap;
  meta: Mutex;
  engine: Engine;
  dev: BlockDevice;
}

/** Checks `options` against the volume's sizes; the new logical size in blocks (the current one if none is asked). */
export function resizeTarget(sb: Superblock, options: ResizeOptions | undefined): number {
  const o = checkOptions<ResizeOptions>('volume.resize: options', options);
  for (const k of Object.keys(o)) if (k !== 'logicalSize' && k !== 'physicalSize') throw invalid(`volume.resize: unknown option ${JSON.stringify(k)} (options: logicalSize, physicalSize)`);
  if (o.physicalSize !== undefined && o.physicalSize !== sb.physicalBlocks * BLOCK_BYTES) {
    throw new FlashpackError(
      'ENOTSUP',
      `volume.resize: physicalSize ${String(o.physicalSize)}: growing the physical size is not supported (the reference count regions and the device's capacity are fixed when the volume is created); copy the volume to a larger one with \`flashpack copy\``,
    );
  }
  if (o.logicalSize === undefined) return sb.logicalBlocks;
  const size = checkResizeSize('volume.resize: logicalSize', o.logicalSize);
  if (size < sb.logicalBlocks * BLOCK_BYTES) {
    throw invalid(`volume.resize: logicalSize ${size} is smaller than the volume's ${sb.logicalBlocks * BLOCK_BYTES} bytes; shrinking is refused (it would drop the data past the new end)`);
  }
  return size / BLOCK_BYTES;
}

/** Grows the logical size to `blocks` (see the module comment). */
export async function growLogical(v: Resizable, blocks: number): Promise<void> {
  await v.meta.run(async () => {
    if (blocks <= v.sb.logicalBlocks) return;
    const g = v.sb.generation;
    const next: Superblock = { ...v.sb, logicalBlocks: blocks, generation: g + 1 };
    await writeSuperblocks(v.engine, v.dev, next, [(g + 1) % SUPERBLOCK_COPIES]);
    next.generation = g + 2;
    await writeSuperblocks(v.engine, v.dev, next, [(g + 2) % SUPERBLOCK_COPIES]);
    await v.dev.flush();
    v.map.grow(blocks);
    v.sb.logicalBlocks = blocks;
    v.sb.generation = g + 2;
  });
}
