/**
 * Online growth (dm-vdo's growLogical and growPhysical, PureFlash's
 * `qbd --resize`), while reads and writes go on.
 *
 * The logical size: with the block map a tree allocated on demand, a larger
 * logical size is only a larger bound, so growing writes the superblock and
 * nothing else.
 *
 * The physical size: the device grows first (an image file is extended; a
 * block device must have grown already), then the data region grows at its
 * end. The reference count snapshots need room in proportion to the physical
 * size, so their region moves to the image's new tail (encodings.ts): the
 * data region becomes [dataStart, new refsStart), taking in the old tail
 * region if an earlier growth put one there; the region between the index
 * and dataStart that a volume is formatted with stays unused.
 *
 * Invariants:
 * - both superblock copies name the new geometry, written through one after
 *   the other (generation + 1, then + 2) under the metadata lock, before any
 *   caller may address a block past the old bound: a crash before they land
 *   opens at the old size, with nothing written past it to lose;
 * - the new refs region holds no valid snapshot header when the superblock
 *   naming it lands (its header blocks are zeroed and flushed first), so a
 *   crash before the checkpoint that follows opens by rebuilding the counts
 *   from the map tree, as after a damaged snapshot; the checkpoint writes
 *   the first snapshot there;
 * - the counts are known (a clean open loads them behind it; the volume
 *   waits) and the open's comparison of the old slots is done before the
 *   depot grows, so no old-region read marks the new region's count blocks;
 * - neither size ever shrinks (mapped data past the new end would be dropped).
 */
import { checkOptions, invalid } from '../errors.js';
import type { Engine } from '../engine/engine.js';
import type { Controller } from '../nvme/controller.js';
import type { BlockDevice } from './block-device.js';
import type { BlockMap } from './block-map.js';
import type { Mutex } from './mapping.js';
import type { SlabDepot } from './slab-depot.js';
import type { CountSnapshots } from './count-snapshots.js';
import { writeSuperblocks } from './attach.js';
import { checkResizeSize } from './volume-options.js';
import { BLOCK_BYTES, SNAPSHOT_SLOTS, SUPERBLOCK_COPIES, blockPbns, dataBlocksOf, refsBlocksFor, slotBlocksFor, type Superblock } from './encodings.js';

export interface ResizeOptions {
  /** The new logical size in bytes: a multiple of the volume block size, at least the current one, at most 1 PiB. */
  logicalSize?: number;
  /** The new physical size in bytes: a multiple of 4096, at least the current one, under 2^32 blocks; the device grows to it (an image file is extended). */
  physicalSize?: number;
}

/** The sizes, in blocks, a resize asks for (the current ones where it names none). */
export interface ResizeTarget {
  logicalBlocks: number;
  physicalBlocks: number;
}

/** What growing needs of an open volume. */
export interface Resizable {
  sb: Superblock;
  map: BlockMap;
  meta: Mutex;
  engine: Engine;
  dev: BlockDevice;
}

/** What growing the physical size needs besides. */
export interface PhysicalResizable extends Resizable {
  ctrlr: Controller;
  depot: SlabDepot;
  snapshots: CountSnapshots;
  /** A checkpoint, run under the metadata lock (mapping.ts). */
  checkpoint(): Promise<void>;
}

/** Checks `options` against the volume's sizes: the sizes to grow to. */
export function resizeTarget(sb: Superblock, options: ResizeOptions | undefined): ResizeTarget {
  const o = checkOptions<ResizeOptions>('volume.resize: options', options);
  for (const k of Object.keys(o)) if (k !== 'logicalSize' && k !== 'physicalSize') throw invalid(`volume.resize: unknown option ${JSON.stringify(k)} (options: logicalSize, physicalSize)`);
  const target: ResizeTarget = { logicalBlocks: sb.logicalBlocks, physicalBlocks: sb.physicalBlocks };
  if (o.logicalSize !== undefined) {
    const size = checkResizeSize('volume.resize: logicalSize', o.logicalSize, sb.blockBytes);
    if (size < sb.logicalBlocks * sb.blockBytes) {
      throw invalid(`volume.resize: logicalSize ${size} is smaller than the volume's ${sb.logicalBlocks * sb.blockBytes} bytes; shrinking is refused (it would drop the data past the new end)`);
    }
    target.logicalBlocks = size / sb.blockBytes;
  }
  if (o.physicalSize !== undefined) target.physicalBlocks = physicalTarget(sb, o.physicalSize);
  return target;
}

