// Replicated-volume client smoke suite under Node, Deno and Bun (run by
// test/replication-runtimes.test.ts against a real etcd and three stores the
// Node test started): connect, create a 3-replica volume of two shards, write
// across the shard boundary, flush, read back, recover from a stale epoch
// (REOPEN), close. Prints one JSON line and must exit on its own: a handle
// left open by the client hangs it, and the test's timeout says so.
// Usage: replication-client.mjs <etcd endpoints, comma-separated> <volume name>
// Deno needs --allow-net (etcd and the stores) and --allow-read (dist/ and its wasm).
import process from 'node:process';
import * as fp from '../../dist/index.js';
import { check, equal, report } from './report.mjs';

const MiB = 1 << 20;
const SHARD_BYTES = 4 * MiB;
const VOLUME_BYTES = 2 * SHARD_BYTES;
/** The store learns a new epoch from its etcd watch (or its 500 ms reconcile pass): wait this long. */
const EPOCH_PROPAGATION_MS = 1000;
/** The longest a watching client may take to see a changed shard record. */
const WATCH_MS = 5000;

const [etcd, name] = process.argv.slice(-2);

/** Deterministic bytes: a counter run through a 32-bit LCG, so every runtime writes the same data. */
function pattern(length, seed) {
  const out = new Uint8Array(length);
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) out[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  return out;
}

const result = { volume: name, reopens: 0, bytesWritten: 0, shards: 0 };
// Without the shard watch, so that a moved epoch reaches the client as REOPEN; the
// watch is checked with a second client below.
const cluster = await fp.Cluster.connect({ etcd: etcd.split(','), retryMs: 15_000, watch: false });
try {
  const info = await cluster.createVolume(name, { size: VOLUME_BYTES, replicas: 3, shardSize: SHARD_BYTES });
  check('createVolume: two shards of three replicas', info.shards === 2 && info.replicas === 3 && info.state === 'ready');
  const v = await cluster.openVolume(name);
  check('openVolume: the size asked for', v.logicalSize === VOLUME_BYTES);

  // 1.5 MiB straddling the shard boundary (split into a piece per shard), and one at each end.
  const across = pattern(3 * MiB / 2, 1);
  const acrossAt = SHARD_BYTES - 3 * MiB / 4;
  const head = pattern(64 * 1024, 2);
  const tail = pattern(64 * 1024, 3);
  await Promise.all([v.write(acrossAt, across), v.write(0, head), v.write(VOLUME_BYTES - tail.length, tail)]);
  await v.flush();
  check('a write across the shard boundary reads back', equal(await v.read(acrossAt, across.length), across));
  check('the first and last 64 KiB read back', equal(await v.read(0, head.length), head) && equal(await v.read(VOLUME_BYTES - tail.length, tail.length), tail));
  check('never-written bytes read as zero', (await v.read(MiB, MiB)).every((b) => b === 0));

  // REOPEN: shard 1's epoch moves under the client (an operator's no-op change); the store
  // refuses the stale epoch, the client re-reads the shard from etcd and resends.
  const before = (await cluster.meta.shard(name, 1)).info.epoch;
  const watching = await fp.Cluster.connect({ etcd: etcd.split(',') });
  const w = await watching.openVolume(name);
  const bumped = await cluster.meta.updateShard(name, 1, (s) => s);
  check('the epoch moved', bumped.info.epoch === before + 1);
  // The watching client learns the new epoch from its etcd watch (a fetch stream), without a request.
  const deadline = Date.now() + WATCH_MS;
  while (w.stats().shardEpochs[1] !== bumped.info.epoch && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  check('watch: the client follows the shard record', w.stats().shardEpochs[1] === bumped.info.epoch);
  await w.close();
  watching.close();
  await new Promise((r) => setTimeout(r, EPOCH_PROPAGATION_MS));
  const again = pattern(128 * 1024, 4);
  await v.write(SHARD_BYTES + MiB, again);
  await v.flush();
  check('a write after the epoch moved reads back', equal(await v.read(SHARD_BYTES + MiB, again.length), again));

  const s = v.stats();
  result.reopens = s.reopens;
  result.bytesWritten = s.bytesWritten;
  result.shards = s.shards;
  check('stats: the stale epoch was answered REOPEN', s.reopens >= 1);
  check('stats: every byte written counted', s.bytesWritten === across.length + head.length + tail.length + again.length);
  check('stats: no shard degraded', s.degradedShards === 0 && s.degradedWrites === 0);
  await v.close();
  check('a closed volume refuses reads with ENXIO', (await v.read(0, 4096).then(() => 'ok', (e) => e.code)) === 'ENXIO');
  check('openVolume of a missing volume is ENOENT', (await cluster.openVolume(`${name}-nosuch`).then(() => 'ok', (e) => e.code)) === 'ENOENT');
} catch (err) {
  check(`no exception (${err?.code ?? ''} ${err?.message ?? err})`, false);
} finally {
  cluster.close();
}
console.log(JSON.stringify(result));
report();
