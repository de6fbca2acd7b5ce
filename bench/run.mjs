// Runs a list of benchmark cases with tinybench and turns latencies into MB/s.
import { Bench } from 'tinybench';

/**
 * Per-task budget. Each task is one full pass over the corpus, so passes are
 * long (0.3–100 ms) and a few dozen samples suffice; about 40 tasks at ~2.6 s
 * each (warmup + measurement) keep a full run near 2 minutes, under 4 on a
 * 2-core machine. A task runs until both `time` and `iterations` are reached,
 * so `iterations` stays low for the slow pure-JS peers.
 */
export const BENCH_OPTIONS = Object.freeze({
  time: 2000,
  iterations: 10,
  warmup: true,
  warmupTime: 500,
  warmupIterations: 5,
  throws: true,
});

/** Timed passes fold their results in here so no engine can discard the work. */
export const blackhole = { value: 0 };

/**
 * Runs `cases` ({ library, operation, bytes, fn, ... }) in one Bench, in order.
 * Throughput is bytes per pass / mean pass latency. tinybench's own
 * `throughput.mean` is the mean of per-sample reciprocals (ops/s), which by
 * Jensen's inequality overstates the rate whenever latency varies, so it is not
 * used. `options` overrides BENCH_OPTIONS (a group with many cases trades
 * samples for run time). If any case is `async` (its fn returns a promise),
 * the bench runs asynchronously and a promise of the rows is returned.
 */
export function runCases(title, cases, { progress = () => {}, options = BENCH_OPTIONS } = {}) {
  const bench = new Bench({ name: title, ...options });
  const byName = new Map();
  for (const c of cases) {
    const name = `${c.library} ${c.operation}`;
    if (byName.has(name)) throw new Error(`duplicate case ${name} in ${title}`);
    byName.set(name, c);
    bench.add(name, c.fn);
  }
  const measure = (task) => {
    const c = byName.get(task.name);
    const result = task.result;
    if (result.state !== 'completed') {
      throw new Error(`${title}: ${task.name} did not complete (${result.state})`, { cause: result.error });
    }
    const meanMs = result.latency.mean;
    return {
      library: c.library,
      operation: c.operation,
      role: c.role,
      bytesPerPass: c.bytes,
      mbps: c.bytes / 1e6 / (meanMs / 1e3),
      meanLatencyMs: meanMs,
      rmePercent: result.latency.rme,
      samples: result.latency.samplesCount,
      compressedBytes: c.compressedBytes ?? null,
      compressionRatio: c.compressedBytes ? c.bytes / c.compressedBytes : null,
      note: c.note ?? null,
    };
  };
  bench.addEventListener('cycle', (event) => progress(measure(event.task)));
  if (cases.some((c) => c.async)) return bench.run().then(() => withBaselineRatios(bench.tasks.map(measure)));
  bench.runSync();
  return withBaselineRatios(bench.tasks.map(measure));
}

/**
 * Adds `vsFlashpack` = flashpack MB/s ÷ row MB/s (>1: flashpack is faster), where
 * "flashpack" is the row with role 'baseline' for the same operation. Other
 * flashpack rows ('variant') get null: they are flashpack, not a peer.
 */
function withBaselineRatios(rows) {
  return rows.map((row) => {
    const base = rows.find((r) => r.role === 'baseline' && r.operation === row.operation);
    let vsFlashpack = null;
    if (row.role === 'baseline') vsFlashpack = 1;
    else if (row.role === 'peer' && base) vsFlashpack = base.mbps / row.mbps;
    return { ...row, vsFlashpack };
  });
}
