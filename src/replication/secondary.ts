/**
 * What a store does for its peers: a replica's side of REPLICATE_WRITE,
 * REPLICATE_DISCARD and REPLICATE_FLUSH (PureFlash's dispatch_rep_write: the
 * local replica only; REP_TO_PRIMARY if this store is the shard's primary, so
 * a confused sender cannot loop), and RECOVERY_READ for a recovering replica
 * or `cluster verify`, read under the primary's range lock so the copy is
 * ordered with the shard's writes. The epoch was checked by the store: a
 * deposed primary's replication is refused REOPEN.
 */
import type { Store } from './store.js';
import { regionsOf, type Replica } from './replica.js';
import type { Answer } from './store-connection.js';
import { unpackPayload } from './payload.js';
import {
  OP_RECOVERY_READ, OP_REPLICATE_DISCARD, OP_REPLICATE_FLUSH, OP_REPLICATE_WRITE, ST_INVALID_OPCODE, ST_NOT_READY, ST_OK, ST_REP_TO_PRIMARY, statusOf,
  type Head,
} from './wire.js';

const ROLE_PEER = 1;

export class Secondary {
  constructor(private readonly store: Store) {}

  async handle(rep: Replica, head: Head, data: Uint8Array | null, role: number): Promise<Answer> {
    const info = rep.info;
    const mine = info.replicas.find((r) => r.store === this.store.id);
    if (head.opcode === OP_RECOVERY_READ) {
      // Only an OK replica's bytes are worth copying (not one that reopened after a crash and has not settled: failover.ts).
      if (mine?.state !== 'OK' || rep.leftover.length > 0) return { status: ST_NOT_READY, epoch: info.epoch };
      const release = await rep.lock.acquire(head.offset, head.offset + head.length);
      // A block here that fails its data check throws ECORRUPT, which the connection answers CORRUPT (statusOf): the reader asks another replica or reports it.
      try {
        return { status: ST_OK, epoch: info.epoch, data: await rep.volume.read(head.offset, head.length) };
      } finally {
        release();
      }
    }
    if (role !== ROLE_PEER) return { status: ST_INVALID_OPCODE, epoch: info.epoch };
    if (info.primary === this.store.id) return { status: ST_REP_TO_PRIMARY, epoch: info.epoch };
    if (mine === undefined || (mine.state !== 'OK' && mine.state !== 'RECOVERING')) return { status: ST_NOT_READY, epoch: info.epoch };
    // Changes are logged as unflushed here too (replica.ts): if the primary dies, a new one
    // makes every survivor copy what any of them had in flight (failover.ts).
    const regions = head.opcode === OP_REPLICATE_WRITE || head.opcode === OP_REPLICATE_DISCARD ? regionsOf(head.offset, head.length) : [];
    try {
      switch (head.opcode) {
        case OP_REPLICATE_WRITE:
        case OP_REPLICATE_DISCARD: {
          const plain = head.opcode === OP_REPLICATE_WRITE ? unpackPayload(data!, head.flags, head.length) : null;
          rep.caught(head.offset, head.length);
          rep.beginChange(regions, info.primary, head.commandSeq);
          try {
            await (plain !== null ? rep.volume.write(head.offset, plain) : rep.volume.discard(head.offset, head.length));
          } finally {
            rep.changeDone(regions, head.commandSeq);
          }
          break;
        }
        case OP_REPLICATE_FLUSH: {
          const covered = rep.flushStart(info.primary, head.commandSeq);
          await rep.volume.flush();
          rep.flushed(covered);
          break;
        }
        default:
          return { status: ST_INVALID_OPCODE, epoch: info.epoch };
      }
    } catch (err) {
      this.store.log(`${info.volume}#${info.index}: replicated 0x${head.opcode.toString(16)} failed: ${(err as Error).message}`);
      return { status: statusOf(err), epoch: info.epoch };
    }
    return { status: ST_OK, epoch: info.epoch };
  }
}
