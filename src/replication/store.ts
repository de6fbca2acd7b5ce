/**
 * The store daemon (`flashpack store`): registers itself in etcd under a
 * lease, hosts shard replicas as local flashpack volumes in its data
 * directory, and serves the data protocol over TCP. What it does with each
 * request is primary.ts (a shard's primary: fan-out, ordering, degrading)
 * and secondary.ts (replicated changes, recovery reads); recovery.ts brings a
 * returning replica back. Every request carries the shard's epoch; a stale
 * one is answered REOPEN, so a deposed primary is fenced by its replicas.
 *
 * The store keeps no state a new primary would need outside etcd: shard
 * records, replica states and the dirty-region map all live there.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import process from 'node:process';
import { FlashpackError } from '../errors.js';
import { Etcd } from './etcd.js';
import { ROOT, ClusterMeta, checkStoreId, shardId as makeShardId, MAX_SHARDS, type ShardInfo, type ShardRecord } from './metadata.js';
import { DataClient, parseAddress } from './data-client.js';
import { StoreConnection, type Answer } from './store-connection.js';
import { Replica } from './replica.js';
import { Primary } from './primary.js';
import { Secondary } from './secondary.js';
import { Recovery } from './recovery.js';
import { Failover } from './failover.js';
import { activityLogPath, replicaPath } from './replica.js';
import { ST_REOPEN, OP_HEARTBEAT, ST_EPOCH, ST_NOT_PRIMARY, ST_NOT_READY, ST_OK, type Head } from './wire.js';

export interface StoreOptions {
  /** etcd endpoints: 'http://127.0.0.1:2379' or several, comma-separated or as an array. */
  etcd: string | string[];
  /** The data directory: replica volumes, and the store's id. */
  dir: string;
  /** host:port to serve the data protocol on (port 0: any free port). */
  listen: string;
  /** The store's id (default: the one saved in dir, else store-<random>). */
  id?: string;
  /** Seconds the store's registration outlives it (default 3). */
  leaseTtl?: number;
  queueDepth?: number;
  /** A replica that does not answer within this is failed (default 5 s). */
  ioTimeoutMs?: number;
  heartbeatMs?: number;
  /** Engine workers per hosted replica volume (default 1). */
  workers?: number;
  /** How often shard records are re-read and failed replicas retried (default 500 ms). */
  reconcileMs?: number;
  /** Primaries flush their shards on every replica this often when written to (default 2 s). */
  flushMs?: number;
  log?: (line: string) => void;
  /**
   * Switches that exist to prove the ordering test can fail; not for use.
   * fanoutJitterMs delays each REPLICATE_* by up to that many milliseconds
   * (paths of different latency, as on a real network); unorderedFanout skips
   * the range lock (PureFlash's fan-out).
   */
  testOnly?: { fanoutJitterMs?: number; unorderedFanout?: boolean };
}

export interface StoreStats {
  id: string;
  address: string;
  replicas: number;
  connections: number;
  requests: number;
  replicatedWrites: number;
  degradedWrites: number;
  reopens: number;
  recoveryRegionsCopied: number;
  recoveryBytesCopied: number;
  peerBytesSent: number;
  /** Blocks a READ found corrupt here and rewrote from another replica (read-repair.ts). */
  readRepairs: number;
}

/** Between attempts to register again after the lease was lost. */
const REREGISTER_RETRY_MS = 1000;

/** Whether the replica volume at `file` has an activity log its previous run left non-empty. */
function hasLeftover(file: string): boolean {
  try {
    return fs.statSync(activityLogPath(file)).size > 0;
  } catch {
    return false;
  }
}

