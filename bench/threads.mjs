// Thread benchmarks (issue 4): descriptors through shared-memory rings versus
// postMessage, and LZ4 4 KiB compression through the engine versus the codec on
// the main thread and versus piscina running the same codec.
//
//   node bench/threads.mjs           (also: node bench/index.mjs threads)
//
// One process, tinybench, side by side. Rates come from the mean time of a full
// pass. This machine has 2 cores: with 2 workers the main thread competes too.
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { Bench } from 'tinybench';
import { Piscina } from 'piscina';
import * as fp from '../dist/index.js';
import { loadCorpus, splitBlocks } from './corpus.mjs';
import { markdownTable, formatMBps, formatRatio } from './table.mjs';
import { runBatch } from './engine-batch.mjs';

const TIME_MS = 1500;
const log = (...a) => console.error(...a);

async function runBench(name, tasks) {
  const bench = new Bench({ name, time: TIME_MS, iterations: 5, warmup: true, warmupTime: 300, warmupIterations: 2, throws: true });
  const only = process.env.BENCH_ONLY;
  for (const t of tasks) if (!only || t.name.includes(only)) bench.add(t.name, t.fn);
  bench.addEventListener('cycle', (e) => log(`  ${e.task.name}: ${e.task.result.latency?.mean?.toFixed(1)} ms`));
  await bench.run();
  return bench.tasks.map((task) => {
    if (task.result.state !== 'completed') throw new Error(`${name}: ${task.name} did not complete`, { cause: task.result.error });
    return { ...tasks.find((t) => t.name === task.name), meanMs: task.result.latency.mean, samples: task.result.latency.samplesCount };
  });
}

const once = (w, event) => new Promise((resolve, reject) => {
  w.once(event, resolve);
  w.once('error', reject);
});

// ---------------------------------------------------------------------------
// Rings versus postMessage: N descriptors main → worker → main.
async function ringBench() {
  const rt = new fp.Runtime();
  const layout = fp.readLayout(rt.exports);
  const capacity = 4096;
  const results = [];
  const tasks = [];
  const echoes = [];
  for (const burst of [1, 64]) {
    const aAt = rt.reserve(fp.Ring.bytes(layout, capacity, 'spsc'), 128);
    const bAt = rt.reserve(fp.Ring.bytes(layout, capacity, 'spsc'), 128);
    const a = fp.Ring.init(rt.memory, layout, aAt, capacity, 'spsc');
    const b = fp.Ring.init(rt.memory, layout, bAt, capacity, 'spsc');
    const w = new Worker(new URL('./helpers/echo-worker.mjs', import.meta.url), { workerData: { mode: 'ring', memory: rt.memory, module: fp.wasmModule(), aAt, bAt, burst } });
    await once(w, 'message');
    echoes.push({ w, a });
    const n = burst === 1 ? 100_000 : 1_000_000;
    const src = new Uint32Array(burst).map((_, i) => i);
    const dst = new Uint32Array(4096);
    tasks.push({
      name: `ring, ${burst === 1 ? 'one descriptor per publish' : 'bursts of 64'}`, items: n,
      fn: () => {
        let sent = 0;
        let got = 0;
        while (got < n) {
          if (sent < n) sent += a.enqueue(src, 0, Math.min(burst, n - sent));
          got += b.dequeue(dst, burst === 1 ? 1 : dst.length);
        }
      },
    });
  }
  let runs = 0;
  const pm = new Worker(new URL('./helpers/echo-worker.mjs', import.meta.url), { workerData: { mode: 'message' } });
  const objN = 50_000;
  tasks.push({
    name: 'postMessage, one object per descriptor', items: objN,
    // Each run counts only its own echoes (tinybench may start a run it does not
    // await, whose late echoes must not be counted by the next).
    fn: () => new Promise((resolve) => {
      const run = ++runs;
      let got = 0;
      const onMsg = (m) => {
        if (m.run === run && ++got >= objN) {
          pm.off('message', onMsg);
          resolve();
        }
      };
      pm.on('message', onMsg);
      for (let i = 0; i < objN; i++) pm.postMessage({ run, desc: i });
    }),
  });
  const batchN = 1 << 20; // a whole number of messages
  const perMessage = 256;
  tasks.push({
    name: `postMessage, Int32Array of ${perMessage} descriptors`, items: batchN,
    fn: () => new Promise((resolve) => {
      const run = ++runs;
      let got = 0;
      const onMsg = (m) => {
        if (!(m instanceof Int32Array) || m[0] !== run) return;
        got += m.length;
        if (got >= batchN) {
          pm.off('message', onMsg);
          resolve();
        }
      };
      pm.on('message', onMsg);
      for (let i = 0; i < batchN; i += perMessage) {
        const batch = new Int32Array(perMessage).fill(i);
        batch[0] = run;
        pm.postMessage(batch);
      }
    }),
  });
  for (const r of await runBench('rings', tasks)) results.push({ ...r, rate: r.items / (r.meanMs / 1e3) });
  for (const { w, a } of echoes) {
    a.close();
    await w.terminate();
  }
  await pm.terminate();
  return results;
}

