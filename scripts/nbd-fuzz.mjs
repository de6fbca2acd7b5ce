// Long-run NBD fuzzer: a fresh volume, a live `flashpack serve` on a unix
// socket, N fuzz requests from several connections while a good client keeps
// checking its own region (scripts/nbd-fuzz-core.mjs says what is sent and
// checked), then SIGTERM (exit 0 expected), `flashpack check`, and a read-only
// reopen compared with the good client's data.
//
//   node scripts/nbd-fuzz.mjs [--requests N] [--seed S] [--connections C] [--size 16M] [--physical-size P] [--keep]
//
// A large thin volume (--size 8G --physical-size 256M) reaches BLOCK_STATUS
// runs longer than a 32-bit descriptor; the good client keeps to its first
// 64 MiB then.
// Prints the seed first; the same seed sends the same bytes on every
// connection (the server's interleaving is timing's). Exits 1 on the first
// run with a failure, printing the failures and the command that replays it.
// Imports ../dist: `npm run build` first.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { flashpack, rssMiB, runFuzz, startServer, verifyImage } from './nbd-fuzz-core.mjs';

const USAGE = 'usage: node scripts/nbd-fuzz.mjs [--requests N] [--seed S] [--connections C] [--size 16M] [--physical-size P] [--keep]';
const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const keepAt = args.indexOf('--keep');
const keep = keepAt >= 0;
if (keep) args.splice(keepAt, 1);
const requests = Number(flag('requests', '1000000'));
const seed = Number(flag('seed', String((Date.now() ^ (process.pid << 16)) >>> 0))) >>> 0;
const connections = Number(flag('connections', '4'));
const sizeText = flag('size', '16M');
const physicalText = flag('physical-size', null);
if (args.length > 0 || !Number.isInteger(requests) || requests < 1 || !Number.isInteger(connections) || connections < 1) {
  console.error(USAGE);
  process.exit(2);
}
const size = parseSize(sizeText);

console.log(`nbd-fuzz: seed ${seed}, ${requests} requests, ${connections} fuzz connections, ${sizeText} volume`);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-nbd-fuzz-'));
const image = path.join(dir, 'fuzz.img');
const socket = path.join(dir, 'fuzz.sock');
const problems = [];
let server = null;
const started = Date.now();
// Interrupted (Ctrl-C, a timeout's SIGTERM): the server child goes too, and the temp dir unless --keep.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    server?.kill();
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
    console.log(`nbd-fuzz: ${signal} (seed ${seed})`);
    process.exit(130);
  });
}
try {
  const created = await flashpack(['create', image, '--size', sizeText, ...(physicalText === null ? [] : ['--physical-size', physicalText])]);
  if (created.code !== 0) throw new Error(`flashpack create: exit ${created.code}\n${created.stderr}`);
  server = await startServer(image, socket);
  let lastPrint = 0;
  const { report, model } = await runFuzz({
    socket, exportName: path.basename(image), size, seed, requests, connections,
    onFailure: (msg) => console.log(`FAIL ${msg}`),
    onProgress: (r) => {
      if (Date.now() - lastPrint < 5000) return;
      lastPrint = Date.now();
      console.log(`  ${r.requests} requests, ${r.answered} answered, ${r.connects} connections, good client ${r.good.ops} ops, server rss ${rssMiB(server.pid)} MiB`);
    },
  });
  if (!server.running()) problems.push(`the server died during the run:\n${server.stderr()}`);
  const rss = rssMiB(server.pid);
  const stats = await flashpack(['stats', image, '--json']);
  const nbd = stats.code === 0 ? JSON.parse(stats.stdout).stats?.nbd : null;
  const stop = await server.stop();
  server = null;
  if (stop.code !== 0) problems.push(`flashpack serve exited ${stop.code ?? stop.signal} after SIGTERM, not 0`);
  const check = await flashpack(['check', image]);
  if (check.code !== 0) problems.push(`flashpack check: exit ${check.code}\n${check.stdout}${check.stderr}`);
  const differs = await verifyImage(image, model);
  if (differs !== null) problems.push(differs);
  problems.unshift(...report.failures);
  if (report.failureCount > report.failures.length) problems.push(`… ${report.failureCount - report.failures.length} more failures`);
  console.log(JSON.stringify({ ...report, failures: undefined, serverRssMiB: rss, serverCounters: nbd }, null, 1));
  console.log(`nbd-fuzz: ${report.requests} requests (${report.unverified} unverified: the client left), ${report.answered} answered, ` +
    `${report.connects} connections in ${(report.ms / 1000).toFixed(1)} s (${Math.round(report.requests / (report.ms / 1000))}/s); total ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (err) {
  problems.push(err.stack ?? String(err));
} finally {
  if (server !== null) {
    if (!server.running()) problems.push(`the server had exited:\n${server.stderr()}`);
    server.kill();
  }
  if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  else console.log(`kept ${dir}`);
}
if (problems.length > 0) {
  console.log(`nbd-fuzz: FAILED (seed ${seed})`);
  for (const p of problems) console.log(`  ${p}`);
  console.log(`replay: node scripts/nbd-fuzz.mjs --requests ${requests} --seed ${seed} --connections ${connections} --size ${sizeText}${physicalText === null ? '' : ` --physical-size ${physicalText}`}`);
  process.exitCode = 1;
} else console.log(`nbd-fuzz: ok (seed ${seed})`);

function parseSize(text) {
  const m = /^(\d+)([KMG]?)$/i.exec(text);
  if (m === null) {
    console.error(`--size: '${text}' is not a size like 16M`);
    process.exit(2);
  }
  return Number(m[1]) * { '': 1, K: 1024, M: 1 << 20, G: 1 << 30 }[m[2].toUpperCase()];
}
