/**
 * The replicated volume's client: `Cluster.connect({ etcd })`, then
 * `createVolume` and `openVolume`, which returns an object with the Volume
 * interface (and what `flashpack serve` exports over NBD). A request is cut at
 * shard boundaries and into pieces of at most 1 MiB; each piece goes to its
 * shard's primary with the shard's epoch. REOPEN (a stale epoch, or the store
 * no longer leads the shard) re-reads the shard from etcd and resends; so does
 * a lost connection, until the deadline. The volume also watches its shard
 * records: when a shard gets a new primary (failover.ts), requests in flight
 * to the old one are resent to the new one at once — a primary that is
 * paused or cut off answers nothing, and its answer would be REOPEN anyway.
 */
import { FlashpackError } from '../errors.js';
import { Etcd } from './etcd.js';
import { ClusterMeta, checkVolumeName, shardId, shardKey, type CreateVolumeOptions, type ResyncProgress, type ShardInfo, type StoreInfo, type VolumeInfo } from './metadata.js';
import { DataClient } from './data-client.js';
import { packPayload } from './payload.js';
import { MAX_IO_BYTES, OP_DISCARD, OP_FLUSH, OP_READ, OP_WRITE, ST_DEGRADE, ST_OK, ST_REOPEN, statusName, statusToError } from './wire.js';
import type { VolumeExtent } from '../vdo/volume.js';

export interface ClusterOptions {
  /** etcd endpoints: 'http://127.0.0.1:2379' or several, comma-separated or as an array. */
  etcd: string | string[];
  /** How long a request keeps retrying (REOPEN, a lost store) before it fails. Default 30 s. */
  retryMs?: number;
  queueDepth?: number;
  ioTimeoutMs?: number;
  /** Send write data LZ4-compressed where that saves bytes (default true); the stores forward it so. */
  compress?: boolean;
  /**
   * Follow each open volume's shard records with an etcd watch (default true),
   * so a failover redirects requests at once. false: one stream fewer per
   * volume; changes are learnt from REOPEN answers and lost connections only,
   * and a request to a paused primary waits for ioTimeoutMs.
   */
  watch?: boolean;
}

export interface ClusterVolumeStats {
  volume: string;
  size: number;
  shards: number;
  degradedShards: number;
  requests: number;
  reopens: number;
  retries: number;
  degradedWrites: number;
  bytesWritten: number;
  /** Bytes this client sent and received on the wire (heads, replies, data). */
  wireBytesSent: number;
  wireBytesReceived: number;
  /** wireBytesSent / bytesWritten: below 1 where compression saved more than the heads cost. */
  wireBytesPerByteWritten: number;
  /**
   * Changes (writes, discards) acknowledged, by shard, epoch and the store that
   * acknowledged them: one store per shard and epoch, or two primaries
   * acknowledged in the same epoch (what fencing prevents).
   */
  acknowledgedBy: { shard: number; epoch: number; store: string; changes: number }[];
  /** Each shard's epoch and primary as this client knows them. */
  shardEpochs: number[];
  shardPrimaries: string[];
}

export interface ClusterStatus {
  stores: StoreInfo[];
  /** Each shard with its dirty-region count and, per recovering replica, its copy so far. */
  volumes: (VolumeInfo & { shardList: (ShardInfo & { dirtyRegions: number; resync: Record<string, ResyncProgress> })[] })[];
}

export class Cluster {
  readonly meta: ClusterMeta;
  private readonly conns = new Map<string, Promise<DataClient>>();
  private closed = false;

  private constructor(readonly etcd: Etcd, readonly opts: ClusterOptions) {
    this.meta = new ClusterMeta(etcd);
  }

  static async connect(opts: ClusterOptions): Promise<Cluster> {
    if (opts === null || typeof opts !== 'object') throw new FlashpackError('EINVAL', `Cluster.connect: options ${String(opts)} (${typeof opts}) must be { etcd }`);
    const etcd = new Etcd(opts.etcd);
    const c = new Cluster(etcd, opts);
    await c.meta.volumes(); // reachable now, or ENXIO now
    return c;
  }

  createVolume(name: string, opts: CreateVolumeOptions): Promise<VolumeInfo> {
    return this.meta.createVolume(name, opts);
  }

