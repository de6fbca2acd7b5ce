/**
 * The NVMe queue-pair scheduler (src/nvme), part 1: request splitting, split
 * I/O errors, software queueing when the trackers run out, request-pool
 * exhaustion and submission errors. Part 2 (nvme-qpair-completion.test.ts):
 * completion reaping, timeouts, abort, status decoding and many queue pairs.
 * Imports the built package: the device workers load dist/nvme/device-worker.js.
 */
import { describe, expect, it } from 'vitest';
import { nvme, Runtime } from '../dist/index.js';
import { equalBytes, prng } from './helpers/data.js';
import {
  TRACKER_ACTIVE, KiB, MiB, open, closeControllersAfterEach, sleep, pollUntil, waitForWord, trackerWord,
  codeOf, rejectionCode, blockPattern, fillDesc, isZero, run, type Status,
} from './helpers/qpair.js';

closeControllersAfterEach();

describe('splitting arithmetic (split.ts)', () => {
  it('cuts at MDTS, counting from the start, with no boundary', () => {
    expect(nvme.splitRequest(0, 10, 4, 0)).toEqual([[0, 4], [4, 4], [8, 2]]);
    expect(nvme.splitRequest(3, 7, 3, 0)).toEqual([[3, 3], [6, 3], [9, 1]]);
    expect(nvme.splitRequest(5, 4, 4, 0)).toEqual([[5, 4]]);
    expect(nvme.childCount(0, 10, 4, 0)).toBe(3);
    expect(nvme.childCount(3, 7, 3, 0)).toBe(3);
    expect(nvme.childCount(5, 4, 4, 0)).toBe(1);
    expect(nvme.childCount(0, 131072, 65536, 0)).toBe(2);
    expect(nvme.childCount(1, 131070, 65536, 0)).toBe(2);
    expect(nvme.childCount(0, 131073, 65536, 0)).toBe(3);
  });

  it('cuts at every NOIOB boundary, then at MDTS from each piece\'s start', () => {
    // Boundary only (MDTS larger than the I/O).
    expect(nvme.splitRequest(5, 10, 100, 8)).toEqual([[5, 3], [8, 7]]);
    // Boundary larger than MDTS: 2 to the boundary, then MDTS pieces, 2 left.
    expect(nvme.splitRequest(6, 20, 4, 8)).toEqual([[6, 2], [8, 4], [12, 4], [16, 4], [20, 4], [24, 2]]);
    expect(nvme.splitRequest(16, 32, 8, 16)).toEqual([[16, 8], [24, 8], [32, 8], [40, 8]]);
    // Boundary smaller than MDTS: the boundary wins.
    expect(nvme.splitRequest(0, 10, 8, 3)).toEqual([[0, 3], [3, 3], [6, 3], [9, 1]]);
    // Boundary not a power of two, unaligned start, odd size.
    expect(nvme.splitRequest(1001, 10, 2, 3)).toEqual([[1001, 1], [1002, 2], [1004, 1], [1005, 2], [1007, 1], [1008, 2], [1010, 1]]);
    // MDTS does not divide the boundary: each 5-block segment is 3 + 2.
    expect(nvme.splitRequest(10, 10, 3, 5)).toEqual([[10, 3], [13, 2], [15, 3], [18, 2]]);
    // Exactly one aligned segment is one command; one block later it straddles.
    expect(nvme.childCount(16, 16, 16, 16)).toBe(1);
    expect(nvme.childCount(17, 16, 16, 16)).toBe(2);
    expect(nvme.childCount(15, 1, 16, 16)).toBe(1);
    expect(nvme.childCount(15, 2, 16, 16)).toBe(2);
    expect(nvme.childCount(1001, 10, 2, 3)).toBe(7);
    expect(nvme.childCount(6, 20, 4, 8)).toBe(6);
    expect(nvme.childCount(10, 10, 3, 5)).toBe(4);
  });

  it('brute force: childCount = splitRequest length; pieces contiguous, maximal, within MDTS and inside one boundary segment', () => {
    const rand = prng(0x5eed);
    const pick = (n: number): number => Math.floor(rand() * n);
    let split = 0;
    const failures: string[] = [];
    for (let k = 0; k < 20_000; k++) {
      const boundary = rand() < 0.25 ? 0 : 1 + pick(k % 3 === 0 ? 9 : 400);
      const max = 1 + pick(k % 5 === 0 ? 4 : 300);
      const lba = rand() < 0.1 ? 2 ** 40 + pick(1e6) : pick(1e6);
      const count = 1 + pick(k % 7 === 0 ? 5000 : 1200);
      const pieces = nvme.splitRequest(lba, count, max, boundary);
      const n = nvme.childCount(lba, count, max, boundary);
      const fail = (why: string): void => void failures.push(`${why}: ${JSON.stringify({ lba, count, max, boundary })}`);
      if (n !== pieces.length) fail(`childCount ${n} but ${pieces.length} pieces`);
      let at = lba;
      for (const [start, blocks] of pieces) {
        const end = start + blocks;
        if (start !== at) fail(`piece at ${start}, expected ${at}`);
        if (!(blocks >= 1 && blocks <= max)) fail(`piece of ${blocks} blocks`);
        if (boundary > 0 && Math.floor(start / boundary) !== Math.floor((end - 1) / boundary)) fail(`piece ${start}+${blocks} crosses a boundary`);
        // Maximal: a piece shorter than MDTS ends at the I/O's end or at a boundary.
        if (blocks < max && end !== lba + count && !(boundary > 0 && end % boundary === 0)) fail(`piece ${start}+${blocks} is short`);
        at = end;
      }
      if (at !== lba + count) fail(`pieces end at ${at}`);
      if (pieces.length > 1) split++;
      if (failures.length > 20) break;
    }
    expect(failures).toEqual([]);
    expect(split).toBeGreaterThan(10_000); // the cases really exercise splitting
  });

  it('end to end: a 512 KiB write at an odd LBA splits at MDTS 8 KiB and NOIOB 3, reads back in one command, the parent completes once', async () => {
    const mem = new nvme.MemoryBackend({ size: 16 * MiB, blockSize: 4096 });
    const c = await open(mem, { maxTransferBytes: 8192, optimalIoBoundary: 3, ioWorkers: 2 });
    const ns = c.ns(1);
    expect([ns.blockSize, ns.blocks, ns.maxTransferBlocks, ns.boundaryBlocks]).toEqual([4096, 4096, 2, 3]);
    const qp = c.allocIoQpair();
    const lba = 1001;
    const count = 128;
    const children = nvme.childCount(lba, count, 2, 3);
    expect(children).toBe(nvme.splitRequest(lba, count, 2, 3).length);
    expect(children).toBeGreaterThan(64);
    expect(children).toBeLessThan(qp.trackers); // every child goes straight to the device

    const data = blockPattern(count, 4096, 1);
    const src = c.pool.alloc(512 * KiB);
    fillDesc(c, src, data);
    const writes: [Status, unknown][] = [];
    const requestsBefore = qp.freeRequests;
    qp.write(ns, src, lba, count, (s, arg) => writes.push([s, arg]), 'w');
    // One command became `children` device commands, holding children + 1 requests.
    expect(qp.outstandingCount + qp.queuedCount).toBe(children);
    expect(qp.freeRequests).toBe(requestsBefore - children - 1);
    await pollUntil(qp, () => writes.length > 0, 'the split write');
    expect(writes).toEqual([[nvme.SUCCESS, 'w']]);
    expect(writes[0][0]).toBe(nvme.SUCCESS);
    expect(qp.outstandingCount).toBe(0);
    expect(qp.freeRequests).toBe(requestsBefore);
    const media = mem.bytes();
    expect(equalBytes(media.subarray(lba * 4096, (lba + count) * 4096), data)).toBe(true);
    expect(isZero(media.subarray((lba - 1) * 4096, lba * 4096))).toBe(true);
    expect(isZero(media.subarray((lba + count) * 4096, (lba + count + 1) * 4096))).toBe(true);

    const dst = c.pool.alloc(512 * KiB);
    c.pool.bytes(dst, true).fill(0xee);
    const reads: Status[] = [];
    qp.read(ns, dst, lba, count, (s) => reads.push(s));
    expect(qp.outstandingCount + qp.queuedCount).toBe(children);
    await pollUntil(qp, () => reads.length > 0, 'the split read');
    for (let i = 0; i < 5; i++) qp.processCompletions(0);
    expect(reads).toEqual([nvme.SUCCESS]);
    expect(equalBytes(c.pool.bytes(dst, true), data)).toBe(true);
    expect(writes.length).toBe(1);
    expect(qp.freeRequests).toBe(requestsBefore);
  });
});