export class Store {
  readonly id: string;
  readonly dir: string;
  address = '';
  readonly meta: ClusterMeta;
  readonly etcd: Etcd;
  readonly opts: Required<Omit<StoreOptions, 'id' | 'log' | 'testOnly'>> & { log: (line: string) => void; testOnly: { fanoutJitterMs: number; unorderedFanout: boolean } };
  readonly primary: Primary;
  readonly secondary: Secondary;
  readonly recovery: Recovery;
  readonly failover: Failover;
  readonly counters = { requests: 0, replicatedWrites: 0, degradedWrites: 0, reopens: 0, recoveryRegionsCopied: 0, recoveryBytesCopied: 0, peerBytesSent: 0, readRepairs: 0 };
  /** Shard records this store is part of, by shard id. */
  readonly views = new Map<number, ShardRecord>();
  readonly replicas = new Map<number, Replica>();
  private readonly opening = new Map<number, Promise<Replica>>();
  private readonly volumeIds = new Map<number, string>();
  private readonly peers = new Map<string, Promise<DataClient>>();
  private readonly connections = new Set<StoreConnection>();
  private server: net.Server | null = null;
  private lease: { id: string; stop(): Promise<void> } | null = null;
  private timers: ReturnType<typeof setInterval>[] = [];
  private closing = false;
  private watch: { close(): void } | null = null;

  private constructor(o: StoreOptions, id: string) {
    this.id = id;
    this.dir = o.dir;
    this.opts = {
      etcd: o.etcd, dir: o.dir, listen: o.listen, leaseTtl: o.leaseTtl ?? 3, queueDepth: o.queueDepth ?? 128, ioTimeoutMs: o.ioTimeoutMs ?? 5000,
      heartbeatMs: o.heartbeatMs ?? 500, workers: o.workers ?? 1, reconcileMs: o.reconcileMs ?? 500, flushMs: o.flushMs ?? 2000,
      log: o.log ?? ((line) => process.stderr.write(`${line}\n`)),
      testOnly: { fanoutJitterMs: o.testOnly?.fanoutJitterMs ?? 0, unorderedFanout: o.testOnly?.unorderedFanout === true },
    };
    this.etcd = new Etcd(o.etcd);
    this.meta = new ClusterMeta(this.etcd);
    this.primary = new Primary(this);
    this.secondary = new Secondary(this);
    this.recovery = new Recovery(this);
    this.failover = new Failover(this);
  }

  /** Starts a store: its id, its listener, its registration; then it serves until close(). */
  static async start(o: StoreOptions): Promise<Store> {
    if (typeof o.dir !== 'string' || o.dir === '') throw new FlashpackError('EINVAL', `store: dir ${JSON.stringify(o.dir)} (${typeof o.dir}) must be a directory path`);
    parseAddress(o.listen, true);
    fs.mkdirSync(o.dir, { recursive: true });
    const idFile = path.join(o.dir, 'store-id');
    const saved = fs.existsSync(idFile) ? fs.readFileSync(idFile, 'utf8').trim() : null;
    if (o.id !== undefined && saved !== null && o.id !== saved) {
      throw new FlashpackError('EINVAL', `store: --id '${o.id}' but ${o.dir} belongs to store '${saved}'`);
    }
    const id = checkStoreId(o.id ?? saved ?? `store-${Math.random().toString(36).slice(2, 10)}`);
    if (saved === null) fs.writeFileSync(idFile, `${id}\n`);
    const store = new Store(o, id);
    try {
      await store.listen();
      await store.register();
      await store.reconcile();
    } catch (err) {
      await store.close().catch(() => {});
      throw err;
    }
    store.watch = store.etcd.watchPrefix(`${ROOT}shards/`, (e) => {
      if (e.type !== 'put') return;
      try {
        store.adopt({ info: JSON.parse(e.kv.text) as ShardInfo, modRevision: e.kv.modRevision });
      } catch {
        // a record that is not JSON: the reconcile pass reports it
      }
    });
    // One pass at a time: a pass that waits on a peer or on etcd is not overtaken by the next.
    let passing = false;
    store.timers.push(setInterval(() => {
      if (passing) return;
      passing = true;
      void store.reconcile().catch((e: Error) => store.log(`reconcile: ${e.message}`)).finally(() => (passing = false));
    }, store.opts.reconcileMs));
    store.timers.push(setInterval(() => void store.primary.flushAll(true).catch((e: Error) => store.log(`background flush: ${e.message}`)), store.opts.flushMs));
    return store;
  }

