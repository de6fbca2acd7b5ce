/**
 * A shard's primary (PureFlash's dispatch_write, then better). A client's
 * WRITE or DISCARD takes the shard's range lock (arrival order), is written
 * locally and sent as REPLICATE_* to every OK or RECOVERING replica, and is
 * acknowledged when all have answered — the first error wins. Overlapping
 * changes therefore reach every replica in the same order. FLUSH goes to every
 * replica and is acknowledged when all are durable.
 *
 * A replica that fails (its connection ends, a request times out, it answers
 * an error that is not a newer epoch) is marked ERROR in etcd — one
 * compare-and-swap that also bumps the epoch, never the shard's last OK
 * replica — and the shard runs DEGRADED: from then on each change first puts
 * its regions in the shard's dirty map in etcd, before it is written, so a
 * returning replica copies exactly those (recovery.ts). The regions written
 * since the last flush every replica completed join the map too: the failed
 * store may have lost them with its unflushed writes. A READ whose local bytes
 * fail their data check is served and repaired from another replica
 * (read-repair.ts).
 */
import type { Store } from './store.js';
import { Replica, regionsOf } from './replica.js';
import type { ShardInfo } from './metadata.js';
import { unpackPayload } from './payload.js';
import { isCorrupt, repairRead } from './read-repair.js';
import type { Answer } from './store-connection.js';
import type { Request } from './data-client.js';
import {
  ST_DEGRADE, ST_REOPEN, OP_DISCARD, OP_FLUSH, OP_READ, OP_REPLICATE_DISCARD, OP_REPLICATE_FLUSH, OP_REPLICATE_WRITE, OP_WRITE,
  ST_CONN_LOST, ST_CORRUPT, ST_EPOCH, ST_INVALID_OPCODE, ST_NOT_PRIMARY, ST_NOT_READY, ST_OK, statusOf, type Head,
} from './wire.js';

/** Times a change is resent to a replica that answered with a newer epoch. */
const STALE_RETRIES = 3;

const REPLICATE: Record<number, number> = { [OP_WRITE]: OP_REPLICATE_WRITE, [OP_DISCARD]: OP_REPLICATE_DISCARD, [OP_FLUSH]: OP_REPLICATE_FLUSH };

export class Primary {
  /** Per shard: the failure being recorded in etcd, so concurrent failures queue behind it. */
  private readonly failing = new Map<number, Promise<unknown>>();

  constructor(private readonly store: Store) {}

  async handle(rep: Replica, head: Head, data: Uint8Array | null): Promise<Answer> {
    const info = rep.info;
    if (info.primary !== this.store.id) return { status: ST_NOT_PRIMARY | ST_REOPEN, epoch: info.epoch };
    if (info.replicas.find((r) => r.store === this.store.id)?.state !== 'OK') return { status: ST_NOT_PRIMARY | ST_REOPEN, epoch: info.epoch };
    // Reopened after a crash, this replica may be behind the others: it serves nothing until that is settled (failover.ts).
    if (rep.leftover.length > 0 || info.handoff === this.store.id) return { status: ST_NOT_READY | ST_REOPEN, epoch: info.epoch };
    switch (head.opcode) {
      case OP_READ:
        try {
          return { status: ST_OK, epoch: info.epoch, data: await rep.volume.read(head.offset, head.length) };
        } catch (err) {
          if (!isCorrupt(err)) throw err;
          return repairRead(this.store, rep, head, shardIdOf(info));
        }
      case OP_WRITE:
      case OP_DISCARD:
        return this.change(rep, head, data);
      case OP_FLUSH:
        return this.flush(rep, head.epoch);
      default:
        return { status: ST_INVALID_OPCODE, epoch: info.epoch };
    }
  }

  /** A WRITE or DISCARD: ordered by the range lock, written here and on every OK or RECOVERING replica. */
  private async change(rep: Replica, head: Head, data: Uint8Array | null): Promise<Answer> {
    // The bytes as they came go to the replicas; what they stand for is written here.
    let plain: Uint8Array | null = null;
    if (head.opcode === OP_WRITE) {
      try {
        plain = unpackPayload(data!, head.flags, head.length);
      } catch (err) {
        this.store.log(`${rep.info.volume}#${rep.info.index}: refused a WRITE at ${head.offset}: ${(err as Error).message}`);
        return { status: ST_CORRUPT, epoch: rep.info.epoch };
      }
    }
    const release = this.store.opts.testOnly.unorderedFanout ? () => {} : await rep.lock.acquire(head.offset, head.offset + head.length);
    try {
      const info = rep.info;
      if (head.epoch !== info.epoch) return { status: ST_EPOCH | ST_REOPEN, epoch: info.epoch };
      const regions = regionsOf(head.offset, head.length);
      if (info.state === 'DEGRADED') await this.markDirty(rep, regions);
      const seq = rep.nextSeq();
      rep.beginChange(regions, this.store.id, seq);
      try {
        const local = head.opcode === OP_WRITE ? rep.volume.write(head.offset, plain!) : rep.volume.discard(head.offset, head.length);
        const answer = await this.fanOut(rep, info, { ...head, opcode: REPLICATE[head.opcode], commandSeq: seq }, data, local, regions);
        this.store.counters.replicatedWrites++;
        return answer;
      } finally {
        rep.changeDone(regions, seq);
      }
    } finally {
      release();
    }
  }