// ---------------------------------------------------------------------------
// LZ4 4 KiB compression: codec on the main thread, the engine, piscina.
async function engineBench() {
  const corpus = loadCorpus();
  // Each block its own ArrayBuffer, as a user's would be: structured clone (piscina)
  // copies a view's whole buffer, which for views of the corpus is 7.8 MB a block.
  const blocks = splitBlocks(corpus.bytes, 4096).map((b) => b.slice());
  const bytes = blocks.length * 4096;
  const tasks = [];
  // The raw codec on the main thread, data already in shared memory (the time a
  // worker spends per block).
  const rt = fp.runtime();
  const at = rt.reserve(bytes, 64);
  blocks.forEach((b, i) => rt.u8.set(b, at + i * 4096));
  const out = rt.reserve(4096 + 64, 64);
  tasks.push({ name: 'codec on the main thread (in shared memory)', workers: 0, fn: () => {
    for (let i = 0; i < blocks.length; i++) fp.lz4.compressBlockAt(at + i * 4096, 4096, out, 4096, rt.ctx);
  } });
  tasks.push({ name: 'codec on the main thread (Uint8Array API)', workers: 0, fn: () => {
    for (const b of blocks) fp.lz4.compressBlock(b);
  } });
  const engines = [];
  const pools = [];
  const maxWorkers = Math.max(2, os.availableParallelism() - 1);
  for (let workers = 1; workers <= maxWorkers; workers++) {
    // Room for the batch task's staged descriptors and the promise task's own.
    const engine = await fp.Engine.start({ workers, runtime: new fp.Runtime(), classes: [{ size: 4096, count: 4 * blocks.length + 16 }] });
    engines.push(engine);
    // Batch API: every block staged once in a descriptor, with an output descriptor.
    const jobs = blocks.map((b) => {
      const d = engine.pool.alloc(4096);
      const o = engine.pool.alloc(4096);
      engine.pool.write(d, b);
      engine.prepare(d, fp.jobs.OP_LZ4_COMPRESS, o, 1);
      return d;
    });
    tasks.push({ name: `engine, batch API, ${workers} worker${workers > 1 ? 's' : ''}`, workers, fn: async () => runBatch(engine, jobs) });
    tasks.push({ name: `engine, promise API, ${workers} worker${workers > 1 ? 's' : ''}`, workers, fn: async () => {
      await Promise.all(blocks.map((b) => engine.lz4.compressBlock(b)));
    } });
    const pool = new Piscina({ filename: new URL('./helpers/piscina-lz4.mjs', import.meta.url).href, minThreads: workers, maxThreads: workers });
    pools.push(pool);
    tasks.push({ name: `piscina, ${workers} worker${workers > 1 ? 's' : ''}`, workers, fn: async () => {
      await Promise.all(blocks.map((b) => pool.run(b)));
    } });
  }
  const results = (await runBench('engine', tasks)).map((r) => ({ ...r, mbps: bytes / 1e6 / (r.meanMs / 1e3) }));
  for (const e of engines) await e.close();
  for (const p of pools) await p.destroy();
  return { results, blocks: blocks.length };
}

const started = performance.now();
console.log(`# flashpack thread benchmarks\n\n- ${os.cpus()[0].model}, ${os.availableParallelism()} cores; Node ${process.version}; tinybench, one process\n`);
log('rings…');
const rings = await ringBench();
const pmSingle = rings.find((r) => r.name.startsWith('postMessage, one'));
console.log('## Descriptors main → worker → main\n');
const cols = (titles) => titles.map((title, i) => ({ title, align: i === 0 ? 'left' : 'right' }));
console.log(markdownTable(cols(['transport', 'descriptors', 'M descriptors/s', 'vs postMessage per object']), rings.map((r) => [
  r.name, r.items.toLocaleString('en-US'), (r.rate / 1e6).toFixed(2), formatRatio(r.rate / pmSingle.rate),
])));
log('engine…');
const { results, blocks } = await engineBench();
const raw = results[0].mbps;
console.log(`\n## LZ4 compression of ${blocks} 4 KiB corpus blocks\n`);
console.log(markdownTable(cols(['runner', 'MB/s', 'per worker vs raw codec', 'engine overhead per worker']), results.map((r) => [
  r.name, formatMBps(r.mbps), r.workers ? formatRatio(r.mbps / r.workers / raw) : '—',
  r.workers && r.name.startsWith('engine') ? `${((raw / (r.mbps / r.workers) - 1) * 100).toFixed(1)}%` : '—',
])));
log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