// ---- 2. errors of children ----

describe('split I/O errors', () => {
  it('a media error on one LBA fails the parent once with MEDIA_ERROR/UNRECOVERED_READ_ERROR; only that child\'s blocks are missing', async () => {
    const mem = new nvme.MemoryBackend({ size: 16 * MiB });
    const fault = new nvme.FaultBackend(mem);
    const c = await open(fault, { maxTransferBytes: 8192, optimalIoBoundary: 3, ioWorkers: 2 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const lba = 1001;
    const count = 128;
    const data = blockPattern(count, 4096, 2);
    mem.bytes().set(data, lba * 4096);
    fault.injectMediaError(1050, 1, 'read');
    const dst = c.pool.alloc(512 * KiB);
    c.pool.bytes(dst, true).fill(0);
    const got: [Status, unknown][] = [];
    qp.read(ns, dst, lba, count, (s, arg) => got.push([s, arg]), 'parent');
    expect(qp.outstandingCount + qp.queuedCount).toBe(nvme.childCount(lba, count, 2, 3));
    await pollUntil(qp, () => got.length > 0, 'the split read');
    for (let i = 0; i < 5; i++) qp.processCompletions(0);
    expect(got.length).toBe(1);
    const [st, arg] = got[0];
    expect(arg).toBe('parent');
    expect([st.sct, st.sc, st.dnr, st.isError]).toEqual([nvme.SCT_MEDIA_ERROR, nvme.SC_UNRECOVERED_READ_ERROR, true, true]);
    expect(st).toBe(nvme.Status.of(nvme.statusField(nvme.SCT_MEDIA_ERROR, nvme.SC_UNRECOVERED_READ_ERROR, true)));
    // 1050 sits in the child [1050, 2]; every other child read its blocks.
    const buf = c.pool.bytes(dst, true);
    const bad = (1050 - lba) * 4096;
    expect(isZero(buf.subarray(bad, bad + 2 * 4096))).toBe(true);
    expect(equalBytes(buf.subarray(0, bad), data.subarray(0, bad))).toBe(true);
    expect(equalBytes(buf.subarray(bad + 2 * 4096, count * 4096), data.subarray(bad + 2 * 4096))).toBe(true);
    expect(qp.outstandingCount).toBe(0);
    expect(qp.freeRequests).toBe(512);
  });

  it('the parent keeps the FIRST error: a media error, then path errors after hot removal, completes as the media error', async () => {
    const mem = new nvme.MemoryBackend({ size: 16 * MiB });
    const fault = new nvme.FaultBackend(mem);
    const c = await open(fault, { maxTransferBytes: 8192, optimalIoBoundary: 3, ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const lba = 1001;
    const count = 128;
    const children = nvme.childCount(lba, count, 2, 3);
    fault.setLatency({ readUs: 30_000 });
    fault.injectMediaError(lba, 1, 'read'); // the first child, [1001, 1]
    const dst = c.pool.alloc(512 * KiB);
    const got: Status[] = [];
    qp.read(ns, dst, lba, count, (s) => got.push(s));
    // Wait until the first child (the media error) is reaped, then pull the device.
    await pollUntil(qp, () => qp.outstandingCount + qp.queuedCount < children, 'the first child');
    expect(got.length).toBe(0);
    fault.remove();
    await pollUntil(qp, () => got.length > 0, 'the parent after removal');
    for (let i = 0; i < 5; i++) qp.processCompletions(0);
    expect(got.length).toBe(1);
    expect([got[0].sct, got[0].sc]).toEqual([nvme.SCT_MEDIA_ERROR, nvme.SC_UNRECOVERED_READ_ERROR]);
    expect(qp.outstandingCount + qp.queuedCount).toBe(0);
  });
});

// ---- 3. queue full ----

describe('queue-full software queueing', () => {
  it('20 writes on 3 trackers: never more than 3 outstanding, the rest queued, completed in submission order (1 worker), media as written', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const fault = new nvme.FaultBackend(mem);
    fault.setLatency({ writeUs: 20_000 });
    const c = await open(fault, { ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueSize: 4 });
    expect(qp.entries).toBe(4);
    expect(qp.maxCompletionsCap).toBe(1);
    expect(qp.trackers).toBe(3);

    const order: number[] = [];
    const statuses: Status[] = [];
    const descs: number[] = [];
    const data: Uint8Array[] = [];
    const cb = (s: Status, arg: unknown): void => {
      order.push(arg as number);
      statuses.push(s);
      // A write submitted from a callback joins the end of the software queue.
      if (arg === 0) qp.write(ns, descs[20], 0, 1, cb, 20);
    };
    for (let i = 0; i <= 20; i++) {
      descs.push(c.pool.alloc(4096));
      data.push(blockPattern(1, 4096, 100 + i));
      fillDesc(c, descs[i], data[i]);
    }
    // Writes i and i + 10 hit the same LBA: the later one must win.
    for (let i = 0; i < 20; i++) qp.write(ns, descs[i], i % 10, 1, cb, i);
    expect(qp.outstandingCount).toBe(3);
    expect(qp.queuedCount).toBe(17);
    expect(qp.outstandingCids().length).toBe(3);
    let maxOutstanding = 0;
    await pollUntil(qp, () => {
      maxOutstanding = Math.max(maxOutstanding, qp.outstandingCount);
      expect(qp.outstandingCids().length).toBe(qp.outstandingCount);
      return order.length === 21;
    }, '21 writes');
    expect(maxOutstanding).toBe(3);
    expect(order).toEqual(Array.from({ length: 21 }, (_, i) => i));
    expect(statuses.every((s) => s === nvme.SUCCESS)).toBe(true);
    expect([qp.outstandingCount, qp.queuedCount, qp.freeRequests]).toEqual([0, 0, 512]);
    const media = mem.bytes();
    expect(equalBytes(media.subarray(0, 4096), data[20])).toBe(true);
    for (let l = 1; l < 10; l++) expect(equalBytes(media.subarray(l * 4096, (l + 1) * 4096), data[l + 10]), `LBA ${l}`).toBe(true);
  });
});

// ---- 4. submission errors ----

describe('submission errors', () => {
  it('ENOMEM when the request pool is empty, and it recovers once completions are reaped', async () => {
    const c = await open(new nvme.MemoryBackend({ size: 4 * MiB }));
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueSize: 4, ioQueueRequests: 2 });
    const d = c.pool.alloc(4096);
    const done: Status[] = [];
    qp.write(ns, d, 0, 1, (s) => done.push(s));
    qp.write(ns, d, 1, 1, (s) => done.push(s));
    expect(qp.freeRequests).toBe(0);
    expect(codeOf(() => qp.write(ns, d, 2, 1, () => {}))).toBe('ENOMEM');
    expect(codeOf(() => qp.read(ns, d, 2, 1, () => {}))).toBe('ENOMEM');
    expect(codeOf(() => qp.flush(ns, () => {}))).toBe('ENOMEM');
    expect(codeOf(() => qp.writeZeroes(ns, 2, 1, () => {}))).toBe('ENOMEM');
    expect(codeOf(() => qp.deallocate(ns, [{ lba: 2, count: 1 }], () => {}))).toBe('ENOMEM');
    expect(qp.outstandingCount).toBe(2);
    await pollUntil(qp, () => done.length === 2, 'two writes');
    expect(qp.freeRequests).toBe(2);
    expect(await run(qp, (cb) => qp.write(ns, d, 2, 1, cb))).toBe(nvme.SUCCESS);
    expect(await run(qp, (cb) => qp.flush(ns, cb))).toBe(nvme.SUCCESS);
    expect(qp.freeRequests).toBe(2);
  });

  it('ENOMEM when a split I/O needs more requests than are free (children + 1); it fits after completions', async () => {
    const c = await open(new nvme.MemoryBackend({ size: 4 * MiB }), { maxTransferBytes: 8192 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueRequests: 4 });
    const big = c.pool.alloc(512 * KiB);
    const small = c.pool.alloc(4096);
    const done: Status[] = [];
    qp.write(ns, small, 100, 1, (s) => done.push(s));
    // 6 blocks = 3 children + parent = 4 requests; 3 are free.
    expect(codeOf(() => qp.write(ns, big, 0, 6, () => {}))).toBe('ENOMEM');
    expect(qp.freeRequests).toBe(3);
    expect(qp.outstandingCount).toBe(1);
    await pollUntil(qp, () => done.length === 1, 'the small write');
    expect(await run(qp, (cb) => qp.write(ns, big, 0, 6, cb))).toBe(nvme.SUCCESS);
    expect(qp.freeRequests).toBe(4);
  });

  it('EINVAL when an I/O splits into as many children as ioQueueRequests or more (it could never fit), consuming nothing', async () => {
    const c = await open(new nvme.MemoryBackend({ size: 4 * MiB }), { maxTransferBytes: 8192 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueRequests: 4 });
    const big = c.pool.alloc(512 * KiB);
    expect(codeOf(() => qp.write(ns, big, 0, 16, () => {}))).toBe('EINVAL'); // 8 children
    expect(codeOf(() => qp.read(ns, big, 0, 8, () => {}))).toBe('EINVAL'); // 4 children = ioQueueRequests
    expect(codeOf(() => qp.read(ns, big, 1, 7, () => {}))).toBe('EINVAL'); // [1,2] [3,2] [5,2] [7,1]: 4 children
    expect([qp.freeRequests, qp.outstandingCount, qp.queuedCount]).toEqual([4, 0, 0]);
    expect(await run(qp, (cb) => qp.read(ns, big, 0, 6, cb))).toBe(nvme.SUCCESS); // 3 children fit
  });

  it('EINVAL for out-of-range LBAs, zero or bad counts, a too-small buffer, a foreign namespace, bad deallocate lists', async () => {
    const c = await open(new nvme.MemoryBackend({ size: 4 * MiB }));
    const other = await open(new nvme.MemoryBackend({ size: 4 * MiB }));
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const d = c.pool.alloc(4096);
    const big = c.pool.alloc(512 * KiB);
    const last = ns.blocks - 1;
    const cb = (): void => {};
    const cases: [string, () => void][] = [
      ['LBA past the end', () => qp.read(ns, d, ns.blocks, 1, cb)],
      ['range past the end', () => qp.write(ns, big, last, 2, cb)],
      ['negative LBA', () => qp.read(ns, d, -1, 1, cb)],
      ['fractional LBA', () => qp.read(ns, d, 1.5, 1, cb)],
      ['NaN LBA', () => qp.read(ns, d, Number.NaN, 1, cb)],
      ['zero count', () => qp.write(ns, d, 0, 0, cb)],
      ['negative count', () => qp.read(ns, d, 0, -1, cb)],
      ['fractional count', () => qp.read(ns, d, 0, 0.5, cb)],
      ['buffer too small', () => qp.read(ns, d, 0, 2, cb)],
      ['buffer too small (512 KiB + 1 block)', () => qp.write(ns, big, 0, 129, cb)],
      ['foreign namespace (read)', () => qp.read(other.ns(1), d, 0, 1, cb)],
      ['foreign namespace (flush)', () => qp.flush(other.ns(1), cb)],
      ['foreign namespace (write zeroes)', () => qp.writeZeroes(other.ns(1), 0, 1, cb)],
      ['not a namespace', () => qp.read({ id: 1 } as unknown as nvme.Namespace, d, 0, 1, cb)],
      ['write zeroes past the end', () => qp.writeZeroes(ns, last, 2, cb)],
      ['write zeroes of 0 blocks', () => qp.writeZeroes(ns, 0, 0, cb)],
      ['deallocate with no ranges', () => qp.deallocate(ns, [], cb)],
      ['deallocate with 257 ranges', () => qp.deallocate(ns, Array.from({ length: 257 }, (_, i) => ({ lba: i, count: 1 })), cb)],
      ['deallocate past the end', () => qp.deallocate(ns, [{ lba: 0, count: 1 }, { lba: last, count: 2 }], cb)],
      ['namespace 2', () => c.ns(2)],
    ];
    for (const [name, fn] of cases) expect(codeOf(fn), name).toBe('EINVAL');
    expect([qp.freeRequests, qp.outstandingCount, qp.queuedCount]).toEqual([512, 0, 0]);
    // The extremes that are valid are accepted.
    expect(await run(qp, (cb2) => qp.write(ns, d, last, 1, cb2))).toBe(nvme.SUCCESS);
    expect(await run(qp, (cb2) => qp.read(ns, big, last - 127, 128, cb2))).toBe(nvme.SUCCESS);
    expect(await run(qp, (cb2) => qp.deallocate(ns, Array.from({ length: 256 }, (_, i) => ({ lba: i * 2, count: 1 })), cb2))).toBe(nvme.SUCCESS);
  });

  it('EINVAL for bad controller and queue pair options', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    for (const opts of [{ maxTransferBytes: 6000 }, { maxTransferBytes: 2048 }, { maxTransferBytes: 4 * MiB }, { optimalIoBoundary: -1 },
      { optimalIoBoundary: 1.5 }, { maxQueueEntries: 3 }, { maxQueueEntries: 96 }, { ioWorkers: 0 }, { spinIterations: -1 }, { spinIterations: 0.5 }]) {
      expect(await rejectionCode(nvme.Controller.open(mem, { runtime: new Runtime(), ...opts })), JSON.stringify(opts)).toBe('EINVAL');
    }
    const c = await open(mem, { maxQueueEntries: 64 });
    for (const opts of [{ ioQueueSize: 2 }, { ioQueueSize: 12 }, { ioQueueSize: 128 }, { ioQueueRequests: 0 }, { ioQueueRequests: 2.5 }]) {
      expect(codeOf(() => c.allocIoQpair(opts)), JSON.stringify(opts)).toBe('EINVAL');
    }
    expect(c.allocIoQpair().entries).toBe(64);
    for (const n of [-1, 2.5, Number.NaN]) expect(codeOf(() => (c.spinIterations = n)), `spinIterations ${n}`).toBe('EINVAL');
  });

  it('spinIterations can change while I/O runs: workers that park at once, or spin, both answer every command', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const c = await open(mem, { ioWorkers: 2, spinIterations: 0 });
    expect(c.spinIterations).toBe(0);
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueSize: 8 });
    const d = c.pool.alloc(4096);
    fillDesc(c, d, blockPattern(1, 4096, 7));
    let done = 0;
    for (let round = 0; round < 40; round++) {
      // Alternate between parking at once and spinning, with pauses long enough for
      // the workers to park, so some commands find them asleep and some awake.
      c.spinIterations = round % 2 === 0 ? 0 : 100_000;
      for (let i = 0; i < 5; i++) qp.write(ns, d, (round * 5 + i) % 1000, 1, () => done++, null);
      await pollUntil(qp, () => done === (round + 1) * 5, `round ${round}`);
      if (round % 8 === 0) await sleep(5);
    }
    expect(c.spinIterations).toBe(100_000);
    expect(done).toBe(200);
  });

  it('ENXIO after hot removal: outstanding commands fail with a path error, new ones and new controllers are refused; a new epoch works', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const fault = new nvme.FaultBackend(mem);
    const c = await open(fault, { ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueSize: 4 }); // 3 trackers: writes 4 and 5 wait in the software queue
    const d = c.pool.alloc(4096);
    fault.setLatency({ writeUs: 10_000_000 }); // would take 10 s each: removal must cut it short
    const got: Status[] = [];
    for (let i = 0; i < 5; i++) qp.write(ns, d, i, 1, (s) => got.push(s));
    expect(qp.queuedCount).toBe(2);
    await waitForWord(c, trackerWord(qp, qp.outstandingCids()[0]), (v) => v === TRACKER_ACTIVE, 'the first write to start');
    fault.remove();
    expect(codeOf(() => qp.write(ns, d, 9, 1, () => {}))).toBe('ENXIO');
    expect(codeOf(() => qp.read(ns, d, 9, 1, () => {}))).toBe('ENXIO');
    expect(codeOf(() => qp.flush(ns, () => {}))).toBe('ENXIO');
    expect(codeOf(() => qp.writeZeroes(ns, 9, 1, () => {}))).toBe('ENXIO');
    expect(codeOf(() => qp.deallocate(ns, [{ lba: 9, count: 1 }], () => {}))).toBe('ENXIO');
    expect(codeOf(() => c.allocIoQpair())).toBe('ENXIO');
    await pollUntil(qp, () => got.length === 5, 'five writes after removal', 5000);
    for (const s of got) expect([s.sct, s.sc, s.dnr]).toEqual([nvme.SCT_PATH, nvme.SC_HOST_PATH_ERROR, true]);
    expect([qp.outstandingCount, qp.queuedCount, qp.freeRequests]).toEqual([0, 0, 512]);
    expect(await rejectionCode(nvme.Controller.open(fault, { runtime: new Runtime(), ioWorkers: 1 }))).toBe('ENXIO');

    // Re-inserted: a new epoch. The old controller stays gone; a new one works.
    fault.setLatency({ writeUs: 0 });
    fault.powerOn();
    expect(codeOf(() => qp.write(ns, d, 0, 1, () => {}))).toBe('ENXIO');
    expect(codeOf(() => c.allocIoQpair())).toBe('ENXIO');
    await c.close();
    const c2 = await open(fault, { ioWorkers: 1 });
    const qp2 = c2.allocIoQpair();
    const d2 = c2.pool.alloc(4096);
    expect(await run(qp2, (cb) => qp2.write(c2.ns(1), d2, 0, 1, cb))).toBe(nvme.SUCCESS);
  });

  it('ENXIO after close(); commands in the submission queue finish, software-queued ones complete ABORTED_SQ_DELETION', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const fault = new nvme.FaultBackend(mem);
    fault.setLatency({ writeUs: 30_000 });
    const c = await open(fault, { ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueSize: 4 });
    const d = c.pool.alloc(4096);
    fillDesc(c, d, blockPattern(1, 4096, 9));
    const got: [number, Status][] = [];
    for (let i = 0; i < 6; i++) qp.write(ns, d, i, 1, (s, arg) => got.push([arg as number, s]), i);
    expect([qp.outstandingCount, qp.queuedCount]).toEqual([3, 3]);
    await c.close();
    expect(got.map(([i]) => i)).toEqual([0, 1, 2, 3, 4, 5]);
    for (const [i, s] of got) {
      if (i < 3) expect(s, `write ${i}`).toBe(nvme.SUCCESS);
      else expect([s.sct, s.sc], `write ${i}`).toEqual([nvme.SCT_GENERIC, nvme.SC_ABORTED_SQ_DELETION]);
    }
    const media = mem.bytes();
    expect(isZero(media.subarray(0, 3 * 4096))).toBe(false);
    expect(isZero(media.subarray(3 * 4096, 6 * 4096))).toBe(true);
    expect(codeOf(() => qp.write(ns, d, 0, 1, () => {}))).toBe('ENXIO');
    expect(codeOf(() => qp.flush(ns, () => {}))).toBe('ENXIO');
    expect(codeOf(() => qp.processCompletions(0))).toBe('ENXIO');
    expect(codeOf(() => c.allocIoQpair())).toBe('ENXIO');
    await c.close(); // idempotent
  });

  it('a descriptor index that is not the pool\'s, or not allocated, is EINVAL', async () => {
    const c = await open(new nvme.MemoryBackend({ size: 4 * MiB }));
    const qp = c.allocIoQpair();
    // A write (not a read) so the accepted command only copies address 0..4095 to LBA 0.
    expect(codeOf(() => qp.write(c.ns(1), 1e9, 0, 1, () => {}))).toBe('EINVAL');
    expect(codeOf(() => qp.write(c.ns(1), 2.5, 0, 1, () => {}))).toBe('EINVAL');
  });
});
