// What the volume benches share: a seeded generator and a timed closed loop.

/** mulberry32: a seeded generator of numbers in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `task` `depth` at a time for `ms`: operations done and the seconds taken. */
export async function timed(ms, depth, task) {
  let ops = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  await Promise.all(Array.from({ length: depth }, async () => {
    while (performance.now() < end) {
      await task();
      ops++;
    }
  }));
  return { ops, s: (performance.now() - t0) / 1000 };
}