  log(line: string): void {
    this.opts.log(`store ${this.id}: ${line}`);
  }

  get queueDepth(): number {
    return this.opts.queueDepth;
  }

  private async listen(): Promise<void> {
    const { host, port } = parseAddress(this.opts.listen, true);
    const server = net.createServer((socket) => {
      const label = `${socket.remoteAddress}:${socket.remotePort}`;
      const conn: StoreConnection = new StoreConnection(socket, this, label, () => this.connections.delete(conn));
      this.connections.add(conn);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new FlashpackError('EINVAL', `store: cannot listen on ${this.opts.listen}: ${err.message}`, { cause: err })));
      server.listen({ host, port }, () => resolve());
    });
    this.server = server;
    const a = server.address() as net.AddressInfo;
    this.address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  private async register(): Promise<void> {
    let capacity = 0;
    let free = 0;
    try {
      const s = fs.statfsSync(this.dir);
      capacity = s.blocks * s.bsize;
      free = s.bavail * s.bsize;
    } catch {
      // statfs is not everywhere; the numbers are informational.
    }
    const info = { id: this.id, address: this.address, capacity, free, pid: process.pid, started: new Date().toISOString() };
    // A previous run of this store that was killed stays registered until its lease runs out: wait for that.
    const deadline = Date.now() + (2 * this.opts.leaseTtl + 2) * 1000;
    for (;;) {
      const existing = await this.meta.store(this.id);
      if (existing === null || existing.pid === process.pid) break;
      if (Date.now() > deadline) {
        throw new FlashpackError('EBUSY', `store: id '${this.id}' is registered by process ${existing.pid} at ${existing.address} (alive while its lease lasts)`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    this.lease = await this.etcd.keepLease(this.opts.leaseTtl, (err) => {
      this.log(`lost the etcd lease: ${err.message}; registering again`);
      this.lease = null;
      void this.registerAgain();
    });
    await this.meta.putStore(info, this.lease.id);
  }

  /** After a lost lease: registers again, retrying while etcd is unreachable (no quorum), until it works or the store closes. */
  private async registerAgain(): Promise<void> {
    while (!this.closing && this.lease === null) {
      try {
        await this.register();
        this.log('registered again');
        return;
      } catch (e) {
        this.log(`register: ${(e as Error).message}; retrying`);
        await new Promise((r) => setTimeout(r, REREGISTER_RETRY_MS));
      }
    }
  }

  // ---- shard views -------------------------------------------------------------------------------

  /** Re-reads every shard record; opens replicas assigned here; fails, retries and recovers as needed. */
  async reconcile(): Promise<void> {
    if (this.closing) return;
    for (const v of await this.meta.volumes()) {
      if (v.state !== 'ready') continue;
      this.volumeIds.set(v.id, v.name);
      for (const rec of await this.meta.shards(v.name)) this.adopt(rec);
    }
    // A replica to recover, or one its previous run left changes logged for (failover.ts), is
    // opened now; others open on their first request.
    for (const [id, rec] of this.views) {
      if (this.replicas.has(id)) continue;
      const recovering = rec.info.replicas.some((r) => r.store === this.id && r.state === 'RECOVERING');
      if (recovering || hasLeftover(replicaPath(this.dir, rec.info.volume, rec.info.index))) await this.replica(id, rec.info.epoch);
    }
    await this.failover.reconcile();
    await this.primary.reconcile();
    this.recovery.reconcile();
  }

  /** Takes a shard record if it is newer than the one held and names this store. */
  adopt(rec: ShardRecord): ShardRecord | null {
    const id = makeShardId(rec.info.volumeId, rec.info.index);
    const held = this.views.get(id);
    if (held !== undefined && held.modRevision >= rec.modRevision) return held;
    if (!rec.info.replicas.some((r) => r.store === this.id)) {
      this.views.delete(id);
      // Moved off this store (drain.ts): the replica is closed and its files deleted.
      const gone = this.replicas.get(id);
      if (gone !== undefined) {
        this.replicas.delete(id);
        void this.dropReplica(gone).catch((e: Error) => this.log(`${Store.label(gone.info)}: deleting the replica: ${e.message}`));
      }
      return null;
    }
    this.views.set(id, rec);
    const rep = this.replicas.get(id);
    if (rep !== undefined) {
      rep.info = rec.info;
      rep.modRevision = rec.modRevision;
      if (rec.info.state === 'OK') rep.dirtyKnown.clear();
    }
    return rec;
  }

  /** The shard's record, read again from etcd. */
  async refresh(shardId: number): Promise<ShardRecord | null> {
    const volumeId = Math.floor(shardId / MAX_SHARDS);
    let name = this.volumeIds.get(volumeId);
    if (name === undefined) {
      for (const v of await this.meta.volumes()) this.volumeIds.set(v.id, v.name);
      name = this.volumeIds.get(volumeId);
      if (name === undefined) return null;
    }
    const rec = await this.meta.shard(name, shardId % MAX_SHARDS);
    return rec === null ? null : this.adopt(rec);
  }

  /** The replica of shard `shardId` hosted here, opened (created on first use), or null if it is not hosted here. */
  async replica(shardId: number, epoch: number): Promise<Replica | null> {
    let view = this.views.get(shardId) ?? null;
    if (view === null || epoch > view.info.epoch) view = await this.refresh(shardId);
    if (view === null) return null;
    const open = this.replicas.get(shardId);
    if (open !== undefined) return open;
    let p = this.opening.get(shardId);
    if (p === undefined) {
      const v = view;
      p = this.openReplica(v).then((rep) => {
        this.replicas.set(shardId, rep);
        this.opening.delete(shardId);
        const newer = this.views.get(shardId);
        if (newer !== undefined && newer.modRevision > rep.modRevision) {
          rep.info = newer.info;
          rep.modRevision = newer.modRevision;
        }
        return rep;
      }, (err: Error) => {
        this.opening.delete(shardId);
        throw err;
      });
      this.opening.set(shardId, p);
    }
    return p;
  }

  /**
   * Opens a replica's volume; one whose file is missing is first claimed in
   * etcd, and if this store had created it before, its data was lost: every
   * region is copied before it counts again (failover.ts, recovery.ts).
   */
  private async openReplica(v: ShardRecord): Promise<Replica> {
    const { volume, index } = v.info;
    const existed = fs.existsSync(replicaPath(this.dir, volume, index));
    const first = existed || (await this.meta.claimReplica(volume, index, this.id));
    const rep = await Replica.open(this.dir, v.info, v.modRevision, this.opts.workers);
    if (!first) {
      rep.lostEverything();
      this.log(`${volume}#${index}: the replica's file was gone (data lost?); a new one copies every region`);
    }
    return rep;
  }

  private async dropReplica(rep: Replica): Promise<void> {
    await rep.close();
    fs.rmSync(rep.file, { force: true });
    fs.rmSync(activityLogPath(rep.file), { force: true });
    this.log(`${Store.label(rep.info)}: no longer a replica here (moved); ${rep.file} deleted`);
  }

  /** The shard's name for messages. */
  static label(info: ShardInfo): string {
    return `${info.volume}#${info.index}`;
  }

  // ---- requests ----------------------------------------------------------------------------------

  /** One request from a connection (store-connection.ts). */
  async handle(head: Head, data: Uint8Array | null, role: number): Promise<Answer> {
    this.counters.requests++;
    if (head.opcode === OP_HEARTBEAT) return { status: ST_OK, epoch: 0 };
    // Closing: a client is told to look again (a new primary takes over once this store's lease is revoked).
    if (this.closing) return { status: role === 0 ? ST_NOT_READY | ST_REOPEN : ST_NOT_READY, epoch: 0 };
    const rep = await this.replica(head.shardId, head.epoch);
    if (rep === null) return { status: ST_NOT_PRIMARY | ST_REOPEN, epoch: 0 };
    if (head.epoch !== rep.info.epoch) {
      this.counters.reopens++;
      return { status: ST_EPOCH | ST_REOPEN, epoch: rep.info.epoch };
    }
    if (head.offset + head.length > rep.info.size) return { status: 0x80, epoch: rep.info.epoch };
    return role === 0 ? this.primary.handle(rep, head, data) : this.secondary.handle(rep, head, data, role);
  }

  // ---- peers -------------------------------------------------------------------------------------

  /** The connection to store `id` (made on first use); ENXIO if it is not registered or unreachable. */
  async peer(id: string): Promise<DataClient> {
    let p = this.peers.get(id);
    if (p === undefined) {
      p = (async () => {
        const info = await this.meta.store(id);
        if (info === null) throw new FlashpackError('ENXIO', `store ${id} is not registered (its lease expired)`);
        return DataClient.connect({
          address: info.address, role: 'peer', queueDepth: this.opts.queueDepth, ioTimeoutMs: this.opts.ioTimeoutMs, heartbeatMs: this.opts.heartbeatMs,
          onClose: (reason) => {
            if (this.peers.get(id) === p) this.peers.delete(id);
            if (!this.closing) {
              this.log(`connection to store ${id} ended: ${reason}`);
              void this.primary.peerLost(id).catch((e: Error) => this.log(`failing replicas of ${id}: ${e.message}`));
            }
          },
        });
      })();
      this.peers.set(id, p);
      p.catch(() => {
        if (this.peers.get(id) === p) this.peers.delete(id);
      });
    }
    return p;
  }

  stats(): StoreStats {
    let peerBytesSent = this.counters.peerBytesSent;
    return {
      id: this.id, address: this.address, replicas: this.replicas.size, connections: this.connections.size,
      requests: this.counters.requests, replicatedWrites: this.counters.replicatedWrites, degradedWrites: this.counters.degradedWrites,
      reopens: this.counters.reopens, recoveryRegionsCopied: this.counters.recoveryRegionsCopied,
      recoveryBytesCopied: this.counters.recoveryBytesCopied, peerBytesSent: (peerBytesSent += 0), readRepairs: this.counters.readRepairs,
    };
  }

  /** Stops serving, flushes and closes every replica cleanly, and leaves etcd (the lease is revoked). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const t of this.timers) clearInterval(t);
    this.watch?.close();
    this.recovery.stop();
    // Shards led here are flushed everywhere first: their activity logs then hold nothing to copy at the next start.
    await this.primary.flushAll(true).catch((e: Error) => this.log(`closing flush: ${e.message}`));
    // The listener stops taking connections; those open are ended (server.close waits for them).
    const server = this.server;
    const serverClosed = server === null ? Promise.resolve() : new Promise<void>((r) => server.close(() => r()));
    for (const c of [...this.connections]) c.close(null);
    await serverClosed;
    for (const p of this.peers.values()) void p.then((c) => c.close(), () => {});
    this.peers.clear();
    await Promise.allSettled([...this.opening.values()]);
    const errors: Error[] = [];
    for (const rep of this.replicas.values()) await rep.close().catch((e: Error) => errors.push(e));
    this.replicas.clear();
    await this.lease?.stop().catch(() => {});
    this.etcd.close();
    if (errors.length > 0) throw errors[0];
  }
}