/** A physical size to grow to, in blocks: EINVAL unless it grows the data region (or is the current size). */
function physicalTarget(sb: Superblock, physicalSize: unknown): number {
  const what = 'volume.resize: physicalSize';
  const size = checkResizeSize(what, physicalSize, BLOCK_BYTES);
  const blocks = size / BLOCK_BYTES;
  const now = sb.physicalBlocks * BLOCK_BYTES;
  if (blocks === sb.physicalBlocks) return blocks;
  if (blocks < sb.physicalBlocks) throw invalid(`${what} ${size} is smaller than the volume's ${now} bytes; shrinking is refused (data may live past the new end)`);
  if (blocks >= 2 ** 32) throw invalid(`${what} ${size} is ${blocks} blocks, more than the 2^32 − 1 a block map entry can address`);
  // The refs region moves to the new tail: the data region must hold more data blocks than it does now.
  const bb = sb.blockBytes;
  const want = sb.dataStart + (dataBlocksOf(sb) + 1) * blockPbns(sb); // the end of one more data block
  let least = sb.physicalBlocks + 1;
  while (least - refsBlocksFor(least, bb) < want) least += want - (least - refsBlocksFor(least, bb));
  if (blocks < least) {
    throw invalid(`${what} ${size} grows the volume by less than its reference count region moved to the new end takes (${refsBlocksFor(blocks, bb)} blocks); grow it to at least ${least * BLOCK_BYTES} bytes`);
  }
  return blocks;
}

/**
 * Both superblock copies with `change`, written through one after the other
 * (generation + 1, then + 2) and flushed (the caller holds the metadata
 * lock). The new generation: the caller applies it and `change` to the
 * volume's superblock in the same synchronous step as its other in-memory
 * changes, so no call sees half of them.
 */
async function writeBothCopies(v: Resizable, change: Partial<Superblock>): Promise<number> {
  const g = v.sb.generation;
  const next: Superblock = { ...v.sb, ...change, generation: g + 1 };
  await writeSuperblocks(v.engine, v.dev, next, [(g + 1) % SUPERBLOCK_COPIES]);
  next.generation = g + 2;
  await writeSuperblocks(v.engine, v.dev, next, [(g + 2) % SUPERBLOCK_COPIES]);
  await v.dev.flush();
  return g + 2;
}

/** Grows the logical size to `blocks` (see the module comment). */
export async function growLogical(v: Resizable, blocks: number): Promise<void> {
  await v.meta.run(async () => {
    if (blocks <= v.sb.logicalBlocks) return;
    const change = { logicalBlocks: blocks };
    const generation = await writeBothCopies(v, change);
    Object.assign(v.sb, change, { generation });
    v.map.grow(blocks);
  });
}

/** Grows the physical size to `blocks` (see the module comment). */
export async function growPhysical(v: PhysicalResizable, blocks: number): Promise<void> {
  // The device first (outside the lock: extending a file writes nothing the volume reads).
  const lbas = blocks * v.dev.lbasPerBlock;
  if (blocks > v.dev.blocks) v.ctrlr.growNamespace(lbas);
  await v.meta.run(async () => {
    if (blocks <= v.sb.physicalBlocks) return;
    await v.snapshots.comparing;
    const refsBlocks = refsBlocksFor(blocks, v.sb.blockBytes);
    const refsStart = blocks - refsBlocks;
    for (let slot = 0; slot < SNAPSHOT_SLOTS; slot++) await v.dev.writeZeroes(refsStart + slot * slotBlocksFor(blocks, v.sb.blockBytes), 1);
    await v.dev.flush();
    const change = { physicalBlocks: blocks, refsStart, refsBlocks };
    const generation = await writeBothCopies(v, change);
    // In memory, in one synchronous step: allocation may use the new blocks from here on.
    Object.assign(v.sb, change, { generation });
    v.depot.grow(refsStart);
    v.map.growData(refsStart);
    v.snapshots.moved();
    await v.checkpoint();
  });
}

/** Grows to `target` (resizeTarget()): the physical size first, so a larger logical size finds the room. */
export async function growTo(v: PhysicalResizable, target: ResizeTarget): Promise<void> {
  if (target.physicalBlocks > v.sb.physicalBlocks) await growPhysical(v, target.physicalBlocks);
  await growLogical(v, target.logicalBlocks);
}
