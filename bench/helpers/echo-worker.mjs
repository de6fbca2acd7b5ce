// Echo worker for the ring and postMessage benchmarks (bench/threads.mjs).
//  mode 'ring':    descriptors from ring `aAt` back on ring `bAt`, `burst` at a time
//  mode 'message': each message posted straight back
import { parentPort, workerData } from 'node:worker_threads';
import { instantiate } from '../../dist/wasm/runtime.js';
import { readLayout } from '../../dist/shm/layout.js';
import { Ring } from '../../dist/shm/ring.js';

const { mode } = workerData;
if (mode === 'message') {
  parentPort.on('message', (m) => parentPort.postMessage(m));
} else {
  const { memory, module, aAt, bAt, burst } = workerData;
  const layout = readLayout(instantiate(memory, module));
  const a = new Ring(memory, layout, aAt);
  const b = new Ring(memory, layout, bAt);
  const buf = new Uint32Array(burst);
  parentPort.postMessage('ready');
  for (;;) {
    const n = a.dequeue(buf, burst);
    if (n === 0) {
      if (a.waitNotEmpty() === 'closed') break;
      continue;
    }
    for (let put = 0; put < n; ) {
      const k = b.enqueue(buf, put, n - put);
      put += k;
      if (k === 0) b.waitNotFull(10);
    }
  }
}
