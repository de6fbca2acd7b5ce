/**
 * The cluster's metadata of record, in etcd (PureFlash keeps it in MariaDB
 * behind a conductor; here every store and client reads etcd directly):
 *
 *   flashpack/stores/<id>                 store: address, capacity, free space — under the store's lease
 *   flashpack/volumes/<name>              volume: id, size, shard size, replicas, codec, shard count, state
 *   flashpack/shards/<name>/<index>       shard: epoch, primary, replicas and their states, OK or DEGRADED
 *   flashpack/dirty/<name>/<index>/<region>  a 1 MiB region changed while a replica was out
 *   flashpack/progress/<name>/<index>/<store> a recovering replica's copy: regions copied of total
 *   flashpack/replicas/<name>/<index>/<store> a store created its replica of the shard (so one
 *                                         that finds its file gone knows its data was lost)
 *   flashpack/counters/volume-id          the last volume id handed out
 *
 * Values are JSON. A shard's record changes only in a transaction that
 * compares its mod revision — the value it was computed from — and every
 * change bumps its epoch (PureFlash's meta_ver), so two writers cannot both
 * win and every store and client can tell a stale view from a current one.
 */
import { FlashpackError } from '../errors.js';
import type { Etcd, KeyValue, TxnOp } from './etcd.js';

export const ROOT = 'flashpack/';
const STORES = `${ROOT}stores/`;
const VOLUMES = `${ROOT}volumes/`;
const SHARDS = `${ROOT}shards/`;
const VOLUME_ID = `${ROOT}counters/volume-id`;

export const DEFAULT_SHARD_SIZE = 4 * 2 ** 30;
/** Shards a volume may have: the shard index is the low 16 bits of a shard id on the wire. */
export const MAX_SHARDS = 65536;
/** Volume ids fit 32 bits; shard id = volume id × 65536 + index stays below 2^53. */
const MAX_VOLUME_ID = 2 ** 32 - 1;
/** Shard puts per transaction (etcd's default limit is 128 operations). */
const PUTS_PER_TXN = 100;
/** Attempts of a compare-and-swap before giving up (each re-reads the record). */
const CAS_ATTEMPTS = 32;

export type ReplicaState = 'OK' | 'ERROR' | 'RECOVERING';
export type Codec = 'lz4' | 'deflate';

export interface StoreInfo {
  id: string;
  /** host:port of its data protocol. */
  address: string;
  /** Bytes of the file system holding its data directory, and bytes free there. */
  capacity: number;
  free: number;
  pid: number;
  started: string;
}

export interface VolumeInfo {
  name: string;
  id: number;
  size: number;
  shardSize: number;
  replicas: number;
  codec: Codec;
  shards: number;
  state: 'creating' | 'ready';
  created: string;
}

export interface ReplicaInfo {
  store: string;
  state: ReplicaState;
}

export interface ShardInfo {
  volume: string;
  volumeId: number;
  index: number;
  /** Bytes of this shard (the last may be shorter than the volume's shard size). */
  size: number;
  codec: Codec;
  epoch: number;
  primary: string;
  replicas: ReplicaInfo[];
  state: 'OK' | 'DEGRADED';
  /**
   * Set by a primary that must not lead the shard (it reopened after a crash:
   * its own copy may be behind the others'); the next OK replica takes the
   * shard over as from a dead primary (failover.ts). Absent otherwise.
   */
  handoff?: string;
}

/** A shard as read, with the mod revision a transaction compares. */
export interface ShardRecord {
  info: ShardInfo;
  modRevision: number;
}

export function shardId(volumeId: number, index: number): number {
  return volumeId * MAX_SHARDS + index;
}

export function shardKey(volume: string, index: number): string {
  return `${SHARDS}${volume}/${String(index).padStart(5, '0')}`;
}

export function dirtyPrefix(volume: string, index: number): string {
  return `${ROOT}dirty/${volume}/${String(index).padStart(5, '0')}/`;
}

export function dirtyKey(volume: string, index: number, region: number): string {
  return `${dirtyPrefix(volume, index)}${String(region).padStart(8, '0')}`;
}

export function replicaClaimKey(volume: string, index: number, store: string): string {
  return `${ROOT}replicas/${volume}/${String(index).padStart(5, '0')}/${store}`;
}

