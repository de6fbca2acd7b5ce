// Power-cut campaign against the VDO volume: N cuts (default 10,000) spread
// over the volume configurations of test/helpers/crash-model.mjs (the same
// model and driver test/vdo-crash.test.ts runs), each cut followed by reopen
// (recovery) and a byte-for-byte check of every block.
//
//   node scripts/crash-test.mjs [cuts] [--seed n] [--config name] [--chunk n] [--jobs n]
//
// Campaigns of --chunk cuts (default 25) each start on a fresh volume; chunk i
// runs with seed (seed + i·0x9E3779B1) mod 2^32. --jobs runs that many chunks
// side by side (default 2). On the first violation it prints the seed, the
// cycle, the operations leading up to it and a command that replays that
// campaign, and exits 1. The operations replay exactly; where a cut lands
// among operations still in flight depends on thread timing, so a replay may
// need a few runs. Imports ../dist/index.js: build first.
import * as lib from '../dist/index.js';
import { CONFIGS, CrashViolation, runCampaign } from '../test/helpers/crash-model.mjs';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const seed = Number(flag('seed', String(Date.now() % 2 ** 31))) >>> 0;
const only = flag('config', null);
const chunk = Math.max(1, Number(flag('chunk', '25')) | 0);
const jobs = Math.max(1, Number(flag('jobs', '2')) | 0);
const noRetry = args.indexOf('--no-retry');
if (noRetry >= 0) args.splice(noRetry, 1);
const retryLost = noRetry < 0;
const total = args[0] === undefined ? 10_000 : Number(args[0]);
if (!Number.isInteger(total) || total < 1) {
  console.error('usage: node scripts/crash-test.mjs [cuts] [--seed n] [--config name] [--chunk n] [--jobs n]');
  process.exit(2);
}

// Variants: every configuration cut at random moments, plus cuts during close(), right after a clean open, and during checkpoints.
const VARIANTS = {};
for (const [name, c] of Object.entries(CONFIGS)) VARIANTS[name] = { cfg: c, weight: 3, syncDurable: c.writePolicy === 'sync' };
VARIANTS['lz4-dedupe-async/close'] = { cfg: { ...CONFIGS['lz4-dedupe-async'], cut: 'close', maxOps: 10, burst: 0 }, weight: 1, syncDurable: false };
VARIANTS['none-nodedupe-async/close'] = { cfg: { ...CONFIGS['none-nodedupe-async'], cut: 'close', maxOps: 10, burst: 0 }, weight: 1, syncDurable: false };
// A clean close and open with writes at once (waiting for the counts that load behind the open), then the cut.
VARIANTS['lz4-dedupe-async/reopen'] = { cfg: { ...CONFIGS['lz4-dedupe-async'], cut: 'reopen', maxOps: 10, burst: 0 }, weight: 1, syncDurable: false };
VARIANTS['lz4-dedupe-sync-checkpoints/checkpoint'] = { cfg: { ...CONFIGS['lz4-dedupe-sync-checkpoints'], cut: 'checkpoint', flushUs: 800 }, weight: 1, syncDurable: true };
// The logical size grown by volume.resize() in the middle of the campaign (4 MiB up to 8 MiB),
// and in the second variant the physical size with it (6 MiB up to 10 MiB).
VARIANTS['lz4-dedupe-async/grow'] = { cfg: { ...CONFIGS['lz4-dedupe-async'], logicalSize: 4 << 20, growTo: 8 << 20 }, weight: 2, syncDurable: false };
VARIANTS['lz4-dedupe-async/grow-physical'] = {
  cfg: { ...CONFIGS['lz4-dedupe-async'], logicalSize: 4 << 20, growTo: 8 << 20, physicalSize: 6 << 20, growPhysicalTo: 10 << 20 }, weight: 2, syncDurable: false,
};
// Both sizes grown at 64 KiB blocks (the data region's end need not fall on a block boundary).
VARIANTS['lz4-nodedupe-async-64k/grow-physical'] = {
  cfg: { ...CONFIGS['lz4-nodedupe-async-64k'], logicalSize: 4 << 20, growTo: 8 << 20, physicalSize: 6 << 20, growPhysicalTo: 11 << 20 }, weight: 2, syncDurable: false,
};
VARIANTS['lz4-dedupe-async-8k/close'] = { cfg: { ...CONFIGS['lz4-dedupe-async-8k'], cut: 'close', maxOps: 10, burst: 0 }, weight: 1, syncDurable: false };
VARIANTS['lz4-nodedupe-async-tiny-cache/checkpoint'] = { cfg: { ...CONFIGS['lz4-nodedupe-async-tiny-cache'], cut: 'checkpoint', flushUs: 800 }, weight: 1, syncDurable: false };
for (const [name, v] of Object.entries(VARIANTS)) v.cfg = { ...v.cfg, name };
if (only !== null && VARIANTS[only] === undefined) {
  console.error(`unknown --config ${only}; one of:\n  ${Object.keys(VARIANTS).join('\n  ')}`);
  process.exit(2);
}
// Round robin, heavier variants more often: every variant within the first few chunks.
const rotation = [];
for (let w = 0; w < 3; w++) for (const [name, v] of Object.entries(VARIANTS)) if (w < v.weight && (only === null || name === only)) rotation.push(name);

