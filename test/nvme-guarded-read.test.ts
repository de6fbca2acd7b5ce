/**
 * Guarded reads (IO_FLAGS_GUARD, qpair.readGuarded): the device worker hashes
 * each protection interval it read and stores the data check at the guards
 * address, so the volume's read path compares a word instead of hashing on
 * the main thread. Checked against the host's own dataCheck of the same bytes,
 * through splits at MDTS, on 512- and 4096-byte namespaces, with several
 * workers; and the arguments a device could not honour are EINVAL.
 */
import { describe, expect, it } from 'vitest';
import { nvme } from '../dist/index.js';
import { equalBytes, prng } from './helpers/data.js';
import { KiB, MiB, open, closeControllersAfterEach, codeOf, fillDesc, pollUntil, type Status } from './helpers/qpair.js';

closeControllersAfterEach();

const SENTINEL = 0x5a5a5a5a;

/** Random bytes from a seed. */
function randomBytes(n: number, seed: number): Uint8Array {
  const rand = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 256) | 0;
  return out;
}

describe('guarded reads', () => {
  for (const [blockSize, maxTransferBytes, intervalBytes] of [
    [4096, 128 * KiB, 4096], [4096, 8 * KiB, 8192], [4096, 128 * KiB, 65536], [512, 128 * KiB, 4096], [512, 16 * KiB, 16384],
  ] as const) {
    it(`${blockSize}-byte LBAs, MDTS ${maxTransferBytes / KiB} KiB, ${intervalBytes / KiB} KiB intervals: every guard is the host's data check of the bytes read, and nothing past the last guard is written`, async () => {
      const mem = new nvme.MemoryBackend({ size: 16 * MiB, blockSize });
      const c = await open(mem, { maxTransferBytes, ioWorkers: 2 });
      const ns = c.ns(1);
      const qp = c.allocIoQpair();
      const rt = c.runtime;
      const bytes = 512 * KiB;
      const count = bytes / blockSize;
      const interval = intervalBytes / blockSize;
      const lba = 3 * interval; // data blocks start on a multiple of their interval
      const data = randomBytes(bytes, blockSize + intervalBytes);
      const src = c.pool.alloc(bytes);
      fillDesc(c, src, data);
      const wrote: Status[] = [];
      qp.write(ns, src, lba, count, (s) => wrote.push(s));
      await pollUntil(qp, () => wrote.length > 0, 'the write');
      expect(wrote).toEqual([nvme.SUCCESS]);

      const guards = bytes / intervalBytes;
      const guardsAt = rt.reserve((guards + 4) * 4, 64);
      new Int32Array(rt.memory.buffer, guardsAt, guards + 4).fill(SENTINEL);
      const dst = c.pool.alloc(bytes);
      const read: Status[] = [];
      qp.readGuarded(ns, dst, lba, count, interval, guardsAt, (s) => read.push(s));
      await pollUntil(qp, () => read.length > 0, 'the guarded read');
      expect(read).toEqual([nvme.SUCCESS]);
      expect(equalBytes(c.pool.bytes(dst, true).subarray(0, bytes), data)).toBe(true);
      const at = c.pool.bufferOf(dst);
      const want = Array.from({ length: guards }, (_, i) => rt.exports.dataCheck(at + i * intervalBytes, intervalBytes, rt.ctx) >>> 0);
      const got = Array.from(new Int32Array(rt.memory.buffer, guardsAt, guards + 4), (w) => w >>> 0);
      expect(got.slice(0, guards)).toEqual(want);
      expect(got.slice(guards)).toEqual([SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
      expect(new Set(want).size).toBe(guards); // random intervals: distinct checks, so a misplaced guard shows
    });
  }

  it('200 guarded reads in flight on 2 workers, each with its own guards page: every guard matches its own block', async () => {
    const mem = new nvme.MemoryBackend({ size: 8 * MiB, blockSize: 4096 });
    const c = await open(mem, { ioWorkers: 2 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueSize: 256, ioQueueRequests: 512 });
    const rt = c.runtime;
    const blocks = 2048;
    const data = randomBytes(blocks * 4096, 99);
    mem.bytes().set(data);
    const N = 200;
    const guardsAt = rt.reserve(N * 4, 64);
    const rand = prng(7);
    const picks = Array.from({ length: N }, () => Math.floor(rand() * blocks));
    const dsts = picks.map(() => c.pool.alloc(4096));
    const done: Status[] = [];
    picks.forEach((lba, i) => qp.readGuarded(ns, dsts[i], lba, 1, 1, guardsAt + 4 * i, (s) => done.push(s)));
    await pollUntil(qp, () => done.length === N, 'every guarded read');
    expect(done.every((s) => s === nvme.SUCCESS)).toBe(true);
    const words = new Uint32Array(rt.memory.buffer, guardsAt, N);
    const wrong = picks.filter((lba, i) => {
      const at = c.pool.bufferOf(dsts[i]);
      return words[i] !== rt.exports.dataCheck(at, 4096, rt.ctx) >>> 0 || !equalBytes(c.pool.bytes(dsts[i], true), data.subarray(lba * 4096, (lba + 1) * 4096));
    });
    expect(wrong).toEqual([]);
  });

  it('EINVAL for an interval that is not a power of two, does not divide the read, or would be cut by MDTS or NOIOB, and for a bad guards address; nothing is submitted', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB, blockSize: 4096 });
    const c = await open(mem, { maxTransferBytes: 8 * KiB, optimalIoBoundary: 6 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const rt = c.runtime;
    const dst = c.pool.alloc(64 * KiB);
    const at = rt.reserve(64, 64);
    const cb = (): void => {};
    const free = qp.freeRequests;
    expect(codeOf(() => qp.readGuarded(ns, dst, 0, 6, 3, at, cb))).toBe('EINVAL'); // not a power of two
    expect(codeOf(() => qp.readGuarded(ns, dst, 0, 0, 1, at, cb))).toBe('EINVAL'); // no blocks
    expect(codeOf(() => qp.readGuarded(ns, dst, 0, 3, 2, at, cb))).toBe('EINVAL'); // 3 LBAs are not whole 2-LBA intervals
    expect(codeOf(() => qp.readGuarded(ns, dst, 0, 4, 4, at, cb))).toBe('EINVAL'); // 2-LBA transfers would cut a 4-LBA interval
    expect(codeOf(() => qp.readGuarded(ns, dst, 0, 4, 1, at + 2, cb))).toBe('EINVAL'); // unaligned guards
    expect(codeOf(() => qp.readGuarded(ns, dst, 0, 4, 1, 0, cb))).toBe('EINVAL'); // no guards address
    expect(codeOf(() => qp.readGuarded(ns, dst, 0, 4, 1, rt.memory.buffer.byteLength - 8, cb))).toBe('EINVAL'); // guards past the memory
    expect(codeOf(() => qp.readGuarded(ns, dst, 0, 4, 1, at, 'no' as never))).toBe('EINVAL');
    expect(qp.freeRequests).toBe(free);
    expect(qp.outstandingCount + qp.queuedCount).toBe(0);
    // NOIOB 6 cuts 2-LBA intervals only off their alignment: 6 is not a multiple of 4, nor of 2 after an odd start.
    const c2 = await open(new nvme.MemoryBackend({ size: 4 * MiB, blockSize: 4096 }), { optimalIoBoundary: 6 });
    const qp2 = c2.allocIoQpair();
    const d2 = c2.pool.alloc(64 * KiB);
    const a2 = c2.runtime.reserve(64, 64);
    expect(codeOf(() => qp2.readGuarded(c2.ns(1), d2, 0, 4, 4, a2, cb))).toBe('EINVAL');
    expect(codeOf(() => qp2.readGuarded(c2.ns(1), d2, 1, 4, 2, a2, cb))).toBe('EINVAL');
    const ok: Status[] = [];
    qp2.readGuarded(c2.ns(1), d2, 4, 8, 2, a2, (s) => ok.push(s)); // aligned: 4..5 | 6..11, whole intervals each
    await pollUntil(qp2, () => ok.length > 0, 'the aligned guarded read');
    expect(ok).toEqual([nvme.SUCCESS]);
  });
});
