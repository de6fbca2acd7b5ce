// A ring stress participant run in a worker thread (test/ring.test.ts):
// produces or consumes through the JS ring or the WASM ring functions on the
// shared memory. Consumers count each value in `seen` (Atomics.add), so the test
// can check every value arrived exactly once.
import { parentPort, workerData } from 'node:worker_threads';
import { instantiate } from '../../dist/wasm/runtime.js';
import { readLayout } from '../../dist/shm/layout.js';
import { Ring } from '../../dist/shm/ring.js';

const { memory, role, ringAt, first, count, total, seenAt, doneAt, scratchAt, seed } = workerData;
const ex = instantiate(memory);
const layout = readLayout(ex);
const ring = new Ring(memory, layout, ringAt);
const i32 = new Int32Array(memory.buffer);
const u32 = new Uint32Array(memory.buffer);
const seen = new Int32Array(memory.buffer, seenAt, total);
const done = doneAt >> 2;
let rnd = seed >>> 0 || 1;
const burst = () => {
  rnd ^= rnd << 13; rnd ^= rnd >>> 17; rnd ^= rnd << 5; rnd >>>= 0;
  return 1 + (rnd % 64);
};
const spsc = ring.kind === 'spsc';
const scratch = scratchAt >> 2;

if (role === 'js-producer' || role === 'wasm-producer') {
  const buf = new Uint32Array(64);
  let next = first;
  const end = first + count;
  while (next < end) {
    const n = Math.min(burst(), end - next);
    let put;
    if (role === 'js-producer') {
      for (let k = 0; k < n; k++) buf[k] = next + k;
      put = ring.enqueue(buf, 0, n);
    } else {
      for (let k = 0; k < n; k++) u32[scratch + k] = next + k;
      put = spsc ? ex.spscEnqueue(ringAt, scratchAt, n) : ex.mpmcEnqueue(ringAt, scratchAt, n);
      // The WASM side does not notify: waking a parked consumer is JS's job.
      if (put > 0 && Atomics.load(i32, (ringAt + layout.RING_SLEEPERS) >> 2) !== 0) Atomics.notify(i32, (ringAt + layout.RING_HEAD) >> 2);
    }
    next += put;
    if (put === 0) ring.waitNotFull(50);
  }
} else {
  const buf = new Uint32Array(64);
  for (;;) {
    const max = burst();
    let got;
    if (role === 'js-consumer') {
      got = ring.dequeue(buf, max);
      for (let k = 0; k < got; k++) Atomics.add(seen, buf[k], 1);
    } else {
      got = spsc ? ex.spscDequeue(ringAt, scratchAt, max) : ex.mpmcDequeue(ringAt, scratchAt, max);
      for (let k = 0; k < got; k++) Atomics.add(seen, u32[scratch + k], 1);
      if (got > 0 && Atomics.load(i32, (ringAt + layout.RING_PROD_SLEEPERS) >> 2) !== 0) Atomics.notify(i32, (ringAt + layout.RING_TAIL) >> 2);
    }
    if (got > 0) {
      if (Atomics.add(i32, done, got) + got >= total) {
        ring.close();
        break;
      }
    } else if (Atomics.load(i32, done) >= total || ring.waitNotEmpty(50) === 'closed') {
      if (ring.size <= 0) break;
    }
  }
}
parentPort.postMessage('done');
