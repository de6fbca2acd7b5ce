/**
 * The NVMe queue-pair scheduler (src/nvme), part 2: completion reaping, timeouts,
 * abort, status decoding, 512-byte namespaces, many queue pairs, FUA and
 * flush, several device workers, process lifetime. Part 1: nvme-qpair.test.ts.
 * Imports the built package: the device workers load dist/nvme/device-worker.js.
 */
import { describe, expect, it } from 'vitest';
import { nvme } from '../dist/index.js';
import { equalBytes, prng } from './helpers/data.js';
import {
  QP_CQ_TAIL, TRACKER_ACTIVE, KiB, MiB, open, closeControllersAfterEach, pollUntil, waitForWord, trackerWord,
  codeOf, blockPattern, fillDesc, isZero, run, type IoQpair, type Status,
} from './helpers/qpair.js';

closeControllersAfterEach();

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
