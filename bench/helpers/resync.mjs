// The resync measurement of bench/replication.mjs: a returning replica's
// catch-up after it missed writes, timed and counted, and its report line.
import { setTimeout as sleep } from 'node:timers/promises';
import { formatMBps } from '../table.mjs';
import { stop, startStore, storeReady, storeEvents } from './cluster-procs.mjs';
import { fillUnique, laneBuffers } from './unique-data.mjs';

const MiB = 1 << 20;
const REGION_BYTES = MiB; // replica.ts: REGION_BYTES, one dirty-map entry
const WRITE_QD = 4;
const RESYNC_OK_MS = 300_000;
const ALL_OK_MS = 60_000;
const LOG_LINES_MS = 5000;
const POLL_MS = 20;

const fmtS = (ms) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : 'n/a');
const mbps = (bytes, ms) => formatMBps(bytes / 1e6 / (ms / 1000));

/**
 * Kills the store that is a secondary of every shard of volume `name` (R = 3,
 * written in full), writes `writeMB` distinct random 1 MiB regions degraded
 * and flushes, restarts the store on the same --dir and --id and times the
 * recovery from its registration in etcd to every shard OK; then compares the
 * replicas (verifyVolume).
 *
 * `cluster`: the Cluster; `stores`: the store records (cluster-procs.mjs);
 * `volume`: the open ClusterVolume `name` of `size` bytes; `otherVolumes`:
 * every other open volume, flushed first so their recovery copies nothing;
 * `verifyVolume`: replication.verifyVolume; `log(msg)`, `progress(msg)` (a
 * timestamped line) and `problem(msg)` report. Resolves the numbers for the
 * results file; a replica difference is in `verify` (and reported as a problem).
 */