  /** FLUSH: every replica durable. The regions written before it stop counting as unflushed once all are. */
  private async flush(rep: Replica, epoch: number): Promise<Answer> {
    const info = rep.info;
    if (epoch !== info.epoch) return { status: ST_EPOCH | ST_REOPEN, epoch: info.epoch };
    // Only regions with no change in flight: a change still on its way to a replica is not covered by this flush.
    const covered = rep.flushStart();
    // The secondaries forget (from their activity logs) changes up to the watermark once flushed.
    const head = { opcode: OP_REPLICATE_FLUSH, shardId: shardIdOf(info), epoch, offset: 0, length: 0, commandSeq: rep.watermark() } as Head;
    const answer = await this.fanOut(rep, info, head, null, rep.volume.flush(), []);
    if ((answer.status & 0xff) === ST_OK && (answer.status & ST_DEGRADE) === 0) {
      rep.flushed(covered);
    }
    return answer;
  }

  /** Flushes every shard this store is primary of that was written since its last flush (a timer calls this). */
  async flushAll(onlyWritten: boolean): Promise<void> {
    for (const rep of this.store.replicas.values()) {
      if (rep.info.primary !== this.store.id || (onlyWritten && rep.unflushed.size === 0)) continue;
      await this.flush(rep, rep.info.epoch);
    }
  }

  /**
   * The local operation and the same request to every other OK or RECOVERING
   * replica; replicas that fail are marked ERROR (the answer then says DEGRADE,
   * with the new epoch). A replica answering REOPEN knows a newer epoch: the
   * client is told to reopen too.
   */
  private async fanOut(rep: Replica, info: ShardInfo, head: Head, data: Uint8Array | null, local: Promise<void>, regions: number[]): Promise<Answer> {
    const targets = info.replicas.filter((r) => r.store !== this.store.id && (r.state === 'OK' || r.state === 'RECOVERING'));
    const sends = targets.map(async (t) => {
      const c = await this.store.peer(t.store);
      const jitter = this.store.opts.testOnly.fanoutJitterMs;
      if (jitter > 0) await new Promise((r) => setTimeout(r, Math.random() * jitter));
      const sent = c.bytesSent;
      const r = await c.send(requestOf(head), data ?? undefined);
      this.store.counters.peerBytesSent += c.bytesSent - sent;
      return r.reply.status;
    });
    const [localResult, ...results] = await Promise.allSettled([local, ...sends]);
    if (localResult.status === 'rejected') {
      this.store.log(`${info.volume}#${info.index}: local ${head.opcode.toString(16)} failed: ${(localResult.reason as Error).message}`);
      return { status: statusOf(localResult.reason), epoch: info.epoch };
    }
    const failed: string[] = [];
    let stale: string[] = [];
    results.forEach((r, i) => {
      if (r.status === 'fulfilled' && r.value === ST_OK) return;
      if (r.status === 'fulfilled' && (r.value & ST_REOPEN) !== 0) stale.push(targets[i].store);
      else failed.push(targets[i].store);
    });
    // A replica knows a newer epoch (e.g. it just finished recovering). The change is applied here
    // and elsewhere already, so it must reach that replica too: under the new epoch, if this store
    // still leads the shard — else the client is told to reopen and resend.
    for (let attempt = 0; stale.length > 0 && attempt < STALE_RETRIES; attempt++) {
      const rec = await this.store.refresh(head.shardId);
      const now = rec?.info;
      if (now === undefined || now.primary !== this.store.id || now.epoch === head.epoch) return { status: ST_EPOCH | ST_REOPEN, epoch: now?.epoch ?? info.epoch };
      head = { ...head, epoch: now.epoch };
      const again = await Promise.allSettled(stale.map(async (id) => {
        if (!now.replicas.some((r) => r.store === id && (r.state === 'OK' || r.state === 'RECOVERING'))) return ST_OK; // out now: the dirty map has it
        const c = await this.store.peer(id);
        return (await c.send(requestOf(head), data ?? undefined)).reply.status;
      }));
      const left: string[] = [];
      again.forEach((r, i) => {
        if (r.status === 'fulfilled' && r.value === ST_OK) return;
        if (r.status === 'fulfilled' && (r.value & ST_REOPEN) !== 0) left.push(stale[i]);
        else failed.push(stale[i]);
      });
      stale = left;
      info = now;
    }
    if (stale.length > 0) return { status: ST_EPOCH | ST_REOPEN, epoch: info.epoch };
    if (failed.length === 0) return { status: ST_OK, epoch: info.epoch };
    const now = await this.fail(rep, info.epoch, failed, regions);
    // Not recorded (another change won, or this is the last OK replica): not acknowledged; the client looks again and resends.
    if (now === null) return { status: ST_CONN_LOST | ST_REOPEN, epoch: info.epoch };
    this.store.counters.degradedWrites++;
    return { status: ST_OK | ST_DEGRADE, epoch: now.epoch };
  }

