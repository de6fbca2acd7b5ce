/**
 * The operator's replicated-volume commands end to end, as real processes on
 * loopback: one etcd, three `flashpack store`s (helpers/cluster.ts), then
 * `flashpack cluster create-volume | status | verify` and `flashpack serve
 * --etcd --volume` driven by fio's nbd engine (crc32c verify) and nbdcopy.
 * After the server's clean SIGTERM every replica agrees; the commands refuse
 * a taken name, too many replicas, a missing volume and an unknown
 * subcommand with the documented exit codes; and a SIGKILLed store shows in
 * `status --json` as its replica ERROR and the shard DEGRADED.
 * Runs bin/flashpack.mjs and imports dist/: `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, type TestCluster } from './helpers/cluster.js';
import { ServeProcess, explain, flashpack, flashpackBin, hasTool, ok, parseFioJson, removeTempDirs, run, sleep, tempDir } from './helpers/nbd.js';
import { prng, randomBytes } from './helpers/data.js';

const MiB = 1 << 20;
const VOLUME_BYTES = 64 * MiB;
const SHARDS = 4;
const REPLICAS = 3;
/** fio's writes: a quarter of the volume, 4 KiB at random, then read back and checked. */
const FIO_IO_BYTES = 16 * MiB;
const COPY_BYTES = 8 * MiB;
/** Each CLI command connects, does one thing and exits; a hang fails here. */
const COMMAND_TIMEOUT_MS = 30_000;
/** A killed store's replica turns ERROR on the primary's next write (or its peer connection ending): well inside this. */
const DEGRADE_WAIT_MS = 15_000;
const POLL_MS = 250;

interface StatusDoc {
  stores: { id: string; pid: number }[];
  volumes: {
    name: string; size: number; shardSize: number; replicas: number; state: string;
    shards: { index: number; state: string; epoch: number; primary: string; replicas: { store: string; state: string }[]; dirtyRegions: number }[];
  }[];
}

let t: TestCluster;
let dir: string;
let server: ServeProcess | null = null;
const etcd = (): string => t.endpoints.join(',');
const cluster = (args: string[]) => flashpack(['cluster', ...args], { timeoutMs: COMMAND_TIMEOUT_MS });

async function status(): Promise<StatusDoc> {
  return JSON.parse(ok(await cluster(['status', '--etcd', etcd(), '--json'])).stdout) as StatusDoc;
}

beforeAll(async () => {
  t = await startCluster(3, 'repl-cli');
  dir = tempDir('repl-cli');
}, 60_000);

afterAll(async () => {
  server?.kill();
  await t?.stop();
  removeTempDirs();
}, 60_000);