export async function measureResync({ cluster, stores, volume, name, size, otherVolumes, writeMB, verifyVolume, log, progress, problem }) {
  const { meta } = cluster;
  const shards = (await meta.shards(name)).map((s) => s.info);
  const victimId = stores.map((s) => s.id).find((id) => shards.every((s) => s.primary !== id && s.replicas.some((r) => r.store === id)));
  if (victimId === undefined) throw new Error(`resync: no store is a secondary of every shard: ${JSON.stringify(shards.map((s) => s.replicas))}`);
  const victim = stores.find((s) => s.id === victimId);
  await volume.flush();
  for (const v of otherVolumes) await v.flush(); // nothing else unflushed: their recovery copies nothing
  log(`resync: SIGKILL store ${victimId}, ${writeMB} MiB of random 1 MiB regions written degraded, restart, wait for OK`);
  await stop(victim.rec, 0, 'SIGKILL');

  const st0 = volume.stats();
  const degradedWriteMs = await writeRandomRegions(volume, size, writeMB * MiB / REGION_BYTES);
  const st1 = volume.stats();
  const before = (await cluster.status()).volumes.find((v) => v.name === name).shardList;
  const dirtyBefore = before.reduce((n, s) => n + s.dirtyRegions, 0);
  if (before.some((s) => s.state === 'OK')) problem(`resync: shard(s) still OK after the kill and ${writeMB} MiB of writes: ${before.map((s) => s.state).join(' ')}`);
  progress(`written degraded at ${mbps(writeMB * MiB, degradedWriteMs)} MB/s (+ flush); ${dirtyBefore} dirty regions in etcd; client: ${st1.reopens - st0.reopens} reopens, ${st1.degradedWrites - st0.degradedWrites} degraded acks`);

  const eventsFrom = storeEvents.length;
  const tSpawn = performance.now();
  startStore(victim);
  const tReg = await storeReady(victim, meta);
  progress(`${victimId} registered ${fmtS(tReg - tSpawn)} s after its restart (its old lease had to expire)`);
  const deadline = Date.now() + RESYNC_OK_MS;
  let tOk;
  for (;;) {
    const now = await meta.shards(name);
    if (now.every((s) => s.info.state === 'OK')) { tOk = performance.now(); break; }
    if (victim.rec.exit) throw new Error(`resync: store ${victimId} exited: ${victim.rec.log}`);
    if (Date.now() > deadline) throw new Error(`resync: not OK within ${RESYNC_OK_MS} ms: ${now.map((s) => JSON.stringify(s.info.replicas)).join(' ')}`);
    await sleep(POLL_MS);
  }
  // The "recovered" lines come a moment after the etcd record turns OK. Each
  // counts that recovery's own copies, so their sum is what the victim copied.
  const events = () => storeEvents.slice(eventsFrom);
  const recoveredRe = new RegExp(`^store \\S+: ${name}#(\\d+): recovered: (\\d+) dirty regions \\((\\d+) bytes\\) copied`);
  const recoveredLines = () => events().filter((e) => e.store === victimId && recoveredRe.test(e.line));
  for (const until = Date.now() + LOG_LINES_MS; recoveredLines().length < shards.length && Date.now() < until;) await sleep(POLL_MS);
  const perShard = recoveredLines().map((e) => {
    const m = recoveredRe.exec(e.line);
    return { shard: Number(m[1]), regions: Number(m[2]), bytes: Number(m[3]) };
  });
  const regionsCopied = perShard.reduce((n, x) => n + x.regions, 0);
  const bytesCopied = perShard.reduce((n, x) => n + x.bytes, 0);
  if (perShard.length !== shards.length) problem(`resync: ${perShard.length} "recovered" log lines from ${victimId} for ${shards.length} shards`);
  else if (regionsCopied !== dirtyBefore) problem(`resync: ${victimId} copied ${regionsCopied} regions, the dirty map had ${dirtyBefore}`);
  const backRe = new RegExp(`${name}#\\d+: store \\S+ is back; its replica is RECOVERING`);
  const backLines = events().filter((e) => backRe.test(e.line));
  const tRecovering = backLines.length ? Math.min(...backLines.map((e) => e.ms)) : NaN;
  const recovered = recoveredLines();
  const tLastRecovered = recovered.length ? Math.max(...recovered.map((e) => e.ms)) : NaN;

  // Everything OK again (the other volumes' replicas on the victim too), then compare the replicas.
  for (const until = Date.now() + ALL_OK_MS; ;) {
    const st = await cluster.status();
    if (st.volumes.every((v) => v.shardList.every((s) => s.state === 'OK'))) break;
    if (Date.now() > until) { problem(`resync: not every shard OK ${ALL_OK_MS} ms after the restart`); break; }
    await sleep(100);
  }
  const verify = await verifyVolume(cluster, name);
  if (verify.differences.length || verify.skipped.length) {
    problem(`resync: replicas differ after recovery: ${JSON.stringify(verify.differences.slice(0, 5))}; skipped ${JSON.stringify(verify.skipped)}`);
  }
  const r = {
    victim: victimId, writtenBytes: writeMB * MiB, degradedWriteMs, dirtyRegionsBefore: dirtyBefore, dirtyBytes: dirtyBefore * REGION_BYTES, regionsCopied, bytesCopied, perShard,
    restartToRegisteredMs: tReg - tSpawn, registeredToOkMs: tOk - tReg, registeredToRecoveringMs: tRecovering - tReg, recoveringToRecoveredMs: tLastRecovered - tRecovering,
    verify: { bytesCompared: verify.bytesCompared, replicasRead: verify.replicasRead, differences: verify.differences.length, skipped: verify.skipped.length },
  };
  progress(`recovered ${dirtyBefore} dirty regions (log lines: ${perShard.map((x) => `#${x.shard} ${x.regions}`).join(', ')}) in ${fmtS(r.registeredToOkMs)} s from registration to OK; replicas ${verify.differences.length ? 'DIFFER' : 'identical'}`);
  return r;
}

/** Writes `count` distinct random 1 MiB regions of `volume` (`size` bytes) at QD WRITE_QD, then flushes: ms taken. */
async function writeRandomRegions(volume, size, count) {
  const regions = Array.from({ length: size / REGION_BYTES }, (_, i) => i);
  for (let i = regions.length - 1; i > 0; i--) { // Fisher–Yates: `count` distinct regions
    const j = Math.floor(Math.random() * (i + 1));
    [regions[i], regions[j]] = [regions[j], regions[i]];
  }
  const chosen = regions.slice(0, count);
  const lanes = laneBuffers(WRITE_QD, REGION_BYTES);
  const t0 = performance.now();
  let next = 0;
  await Promise.all(lanes.map(async ({ buf, view }) => {
    while (next < chosen.length) {
      const r = chosen[next++];
      fillUnique(buf, view);
      await volume.write(r * REGION_BYTES, buf);
    }
  }));
  await volume.flush();
  return performance.now() - t0;
}

/** The resync paragraph of the report, for measureResync()'s result `rs` on `shards` shards of `shardBytes`. */
export function describeResync(rs, shards, shardBytes) {
  return `Resync (R=3, ${shards} shards of ${shardBytes / MiB} MiB, store ${rs.victim} SIGKILLed, ${rs.writtenBytes / MiB} MiB of random distinct 1 MiB regions written degraded at ${mbps(rs.writtenBytes, rs.degradedWriteMs)} MB/s incl. flush, ${rs.dirtyRegionsBefore} dirty regions in etcd): `
    + `${rs.dirtyBytes.toLocaleString('en-US')} bytes to copy; registration → all shards OK ${fmtS(rs.registeredToOkMs)} s = **${mbps(rs.dirtyBytes, rs.registeredToOkMs)} MB/s**; `
    + `first RECOVERING → last "recovered" line ${fmtS(rs.recoveringToRecoveredMs)} s = ${mbps(rs.dirtyBytes, rs.recoveringToRecoveredMs)} MB/s (registration → RECOVERING ${fmtS(rs.registeredToRecoveringMs)} s); `
    + `the store's "recovered" lines say ${rs.perShard.map((x) => `#${x.shard}: ${x.regions} regions (${x.bytes.toLocaleString('en-US')} bytes)`).join(', ')}, sum ${rs.bytesCopied.toLocaleString('en-US')} bytes = ${mbps(rs.bytesCopied, rs.registeredToOkMs)} MB/s over registration → OK; `
    + `restart → registration ${fmtS(rs.restartToRegisteredMs)} s (old lease expiry, not counted); replicas afterwards: ${rs.verify.differences === 0 && rs.verify.skipped === 0 ? `identical (${(rs.verify.bytesCompared / MiB).toFixed(0)} MiB compared)` : 'DIFFER'}.`;
}
