/**
 * Read repair (Ceph's and ZFS's self-healing read, on PureFlash's primary): a
 * client READ whose local bytes fail their data check (ECORRUPT, issue 17) is
 * answered from another OK replica, and the primary's bad blocks are
 * rewritten from it, so the next read is local again.
 *
 * Invariants:
 * - the repair holds the shard's range lock over the read's whole blocks: every
 *   change to them before it has been answered by every replica (primary.ts
 *   holds a change's range until then) and none starts until the repair is
 *   done, so an OK replica's bytes are the acknowledged ones and rewriting
 *   them here loses nothing;
 * - only OK replicas are asked (a RECOVERING one may not hold the blocks yet),
 *   with RECOVERY_READ, which their own volume verifies before answering;
 * - a block no replica can give back fails the read ECORRUPT: never a guess.
 */
import { FlashpackError } from '../errors.js';
import type { Store } from './store.js';
import type { Replica } from './replica.js';
import type { Answer } from './store-connection.js';
import { BLOCK_BYTES as BLOCK } from '../vdo/encodings.js';
import { OP_RECOVERY_READ, ST_CORRUPT, ST_OK, type Head } from './wire.js';

export const isCorrupt = (err: unknown): boolean => err instanceof FlashpackError && err.code === 'ECORRUPT';

/** Serves `head` (a READ) when the local read failed ECORRUPT; see the module header. */
export async function repairRead(store: Store, rep: Replica, head: Head, shardId: number): Promise<Answer> {
  const from = head.offset - (head.offset % BLOCK);
  const to = Math.ceil((head.offset + head.length) / BLOCK) * BLOCK;
  const release = await rep.lock.acquire(from, to);
  try {
    const info = rep.info;
    const out = new Uint8Array(to - from);
    for (let at = from; at < to; at += BLOCK) {
      try {
        out.set(await rep.volume.read(at, BLOCK), at - from);
        continue;
      } catch (err) {
        if (!isCorrupt(err)) throw err;
        store.log(`${info.volume}#${info.index}: read repair at ${at}: ${(err as Error).message}`);
      }
      const good = await fromReplicas(store, rep, shardId, at);
      if (good === null) {
        store.log(`${info.volume}#${info.index}: read repair at ${at}: no OK replica gave the block back; the read fails ECORRUPT`);
        return { status: ST_CORRUPT, epoch: info.epoch };
      }
      await rep.volume.write(at, good.data);
      out.set(good.data, at - from);
      store.counters.readRepairs++;
      store.log(`${info.volume}#${info.index}: read repair at ${at}: rewritten from store ${good.store}`);
    }
    return { status: ST_OK, epoch: info.epoch, data: out.subarray(head.offset - from, head.offset - from + head.length) };
  } finally {
    release();
  }
}

/** Block `at` from the first OK replica elsewhere that reads it right, or null. */
async function fromReplicas(store: Store, rep: Replica, shardId: number, at: number): Promise<{ data: Uint8Array; store: string } | null> {
  const info = rep.info;
  for (const r of info.replicas) {
    if (r.store === store.id || r.state !== 'OK') continue;
    try {
      const c = await store.peer(r.store);
      const { reply, data } = await c.send({ opcode: OP_RECOVERY_READ, shardId, epoch: info.epoch, offset: at, length: BLOCK });
      if (reply.status === ST_OK && data !== null && data.length === BLOCK) return { data, store: r.store };
      store.log(`${info.volume}#${info.index}: read repair at ${at}: store ${r.store} answered 0x${reply.status.toString(16)}`);
    } catch (err) {
      store.log(`${info.volume}#${info.index}: read repair at ${at}: store ${r.store}: ${(err as Error).message}`);
    }
  }
  return null;
}