describe('flashpack cluster and serve --etcd against three stores', () => {
  it('create-volume places 4 shards of 3 replicas; status --json shows each OK, with a primary and an epoch', async () => {
    const r = ok(await cluster(['create-volume', 'v', '--etcd', etcd(), '--size', '64M', '--replicas', String(REPLICAS), '--shard-size', '16M']));
    expect(r.stdout).toMatch(/^created volume v: 64\.0 MiB \(67108864 bytes\), 4 shards of 16\.0 MiB, 3 replicas, lz4; primaries: /);
    const doc = await status();
    expect(doc.stores.map((s) => s.id).sort()).toEqual(['s0', 's1', 's2']);
    const v = doc.volumes.find((x) => x.name === 'v')!;
    expect(v).toMatchObject({ size: VOLUME_BYTES, shardSize: 16 * MiB, replicas: REPLICAS, state: 'ready' });
    expect(v.shards.map((s) => s.index)).toEqual([0, 1, 2, 3]);
    for (const s of v.shards) {
      expect(s.state).toBe('OK');
      expect(s.epoch).toBeGreaterThanOrEqual(1);
      expect(s.dirtyRegions).toBe(0);
      expect(s.replicas).toHaveLength(REPLICAS);
      expect(new Set(s.replicas.map((x) => x.store)).size, 'replicas on distinct stores').toBe(REPLICAS);
      expect(s.replicas.every((x) => x.state === 'OK')).toBe(true);
      expect(s.replicas.map((x) => x.store)).toContain(s.primary);
    }
    expect(new Set(v.shards.map((s) => s.primary)).size, 'primaries rotate over the stores').toBe(3);
  });

  it('serve --etcd --volume v listens on its unix socket', async () => {
    const socket = path.join(dir, 'v.sock');
    const child = spawn(process.execPath, [flashpackBin, 'serve', '--etcd', etcd(), '--volume', 'v', '--socket', socket], { stdio: ['ignore', 'pipe', 'pipe'] });
    server = new ServeProcess(child, 'cluster volume v', { socket });
    await server.ready();
  });

  it.skipIf(!hasTool('fio'))("fio's nbd engine: random 4 KiB writes at iodepth 16 on export 'v', every block verifies (crc32c)", async () => {
    const r = await run('fio', [
      '--ioengine=nbd', `--uri=nbd+unix:///v?socket=${path.join(dir, 'v.sock')}`, '--output-format=json', '--verify_state_save=0',
      '--name=w', '--rw=randwrite', '--bs=4k', `--size=${VOLUME_BYTES}`, `--io_size=${FIO_IO_BYTES}`, '--iodepth=16',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1',
    ], { cwd: dir, timeoutMs: 60_000 });
    expect(r.timedOut, explain(r)).toBe(false);
    expect(r.code, explain(r)).toBe(0);
    const [job] = parseFioJson(r.stdout).jobs;
    expect(job.error, r.stderr).toBe(0);
    expect(job.total_err ?? 0).toBe(0);
    expect(job.write.io_bytes).toBe(FIO_IO_BYTES);
    expect(job.read.io_bytes).toBe(FIO_IO_BYTES); // the verify pass
    expect(r.stderr).not.toMatch(/verify:|bad magic|crc32c/i);
  }, 60_000);

  it.skipIf(!hasTool('nbdcopy'))('nbdcopy: 8 MiB of random data in and back out byte-identical (the only export, by the empty name)', async () => {
    const uri = `nbd+unix:///?socket=${path.join(dir, 'v.sock')}`;
    const data = randomBytes(COPY_BYTES, prng(21));
    fs.writeFileSync(path.join(dir, 'in.bin'), data);
    ok(await run('nbdcopy', ['--flush', path.join(dir, 'in.bin'), uri]));
    ok(await run('nbdcopy', [uri, path.join(dir, 'out.bin')]));
    const back = fs.readFileSync(path.join(dir, 'out.bin'));
    expect(back.length).toBe(VOLUME_BYTES);
    expect(Buffer.compare(back.subarray(0, COPY_BYTES), data)).toBe(0);
  }, 60_000);

  it('SIGTERM: serve exits 0; then cluster verify finds every replica of every shard the same', async () => {
    const log = await server!.stop();
    server = null;
    expect(log).toMatch(/cluster volume v \(67108864 bytes\) at nbd\+unix:\/\/\/v\?socket=/);
    expect(log).toMatch(/SIGTERM: closing[\s\S]*cluster volume v closed cleanly/);
    const text = await cluster(['verify', 'v', '--etcd', etcd()]);
    expect(text.code, explain(text)).toBe(0);
    expect(text.stdout.trim()).toBe(`volume v: 4 shards, ${3 * VOLUME_BYTES} bytes compared (192.0 MiB), 12 replicas read, 0 skipped; every replica agrees`);
    const json = await cluster(['verify', 'v', '--etcd', etcd(), '--json']);
    expect(json.code, explain(json)).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ volume: 'v', shards: SHARDS, bytesCompared: REPLICAS * VOLUME_BYTES, replicasRead: SHARDS * REPLICAS, skipped: [], differences: [], corrupt: [] });
  }, 60_000);

  it('refusals: a taken name EEXIST (exit 1), 4 replicas on 3 stores EINVAL (1), a missing volume ENOENT (1), an unknown subcommand (2)', async () => {
    const again = await cluster(['create-volume', 'v', '--etcd', etcd(), '--size', '64M', '--replicas', '3', '--shard-size', '16M']);
    expect(again.code, explain(again)).toBe(1);
    expect(again.stderr).toMatch(/^flashpack cluster create-volume: EEXIST: .*'v'/);
    const four = await cluster(['create-volume', 'v4', '--etcd', etcd(), '--size', '64M', '--replicas', '4']);
    expect(four.code, explain(four)).toBe(1);
    expect(four.stderr).toMatch(/^flashpack cluster create-volume: EINVAL: .*4 replicas need 4 live stores; 3 registered/);
    const missing = await cluster(['verify', 'nosuch', '--etcd', etcd()]);
    expect(missing.code, explain(missing)).toBe(1);
    expect(missing.stderr).toMatch(/^flashpack cluster verify: ENOENT: .*'nosuch'/);
    const bogus = await cluster(['bogus']);
    expect(bogus.code, explain(bogus)).toBe(2);
    expect(bogus.stderr).toMatch(/unknown subcommand 'bogus'/);
    // Nothing was made by the refusals.
    expect((await status()).volumes.map((v) => v.name)).toEqual(['v']);
  });

  it('a SIGKILLed store: status --json shows its replica ERROR and the shard DEGRADED; verify then exits 1', async () => {
    await t.cluster.createVolume('k', { size: 4 * MiB, replicas: 3, shardSize: 4 * MiB });
    const [{ info }] = await t.meta.shards('k');
    const victim = t.stores.find((s) => s.id === info.replicas[2].store)!;
    expect(info.primary).not.toBe(victim.id);
    const vol = await t.cluster.openVolume('k');
    await vol.write(0, randomBytes(MiB, prng(22)));
    await vol.flush();
    await victim.kill('SIGKILL');
    // Writes after the kill reach the primary, which fails the dead replica and goes on degraded.
    for (let i = 0; i < 8; i++) await vol.write(MiB + i * 64 * 1024, randomBytes(64 * 1024, prng(23 + i)));
    await vol.flush();
    expect(vol.stats().degradedWrites).toBeGreaterThan(0);
    await vol.close();

    const deadline = Date.now() + DEGRADE_WAIT_MS;
    let doc = await status();
    const shard = () => doc.volumes.find((v) => v.name === 'k')!.shards[0];
    // The store also leaves the list once its 2 s lease runs out.
    while (shard().state !== 'DEGRADED' || doc.stores.some((s) => s.id === victim.id)) {
      expect(Date.now(), `status after the kill:\n${JSON.stringify(doc, null, 1)}`).toBeLessThan(deadline);
      await sleep(POLL_MS);
      doc = await status();
    }
    const s = shard();
    expect(s.primary).toBe(info.primary);
    expect(s.epoch).toBeGreaterThan(info.epoch);
    expect(s.dirtyRegions).toBeGreaterThan(0);
    for (const r of s.replicas) expect(r.state, r.store).toBe(r.store === victim.id ? 'ERROR' : 'OK');

    const verify = await cluster(['verify', 'k', '--etcd', etcd()]);
    expect(verify.code, explain(verify)).toBe(1);
    expect(verify.stdout).toMatch(new RegExp(`shard 0: replica on ${victim.id} skipped \\(ERROR, not OK\\)`));
    expect(verify.stdout).toMatch(/the replicas read agree, but 1 replica could not be verified/);
  }, 60_000);
});
