/**
 * `cluster verify`: reads every replica of every shard through its store
 * (RECOVERY_READ, as the operator) and compares them, 1 MiB at a time. Run it
 * with the volume quiet: a write in flight between two reads shows as a
 * difference. Only OK replicas are read; the others are listed as skipped. A
 * replica whose stored blocks fail their data checks answers CORRUPT: that
 * range is listed under `corrupt` and compared among the others.
 */
import { FlashpackError } from '../errors.js';
import type { Cluster } from './client.js';
import { DataClient } from './data-client.js';
import { shardId } from './metadata.js';
import { MAX_IO_BYTES, OP_RECOVERY_READ, ST_CORRUPT, ST_OK, statusName } from './wire.js';

export interface VerifyDifference {
  shard: number;
  /** Byte range within the shard, and within the volume. */
  offset: number;
  length: number;
  volumeOffset: number;
  stores: string[];
}

export interface VerifyReport {
  volume: string;
  shards: number;
  bytesCompared: number;
  replicasRead: number;
  skipped: { shard: number; store: string; state: string }[];
  differences: VerifyDifference[];
  /** Ranges a replica could not read because stored blocks fail their data checks (a read through the primary repairs its own from another replica). */
  corrupt: { shard: number; offset: number; length: number; volumeOffset: number; store: string }[];
}

export async function verifyVolume(cluster: Cluster, name: string, onProgress?: (shard: number, shards: number) => void): Promise<VerifyReport> {
  const v = await cluster.meta.volume(name);
  if (v === null) throw new FlashpackError('ENOENT', `cluster verify: no volume named '${name}'`);
  if (v.state !== 'ready') throw new FlashpackError('ENXIO', `cluster verify: volume '${name}' is still being created`);
  const report: VerifyReport = { volume: name, shards: v.shards, bytesCompared: 0, replicasRead: 0, skipped: [], differences: [], corrupt: [] };
  const conns = new Map<string, DataClient>();
  try {
    for (const { info } of await cluster.meta.shards(name)) {
      onProgress?.(info.index, v.shards);
      const readers = [];
      for (const r of info.replicas) {
        if (r.state !== 'OK') {
          report.skipped.push({ shard: info.index, store: r.store, state: r.state });
          continue;
        }
        let c = conns.get(r.store);
        if (c === undefined) {
          const s = await cluster.meta.store(r.store);
          if (s === null) {
            report.skipped.push({ shard: info.index, store: r.store, state: 'unreachable (not registered)' });
            continue;
          }
          c = await DataClient.connect({ address: s.address, role: 'operator', queueDepth: 4 });
          conns.set(r.store, c);
        }
        readers.push({ store: r.store, conn: c });
      }
      report.replicasRead += readers.length;
      if (readers.length < 2) continue; // nothing to compare with
      for (let off = 0; off < info.size; off += MAX_IO_BYTES) {
        const len = Math.min(MAX_IO_BYTES, info.size - off);
        const read = await Promise.all(readers.map(async ({ store, conn }) => {
          const { reply, data } = await conn.send({ opcode: OP_RECOVERY_READ, shardId: shardId(info.volumeId, info.index), epoch: info.epoch, offset: off, length: len });
          if (reply.status === ST_CORRUPT) {
            report.corrupt.push({ shard: info.index, offset: off, length: len, volumeOffset: info.index * v.shardSize + off, store });
            return null;
          }
          if (reply.status !== ST_OK || data === null) throw new FlashpackError('EIO', `cluster verify: store ${store} answered ${statusName(reply.status)} reading shard ${info.index} at ${off} (epoch ${info.epoch}; is the volume quiet?)`);
          return { store, bytes: Buffer.from(data.buffer, data.byteOffset, data.length) };
        }));
        const got = read.filter((g) => g !== null);
        report.bytesCompared += len * got.length;
        const differing = got.filter((g) => !g.bytes.equals(got[0].bytes)).map((g) => g.store);
        if (differing.length > 0) {
          report.differences.push({ shard: info.index, offset: off, length: len, volumeOffset: info.index * v.shardSize + off, stores: [got[0].store, ...differing] });
        }
      }
    }
  } finally {
    for (const c of conns.values()) c.close();
  }
  return report;
}
