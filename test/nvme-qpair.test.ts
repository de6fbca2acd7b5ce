/**
 * The NVMe queue-pair scheduler (src/nvme): request splitting, software
 * queueing when the trackers run out, request-pool exhaustion, completion
 * reaping, timeouts, abort, status decoding and many queue pairs at once.
 * Imports the built package: the device workers load dist/nvme/device-worker.js.
 *
 * A few tests read words of the shared queue-pair region to wait for the device
 * deterministically instead of sleeping; the offsets are layout.ts's
 * QP_CQ_TAIL (256) and QP_TRACKERS (512) and the tracker state TRACKER_ACTIVE (2).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { nvme, FlashpackError, Runtime } from '../dist/index.js';
import { equalBytes, prng, randomBytes } from './helpers/data.js';

type Controller = nvme.Controller;
type IoQpair = nvme.IoQpair;
type Status = nvme.Status;

const QP_CQ_TAIL = 256;
const QP_TRACKERS = 512;
const TRACKER_ACTIVE = 2;
const KiB = 1024;
const MiB = 1024 * 1024;

// ---- helpers ----

const opened: Controller[] = [];

async function open(backend: nvme.Backend, opts: nvme.ControllerOptions = {}): Promise<Controller> {
  const c = await nvme.Controller.open(backend, { runtime: new Runtime(), ioWorkers: 1, ...opts });
  opened.push(c);
  return c;
}

// Every controller is closed (close is idempotent), so a failed test never leaves device workers behind.
afterEach(async () => {
  while (opened.length > 0) await opened.pop()!.close();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `qps` until `cond` holds; fails (instead of hanging) after `ms`. */
async function pollUntil(qps: IoQpair | IoQpair[], cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const list = Array.isArray(qps) ? qps : [qps];
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    let reaped = 0;
    for (const qp of list) reaped += qp.processCompletions(0);
    if (reaped > 0 || cond()) continue;
    if (list.some((qp) => qp.outstandingCount > 0)) await list.find((qp) => qp.outstandingCount > 0)!.waitForCompletions(20);
    else await sleep(1);
  }
}

/** Waits (without reaping) until the device has touched a shared word as `cond` wants. */
async function waitForWord(c: Controller, byteAt: number, cond: (v: number) => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond(Atomics.load(new Int32Array(c.runtime.memory.buffer), byteAt >> 2))) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(1);
  }
}

const trackerWord = (qp: IoQpair, cid: number): number => qp.base + QP_TRACKERS + cid * 4;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FlashpackError);
    return (err as FlashpackError).code;
  }
  return 'no error';
}

async function rejectionCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FlashpackError);
    return (err as FlashpackError).code;
  }
  return 'no error';
}

/** A block whose every byte says which block (and which write) it is. */
function blockPattern(n: number, blockSize: number, seed: number): Uint8Array {
  return randomBytes(n * blockSize, prng(seed));
}

function fillDesc(c: Controller, desc: number, data: Uint8Array): void {
  const view = c.pool.bytes(desc, true);
  view.fill(0);
  view.set(data);
}

const isZero = (b: Uint8Array): boolean => b.every((x) => x === 0);

/** Runs one command to completion; returns the status its callback got (and checks it fired exactly once). */
async function run(qp: IoQpair, submit: (cb: (s: Status, arg: unknown) => void) => void): Promise<Status> {
  const got: Status[] = [];
  submit((s) => got.push(s));
  await pollUntil(qp, () => got.length > 0, 'one completion');
  for (let i = 0; i < 3; i++) qp.processCompletions(0);
  expect(got.length).toBe(1);
  return got[0];
}

// ---- 1. splitting ----

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

// ---- 5. reaping ----