export function progressPrefix(volume: string, index: number): string {
  return `${ROOT}progress/${volume}/${String(index).padStart(5, '0')}/`;
}

/** A recovering replica's copy so far (recovery.ts puts it; `cluster status` shows it). */
export interface ResyncProgress {
  copied: number;
  total: number;
}

export function checkVolumeName(name: unknown): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new FlashpackError('EINVAL', `volume name ${JSON.stringify(name)} (${typeof name}): 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit`);
  }
  return name;
}

export function checkStoreId(id: unknown): string {
  if (typeof id !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id)) {
    throw new FlashpackError('EINVAL', `store id ${JSON.stringify(id)} (${typeof id}): 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit`);
  }
  return id;
}

/** The shard's state from its replicas': DEGRADED while any is not OK. */
export function shardState(replicas: ReplicaInfo[]): 'OK' | 'DEGRADED' {
  return replicas.every((r) => r.state === 'OK') ? 'OK' : 'DEGRADED';
}

function parse<T>(kv: KeyValue, what: string): T {
  try {
    return JSON.parse(kv.text) as T;
  } catch {
    throw new FlashpackError('ECORRUPT', `etcd: ${what} at ${kv.key} is not JSON (${kv.text.slice(0, 80)})`);
  }
}

export interface CreateVolumeOptions {
  size: number;
  replicas?: number;
  shardSize?: number;
  codec?: Codec;
}

export class ClusterMeta {
  constructor(readonly etcd: Etcd) {}

  // ---- stores ------------------------------------------------------------------------------------

  /** Registers (or refreshes) a store's record under its lease: it disappears when the lease does. */
  async putStore(info: StoreInfo, lease: string): Promise<void> {
    await this.etcd.put(STORES + checkStoreId(info.id), JSON.stringify(info), { lease });
  }

  /** The stores alive now (their lease holds), by id. */
  async stores(): Promise<StoreInfo[]> {
    return (await this.etcd.getPrefix(STORES)).map((kv) => parse<StoreInfo>(kv, 'store'));
  }

  async store(id: string): Promise<StoreInfo | null> {
    const kv = await this.etcd.get(STORES + id);
    return kv === null ? null : parse<StoreInfo>(kv, 'store');
  }

  // ---- volumes -----------------------------------------------------------------------------------

  async volume(name: string): Promise<VolumeInfo | null> {
    const kv = await this.etcd.get(VOLUMES + checkVolumeName(name));
    return kv === null ? null : parse<VolumeInfo>(kv, 'volume');
  }

  async volumes(): Promise<VolumeInfo[]> {
    return (await this.etcd.getPrefix(VOLUMES)).map((kv) => parse<VolumeInfo>(kv, 'volume'));
  }

