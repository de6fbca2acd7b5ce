/**
 * One shard replica a store hosts: an ordinary flashpack volume file at
 * `<dir>/<volume>/<shard index>.img` (so `flashpack check` and a read-only
 * Volume.open work on it while the store is stopped), the store's current
 * view of the shard's record, and the bookkeeping replication needs on it:
 *
 * - `lock`: the primary's arrival-ordered range lock (range-lock.ts);
 * - `unflushed`: regions written since the last flush that completed on every
 *   replica (DRBD's activity log) — if a replica fails, these join the dirty
 *   map, because the failed store may have lost them with its unflushed writes;
 * - `dirtyKnown`: regions this store knows are in the shard's dirty map in etcd;
 * - `catching`: while this replica recovers, per region being copied, the
 *   sectors that replicated writes changed meanwhile (they are newer than the copy).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlashpackError } from '../errors.js';
import { Volume } from '../vdo/volume.js';
import type { ShardInfo } from './metadata.js';
import { RangeLock } from './range-lock.js';

/** The unit of dirty tracking and of a recovery copy. */
export const REGION_BYTES = 1 << 20;
export const SECTOR_BYTES = 512;
const SECTORS_PER_REGION = REGION_BYTES / SECTOR_BYTES;

export function replicaPath(dir: string, volume: string, index: number): string {
  return path.join(dir, volume, `${index}.img`);
}

/** Regions [first, last] that [offset, offset + length) touches. */
export function regionsOf(offset: number, length: number): number[] {
  const out: number[] = [];
  const last = Math.floor((offset + Math.max(length, 1) - 1) / REGION_BYTES);
  for (let r = Math.floor(offset / REGION_BYTES); r <= last; r++) out.push(r);
  return out;
}

export class Replica {
  info: ShardInfo;
  modRevision: number;
  readonly lock = new RangeLock();
  /** Region → the last change (by seq) that touched it, since a flush every replica completed. */
  readonly unflushed = new Map<number, number>();
  /** Region → changes touching it that have not completed on every replica yet. */
  readonly regionInflight = new Map<number, number>();
  seq = 0;
  readonly dirtyKnown = new Set<number>();
  catching: Map<number, Uint8Array> | null = null;
  recovering = false;
  private constructor(readonly volume: Volume, info: ShardInfo, modRevision: number, readonly file: string) {
    this.info = info;
    this.modRevision = modRevision;
  }

  /** Opens the replica's volume file, creating it (the shard's size and codec) when absent. */
  static async open(dir: string, info: ShardInfo, modRevision: number, workers: number): Promise<Replica> {
    const file = replicaPath(dir, info.volume, info.index);
    let volume: Volume;
    if (fs.existsSync(file)) {
      volume = await Volume.open(file, { workers, ioWorkers: 1 });
      if (volume.logicalSize !== info.size || volume.sb.codec !== info.codec) {
        await volume.close();
        throw new FlashpackError('EEXIST', `replica ${file} holds a ${volume.logicalSize}-byte ${volume.sb.codec} volume; shard ${info.index} of '${info.volume}' is ${info.size} bytes, ${info.codec} (a leftover of another volume?)`);
      }
    } else {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      volume = await Volume.create(file, { logicalSize: info.size, codec: info.codec, workers, ioWorkers: 1 });
    }
    return new Replica(volume, info, modRevision, file);
  }

  /** Notes, while recovering, that a replicated change covered [offset, offset + length). */
  caught(offset: number, length: number): void {
    if (this.catching === null) return;
    for (const r of regionsOf(offset, length)) {
      const bits = this.catching.get(r);
      if (bits === undefined) continue;
      const from = Math.max(offset, r * REGION_BYTES);
      const to = Math.min(offset + length, (r + 1) * REGION_BYTES);
      for (let s = Math.floor((from - r * REGION_BYTES) / SECTOR_BYTES); s < Math.ceil((to - r * REGION_BYTES) / SECTOR_BYTES); s++) bits[s >> 3] |= 1 << (s & 7);
    }
  }

  /** Starts catching changes to region `r`. */
  static newCatch(): Uint8Array {
    return new Uint8Array(SECTORS_PER_REGION / 8);
  }

  async close(): Promise<void> {
    await this.volume.close();
  }
}

/** Runs of sectors [from, to) in a region's catch bitmap that are not set (covering `bytes` bytes of the region). */
export function uncaughtRuns(bits: Uint8Array, bytes: number): [number, number][] {
  const runs: [number, number][] = [];
  const sectors = Math.ceil(bytes / SECTOR_BYTES);
  let start = -1;
  for (let s = 0; s <= sectors; s++) {
    const set = s === sectors || (bits[s >> 3] & (1 << (s & 7))) !== 0;
    if (!set && start < 0) start = s;
    else if (set && start >= 0) {
      runs.push([start * SECTOR_BYTES, Math.min(s * SECTOR_BYTES, bytes)]);
      start = -1;
    }
  }
  return runs;
}
