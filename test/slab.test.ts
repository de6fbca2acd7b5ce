import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { Runtime, FlashpackError } from '../src/index.js';
import { SlabPool } from '../src/shm/index.js';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as FlashpackError).code;
  }
  return 'no error';
}

describe('slab pools', () => {
  it('serves each size from the smallest class that holds it, 4 KiB-aligned', () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 4 }, { size: 524288, count: 2 }]);
    const a = pool.alloc(100);
    const b = pool.alloc(4096);
    const c = pool.alloc(4097);
    expect(pool.capacityOf(a)).toBe(4096);
    expect(pool.capacityOf(b)).toBe(4096);
    expect(pool.capacityOf(c)).toBe(524288);
    for (const d of [a, b, c]) expect(pool.bufferOf(d) % 4096).toBe(0);
    expect(new Set([a, b, c].map((d) => pool.bufferOf(d))).size).toBe(3);
    expect(codeOf(() => pool.alloc(524289))).toBe('EINVAL');
  });

  it('exhaustion is ENOMEM; a free makes room again', () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 3 }]);
    const held = [pool.alloc(1), pool.alloc(1), pool.alloc(1)];
    expect(pool.tryAlloc(1)).toBe(-1);
    expect(codeOf(() => pool.alloc(1))).toBe('ENOMEM');
    pool.free(held[1]);
    expect(pool.alloc(1)).toBe(held[1]);
  });

  it('double free and foreign descriptors are EINVAL naming the index', () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 3 }]);
    const d = pool.alloc(1);
    pool.free(d);
    expect(() => pool.free(d)).toThrowError(new RegExp(`descriptor ${d} freed twice`));
    expect(() => pool.free(3)).toThrowError(/descriptor 3 is not one of this pool's 3/);
    expect(() => pool.free(-1)).toThrowError(/descriptor -1/);
    expect(rt.exports.slabFree(pool.at, d)).toBe(-2); // the WASM side agrees
    expect(rt.exports.slabFree(pool.at, 99)).toBe(-1);
  });

  it('no leak after 1,000,000 alloc/free cycles, JS and WASM interleaved', () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 64 }, { size: 8192, count: 8 }]);
    const held: number[] = [];
    for (let i = 0; i < 1_000_000; i++) {
      if (held.length < 40 && (i % 3 !== 0 || held.length === 0)) {
        held.push(i % 2 === 0 ? pool.alloc(4096) : rt.exports.slabAlloc(pool.at, 0));
      } else {
        const d = held.splice(i % held.length, 1)[0];
        if (i % 5 === 0) expect(rt.exports.slabFree(pool.at, d)).toBe(0);
        else pool.free(d);
      }
    }
    for (const d of held) pool.free(d);
    expect(pool.available(4096)).toBe(64);
    expect(pool.available(8192)).toBe(8);
    const all = Array.from({ length: 64 }, () => pool.alloc(1));
    expect(new Set(all).size).toBe(64);
  });

  it('allocAsync waits for a free, and times out with ENOMEM', async () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 1 }]);
    const d = pool.alloc(1);
    const waiting = pool.allocAsync(1, 5000);
    setTimeout(() => pool.free(d), 10);
    expect(await waiting).toBe(d);
    await expect(pool.allocAsync(1, 20)).rejects.toMatchObject({ code: 'ENOMEM' });
  });

  it('a keeping thread reuses the buffers it freed last, and they stay free to double-free checks', () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 8 }]);
    pool.keepFreed(4096, 2);
    const [a, b, c] = [pool.alloc(1), pool.alloc(1), pool.alloc(1)];
    pool.free(a);
    pool.free(b);
    pool.free(c); // past the bound: to the shared list
    expect(pool.available(4096)).toBe(8);
    expect(pool.alloc(1)).toBe(b);
    expect(pool.alloc(1)).toBe(a);
    pool.free(a);
    expect(() => pool.free(a)).toThrowError(new RegExp(`descriptor ${a} freed twice`));
    expect(rt.exports.slabFree(pool.at, a)).toBe(-2);
    // Other threads (here WASM) see kept buffers only once they go back to the shared list.
    const fromWasm = Array.from({ length: 7 }, () => rt.exports.slabAlloc(pool.at, 0));
    expect(fromWasm.filter((d) => d >= 0)).toHaveLength(6);
    expect(fromWasm).not.toContain(a);
    pool.keepFreed(4096, 0);
    expect(rt.exports.slabAlloc(pool.at, 0)).toBe(a);
  });

  it('a keeping thread frees to the shared list while anyone waits, and on request', async () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 2 }]);
    pool.keepFreed(4096, 2);
    const [a, b] = [pool.alloc(1), pool.alloc(1)];
    const since = pool.freeCount(1);
    pool.free(b, true);
    expect(pool.freeCount(1)).toBe(since + 1);
    expect(pool.alloc(1)).toBe(b);
    const waiting = pool.waitForFree(1, pool.freeCount(1), 5000);
    pool.free(a); // a thread waits: not kept, so the waiter hears of it
    await waiting;
    expect(pool.freeCount(1)).toBe(since + 2);
    expect(await pool.allocAsync(1, 5000)).toBe(a);
  });

  it('warm keeping takes its buffers up front and hands them out first', () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 6 }, { size: 8192, count: 2 }]);
    pool.keepFreed(4096, 4, true);
    pool.keepFreed(8192, 2, true);
    expect(pool.available(4096)).toBe(6);
    const kept = Array.from({ length: 4 }, () => pool.alloc(1));
    const wasm = [rt.exports.slabAlloc(pool.at, 0), rt.exports.slabAlloc(pool.at, 0), rt.exports.slabAlloc(pool.at, 0)];
    expect(wasm.filter((d) => d >= 0)).toHaveLength(2);
    expect(new Set([...kept, ...wasm.filter((d) => d >= 0)]).size).toBe(6);
    expect(rt.exports.slabAlloc(pool.at, 1)).toBe(-1); // both 8 KiB buffers are kept by this thread
    expect(pool.alloc(5000)).toBeGreaterThanOrEqual(6);
    expect(() => pool.keepFreed(4096, 7)).toThrowError(/keep 7 freed buffers of 4096 bytes \(0 to 6\)/);
  });

  it('bytes and write address the descriptor buffer', () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 2 }]);
    const d = pool.alloc(10);
    pool.write(d, Uint8Array.of(1, 2, 3));
    expect(pool.lengthOf(d)).toBe(3);
    expect(Array.from(pool.bytes(d))).toEqual([1, 2, 3]);
    expect(() => pool.setLength(d, 5000)).toThrowError(/exceeds descriptor/);
  });

  it('two threads allocating and freeing concurrently never share a descriptor', async () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 32 }]);
    const ownedAt = rt.reserve(pool.descriptors * 4, 64);
    const workers = [1, 2].map((id) => new Worker(new URL('./helpers/slab-worker.mjs', import.meta.url), {
      workerData: { memory: rt.memory, poolAt: pool.at, ownedAt, rounds: 200_000, id },
    }));
    const results = await Promise.all(workers.map((w) => new Promise<{ conflicts: number }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    })));
    await Promise.all(workers.map((w) => w.terminate()));
    expect(results.map((r) => r.conflicts)).toEqual([0, 0]);
    expect(pool.available(4096)).toBe(32);
  });
});