  /**
   * Creates a volume: its record, then its shards, each placed on `replicas`
   * distinct live stores (rotating, so primaries spread), then marks it ready.
   * EEXIST if the name is taken; EINVAL for bad sizes or too few stores.
   */
  async createVolume(name: string, opts: CreateVolumeOptions): Promise<VolumeInfo> {
    checkVolumeName(name);
    const size = opts.size;
    const replicas = opts.replicas ?? 3;
    const shardSize = opts.shardSize ?? DEFAULT_SHARD_SIZE;
    const codec = opts.codec ?? 'lz4';
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0 || size % 4096 !== 0) {
      throw new FlashpackError('EINVAL', `createVolume: size ${String(size)} (${typeof size}) must be a positive multiple of 4096 bytes`);
    }
    if (typeof shardSize !== 'number' || !Number.isSafeInteger(shardSize) || shardSize < 1 << 20 || shardSize % (1 << 20) !== 0 || shardSize > 2 ** 44) {
      throw new FlashpackError('EINVAL', `createVolume: shardSize ${String(shardSize)} (${typeof shardSize}) must be a multiple of 1 MiB, 1 MiB to 16 TiB`);
    }
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 1 || replicas > 8) {
      throw new FlashpackError('EINVAL', `createVolume: replicas ${String(replicas)} (${typeof replicas}) must be 1 to 8`);
    }
    if (codec !== 'lz4' && codec !== 'deflate') throw new FlashpackError('EINVAL', `createVolume: codec ${JSON.stringify(codec)} (${typeof codec}) must be 'lz4' or 'deflate'`);
    const shards = Math.ceil(size / shardSize);
    if (shards > MAX_SHARDS) throw new FlashpackError('EINVAL', `createVolume: ${shards} shards of ${shardSize} bytes; at most ${MAX_SHARDS} (use a larger shardSize)`);
    const stores = (await this.stores()).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (stores.length < replicas) {
      throw new FlashpackError('EINVAL', `createVolume: ${replicas} replicas need ${replicas} live stores; ${stores.length} registered (${stores.map((s) => s.id).join(', ') || 'none'})`);
    }
    const id = await this.nextVolumeId();
    const info: VolumeInfo = { name, id, size, shardSize, replicas, codec, shards, state: 'creating', created: new Date().toISOString() };
    const created = await this.etcd.txn([{ key: VOLUMES + name, target: 'version', op: '=', value: 0 }], [{ put: { key: VOLUMES + name, value: JSON.stringify(info) } }]);
    if (!created.succeeded) throw new FlashpackError('EEXIST', `createVolume: a volume named '${name}' exists`);
    for (let first = 0; first < shards; first += PUTS_PER_TXN) {
      const ops: TxnOp[] = [];
      for (let index = first; index < Math.min(shards, first + PUTS_PER_TXN); index++) {
        const placed = Array.from({ length: replicas }, (_, k) => stores[(index + k) % stores.length].id);
        const shard: ShardInfo = {
          volume: name, volumeId: id, index, size: Math.min(shardSize, size - index * shardSize), codec, epoch: 1,
          primary: placed[0], replicas: placed.map((store) => ({ store, state: 'OK' as const })), state: 'OK',
        };
        ops.push({ put: { key: shardKey(name, index), value: JSON.stringify(shard) } });
      }
      await this.etcd.txn([], ops);
    }
    info.state = 'ready';
    await this.etcd.put(VOLUMES + name, JSON.stringify(info));
    return info;
  }

  private async nextVolumeId(): Promise<number> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const kv = await this.etcd.get(VOLUME_ID);
      const last = kv === null ? 0 : Number(kv.text);
      if (!Number.isSafeInteger(last) || last < 0 || last >= MAX_VOLUME_ID) throw new FlashpackError('ECORRUPT', `etcd: ${VOLUME_ID} holds ${kv?.text}`);
      const r = await this.etcd.txn([kv === null ? { key: VOLUME_ID, target: 'version', op: '=', value: 0 } : { key: VOLUME_ID, target: 'mod', op: '=', value: kv.modRevision }],
        [{ put: { key: VOLUME_ID, value: String(last + 1) } }]);
      if (r.succeeded) return last + 1;
    }
    throw new FlashpackError('ETIMEDOUT', `etcd: ${VOLUME_ID} kept changing under ${CAS_ATTEMPTS} attempts`);
  }

  // ---- shards ------------------------------------------------------------------------------------

  async shard(volume: string, index: number): Promise<ShardRecord | null> {
    const kv = await this.etcd.get(shardKey(volume, index));
    return kv === null ? null : { info: parse<ShardInfo>(kv, 'shard'), modRevision: kv.modRevision };
  }

  async shards(volume: string): Promise<ShardRecord[]> {
    return (await this.etcd.getPrefix(`${SHARDS}${checkVolumeName(volume)}/`)).map((kv) => ({ info: parse<ShardInfo>(kv, 'shard'), modRevision: kv.modRevision }));
  }

  /**
   * Changes a shard record by compare-and-swap on its mod revision: `change`
   * gets the current info and returns the new one (its epoch is bumped here,
   * its state recomputed) or null to leave it. On a conflict the record is
   * read again and `change` asked again. Resolves to the record as it now is.
   */
  async updateShard(volume: string, index: number, change: (s: ShardInfo) => ShardInfo | null): Promise<ShardRecord> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const rec = await this.shard(volume, index);
      if (rec === null) throw new FlashpackError('ENXIO', `etcd: shard ${index} of volume '${volume}' does not exist`);
      const next = change(structuredClone(rec.info));
      if (next === null) return rec;
      // The invariant every reader relies on: a shard's primary holds an OK replica.
      if (next.replicas.find((r) => r.store === next.primary)?.state !== 'OK') {
        throw new FlashpackError('EINTERNAL', `etcd: a change of shard ${index} of '${volume}' would leave its primary ${next.primary} without an OK replica: ${JSON.stringify(rec.info)} → ${JSON.stringify(next)}`);
      }
      next.epoch = rec.info.epoch + 1;
      next.state = shardState(next.replicas);
      // A shard that is OK again needs no dirty map: it goes in the same transaction.
      const ops: TxnOp[] = [{ put: { key: shardKey(volume, index), value: JSON.stringify(next) } }];
      if (next.state === 'OK' && rec.info.state !== 'OK') ops.push({ del: { key: dirtyPrefix(volume, index), prefix: true } });
      const r = await this.etcd.txn([{ key: shardKey(volume, index), target: 'mod', op: '=', value: rec.modRevision }], ops);
      if (r.succeeded) return { info: next, modRevision: r.revision };
    }
    throw new FlashpackError('ETIMEDOUT', `etcd: shard ${index} of '${volume}' kept changing under ${CAS_ATTEMPTS} attempts`);
  }

  /** Puts `regions` in the shard's dirty map (a region already there stays: its value is only informational). */
  async putDirty(volume: string, index: number, regions: number[], epoch: number): Promise<void> {
    for (let first = 0; first < regions.length; first += PUTS_PER_TXN) {
      const ops: TxnOp[] = regions.slice(first, first + PUTS_PER_TXN).map((r) => ({ put: { key: dirtyKey(volume, index, r), value: String(epoch) } }));
      await this.etcd.txn([], ops);
    }
  }

  /**
   * Records that `store` creates its replica of the shard now: true the first
   * time; false if it had created one before — a replica file that is gone
   * then means lost data, and the new one needs a full copy.
   */
  async claimReplica(volume: string, index: number, store: string): Promise<boolean> {
    const key = replicaClaimKey(volume, index, store);
    const r = await this.etcd.txn([{ key, target: 'version', op: '=', value: 0 }], [{ put: { key, value: new Date().toISOString() } }]);
    return r.succeeded;
  }

  /** Each recovering replica's copy progress, by store. */
  async resyncProgress(volume: string, index: number): Promise<Map<string, ResyncProgress>> {
    const prefix = progressPrefix(volume, index);
    const out = new Map<string, ResyncProgress>();
    for (const kv of await this.etcd.getPrefix(prefix)) {
      try {
        const p = JSON.parse(kv.text) as ResyncProgress;
        if (Number.isSafeInteger(p.copied) && Number.isSafeInteger(p.total)) out.set(kv.key.slice(prefix.length), { copied: p.copied, total: p.total });
      } catch {
        // a torn or foreign value: no progress to show
      }
    }
    return out;
  }

  /** The shard's dirty regions, ascending. */
  async dirtyRegions(volume: string, index: number): Promise<number[]> {
    const prefix = dirtyPrefix(volume, index);
    return (await this.etcd.getPrefix(prefix)).map((kv) => Number(kv.key.slice(prefix.length))).filter((r) => Number.isSafeInteger(r)).sort((a, b) => a - b);
  }

  /**
   * Sets one replica's state, bumping the epoch. Marking a replica ERROR is
   * refused (null returned by the change, record unchanged) when it is the
   * shard's last OK replica, or when the record's epoch moved past
   * `expectEpoch` (someone else already decided).
   */
  async setReplicaState(volume: string, index: number, store: string, state: ReplicaState, expectEpoch?: number): Promise<{ rec: ShardRecord; changed: boolean }> {
    let changed = false;
    const rec = await this.updateShard(volume, index, (s) => {
      changed = false;
      if (expectEpoch !== undefined && s.epoch !== expectEpoch) return null;
      const r = s.replicas.find((x) => x.store === store);
      if (r === undefined || r.state === state) return null;
      if (state === 'ERROR' && r.state === 'OK' && s.replicas.filter((x) => x.state === 'OK').length <= 1) return null;
      r.state = state;
      changed = true;
      return s;
    });
    return { rec, changed };
  }
}