const chunkSeed = (i) => (seed + Math.imul(i, 0x9e3779b1)) >>> 0;
const chunks = [];
for (let i = 0, left = total; left > 0; i++, left -= chunk) chunks.push({ index: i, variant: rotation[i % rotation.length], cuts: Math.min(chunk, left), seed: chunkSeed(i) });

const sum = {
  cuts: 0, modes: { tear: 0, drop: 0, keep: 0 }, ops: 0, flushes: 0, reads: 0, cutsWithUnflushed: 0, cutsDuringFlush: 0,
  cutsWithOpsInFlight: 0, unflushedAtCut: 0, sectorsReverted: 0, closeCuts: 0, cleanOpens: 0, checkpointCuts: 0, retries: 0, resizes: 0,
};
const perVariant = {};
const live = new Map(); // chunk index → cuts done so far
const t0 = performance.now();
let lastPrint = 0;
let stopping = false;

const done = () => sum.cuts + [...live.values()].reduce((a, b) => a + b, 0);
const progress = (force = false) => {
  const now = performance.now();
  if (!force && now - lastPrint < 5000) return;
  lastPrint = now;
  const n = done();
  const s = (now - t0) / 1000;
  console.log(`[${s.toFixed(0).padStart(5)} s] ${n}/${total} cuts (${(n / s).toFixed(1)}/s), running: ${[...live.keys()].map((i) => chunks[i].variant).join(', ')}`);
};

process.on('unhandledRejection', (err) => {
  console.error(`\nFAIL: unhandled rejection (seed ${seed}; running: ${[...live.keys()].map((i) => `${chunks[i].variant} seed ${chunks[i].seed}`).join(', ')}):\n${err?.stack ?? err}`);
  process.exit(1);
});

console.log(`crash test: ${total} cuts, seed ${seed}, chunks of ${chunk}, ${jobs} at a time${only ? `, config ${only}` : ''}`);

async function worker(queue) {
  while (!stopping && queue.length > 0) {
    const c = queue.shift();
    const v = VARIANTS[c.variant];
    live.set(c.index, 0);
    try {
      const st = await runCampaign(lib, v.cfg, {
        seed: c.seed, cuts: c.cuts, syncDurable: v.syncDurable, retryLost,
        progress: (n) => {
          live.set(c.index, n);
          progress();
        },
      });
      live.delete(c.index);
      for (const k of Object.keys(sum)) {
        if (k === 'modes') for (const m of Object.keys(sum.modes)) sum.modes[m] += st.modes[m];
        else sum[k] += st[k];
      }
      const pv = (perVariant[c.variant] ??= { cuts: 0, chunks: 0 });
      pv.cuts += st.cuts;
      pv.chunks++;
    } catch (err) {
      stopping = true;
      live.delete(c.index);
      const cycle = err instanceof CrashViolation ? err.details.cycle : '?';
      console.error(`\nFAIL after ${done()} cuts (${((performance.now() - t0) / 1000).toFixed(0)} s): run seed ${seed}, chunk ${c.index}, config ${c.variant}, campaign seed ${c.seed}, cycle ${cycle}`);
      console.error(err instanceof CrashViolation ? err.message : err?.stack ?? err);
      const n = typeof cycle === 'number' ? cycle + 1 : c.cuts;
      console.error(`\nreplay: node scripts/crash-test.mjs ${n} --seed ${c.seed} --config ${c.variant} --chunk ${n} --jobs 1`);
      process.exit(1);
    }
  }
}

const queue = [...chunks];
await Promise.all(Array.from({ length: Math.min(jobs, chunks.length) }, () => worker(queue)));
progress(true);
const secs = (performance.now() - t0) / 1000;
console.log(`\nOK: ${sum.cuts} power cuts in ${secs.toFixed(1)} s, no violation (seed ${seed})`);
console.log(`  modes: tear ${sum.modes.tear}, drop ${sum.modes.drop}, keep ${sum.modes.keep}`);
console.log(`  cuts with unflushed writes on the device: ${sum.cutsWithUnflushed} (${sum.unflushedAtCut} writes, ${sum.sectorsReverted} sectors reverted)`);
console.log(`  cuts during a flush/close: ${sum.cutsDuringFlush}; with operations in flight: ${sum.cutsWithOpsInFlight}; during close(): ${sum.closeCuts}; in a checkpoint: ${sum.checkpointCuts}; opens that found the volume closed cleanly: ${sum.cleanOpens}`);
console.log(`  operations: ${sum.ops} writes/discards (${sum.retries} rewrites of data a cut lost), ${sum.flushes} flushes, ${sum.reads} read-backs, ${sum.resizes} resizes`);
for (const [name, pv] of Object.entries(perVariant)) console.log(`  ${name}: ${pv.cuts} cuts in ${pv.chunks} campaign(s)`);
// Workers of closed volumes are gone; nothing should keep the process alive.
process.exit(0);
