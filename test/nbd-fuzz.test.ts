/**
 * The NBD server under fuzz, as a live `flashpack serve` process: at least
 * 100,000 requests from several fuzz connections (random and malformed
 * commands, flags, offsets, lengths, negotiations and endings; the core is
 * scripts/nbd-fuzz-core.mjs, which scripts/nbd-fuzz.mjs runs for longer)
 * while a good client keeps its region's data and checks it the whole time.
 * Then: every well-framed request had exactly one reply, with an error the
 * spec allows; the server is alive, counted exactly the protocol violations
 * sent, exits 0 on SIGTERM; `flashpack check` passes; a read-only reopen reads
 * the good client's data. The seed is in the test's name;
 * NBD_FUZZ_SEED=<seed> replays it, NBD_FUZZ_REQUESTS=<n> changes the count.
 * Runs bin/flashpack.mjs and imports dist/, so `npm run build` first.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Volume } from '../dist/index.js';
import { flashpack, rssMiB, runFuzz, startServer } from '../scripts/nbd-fuzz-core.mjs';

const SEED = process.env.NBD_FUZZ_SEED !== undefined ? Number(process.env.NBD_FUZZ_SEED) >>> 0 : (Date.now() ^ (process.pid << 12)) >>> 0;
const REQUESTS = Number(process.env.NBD_FUZZ_REQUESTS ?? 100_000);
const REQUESTS_MIN = 100_000;
const CONNECTIONS = 4;
const SIZE = 16 << 20;
/** The server's resident memory may not grow past this (its bounds: 64 MiB in and out per connection, a few connections). */
const SERVER_RSS_MIB_MAX = 1024;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-nbd-fuzz-'));
let server: Awaited<ReturnType<typeof startServer>> | null = null;

afterAll(() => {
  server?.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe(`nbd fuzz, seed ${SEED} (replay: NBD_FUZZ_SEED=${SEED})`, () => {
  it(`${REQUESTS} requests against a live server: one allowed reply each, the good client's data intact, clean exit, check passes`, async () => {
    const image = path.join(dir, 'fuzz.img');
    const socket = path.join(dir, 'fuzz.sock');
    const created = await flashpack(['create', image, '--size', String(SIZE)]);
    expect(created.code, created.stderr).toBe(0);
    server = await startServer(image, socket);
    const pid = server.pid;
    let rssMax = 0;
    const { report, model } = await runFuzz({
      socket, exportName: path.basename(image), size: SIZE, seed: SEED, requests: REQUESTS, connections: CONNECTIONS,
      onProgress: () => {
        rssMax = Math.max(rssMax, rssMiB(pid) ?? 0);
      },
    });
    const where = `seed ${SEED} (replay: NBD_FUZZ_SEED=${SEED} npx vitest run test/nbd-fuzz.test.ts)`;
    expect(report.failures, where).toEqual([]);
    expect(server.running(), `the server died: ${server.stderr()}`).toBe(true);

    // Its counters, asked live through its control socket.
    const stats = await flashpack(['stats', image, '--json']);
    expect(stats.code, stats.stderr).toBe(0);
    const nbd = (JSON.parse(stats.stdout) as { stats: { nbd: Record<string, number> } }).stats.nbd;
    const stop = await server.stop();
    server = null;
    expect(stop, 'flashpack serve after SIGTERM').toEqual({ code: 0, signal: null });
    const check = await flashpack(['check', image]);
    expect(check.code, `${check.stdout}${check.stderr}`).toBe(0);

    const v = await Volume.open(image, { readOnly: true });
    try {
      for (let at = 0; at < model.length; at += 1 << 20) {
        const got = await v.read(at, 1 << 20);
        expect(Buffer.from(got).equals(Buffer.from(model.subarray(at, at + (1 << 20)))), `the good region at ${at} after reopening`).toBe(true);
      }
    } finally {
      await v.close();
    }

    expect(report.requests).toBeGreaterThanOrEqual(REQUESTS_MIN);
    // Every request was answered and checked, but for those a fuzz client sent just before leaving on purpose.
    expect(report.answered + report.unverified).toBe(report.requests);
    expect(report.good.ops).toBeGreaterThanOrEqual(500);
    // Each malformed frame the fuzzer sent is one violation the server counted, no more.
    const e = report.endings as Record<string, number>;
    const n = report.negotiationFuzz as Record<string, number>;
    const violations = (e['bad request magic'] ?? 0) + (e['WRITE longer than 32 MiB'] ?? 0) + (e['garbage request'] ?? 0) +
      (n['unknown client flags'] ?? 0) + (n['garbage instead of client flags'] ?? 0) + (n['garbage instead of an option'] ?? 0) +
      (n['an option longer than 1 MiB'] ?? 0) + (n['EXPORT_NAME of an unknown export'] ?? 0);
    expect(nbd.protocolViolations).toBe(violations);
    expect(nbd.errorReplies).toBeGreaterThanOrEqual(report.errorReplies);
    expect(rssMax).toBeLessThan(SERVER_RSS_MIB_MAX);
    console.log(`nbd fuzz seed ${SEED}: ${report.requests} requests (${report.unverified} unverified), ${report.answered} answered ` +
      `(${report.errorReplies} errors ${JSON.stringify(report.errors)}), ${report.connects} connections, endings ${JSON.stringify(e)}, ` +
      `negotiation ${JSON.stringify(n)}, good client ${JSON.stringify(report.good)}, server rss max ${rssMax} MiB, ${(report.ms / 1000).toFixed(1)} s`);
  }, 300_000);
});