  /**
   * Marks `stores` ERROR on the shard (if its epoch is still `epoch`), after
   * putting `regions` and every unflushed region in the dirty map. Resolves to
   * the shard as it now is, or null when they could not be marked (the last OK
   * replica, or another change won) — then the change is not acknowledged.
   */
  async fail(rep: Replica, epoch: number, stores: string[], regions: number[]): Promise<ShardInfo | null> {
    const key = shardIdOf(rep.info);
    const before = this.failing.get(key) ?? Promise.resolve();
    const run = before.catch(() => {}).then(async () => {
      await this.markDirty(rep, [...regions, ...rep.unflushed.keys()]);
      if (rep.info.epoch !== epoch) {
        // Another failure got there first: fine if these stores are out now.
        return stores.every((s) => rep.info.replicas.find((r) => r.store === s)?.state === 'ERROR') ? rep.info : null;
      }
      let changed = false;
      const rec = await this.store.meta.updateShard(rep.info.volume, rep.info.index, (s) => {
        changed = false;
        if (s.epoch !== epoch) return null;
        for (const id of stores) {
          const r = s.replicas.find((x) => x.store === id);
          if (r === undefined || r.state === 'ERROR') continue;
          if (r.state === 'OK' && s.replicas.filter((x) => x.state === 'OK').length <= 1) return null;
          r.state = 'ERROR';
          changed = true;
        }
        return changed ? s : null;
      });
      this.store.adopt(rec);
      if (changed) this.store.log(`${rep.info.volume}#${rep.info.index}: replica on ${stores.join(', ')} marked ERROR; epoch ${rec.info.epoch}, shard ${rec.info.state}`);
      return stores.every((s) => rec.info.replicas.find((r) => r.store === s)?.state === 'ERROR') ? rec.info : null;
    });
    this.failing.set(key, run);
    try {
      return await run;
    } finally {
      if (this.failing.get(key) === run) this.failing.delete(key);
    }
  }

  /** Puts the regions not yet known dirty into the shard's dirty map (etcd), before the change they cover is written. */
  async markDirty(rep: Replica, regions: number[]): Promise<void> {
    const fresh = [...new Set(regions)].filter((r) => !rep.dirtyKnown.has(r));
    if (fresh.length === 0) return;
    await this.store.meta.putDirty(rep.info.volume, rep.info.index, fresh, rep.info.epoch);
    for (const r of fresh) rep.dirtyKnown.add(r);
  }

  /** The connection to store `id` ended: its replicas of shards led here are failed now, not at the next write. */
  async peerLost(id: string): Promise<void> {
    for (const rep of this.store.replicas.values()) {
      const info = rep.info;
      if (info.primary !== this.store.id) continue;
      const r = info.replicas.find((x) => x.store === id);
      if (r === undefined || r.state === 'ERROR') continue;
      const release = await rep.lock.acquire(0, Number.MAX_SAFE_INTEGER);
      try {
        await this.fail(rep, rep.info.epoch, [id], []);
      } finally {
        release();
      }
    }
  }

  /**
   * Led shards with an ERROR replica whose store is registered again: it
   * turns RECOVERING (epoch bumped), so new changes reach it while it copies
   * the dirty regions (recovery.ts on that store).
   */
  async reconcile(): Promise<void> {
    for (const rep of this.store.replicas.values()) {
      const info = rep.info;
      if (info.primary !== this.store.id) continue;
      for (const r of info.replicas) {
        if (r.state !== 'ERROR') continue;
        try {
          await this.store.peer(r.store);
        } catch {
          continue; // not back yet
        }
        const release = await rep.lock.acquire(0, Number.MAX_SAFE_INTEGER);
        try {
          // The view may have moved while this waited: decide on the view the change is made against.
          const now = rep.info;
          if (now.primary !== this.store.id || now.replicas.find((x) => x.store === r.store)?.state !== 'ERROR') continue;
          const { rec, changed } = await this.store.meta.setReplicaState(info.volume, info.index, r.store, 'RECOVERING', now.epoch);
          this.store.adopt(rec);
          if (changed) this.store.log(`${info.volume}#${info.index}: store ${r.store} is back; its replica is RECOVERING (epoch ${rec.info.epoch})`);
        } finally {
          release();
        }
      }
    }
  }
}

/** What a REPLICATE_* sends: the head's fields a request carries (commandSeq: the change's number, or the flush watermark). */
function requestOf(h: Head): Request {
  return { opcode: h.opcode, flags: h.flags, shardId: h.shardId, epoch: h.epoch, offset: h.offset, length: h.length, commandSeq: h.commandSeq };
}

export function shardIdOf(info: ShardInfo): number {
  return info.volumeId * 65536 + info.index;
}
