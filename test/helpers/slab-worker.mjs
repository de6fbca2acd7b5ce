// Concurrent allocate/free from a worker (test/slab.test.ts): alternates the JS
// pool and the WASM slabAlloc/slabFree on the same pool; marks ownership in
// `owned` so a descriptor handed to two owners at once is caught.
import { parentPort, workerData } from 'node:worker_threads';
import { instantiate } from '../../dist/wasm/runtime.js';
import { readLayout } from '../../dist/shm/layout.js';
import { SlabPool } from '../../dist/shm/slab.js';

const { memory, poolAt, ownedAt, rounds, id } = workerData;
const ex = instantiate(memory);
const pool = new SlabPool(memory, readLayout(ex), poolAt);
const owned = new Int32Array(memory.buffer, ownedAt, pool.descriptors);
let conflicts = 0;
const held = [];
for (let r = 0; r < rounds; r++) {
  const viaWasm = (r & 1) === 1;
  const idx = viaWasm ? ex.slabAlloc(poolAt, 0) : pool.tryAlloc(4096);
  if (idx >= 0) {
    if (Atomics.compareExchange(owned, idx, 0, id) !== 0) conflicts++;
    held.push(idx);
  }
  if (held.length > 8 || (idx < 0 && held.length > 0)) {
    const f = held.shift();
    Atomics.store(owned, f, 0);
    if (viaWasm) {
      if (ex.slabFree(poolAt, f) !== 0) conflicts++;
    } else pool.free(f);
  }
}
for (const f of held) {
  Atomics.store(owned, f, 0);
  pool.free(f);
}
parentPort.postMessage({ conflicts });