  async openVolume(name: string): Promise<ClusterVolume> {
    const v = await this.meta.volume(checkVolumeName(name));
    if (v === null) throw new FlashpackError('ENOENT', `cluster: no volume named '${name}'`);
    if (v.state !== 'ready') throw new FlashpackError('ENXIO', `cluster: volume '${name}' is still being created (state ${v.state})`);
    const shards = await this.meta.shards(name);
    if (shards.length !== v.shards) throw new FlashpackError('ECORRUPT', `cluster: volume '${name}' has ${shards.length} shard records, not ${v.shards}`);
    return new ClusterVolume(this, v, shards.map((s) => s.info), Math.max(...shards.map((s) => s.modRevision)));
  }

  /** Stores, volumes, shards, replica states, epochs and dirty-region counts, as etcd has them. */
  async status(): Promise<ClusterStatus> {
    const stores = await this.meta.stores();
    const volumes = [];
    for (const v of await this.meta.volumes()) {
      const shardList = [];
      for (const s of await this.meta.shards(v.name)) {
        const degraded = s.info.state !== 'OK';
        const resync = degraded ? Object.fromEntries(await this.meta.resyncProgress(v.name, s.info.index)) : {};
        for (const id of Object.keys(resync)) if (s.info.replicas.find((r) => r.store === id)?.state !== 'RECOVERING') delete resync[id];
        shardList.push({ ...s.info, dirtyRegions: degraded ? (await this.meta.dirtyRegions(v.name, s.info.index)).length : 0, resync });
      }
      volumes.push({ ...v, shardList });
    }
    return { stores, volumes };
  }

  /** The connection to a store (one per store, shared by the volumes opened here). */
  async connection(storeId: string): Promise<DataClient> {
    if (this.closed) throw new FlashpackError('ENXIO', 'cluster: closed');
    let p = this.conns.get(storeId);
    if (p === undefined) {
      p = (async () => {
        const info = await this.meta.store(storeId);
        if (info === null) throw new FlashpackError('ENXIO', `cluster: store ${storeId} is not registered (down?)`);
        return DataClient.connect({
          address: info.address, role: 'client', queueDepth: this.opts.queueDepth ?? 128, ioTimeoutMs: this.opts.ioTimeoutMs ?? 10_000,
          onClose: () => {
            if (this.conns.get(storeId) === p) this.conns.delete(storeId);
          },
        });
      })();
      this.conns.set(storeId, p);
      p.catch(() => {
        if (this.conns.get(storeId) === p) this.conns.delete(storeId);
      });
    }
    return p;
  }

  /** Bytes sent and received on every store connection now open. */
  async wireBytes(): Promise<{ sent: number; received: number }> {
    let sent = 0;
    let received = 0;
    for (const p of this.conns.values()) {
      const c = await p.catch(() => null);
      if (c !== null) {
        sent += c.bytesSent;
        received += c.bytesReceived;
      }
    }
    return { sent, received };
  }

  close(): void {
    this.closed = true;
    for (const p of this.conns.values()) void p.then((c) => c.close(), () => {});
    this.conns.clear();
    this.etcd.close();
  }
}

export class ClusterVolume {
  readonly name: string;
  readonly logicalSize: number;
  readonly readOnly = false;
  private readonly shards: ShardInfo[];
  private readonly written = new Set<number>();
  private closed = false;
  private readonly counters = { requests: 0, reopens: 0, retries: 0, degradedWrites: 0, bytesWritten: 0, sent: 0, received: 0 };
  /** `${shard} ${epoch} ${store}` → changes acknowledged so (stats().acknowledgedBy). */
  private readonly acks = new Map<string, number>();

  /** Per shard: resolves when the shard gets a new primary (then replaced by a fresh one). */
  private readonly moved: { promise: Promise<void>; resolve: () => void }[];
  private readonly watch: { close(): void } | null;

  constructor(private readonly cluster: Cluster, readonly info: VolumeInfo, shards: ShardInfo[], revision: number) {
    this.name = info.name;
    this.logicalSize = info.size;
    this.shards = shards;
    this.moved = shards.map(() => signal());
    const prefix = shardKey(info.name, 0).slice(0, -5);
    this.watch = cluster.opts.watch === false ? null : cluster.etcd.watchPrefix(prefix, (e) => {
      if (e.type !== 'put') return;
      try {
        this.update(JSON.parse(e.kv.text) as ShardInfo);
      } catch {
        // not a shard record: reload() reports it when it matters
      }
    }, { fromRevision: revision + 1, onError: () => {} });
  }