describe('processCompletions', () => {
  it('reaps at most max; 0 (or anything above the cap) means up to maxCompletionsCap; callbacks in completion order', async () => {
    const c = await open(new nvme.MemoryBackend({ size: 4 * MiB }), { ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueSize: 16 });
    expect([qp.maxCompletionsCap, qp.trackers]).toEqual([4, 12]);
    const d = c.pool.alloc(4096);
    const order: number[] = [];
    for (let i = 0; i < 12; i++) qp.write(ns, d, i, 1, (s, arg) => { expect(s).toBe(nvme.SUCCESS); order.push(arg as number); }, i);
    expect([qp.outstandingCount, qp.queuedCount]).toEqual([12, 0]);
    // Wait until the device has posted all 12 completion entries, without reaping any.
    await waitForWord(c, qp.base + QP_CQ_TAIL, (v) => v === 12, '12 posted completions');
    expect(order).toEqual([]);
    const steps: [number, number][] = [[1, 1], [2, 2], [0, 4], [100, 4], [-3, 1], [0, 0], [5, 0]];
    for (const [max, want] of steps) {
      const before = order.length;
      const n = qp.processCompletions(max);
      expect(n, `processCompletions(${max})`).toBe(want);
      expect(order.length - before).toBe(n);
      expect(qp.outstandingCount).toBe(12 - order.length);
    }
    // One device worker completes in submission order.
    expect(order).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(qp.outstandingCids()).toEqual([]);
  });

  it('the default cap for a 1024-entry queue is 128 and leaves 896 trackers', async () => {
    const c = await open(new nvme.MemoryBackend({ size: 4 * MiB }));
    const qp = c.allocIoQpair({ ioQueueSize: 1024 });
    expect([qp.maxCompletionsCap, qp.trackers]).toEqual([128, 896]);
    const q4 = c.allocIoQpair({ ioQueueSize: 4 });
    expect([q4.maxCompletionsCap, q4.trackers]).toEqual([1, 3]);
    const q8 = c.allocIoQpair({ ioQueueSize: 8 });
    expect([q8.maxCompletionsCap, q8.trackers]).toEqual([2, 6]);
  });
});

// ---- 6. timeouts ----

describe('timeouts', () => {
  it('each outstanding command is reported exactly once, oldest first, only while outstanding; timeout 0 turns reporting off', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const fault = new nvme.FaultBackend(mem);
    fault.setLatency({ readUs: 200_000 });
    const c = await open(fault, { ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const reports: { cid: number; at: number }[] = [];
    const strays: string[] = [];
    c.registerTimeoutCallback(50, (q, cid) => {
      if (q !== qp) strays.push(`qpair ${q.id}`);
      if (!q.outstandingCids().includes(cid)) strays.push(`cid ${cid} not outstanding`);
      reports.push({ cid, at: performance.now() });
    });
    const d = c.pool.alloc(4096);
    const done: number[] = [];
    const submitted = performance.now();
    for (let i = 0; i < 4; i++) qp.read(ns, d, i, 1, (s, arg) => { expect(s).toBe(nvme.SUCCESS); done.push(arg as number); }, i);
    const cids = qp.outstandingCids();
    expect(cids.length).toBe(4);
    expect(new Set(cids).size).toBe(4);
    expect(qp.processCompletions(0)).toBe(0);
    expect(reports).toEqual([]); // not yet 50 ms old
    await pollUntil(qp, () => done.length === 4, 'four slow reads', 10_000);
    for (let i = 0; i < 10; i++) qp.processCompletions(0);
    expect(strays).toEqual([]);
    expect(reports.map((r) => r.cid)).toEqual(cids);
    for (const r of reports) expect(r.at - submitted).toBeGreaterThanOrEqual(49);
    expect(done).toEqual([0, 1, 2, 3]);

    // Off: the same slow reads go unreported.
    c.registerTimeoutCallback(0, null);
    const before = reports.length;
    const done2: number[] = [];
    for (let i = 0; i < 2; i++) qp.read(ns, d, i, 1, () => done2.push(i));
    await pollUntil(qp, () => done2.length === 2, 'two slow reads', 10_000);
    expect(reports.length).toBe(before);

    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) expect(codeOf(() => c.registerTimeoutCallback(bad, () => {})), String(bad)).toBe('EINVAL');
  });
});

// ---- 7. abort ----

