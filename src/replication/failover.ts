/**
 * A shard whose primary is gone gets a new one, chosen by the stores
 * themselves through compare-and-swap on the shard record (no conductor to
 * elect or to fail): every store holding an OK replica notices, on its
 * reconcile pass, that the primary's registration is gone (its lease ran out),
 * and the first OK replica in the shard's list whose store is alive takes the
 * shard in one transaction — primary = itself, the old primary ERROR, the other
 * OK replicas RECOVERING, epoch + 1. A second store deciding the same from an
 * older view loses the compare; the old primary, if it still runs, is fenced
 * by the epoch every replica checks.
 *
 * Why the survivors recover: when the primary died, changes it had sent were
 * in flight, and may have reached some replicas and not others. None of them
 * was acknowledged, but the replicas must agree again. Each replica's activity
 * log (replica.ts) names the regions it changed and has not seen flushed
 * everywhere; the new primary puts its own in the dirty map before it takes
 * over, each survivor adds its own when it starts recovering, and recovery
 * copies them from the new primary. The old primary adds what its log held
 * when it comes back (its leftover), so writes it made alone are undone.
 *
 * A replica that opens with a leftover log while etcd still says it is OK
 * (its store crashed and came back before anyone noticed) may be behind the
 * others — a crash can undo writes it acknowledged and never flushed — so it
 * must not be the copy others recover from. Until that is settled it serves
 * no reads, writes or recovery reads. A secondary turns itself RECOVERING; a
 * primary sets `handoff` on the shard, and the next OK replica takes the shard
 * over exactly as from a dead primary. Only when no other OK replica is alive
 * does it keep its role (its copy is the best there is) after putting its
 * logged regions in the dirty map.
 */
import type { Store } from './store.js';
import type { Replica } from './replica.js';
import type { ShardRecord } from './metadata.js';

export class Failover {
  /** Shards being taken over or settled here now, so passes do not overlap. */
  private readonly busy = new Set<number>();
  /** Takeovers this store won. */
  takeovers = 0;

  constructor(private readonly store: Store) {}

  /**
   * One pass: settles replicas opened with a leftover log, then takes every
   * shard whose primary is gone (or hands it off) and that this store should
   * lead next.
   */
  async reconcile(): Promise<void> {
    const alive = new Set((await this.store.meta.stores()).map((s) => s.id));
    for (const [id, rep] of [...this.store.replicas]) {
      if (rep.leftover.length > 0) await this.settleLeftover(id, rep, alive);
    }
    for (const [id, rec] of [...this.store.views]) {
      const info = rec.info;
      const gone = !alive.has(info.primary) || info.handoff === info.primary;
      if (!gone || this.busy.has(id)) continue;
      const next = info.replicas.find((r) => r.state === 'OK' && r.store !== info.primary && alive.has(r.store));
      if (next?.store !== this.store.id) continue;
      this.busy.add(id);
      try {
        const rep = await this.store.replica(id, info.epoch);
        // Behind the others perhaps, and another could lead: settle first (it then takes the shard).
        if (rep !== null && rep.leftover.length > 0 && info.replicas.some((r) => r.state === 'OK' && r.store !== info.primary && r.store !== this.store.id && alive.has(r.store))) continue;
        await this.takeOver(id, rec);
      } finally {
        this.busy.delete(id);
      }
    }
  }

  private async takeOver(shardId: number, rec: ShardRecord): Promise<void> {
    const store = this.store;
    const info = rec.info;
    const old = info.primary;
    const rep = await store.replica(shardId, info.epoch);
    if (rep === null) return;
    // Before anything can copy from this replica as the primary: what it may hold differently.
    await store.meta.putDirty(info.volume, info.index, rep.suspectRegions(), info.epoch);
    let won = false;
    const now = await store.meta.updateShard(info.volume, info.index, (s) => {
      won = false;
      if (s.primary !== old || s.replicas.find((r) => r.store === store.id)?.state !== 'OK') return null;
      for (const r of s.replicas) {
        if (r.store === old) r.state = 'ERROR';
        else if (r.store !== store.id && r.state === 'OK') r.state = 'RECOVERING';
      }
      s.primary = store.id;
      delete s.handoff;
      won = true;
      return s;
    });
    store.adopt(now);
    if (!won) return;
    this.takeovers++;
    rep.leftoverHandled();
    const why = info.handoff === old ? 'handed the shard off' : 'is gone';
    store.log(`${info.volume}#${info.index}: primary ${old} ${why}; this store leads the shard now (epoch ${now.info.epoch}, shard ${now.info.state})`);
  }

  /** A replica opened with regions left in its activity log, and OK in etcd: see the header. */
  private async settleLeftover(shardId: number, rep: Replica, alive: Set<string>): Promise<void> {
    if (this.busy.has(shardId)) return;
    const store = this.store;
    const info = rep.info;
    if (info.replicas.find((r) => r.store === store.id)?.state !== 'OK') return; // recovery.ts copies the leftover
    this.busy.add(shardId);
    try {
      const logged = rep.leftover.length;
      const label = `${info.volume}#${info.index}`;
      // Whoever copies from whom, these regions are copied.
      await store.meta.putDirty(info.volume, info.index, rep.suspectRegions(), info.epoch);
      const others = info.replicas.filter((r) => r.store !== store.id && r.state === 'OK' && alive.has(r.store));
      if (others.length === 0) {
        rep.leftoverHandled();
        store.log(`${label}: reopened after a crash with ${logged} regions logged; no other OK replica is alive, so this copy stands`);
        return;
      }
      if (info.primary === store.id) {
        const now = await store.meta.updateShard(info.volume, info.index, (s) => {
          if (s.epoch !== info.epoch || s.primary !== store.id) return null;
          s.handoff = store.id;
          return s;
        });
        store.adopt(now);
        store.log(`${label}: reopened after a crash with ${logged} regions logged; handing the shard off (epoch ${now.info.epoch})`);
      } else {
        const { rec, changed } = await store.meta.setReplicaState(info.volume, info.index, store.id, 'RECOVERING', info.epoch);
        store.adopt(rec);
        if (changed) store.log(`${label}: reopened after a crash with ${logged} regions logged; recovering them (epoch ${rec.info.epoch})`);
      }
    } finally {
      this.busy.delete(shardId);
    }
  }
}