  /** Takes a newer record of one of this volume's shards; a new primary releases the requests in flight to the old one. */
  private update(next: ShardInfo): void {
    const index = next.index;
    const held = this.shards[index];
    if (held === undefined || next.volumeId !== held.volumeId || next.epoch <= held.epoch) return;
    this.shards[index] = next;
    if (next.primary !== held.primary) {
      const m = this.moved[index];
      this.moved[index] = signal();
      m.resolve();
    }
  }

  private check(offset: number, length: number, what: string): void {
    if (this.closed) throw new FlashpackError('ENXIO', `${what}: the volume is closed`);
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw new FlashpackError('EINVAL', `${what}: offset ${String(offset)} (${typeof offset}) must be a non-negative integer`);
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) throw new FlashpackError('EINVAL', `${what}: length ${String(length)} (${typeof length}) must be a non-negative integer`);
    if (offset + length > this.logicalSize) throw new FlashpackError('EINVAL', `${what}: [${offset}, ${offset + length}) is past the end of the ${this.logicalSize}-byte volume`);
    if (offset % 512 !== 0 || length % 512 !== 0) throw new FlashpackError('EINVAL', `${what}: offset ${offset} and length ${length} must be multiples of 512`);
  }

  /** Pieces of [offset, offset + length): within one shard, at most MAX_IO_BYTES each. */
  private pieces(offset: number, length: number): { index: number; at: number; off: number; len: number }[] {
    const out = [];
    const ss = this.info.shardSize;
    for (let pos = 0; pos < length;) {
      const abs = offset + pos;
      const index = Math.floor(abs / ss);
      const off = abs - index * ss;
      const len = Math.min(length - pos, MAX_IO_BYTES, ss - off);
      out.push({ index, at: pos, off, len });
      pos += len;
    }
    return out;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.check(offset, length, 'cluster volume.read');
    const out = new Uint8Array(length);
    await Promise.all(this.pieces(offset, length).map(async (p) => {
      const data = await this.send(p.index, OP_READ, p.off, p.len);
      if (data === null || data.length !== p.len) throw new FlashpackError('EIO', `cluster volume.read: shard ${p.index} answered ${data?.length ?? 0} bytes for ${p.len}`);
      out.set(data, p.at);
    }));
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (!(data instanceof Uint8Array)) throw new FlashpackError('EINVAL', `cluster volume.write: data (${typeof data}) must be a Uint8Array`);
    this.check(offset, data.length, 'cluster volume.write');
    await Promise.all(this.pieces(offset, data.length).map((p) => {
      const piece = data.subarray(p.at, p.at + p.len);
      const { bytes, flags } = this.cluster.opts.compress === false ? { bytes: piece, flags: 0 } : packPayload(piece);
      return this.send(p.index, OP_WRITE, p.off, p.len, bytes, flags);
    }));
    this.counters.bytesWritten += data.length;
  }

  async discard(offset: number, length: number): Promise<void> {
    this.check(offset, length, 'cluster volume.discard');
    await Promise.all(this.pieces(offset, length).map((p) => this.send(p.index, OP_DISCARD, p.off, p.len)));
  }

  /** Every write acknowledged before the call is durable on every replica. */
  async flush(): Promise<void> {
    if (this.closed) throw new FlashpackError('ENXIO', 'cluster volume.flush: the volume is closed');
    const shards = [...this.written];
    this.written.clear();
    try {
      await Promise.all(shards.map((i) => this.send(i, OP_FLUSH, 0, 0)));
    } catch (err) {
      for (const i of shards) this.written.add(i); // not known durable: the next flush tries again
      throw err;
    }
  }

  /** Allocation is each replica's business: the whole range reads as data. */
  async extents(offset: number, length: number): Promise<VolumeExtent[]> {
    this.check(offset - (offset % 512), 0, 'cluster volume.extents');
    const first = Math.floor(offset / 4096) * 4096;
    return [{ offset: first, length: Math.min(this.logicalSize, Math.ceil((offset + Math.max(length, 1)) / 4096) * 4096) - first, type: 'data' } as VolumeExtent];
  }

  stats(): ClusterVolumeStats {
    const c = this.counters;
    return {
      volume: this.name, size: this.logicalSize, shards: this.shards.length, degradedShards: this.shards.filter((s) => s.state !== 'OK').length,
      requests: c.requests, reopens: c.reopens, retries: c.retries, degradedWrites: c.degradedWrites, bytesWritten: c.bytesWritten,
      wireBytesSent: c.sent, wireBytesReceived: c.received,
      wireBytesPerByteWritten: c.bytesWritten === 0 ? 0 : Math.round((c.sent / c.bytesWritten) * 1000) / 1000,
      acknowledgedBy: [...this.acks].map(([k, changes]) => {
        const [shard, epoch, store] = k.split(' ');
        return { shard: Number(shard), epoch: Number(epoch), store, changes };
      }),
      shardEpochs: this.shards.map((s) => s.epoch),
      shardPrimaries: this.shards.map((s) => s.primary),
    };
  }

  /** Flushes, then closes (the cluster and its connections stay). */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      this.watch?.close();
    }
  }

  /** The shard's record, re-read from etcd. */
  private async reload(index: number): Promise<ShardInfo> {
    const rec = await this.cluster.meta.shard(this.name, index);
    if (rec === null) throw new FlashpackError('ENXIO', `cluster volume '${this.name}': shard ${index} is gone from etcd`);
    this.update(rec.info);
    return this.shards[index];
  }

  /** One piece to its shard's primary, resent on REOPEN or a lost store until the deadline. */
  private async send(index: number, opcode: number, off: number, len: number, data?: Uint8Array, flags = 0): Promise<Uint8Array | null> {
    this.counters.requests++;
    if (opcode === OP_WRITE || opcode === OP_DISCARD) this.written.add(index);
    const deadline = Date.now() + (this.cluster.opts.retryMs ?? 30_000);
    let why = '';
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        this.counters.retries++;
        if (Date.now() > deadline) throw new FlashpackError('ETIMEDOUT', `cluster volume '${this.name}': shard ${index} not answered within ${this.cluster.opts.retryMs ?? 30_000} ms (${why})`);
        await new Promise((r) => setTimeout(r, Math.min(200, 5 * attempt)));
        await this.reload(index).catch(() => {});
      }
      const shard = this.shards[index];
      let conn: DataClient;
      try {
        conn = await this.cluster.connection(shard.primary);
      } catch (err) {
        why = (err as Error).message;
        continue;
      }
      let r;
      try {
        // This request's own bytes (the connection's counters are shared by every request in flight).
        const sent = conn.send({ opcode, flags, shardId: shardId(shard.volumeId, index), epoch: shard.epoch, offset: off, length: len }, data, this.counters);
        const moved = this.moved[index].promise;
        r = await Promise.race([sent, moved.then(() => null)]);
        if (r === null) {
          // The shard has a new primary: resend there. What the old one does with this copy is fenced by its epoch.
          sent.catch(() => {});
          why = `shard ${index} moved from store ${shard.primary} to ${this.shards[index].primary}`;
          this.counters.reopens++;
          continue;
        }
      } catch (err) {
        why = (err as Error).message;
        continue;
      }
      const status = r.reply.status;
      if ((status & ST_REOPEN) !== 0) {
        this.counters.reopens++;
        why = `store ${shard.primary} answered ${statusName(status)}`;
        continue;
      }
      if ((status & 0xff) !== ST_OK) throw statusToError(status & ~ST_DEGRADE, `cluster volume '${this.name}' shard ${index} at ${off}`);
      if ((status & ST_DEGRADE) !== 0) {
        this.counters.degradedWrites++;
        if (r.reply.epoch > shard.epoch) void this.reload(index).catch(() => {});
      }
      if (opcode === OP_WRITE || opcode === OP_DISCARD) {
        const key = `${index} ${r.reply.epoch} ${shard.primary}`;
        this.acks.set(key, (this.acks.get(key) ?? 0) + 1);
      }
      return r.data;
    }
  }
}

function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