describe('abort', () => {
  it('aborts a command still in the SQ (completes ABORTED_BY_REQUEST, no data moved) but not the running one', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const fault = new nvme.FaultBackend(mem);
    const data = blockPattern(4, 4096, 7);
    mem.bytes().set(data, 0);
    fault.setLatency({ readUs: 150_000 });
    const c = await open(fault, { ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const bufs = Array.from({ length: 4 }, () => c.pool.alloc(4096));
    for (const b of bufs) c.pool.bytes(b, true).fill(0);
    const got: [number, Status][] = [];
    for (let i = 0; i < 4; i++) qp.read(ns, bufs[i], i, 1, (s, arg) => got.push([arg as number, s]), i);
    const cids = qp.outstandingCids();
    await waitForWord(c, trackerWord(qp, cids[0]), (v) => v === TRACKER_ACTIVE, 'the first read to start');
    expect(qp.abort(cids[0])).toBe(false); // running
    expect(qp.abort(cids[2])).toBe(true);
    expect(qp.abort(cids[2])).toBe(false); // already aborted
    expect(qp.abort(cids[3])).toBe(true);
    await pollUntil(qp, () => got.length === 4, 'four reads', 10_000);
    expect(got.map(([i]) => i)).toEqual([0, 1, 2, 3]);
    expect(got[0][1]).toBe(nvme.SUCCESS);
    expect(got[1][1]).toBe(nvme.SUCCESS);
    for (const k of [2, 3]) {
      const s = got[k][1];
      expect([s.sct, s.sc, s.isError], `read ${k}`).toEqual([nvme.SCT_GENERIC, nvme.SC_ABORTED_BY_REQUEST, true]);
      expect(isZero(c.pool.bytes(bufs[k], true)), `read ${k} moved no data`).toBe(true);
    }
    for (const k of [0, 1]) expect(equalBytes(c.pool.bytes(bufs[k], true), data.subarray(k * 4096, (k + 1) * 4096))).toBe(true);
    // Once completed, a command ID cannot be aborted.
    expect(qp.abort(cids[1])).toBe(false);
    expect([qp.outstandingCount, qp.freeRequests]).toEqual([0, 512]);
  });

  it('aborting from inside the timeout callback works', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const fault = new nvme.FaultBackend(mem);
    fault.setLatency({ readUs: 150_000 });
    const c = await open(fault, { ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const d = c.pool.alloc(4096);
    const aborted = new Map<number, boolean>();
    c.registerTimeoutCallback(30, (q, cid) => {
      expect(aborted.has(cid)).toBe(false);
      aborted.set(cid, q.abort(cid));
    });
    const got = new Map<number, Status>();
    for (let i = 0; i < 4; i++) qp.read(ns, d, i, 1, (s, arg) => got.set(arg as number, s), i);
    const cids = qp.outstandingCids();
    await waitForWord(c, trackerWord(qp, cids[0]), (v) => v === TRACKER_ACTIVE, 'the first read to start');
    await pollUntil(qp, () => got.size === 4, 'four reads', 10_000);
    expect([...aborted.keys()]).toEqual(cids);
    expect(cids.map((cid) => aborted.get(cid))).toEqual([false, true, true, true]);
    expect(got.get(0)).toBe(nvme.SUCCESS);
    for (const k of [1, 2, 3]) expect([got.get(k)!.sct, got.get(k)!.sc]).toEqual([nvme.SCT_GENERIC, nvme.SC_ABORTED_BY_REQUEST]);
  });

  it('abort of a command ID outside 0..trackers-1 is EINVAL; of an idle one, false', async () => {
    const c = await open(new nvme.MemoryBackend({ size: 4 * MiB }));
    const qp = c.allocIoQpair({ ioQueueSize: 8 });
    for (const cid of [-1, qp.trackers, qp.entries, 1.5, Number.NaN, '0' as unknown as number]) {
      expect(codeOf(() => qp.abort(cid)), String(cid)).toBe('EINVAL');
    }
    for (let cid = 0; cid < qp.trackers; cid++) expect(qp.abort(cid)).toBe(false);
  });
});

// ---- 8. status ----

describe('Status', () => {
  it('decodes SC, SCT, M and DNR from the 15-bit field, names them, and interns one frozen object per value', () => {
    const f = nvme.statusField(nvme.SCT_MEDIA_ERROR, nvme.SC_UNRECOVERED_READ_ERROR, true);
    expect(f).toBe(0x81 | (2 << 8) | (1 << 14));
    const s = nvme.Status.of(f);
    expect([s.sct, s.sc, s.dnr, s.m, s.isError, s.field]).toEqual([2, 0x81, true, false, true, f]);
    expect(s.toString()).toBe('MEDIA_ERROR/UNRECOVERED_READ_ERROR (sct 2, sc 0x81, dnr)');
    expect(nvme.Status.of(f)).toBe(s);
    expect(Object.isFrozen(s)).toBe(true);
    expect(nvme.Status.of(f | 0x8000)).toBe(s); // only 15 bits
    expect(nvme.Status.of(0)).toBe(nvme.SUCCESS);
    expect(nvme.Status.of(0x8000)).toBe(nvme.SUCCESS);
    expect([nvme.SUCCESS.isError, nvme.SUCCESS.sct, nvme.SUCCESS.sc, nvme.SUCCESS.dnr, nvme.SUCCESS.m]).toEqual([false, 0, 0, false, false]);
    expect(nvme.SUCCESS.toString()).toBe('GENERIC/SUCCESS (sct 0, sc 0x00)');

    const more = nvme.Status.of(nvme.statusField(0, 0, false, true));
    expect([more.m, more.dnr, more.isError]).toEqual([true, false, false]);
    expect(more.toString()).toBe('GENERIC/SUCCESS (sct 0, sc 0x00, m)');
    const abort = nvme.Status.of(nvme.statusField(nvme.SCT_GENERIC, nvme.SC_ABORTED_BY_REQUEST));
    expect(abort.toString()).toBe('GENERIC/ABORTED_BY_REQUEST (sct 0, sc 0x07)');
    expect(abort.isError).toBe(true);
    expect(nvme.Status.of(nvme.statusField(nvme.SCT_GENERIC, nvme.SC_LBA_OUT_OF_RANGE, true)).toString()).toBe('GENERIC/LBA_OUT_OF_RANGE (sct 0, sc 0x80, dnr)');
    expect(nvme.Status.of(nvme.statusField(nvme.SCT_MEDIA_ERROR, nvme.SC_WRITE_FAULT, true, true)).toString()).toBe('MEDIA_ERROR/WRITE_FAULT (sct 2, sc 0x80, dnr, m)');
    expect(nvme.Status.of(nvme.statusField(nvme.SCT_PATH, nvme.SC_HOST_PATH_ERROR, true)).toString()).toBe('PATH/HOST_PATH_ERROR (sct 3, sc 0x70, dnr)');
    expect(nvme.Status.of(nvme.statusField(nvme.SCT_COMMAND_SPECIFIC, 0x80)).toString()).toBe('COMMAND_SPECIFIC/SC_0x80 (sct 1, sc 0x80)');
    const vendor = nvme.Status.of(nvme.statusField(7, 0xff));
    expect([vendor.sct, vendor.sc, vendor.isError]).toEqual([7, 0xff, true]);
    expect(vendor.toString()).toBe('VENDOR/SC_0xff (sct 7, sc 0xff)');
    // SCT non-zero with SC 0 is still an error.
    expect(nvme.Status.of(nvme.statusField(nvme.SCT_PATH, nvme.SC_INTERNAL_PATH_ERROR)).isError).toBe(true);
  });
});

// ---- 9. 512-byte blocks ----

describe('512-byte namespace', () => {
  it('round trip, deallocate reads back zeroes, write zeroes over more than 65,536 blocks splits', async () => {
    const mem = new nvme.MemoryBackend({ size: 64 * MiB, blockSize: 512 });
    const c = await open(mem, { ioWorkers: 2 });
    const ns = c.ns(1);
    expect([ns.blockSize, ns.blocks, ns.maxTransferBlocks, ns.boundaryBlocks, ns.sizeBytes]).toEqual([512, 131072, 256, 0, 64 * MiB]);
    const qp = c.allocIoQpair();
    const lba = 12345;
    const count = 1000;
    const data = blockPattern(count, 512, 3);
    const src = c.pool.alloc(512 * KiB);
    fillDesc(c, src, data);
    const w: Status[] = [];
    qp.write(ns, src, lba, count, (s) => w.push(s));
    expect(qp.outstandingCount + qp.queuedCount).toBe(nvme.childCount(lba, count, 256, 0));
    expect(qp.outstandingCount + qp.queuedCount).toBe(4);
    await pollUntil(qp, () => w.length === 1, 'the write');
    expect(w).toEqual([nvme.SUCCESS]);
    const media = mem.bytes();
    expect(equalBytes(media.subarray(lba * 512, (lba + count) * 512), data)).toBe(true);
    expect(isZero(media.subarray((lba - 1) * 512, lba * 512))).toBe(true);
    expect(isZero(media.subarray((lba + count) * 512, (lba + count + 1) * 512))).toBe(true);

    const dst = c.pool.alloc(512 * KiB);
    c.pool.bytes(dst, true).fill(0x55);
    expect(await run(qp, (cb) => qp.read(ns, dst, lba, count, cb))).toBe(nvme.SUCCESS);
    expect(equalBytes(c.pool.bytes(dst, true).subarray(0, count * 512), data)).toBe(true);
    expect(c.pool.bytes(dst, true)[count * 512]).toBe(0x55); // nothing past the I/O

    // Deallocate two ranges; they read back as zeroes, the rest stays.
    expect(await run(qp, (cb) => qp.deallocate(ns, [{ lba: lba + 10, count: 20 }, { lba: lba + 500, count: 1 }], cb))).toBe(nvme.SUCCESS);
    c.pool.bytes(dst, true).fill(0x55);
    expect(await run(qp, (cb) => qp.read(ns, dst, lba, count, cb))).toBe(nvme.SUCCESS);
    const want = data.slice();
    want.fill(0, 10 * 512, 30 * 512);
    want.fill(0, 500 * 512, 501 * 512);
    expect(equalBytes(c.pool.bytes(dst, true).subarray(0, count * 512), want)).toBe(true);
    expect(isZero(want.subarray(0, 10 * 512))).toBe(false);

    // Write zeroes over LBAs 1 .. 131070: 131,070 blocks = 2 commands of at most 65,536.
    const chunk = new Uint8Array(64 * KiB).fill(0xa5);
    for (let at = 0; at < media.length; at += chunk.length) media.set(chunk, at);
    const z: Status[] = [];
    qp.writeZeroes(ns, 1, ns.blocks - 2, (s) => z.push(s));
    expect(qp.outstandingCount + qp.queuedCount).toBe(2);
    expect(qp.freeRequests).toBe(512 - 3);
    await pollUntil(qp, () => z.length === 1, 'write zeroes');
    expect(z).toEqual([nvme.SUCCESS]);
    expect(media.subarray(0, 512).every((b) => b === 0xa5)).toBe(true);
    expect(media.subarray(media.length - 512).every((b) => b === 0xa5)).toBe(true);
    expect(isZero(media.subarray(512, media.length - 512))).toBe(true);
    expect(qp.freeRequests).toBe(512);
  });
});

// ---- 10. many queue pairs ----

describe('many queue pairs', () => {
  it('8 queue pairs used at once by 3 device workers each get their own completions and data', async () => {
    const mem = new nvme.MemoryBackend({ size: 16 * MiB });
    const c = await open(mem, { ioWorkers: 3 });
    const ns = c.ns(1);
    const Q = 8;
    const N = 64;
    const qps = Array.from({ length: Q }, () => c.allocIoQpair({ ioQueueSize: 8 }));
    expect(new Set(qps.map((q) => q.id)).size).toBe(Q);
    const data = Array.from({ length: Q }, (_, q) => blockPattern(N, 4096, 1000 + q));
    const descs = Array.from({ length: Q }, (_, q) => Array.from({ length: N }, (_, i) => {
      const d = c.pool.alloc(4096);
      fillDesc(c, d, data[q].subarray(i * 4096, (i + 1) * 4096));
      return d;
    }));
    const done = Array.from({ length: Q }, () => [] as number[]);
    const wrong: string[] = [];
    // Interleave submissions across the queue pairs; each has 6 trackers, the rest queue.
    for (let i = 0; i < N; i++) {
      for (let q = 0; q < Q; q++) {
        qps[q].write(ns, descs[q][i], q * N + i, 1, (s, arg) => {
          const [qq, ii] = arg as [number, number];
          if (qq !== q || s !== nvme.SUCCESS) wrong.push(`qpair ${q} got ${qq}/${ii}: ${s.toString()}`);
          done[q].push(ii);
        }, [q, i]);
      }
    }
    for (const qp of qps) expect(qp.outstandingCount).toBeLessThanOrEqual(qp.trackers);
    await pollUntil(qps, () => done.every((d) => d.length === N), 'every write on every qpair', 20_000);
    expect(wrong).toEqual([]);
    for (let q = 0; q < Q; q++) {
      expect([...done[q]].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
      expect(equalBytes(mem.bytes().subarray(q * N * 4096, (q + 1) * N * 4096), data[q]), `qpair ${q} media`).toBe(true);
    }
    // Each reads its region back in one (split) command, all at once.
    const reads = qps.map(() => c.pool.alloc(512 * KiB));
    const rdone: Status[] = [];
    qps.forEach((qp, q) => qp.read(ns, reads[q], q * N, N, (s) => rdone.push(s)));
    await pollUntil(qps, () => rdone.length === Q, 'eight reads');
    expect(rdone.every((s) => s === nvme.SUCCESS)).toBe(true);
    for (let q = 0; q < Q; q++) expect(equalBytes(c.pool.bytes(reads[q], true).subarray(0, N * 4096), data[q]), `qpair ${q} read`).toBe(true);
  });

  it('freeIoQpair is EINVAL while I/O is outstanding or queued; afterwards the qpair is gone and its slot reused; 64 qpairs at most', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const fault = new nvme.FaultBackend(mem);
    const c = await open(fault, { ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueSize: 4 });
    const d = c.pool.alloc(4096);
    const done: Status[] = [];
    qp.write(ns, d, 0, 1, (s) => done.push(s));
    expect(codeOf(() => c.freeIoQpair(qp))).toBe('EINVAL'); // outstanding (not reaped yet)
    await pollUntil(qp, () => done.length === 1, 'one write');
    fault.setLatency({ writeUs: 30_000 });
    for (let i = 0; i < 4; i++) qp.write(ns, d, i, 1, (s) => done.push(s));
    expect(qp.queuedCount).toBe(1);
    expect(codeOf(() => c.freeIoQpair(qp))).toBe('EINVAL');
    await pollUntil(qp, () => qp.outstandingCount === 1 && qp.queuedCount === 0, 'the queue to drain');
    expect(codeOf(() => c.freeIoQpair(qp))).toBe('EINVAL');
    await pollUntil(qp, () => done.length === 5, 'five writes');
    fault.setLatency({ writeUs: 0 });
    c.freeIoQpair(qp);
    expect(codeOf(() => qp.processCompletions(0))).toBe('ENXIO');
    expect(codeOf(() => c.freeIoQpair(qp))).toBe('EINVAL'); // twice
    const again = c.allocIoQpair({ ioQueueSize: 4 });
    expect(again.id).toBe(qp.id);
    expect(await run(again, (cb) => again.write(ns, d, 0, 1, cb))).toBe(nvme.SUCCESS);

    const more: IoQpair[] = [again];
    while (more.length < 64) more.push(c.allocIoQpair({ ioQueueSize: 4, ioQueueRequests: 1 }));
    expect(new Set(more.map((q) => q.id)).size).toBe(64);
    expect(codeOf(() => c.allocIoQpair({ ioQueueSize: 4 }))).toBe('ENOMEM');
    c.freeIoQpair(more[10]);
    expect(c.allocIoQpair({ ioQueueSize: 4 }).id).toBe(more[10].id);
  });

  it('submitting on a freed queue pair is refused with ENXIO', async () => {
    const c = await open(new nvme.MemoryBackend({ size: 4 * MiB }));
    const qp = c.allocIoQpair({ ioQueueSize: 4 });
    c.freeIoQpair(qp);
    const d = c.pool.alloc(4096);
    // No qpair reuses the region here, so the accepted command is merely lost (never completes).
    expect(codeOf(() => qp.write(c.ns(1), d, 0, 1, () => {}))).toBe('ENXIO');
  });
});

// ---- FUA and flush through the fault backend's volatile cache ----

describe('FUA and flush', () => {
  it('flushed and FUA writes survive a power cut that drops the cache; a plain unflushed write does not', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const fault = new nvme.FaultBackend(mem);
    const c = await open(fault, { ioWorkers: 1 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const blocks = [1, 2, 3].map((i) => blockPattern(1, 4096, 50 + i));
    const ds = blocks.map((b) => {
      const d = c.pool.alloc(4096);
      fillDesc(c, d, b);
      return d;
    });
    expect(await run(qp, (cb) => qp.write(ns, ds[0], 1, 1, cb))).toBe(nvme.SUCCESS);
    expect(fault.unflushedWrites).toBe(1);
    expect(await run(qp, (cb) => qp.flush(ns, cb))).toBe(nvme.SUCCESS);
    expect(fault.unflushedWrites).toBe(0);
    expect(await run(qp, (cb) => qp.write(ns, ds[1], 2, 1, cb))).toBe(nvme.SUCCESS);
    expect(await run(qp, (cb) => qp.write(ns, ds[2], 3, 1, cb, undefined, nvme.IO_FLAGS_FUA))).toBe(nvme.SUCCESS);
    fault.powerCut({ mode: 'drop' });
    expect(codeOf(() => qp.write(ns, ds[0], 0, 1, () => {}))).toBe('ENXIO');
    const media = mem.bytes();
    expect(equalBytes(media.subarray(4096, 8192), blocks[0])).toBe(true);
    expect(isZero(media.subarray(8192, 12288))).toBe(true);
    expect(equalBytes(media.subarray(12288, 16384), blocks[2])).toBe(true);
  });

  it('FaultBackend.unflushedWrites does not count a FUA write, which is already durable', async () => {
    const mem = new nvme.MemoryBackend({ size: 4 * MiB });
    const fault = new nvme.FaultBackend(mem);
    const c = await open(fault, { ioWorkers: 1 });
    const qp = c.allocIoQpair();
    const d = c.pool.alloc(4096);
    expect(await run(qp, (cb) => qp.write(c.ns(1), d, 0, 1, cb, undefined, nvme.IO_FLAGS_FUA))).toBe(nvme.SUCCESS);
    expect(fault.unflushedWrites).toBe(0);
  });
});

describe('several device workers on one small queue', () => {
  it('4 workers wrapping an 8-entry queue 150,000 times: every command completes once, with its own data', async () => {
    // Out-of-order completion across workers lets the host refill an SQ slot as
    // soon as the command in it is fetched; a worker must read the entry before
    // it claims it (a bug the file benchmark found once).
    const be = new nvme.MemoryBackend({ size: 4 * MiB });
    const c = await open(be, { ioWorkers: 4 });
    const ns = c.ns(1);
    const qp = c.allocIoQpair({ ioQueueSize: 8, ioQueueRequests: 64 });
    const depth = qp.trackers;
    const descs = Array.from({ length: depth }, () => c.pool.alloc(4096));
    const rand = prng(7);
    const blocks = ns.blocks;
    const expected = new Uint32Array(blocks); // the stamp last written to each block (0 = never)
    const total = 150_000;
    const seen = new Uint8Array(total + 1);
    let done = 0;
    let next = 1;
    let failures = 0;
    const submit = (slot: number): void => {
      const id = next++;
      // Each buffer slot owns the blocks ≡ slot (mod depth): its commands never overlap another slot's.
      const lba = slot + depth * Math.floor(rand() * Math.floor(blocks / depth));
      const view = new DataView(c.pool.bytes(descs[slot], true).buffer, c.pool.bufferOf(descs[slot]), 4096);
      if (expected[lba] !== 0 && rand() < 0.5) {
        qp.read(ns, descs[slot], lba, 1, (st) => {
          if (st.isError || seen[id]++ !== 0 || view.getUint32(0, true) !== expected[lba] || view.getUint32(4092, true) !== lba) failures++;
          complete(slot);
        });
      } else {
        view.setUint32(0, id, true);
        view.setUint32(4092, lba, true);
        qp.write(ns, descs[slot], lba, 1, (st) => {
          if (st.isError || seen[id]++ !== 0) failures++;
          expected[lba] = id;
          complete(slot);
        });
      }
    };
    const complete = (slot: number): void => {
      done++;
      if (next <= total) submit(slot);
    };
    // One command per buffer slot at a time.
    for (let s = 0; s < depth; s++) submit(s);
    await pollUntil(qp, () => done === next - 1 && next > total, `${total} completions`, 60_000);
    expect(failures).toBe(0);
    expect(done).toBe(total);
  });
});

describe('process lifetime', () => {
  it('a process that only waits for completions stays alive until they arrive (waitAsync alone would let Node exit)', async () => {
    const { execFileSync } = await import('node:child_process');
    const script = `
      import { nvme, Runtime } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
      const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 1 << 20 }));
      fault.setLatency({ flushUs: 3_000_000 });
      const c = await nvme.Controller.open(fault, { runtime: new Runtime(), ioWorkers: 1 });
      const qp = c.allocIoQpair();
      let done = false;
      qp.flush(c.ns(1), () => { done = true; });
      while (!done) if (qp.processCompletions(0) === 0) await qp.waitForCompletions(10);
      await c.close();
      console.log('completed');
    `;
    // A file, not --eval: workers inherit execArgv, and --input-type breaks them.
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'flashpack-lifetime-'));
    try {
      writeFileSync(join(dir, 'wait.mjs'), script);
      const out = execFileSync(process.execPath, [join(dir, 'wait.mjs')], { encoding: 'utf8', timeout: 60_000 });
      expect(out.trim()).toBe('completed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
