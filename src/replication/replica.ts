/**
 * One shard replica a store hosts: an ordinary flashpack volume file at
 * `<dir>/<volume>/<shard index>.img` (so `flashpack check` and a read-only
 * Volume.open work on it while the store is stopped), the store's current
 * view of the shard's record, and the bookkeeping replication needs on it:
 *
 * - `lock`: the primary's arrival-ordered range lock (range-lock.ts);
 * - `unflushed`: regions written since the last flush that completed on every
 *   replica (a secondary: since its last replicated flush), kept durable in the
 *   replica's activity log (activity-log.ts) — if a replica fails, these join
 *   the dirty map, because the failed store may have lost them with its
 *   unflushed writes, or (a primary that crashed) written them nowhere else;
 * - `leftover`: what the activity log held at open — the previous run's
 *   unflushed regions — until they are in the dirty map (failover.ts);
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
import { ActivityLog } from './activity-log.js';

/** The unit of dirty tracking and of a recovery copy. */
export const REGION_BYTES = 1 << 20;
export const SECTOR_BYTES = 512;
const SECTORS_PER_REGION = REGION_BYTES / SECTOR_BYTES;

export function replicaPath(dir: string, volume: string, index: number): string {
  return path.join(dir, volume, `${index}.img`);
}

/** The replica's activity log beside its volume file. */
export function activityLogPath(volumeFile: string): string {
  return volumeFile.replace(/\.img$/, '.al');
}

/** Regions [first, last] that [offset, offset + length) touches. */
export function regionsOf(offset: number, length: number): number[] {
  const out: number[] = [];
  const last = Math.floor((offset + Math.max(length, 1) - 1) / REGION_BYTES);
  for (let r = Math.floor(offset / REGION_BYTES); r <= last; r++) out.push(r);
  return out;
}

/** The last change to an unflushed region: sequenced by primary `by` as its change `seq`. */
export interface Unflushed {
  by: string;
  seq: number;
}

export class Replica {
  info: ShardInfo;
  modRevision: number;
  readonly lock = new RangeLock();
  /** Region → the last change that touched it (who sequenced it, and its number), since a flush covered it. */
  readonly unflushed = new Map<number, Unflushed>();
  /** Sequence numbers of changes in flight here (as a primary: not yet answered by every replica). */
  readonly changesInflight = new Set<number>();
  /** Region → changes touching it that have not completed on every replica yet. */
  readonly regionInflight = new Map<number, number>();
  seq = 0;
  readonly dirtyKnown = new Set<number>();
  catching: Map<number, Uint8Array> | null = null;
  recovering = false;
  leftover: number[];
  private readonly al: ActivityLog;
  private constructor(readonly volume: Volume, info: ShardInfo, modRevision: number, readonly file: string) {
    this.info = info;
    this.modRevision = modRevision;
    const { log, leftover } = ActivityLog.open(activityLogPath(file));
    this.al = log;
    this.leftover = leftover;
  }

  /**
   * A change to `regions` starts, sequenced by store `by` (the shard's primary)
   * as its change `seq`: the regions are unflushed from now on (logged durably
   * first), and in flight until changeDone.
   */
  beginChange(regions: number[], by: string, seq: number): void {
    const fresh = regions.filter((r) => !this.unflushed.has(r));
    if (fresh.length > 0) this.al.add(fresh);
    this.changesInflight.add(seq);
    for (const r of regions) {
      this.unflushed.set(r, { by, seq });
      this.regionInflight.set(r, (this.regionInflight.get(r) ?? 0) + 1);
    }
  }

  changeDone(regions: number[], seq: number): void {
    this.changesInflight.delete(seq);
    for (const r of regions) {
      const n = this.regionInflight.get(r)! - 1;
      if (n === 0) this.regionInflight.delete(r);
      else this.regionInflight.set(r, n);
    }
  }

  /**
   * What a flush starting now covers: the unflushed regions with no change in
   * flight here (one in flight may land after the flush), and — `by` and `upTo`
   * given, on a secondary — only those whose last change primary `by`
   * sequenced at most `upTo` (changes the primary knows every replica has).
   */
  flushStart(by?: string, upTo?: number): [number, Unflushed][] {
    return [...this.unflushed].filter(([r, u]) => !this.regionInflight.has(r) && (by === undefined || (u.by === by && u.seq <= upTo!)));
  }

  /** The flush that started with `covered` completed (on every replica; on a secondary, here). */
  flushed(covered: [number, Unflushed][]): void {
    let n = 0;
    for (const [r, u] of covered) {
      if (this.unflushed.get(r) !== u) continue;
      this.unflushed.delete(r);
      n++;
    }
    if (n > 0) this.rewriteLog();
  }

  /** Forgets changes sequenced by any store but `primary` (this replica was just made identical to it). */
  forgetOthers(primary: string): void {
    let n = 0;
    for (const [r, u] of this.unflushed) {
      if (u.by === primary || this.regionInflight.has(r)) continue;
      this.unflushed.delete(r);
      n++;
    }
    if (n > 0) this.rewriteLog();
  }

  /** Every region this replica may hold differently from the others: unflushed now, or left by its previous run. */
  suspectRegions(): number[] {
    return [...new Set([...this.unflushed.keys(), ...this.leftover])].sort((a, b) => a - b);
  }

  /** As a primary: the next change's sequence number (the secondaries get it in commandSeq). */
  nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    return this.seq;
  }

  /** As a primary: every change sequenced up to this has been answered by every replica. */
  watermark(): number {
    let low = this.seq;
    for (const s of this.changesInflight) if (s <= low) low = s - 1;
    return low >>> 0;
  }

  private rewriteLog(): void {
    this.al.rewrite(new Set([...this.unflushed.keys(), ...this.leftover]));
  }

  /** This replica's data was lost (its file was gone): every region is left over, so all are copied before it counts. */
  lostEverything(): void {
    this.leftover = regionsOf(0, this.info.size);
    this.rewriteLog();
  }

  /** The leftover regions are in the dirty map now (or were copied): the log forgets them. */
  leftoverHandled(): void {
    if (this.leftover.length === 0) return;
    this.leftover = [];
    this.rewriteLog();
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
    try {
      await this.volume.close();
    } finally {
      this.al.close();
    }
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
