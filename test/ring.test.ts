import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { Runtime } from '../src/index.js';
import { Ring, readLayout } from '../src/shm/index.js';

function setup(capacity: number, kind: 'spsc' | 'mpmc', startIndex = 0) {
  const rt = new Runtime();
  const layout = readLayout(rt.exports);
  const at = rt.reserve(Ring.bytes(layout, capacity, kind), 128);
  const ring = Ring.init(rt.memory, layout, at, capacity, kind, startIndex);
  const scratch = rt.reserve(4 * 1024, 64);
  return { rt, layout, ring, at, scratch, ex: rt.exports, u32: () => new Uint32Array(rt.memory.buffer) };
}

describe('ring semantics (one thread)', () => {
  for (const kind of ['spsc', 'mpmc'] as const) {
    it(`${kind}: full and empty edges, partial bursts`, () => {
      const { ring } = setup(8, kind);
      const out = new Uint32Array(16);
      expect(ring.dequeue(out, 4)).toBe(0);
      expect(ring.enqueue([1, 2, 3, 4, 5])).toBe(5);
      expect(ring.enqueue([6, 7, 8, 9, 10])).toBe(3); // only 3 slots left
      expect(ring.size).toBe(8);
      expect(ring.enqueue([99])).toBe(0);
      expect(ring.dequeue(out, 16)).toBe(8);
      expect(Array.from(out.subarray(0, 8))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(ring.dequeue(out, 1)).toBe(0);
    });

    it(`${kind}: indices cross 2^32 and wrap the slots many times, FIFO throughout`, () => {
      const { ring, at, layout, rt } = setup(16, kind, 0xffff_f000);
      const out = new Uint32Array(16);
      let next = 0;
      let expected = 0;
      for (let round = 0; round < 20_000; round++) {
        const n = 1 + (round % 13);
        const batch = Array.from({ length: n }, (_, k) => (next + k) >>> 0);
        next += ring.enqueue(batch);
        const got = ring.dequeue(out, 1 + (round % 11));
        for (let k = 0; k < got; k++) expect(out[k]).toBe(expected++ >>> 0);
      }
      while (ring.size > 0) {
        const got = ring.dequeue(out, 16);
        for (let k = 0; k < got; k++) expect(out[k]).toBe(expected++ >>> 0);
      }
      expect(expected).toBe(next);
      const head = new Uint32Array(rt.memory.buffer)[(at + layout.RING_HEAD) >> 2];
      expect(head, 'the head index wrapped past 2^32').toBeLessThan(0xffff_f000);
      expect(head).toBe((0xffff_f000 + next) >>> 0);
    });

    it(`${kind}: JS and WASM share one ring in both directions, across the 2^32 wrap`, () => {
      const { ring, at, scratch, ex, u32 } = setup(64, kind, 0xffff_ff00);
      const enq = kind === 'spsc' ? ex.spscEnqueue : ex.mpmcEnqueue;
      const deq = kind === 'spsc' ? ex.spscDequeue : ex.mpmcDequeue;
      const out = new Uint32Array(64);
      for (let round = 0; round < 1000; round++) {
        // JS → WASM
        const vals = Array.from({ length: 1 + (round % 40) }, (_, k) => round * 1000 + k);
        expect(ring.enqueue(vals)).toBe(vals.length);
        expect(deq(at, scratch, 64)).toBe(vals.length);
        expect(Array.from(u32().subarray(scratch >> 2, (scratch >> 2) + vals.length))).toEqual(vals);
        // WASM → JS
        u32().set(vals, scratch >> 2);
        expect(enq(at, scratch, vals.length)).toBe(vals.length);
        expect(ring.dequeue(out, 64)).toBe(vals.length);
        expect(Array.from(out.subarray(0, vals.length))).toEqual(vals);
      }
    });
  }

  it('rejects capacities that are not powers of two', () => {
    const rt = new Runtime();
    const layout = readLayout(rt.exports);
    expect(() => Ring.init(rt.memory, layout, rt.reserve(4096, 128), 12, 'spsc')).toThrowError(/power of two/);
  });

  it('close wakes an async waiter', async () => {
    const { ring } = setup(8, 'spsc');
    const waiting = ring.waitNotEmptyAsync();
    ring.close();
    expect(await waiting).toBe('closed');
  });

  it('an async waiter resolves when a value arrives', async () => {
    const { ring } = setup(8, 'spsc');
    const waiting = ring.waitNotEmptyAsync(10_000);
    setTimeout(() => ring.enqueue([7]), 5);
    expect(await waiting).toBe('ok');
  });
});

async function stress(kind: 'spsc' | 'mpmc', producers: string[], consumers: string[], perProducer: number) {
  const rt = new Runtime();
  const layout = readLayout(rt.exports);
  const at = rt.reserve(Ring.bytes(layout, 1024, kind), 128);
  Ring.init(rt.memory, layout, at, 1024, kind);
  const total = perProducer * producers.length;
  const seenAt = rt.reserve(total * 4, 64);
  const doneAt = rt.reserve(128, 128);
  const roles = [...producers.map((r, i) => ({ role: r, first: i * perProducer })), ...consumers.map((r) => ({ role: r, first: 0 }))];
  const workers = roles.map(({ role, first }, i) => {
    const scratchAt = rt.reserve(256, 64);
    return new Worker(new URL('./helpers/ring-worker.mjs', import.meta.url), {
      workerData: { memory: rt.memory, role, ringAt: at, first, count: perProducer, total, seenAt, doneAt, scratchAt, seed: 1234 + i },
    });
  });
  await Promise.all(workers.map((w) => new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  })));
  await Promise.all(workers.map((w) => w.terminate()));
  const seen = new Int32Array(rt.memory.buffer, seenAt, total);
  let missing = 0;
  let duplicated = 0;
  for (let v = 0; v < total; v++) {
    if (seen[v] === 0) missing++;
    else if (seen[v] > 1) duplicated++;
  }
  return { total, missing, duplicated };
}

describe('ring stress across threads, JS and WASM on both ends', () => {
  it('spsc: 2,000,000 values, JS producer → WASM consumer', async () => {
    expect(await stress('spsc', ['js-producer'], ['wasm-consumer'], 2_000_000)).toEqual({ total: 2_000_000, missing: 0, duplicated: 0 });
  });
  it('spsc: 2,000,000 values, WASM producer → JS consumer', async () => {
    expect(await stress('spsc', ['wasm-producer'], ['js-consumer'], 2_000_000)).toEqual({ total: 2_000_000, missing: 0, duplicated: 0 });
  });
  it('mpmc: 2 producers (JS, WASM) × 1,000,000 → 2 consumers (JS, WASM)', async () => {
    expect(await stress('mpmc', ['js-producer', 'wasm-producer'], ['js-consumer', 'wasm-consumer'], 1_000_000)).toEqual({ total: 2_000_000, missing: 0, duplicated: 0 });
  });
});
