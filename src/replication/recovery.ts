/**
 * A returning replica catches up (PureFlash's recovery, on the dirty map
 * instead of whole objects). Once its primary has marked it RECOVERING, new
 * changes reach it as they happen; this copies the shard's dirty regions from
 * the primary with RECOVERY_READ (served under the primary's range lock, so
 * each copy is a point in the order of the shard's writes). Changes that
 * arrive while a region is being copied are newer than the copy: their
 * sectors are caught (replica.ts) and the copy skips them. A second pass
 * compares every dirty region with the primary's; only when all are identical
 * does the replica ask etcd to make it OK — in the transaction that also
 * clears the dirty map if the shard is whole again. An epoch change in the
 * middle starts it over.
 */
import type { Store } from './store.js';
import { REGION_BYTES, Replica, uncaughtRuns } from './replica.js';
import { shardIdOf } from './primary.js';
import { progressPrefix } from './metadata.js';
import { ST_REOPEN, OP_RECOVERY_READ, ST_OK } from './wire.js';

/** RECOVERY_READs in flight at once per recovering shard (PureFlash uses 4). */
const RECOVERY_DEPTH = 4;
/** A recovering replica publishes its progress at most this often. */
const PROGRESS_EVERY_MS = 500;
/** Compare passes before recovery gives up for this round (it is retried on the next reconcile). */
const VERIFY_PASSES = 3;

export class Recovery {
  private readonly running = new Set<number>();
  private stopped = false;

  constructor(private readonly store: Store) {}

  /** Starts recovering each replica here that is RECOVERING and not already being recovered. */
  reconcile(): void {
    for (const [id, rep] of this.store.replicas) {
      const mine = rep.info.replicas.find((r) => r.store === this.store.id);
      if (mine?.state !== 'RECOVERING' || rep.info.primary === this.store.id || this.running.has(id) || this.stopped) continue;
      this.running.add(id);
      const copied = { regions: 0, bytes: 0 };
      void this.recover(rep, copied).then(
        (done) => {
          const { regions, bytes } = copied;
          if (done) this.store.log(`${rep.info.volume}#${rep.info.index}: recovered: ${regions} dirty regions (${bytes} bytes) copied; replica OK (epoch ${rep.info.epoch})`);
        },
        (err: Error) => this.store.log(`${rep.info.volume}#${rep.info.index}: recovery stopped: ${err.message} (retried)`),
      ).finally(() => this.running.delete(id));
    }
  }

  stop(): void {
    this.stopped = true;
  }

  /** One attempt, counting what it copies into `copied`: true when the replica is OK at the end. */
  private async recover(rep: Replica, copied: { regions: number; bytes: number }): Promise<boolean> {
    const epoch = rep.info.epoch;
    const { volume, index, size } = rep.info;
    const primary = await this.store.peer(rep.info.primary);
    // What this replica may hold differently (its activity log, failover.ts) is copied too.
    await this.store.meta.putDirty(volume, index, rep.suspectRegions(), epoch);
    const regions = await this.store.meta.dirtyRegions(volume, index);
    const progressKey = `${progressPrefix(volume, index)}${this.store.id}`;
    let shown = 0;
    const show = async (done: number): Promise<void> => {
      shown = Date.now();
      await this.store.etcd.put(progressKey, JSON.stringify({ copied: done, total: regions.length })).catch(() => {});
    };
    await show(0);
    let copiedHere = 0;
    rep.catching = new Map();
    try {
      for (const r of regions) rep.catching.set(r, Replica.newCatch());
      const read = async (r: number): Promise<Uint8Array | null> => {
        const offset = r * REGION_BYTES;
        const length = Math.min(REGION_BYTES, size - offset);
        if (length <= 0) return null;
        const { reply, data } = await primary.send({ opcode: OP_RECOVERY_READ, shardId: shardIdOf(rep.info), epoch, offset, length });
        if (reply.status !== ST_OK || data === null || data.length !== length) {
          throw new Error(`RECOVERY_READ of region ${r} answered 0x${reply.status.toString(16)}${(reply.status & ST_REOPEN) !== 0 ? ' (epoch moved)' : ''}`);
        }
        return data;
      };
      // Copy: every dirty region, its uncaught sectors.
      await this.each(regions, async (r) => {
        if (rep.info.epoch !== epoch || this.stopped) return;
        const data = await read(r);
        if (data === null) return;
        await this.copyUncaught(rep, r, data, null);
        if (++copiedHere === regions.length || Date.now() - shown >= PROGRESS_EVERY_MS) await show(copiedHere);
        this.store.counters.recoveryRegionsCopied++;
        this.store.counters.recoveryBytesCopied += data.length;
        copied.regions++;
        copied.bytes += data.length;
      });
      // Compare until identical (outside sectors changed meanwhile), copying again what differs.
      let same = false;
      for (let pass = 0; pass < VERIFY_PASSES && !same && rep.info.epoch === epoch && !this.stopped; pass++) {
        same = true;
        await this.each(regions, async (r) => {
          const data = await read(r);
          if (data === null) return;
          const local = await rep.volume.read(r * REGION_BYTES, data.length);
          if (await this.copyUncaught(rep, r, data, local)) same = false;
        });
      }
      if (!same || rep.info.epoch !== epoch || this.stopped) return false;
      await rep.volume.flush();
      const { rec, changed } = await this.store.meta.setReplicaState(volume, index, this.store.id, 'OK', epoch);
      this.store.adopt(rec);
      if (changed) {
        rep.forgetOthers(rep.info.primary);
        rep.leftoverHandled();
        await this.store.etcd.del(progressKey).catch(() => {});
      }
      return changed;
    } finally {
      rep.catching = null;
    }
  }

  /**
   * Writes the primary's bytes of region `r` over the sectors no replicated
   * change has caught (those hold newer bytes) — where they differ from
   * `local`, if given. The runs are computed and their writes issued in one
   * synchronous step: the volume orders writes by call, so a change that
   * arrives afterwards lands after the copy, never under it. True if it wrote.
   */
  private async copyUncaught(rep: Replica, r: number, data: Uint8Array, local: Uint8Array | null): Promise<boolean> {
    const writes: Promise<void>[] = [];
    for (const [from, to] of uncaughtRuns(rep.catching!.get(r)!, data.length)) {
      if (local !== null && Buffer.from(local.buffer, local.byteOffset + from, to - from).equals(Buffer.from(data.buffer, data.byteOffset + from, to - from))) continue;
      writes.push(rep.volume.write(r * REGION_BYTES + from, data.subarray(from, to)));
    }
    await Promise.all(writes);
    return writes.length > 0;
  }

  /** Runs `f` over `items`, RECOVERY_DEPTH at a time. */
  private async each(items: number[], f: (r: number) => Promise<void>): Promise<void> {
    let next = 0;
    const lanes = Array.from({ length: Math.min(RECOVERY_DEPTH, items.length) }, async () => {
      while (next < items.length) await f(items[next++]);
    });
    await Promise.all(lanes);
  }
}
