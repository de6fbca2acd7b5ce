/**
 * Moving a store's replicas elsewhere, online (`flashpack cluster drain` and
 * `rm-store`). For each shard with a replica on the store, one at a time:
 *
 * 1. a new replica on another live store (the one with the most free space
 *    outside the shard) joins as RECOVERING with every region in the dirty
 *    map, so it copies the whole shard from the primary (recovery.ts) while
 *    new changes reach it as they happen;
 * 2. once it is OK, a store that leads the shard hands it off (failover.ts)
 *    and the shard settles with every other replica OK;
 * 3. the store's replica leaves the shard (its store closes and deletes the
 *    file when it sees the record), and its claim is deleted.
 *
 * The shard never has fewer copies than before while this runs. Interrupted,
 * it leaves a shard with one replica more than the volume asks for; the next
 * run takes that replica as the target and carries on.
 */
import { FlashpackError } from '../errors.js';
import type { Cluster } from './client.js';
import { replicaClaimKey, type ShardInfo } from './metadata.js';
import { regionsOf } from './replica.js';

const POLL_MS = 200;
const STEP_TIMEOUT_MS_DEFAULT = 600_000;

export interface DrainStep {
  volume: string;
  shard: number;
  /** What is happening to this shard now. */
  step: 'adding' | 'copying' | 'handing-off' | 'removing' | 'moved';
  to: string;
  /** Shards moved so far, and how many this drain moves. */
  done: number;
  total: number;
}

export interface DrainReport {
  store: string;
  moved: { volume: string; shard: number; to: string; bytes: number }[];
}

export interface DrainOptions {
  /** Called as each shard goes through its steps. */
  onStep?: (s: DrainStep) => void;
  /** The longest one step (a copy, a handoff) may take. Default 10 minutes. */
  stepTimeoutMs?: number;
}

/** Moves every replica off store `id` (registered or not). */
export async function drainStore(cluster: Cluster, id: string, opts: DrainOptions = {}): Promise<DrainReport> {
  const meta = cluster.meta;
  const timeoutMs = opts.stepTimeoutMs ?? STEP_TIMEOUT_MS_DEFAULT;
  const work: { volume: string; index: number; replicas: number }[] = [];
  for (const v of await meta.volumes()) {
    for (const { info } of await meta.shards(v.name)) if (info.replicas.some((r) => r.store === id)) work.push({ volume: v.name, index: info.index, replicas: v.replicas });
  }
  const report: DrainReport = { store: id, moved: [] };
  for (const w of work) {
    const label = `shard ${w.index} of '${w.volume}'`;
    const step = (s: DrainStep['step'], to: string): void => opts.onStep?.({ volume: w.volume, shard: w.index, step: s, to, done: report.moved.length, total: work.length });
    const read = async (): Promise<ShardInfo> => {
      const rec = await meta.shard(w.volume, w.index);
      if (rec === null) throw new FlashpackError('ENXIO', `drain: ${label} is gone from etcd`);
      return rec.info;
    };
    const until = async (what: string, ok: (s: ShardInfo) => boolean): Promise<ShardInfo> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = await read();
        if (ok(s)) return s;
        if (Date.now() > deadline) throw new FlashpackError('ETIMEDOUT', `drain: ${label}: ${what} did not happen within ${timeoutMs} ms (${describe(s)})`);
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    };

    // 1. The target: the extra replica an interrupted run added (the newest), or a new one.
    let info = await read();
    const newest = info.replicas[info.replicas.length - 1].store;
    let target: string;
    if (info.replicas.length > w.replicas && newest !== id) target = newest;
    else {
      const holders = new Set(info.replicas.map((r) => r.store));
      const candidates = (await meta.stores()).filter((s) => !holders.has(s.id)).sort((a, b) => b.free - a.free);
      if (candidates.length === 0) throw new FlashpackError('EBUSY', `drain: no live store outside ${label}'s replicas (${[...holders].join(', ')}) to move it to`);
      target = candidates[0].id;
      step('adding', target);
      await meta.putDirty(w.volume, w.index, regionsOf(0, info.size), info.epoch);
      info = (await meta.updateShard(w.volume, w.index, (s) => {
        if (s.replicas.some((r) => r.store === target)) return null;
        s.replicas.push({ store: target, state: 'RECOVERING' });
        return s;
      })).info;
    }

    // 2. The copy, then the handoff if the store leads the shard.
    step('copying', target);
    await until(`the copy to ${target}`, (s) => s.replicas.find((r) => r.store === target)?.state === 'OK');
    if ((await read()).primary === id) {
      step('handing-off', target);
      await meta.updateShard(w.volume, w.index, (s) => {
        if (s.primary !== id || s.handoff === id) return null;
        s.handoff = id;
        return s;
      });
      await until('the handoff', (s) => s.primary !== id);
    }
    await until('every other replica OK', (s) => s.replicas.every((r) => r.store === id || r.state === 'OK'));

    // 3. The store's replica leaves.
    step('removing', target);
    await meta.updateShard(w.volume, w.index, (s) => {
      if (s.primary === id || !s.replicas.some((r) => r.store === id)) return null;
      s.replicas = s.replicas.filter((r) => r.store !== id);
      return s;
    });
    info = await read();
    if (info.replicas.some((r) => r.store === id)) throw new FlashpackError('EBUSY', `drain: ${label} still names ${id} (${describe(info)})`);
    await cluster.etcd.del(replicaClaimKey(w.volume, w.index, id));
    report.moved.push({ volume: w.volume, shard: w.index, to: target, bytes: info.size });
    step('moved', target);
  }
  return report;
}

/**
 * Removes a stopped store from the cluster: drains it (its replicas are
 * copied from the other replicas to live stores), then forgets it. EBUSY if
 * it is still registered (running): stop it first, or it would come back.
 */
export async function removeStore(cluster: Cluster, id: string, opts: DrainOptions = {}): Promise<DrainReport> {
  const live = await cluster.meta.store(id);
  if (live !== null) throw new FlashpackError('EBUSY', `rm-store: store ${id} is running (pid ${live.pid} at ${live.address}): stop it first (drain moves its replicas while it runs)`);
  return drainStore(cluster, id, opts);
}

function describe(s: ShardInfo): string {
  return `epoch ${s.epoch}, primary ${s.primary}, ${s.replicas.map((r) => `${r.store}:${r.state}`).join(' ')}`;
}
