/**
 * The offload engine against the synchronous codecs, plus crash recovery,
 * back-pressure and close. Imports the built package: workers load dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fp from '../dist/index.js';
import { corpusConcat, equalBytes, pieces, prng, randomBytes } from './helpers/data.js';
import { runAll } from './helpers/engine.js';

const { Engine, jobs } = fp;
const corpus = corpusConcat();
const blocks = pieces(corpus, 4096).filter((b) => b.length === 4096);

describe('engine', () => {
  let engine: InstanceType<typeof Engine>;
  beforeAll(async () => {
    engine = await Engine.start({ workers: 2, runtime: new fp.Runtime(), classes: [{ size: 4096, count: 512 }, { size: 524288, count: 8 }] });
  });
  afterAll(async () => {
    await engine.close();
  });

  it('promise API equals the synchronous codecs on every 4 KiB corpus block', async () => {
    const results = await Promise.all(blocks.map(async (b) => {
      const [crc, crcc, adler, packed, print] = await Promise.all([engine.crc32(b), engine.crc32c(b), engine.adler32(b), engine.lz4.compressBlock(b), engine.fingerprint(b)]);
      const back = await engine.lz4.decompressBlock(packed, b.length);
      return crc === fp.crc32(b) && crcc === fp.crc32c(b) && adler === fp.adler32(b) && equalBytes(packed, fp.lz4.compressBlock(b)) &&
        equalBytes(back, b) && equalBytes(print, fp.fingerprint(b));
    }));
    expect(results.filter((ok) => !ok).length).toBe(0);
    expect(results.length).toBe(blocks.length);
  });

  it('batch API: submit descriptors, poll completions, same results', async () => {
    const pool = engine.pool;
    const jobsIn: number[] = [];
    const outs = new Map<number, number>();
    for (const b of blocks.slice(0, 200)) {
      const d = pool.alloc(4096);
      const o = pool.alloc(4096);
      pool.write(d, b);
      engine.prepare(d, jobs.OP_LZ4_COMPRESS, o, 1);
      jobsIn.push(d);
      outs.set(d, o);
    }
    let submitted = 0;
    const done: number[] = [];
    while (done.length < jobsIn.length) {
      submitted += engine.submit(jobsIn.slice(submitted));
      done.push(...engine.poll());
      if (done.length < jobsIn.length) await engine.waitForCompletions();
    }
    expect(new Set(done).size).toBe(jobsIn.length);
    jobsIn.forEach((d, i) => {
      const want = fp.lz4.compressBlock(blocks[i]);
      // A block that does not shrink into its 4 KiB output is reported, not truncated.
      expect(engine.statusOf(d)).toBe(want.length <= 4096 ? jobs.STATUS_OK : jobs.STATUS_INCOMPRESSIBLE);
      if (want.length <= 4096) expect(equalBytes(pool.bytes(outs.get(d)!), want)).toBe(true);
      pool.free(d);
      pool.free(outs.get(d)!);
    });
  });

  it('reports decode errors as ECORRUPT naming the byte, and incompressible as a status', async () => {
    await expect(engine.lz4.decompressBlock(Uint8Array.of(0x10, 0x61, 70, 0, 0x50, 1, 2, 3, 4, 5), 100)).rejects.toMatchObject({
      code: 'ECORRUPT', message: expect.stringMatching(/match offset 70 at byte 2/),
    });
    const packed = await engine.lz4.compressBlock(blocks[3]);
    await expect(engine.lz4.decompressBlock(packed, 4000)).rejects.toMatchObject({ code: 'ECORRUPT' });
    const random = randomBytes(4096, prng(5));
    const d = engine.pool.alloc(4096);
    const o = engine.pool.alloc(64); // far too small
    engine.pool.write(d, random);
    engine.prepare(d, jobs.OP_LZ4_COMPRESS, o, 1);
    expect(engine.submit([d])).toBe(1);
    while (engine.poll().length === 0) await engine.waitForCompletions();
    expect(engine.statusOf(d)).toBe(jobs.STATUS_INCOMPRESSIBLE);
    engine.pool.free(d);
    engine.pool.free(o);
  });

  it('deflate jobs equal the synchronous codec in every format, and inflate errors name the field', async () => {
    const sample = blocks.filter((_, i) => i % 7 === 0);
    for (const format of ['raw', 'zlib', 'gzip'] as const) {
      const ok = await Promise.all(sample.map(async (b, i) => {
        const level = [1, 6, 9][i % 3];
        const packed = await engine.deflate.compress(b, { level, format });
        const back = await engine.deflate.decompress(packed, { format, originalSize: b.length });
        return equalBytes(packed, fp.deflate.compress(b, { level, format })) && equalBytes(back, b);
      }));
      expect(ok.every(Boolean), format).toBe(true);
    }
    const bad = Uint8Array.of(0x78, 0x9c, 0x07);
    await expect(engine.deflate.decompress(bad, { format: 'zlib' })).rejects.toMatchObject({ code: 'ECORRUPT' });
    let want = '';
    try {
      fp.deflate.decompress(bad, { format: 'zlib' });
    } catch (e) {
      want = (e as Error).message;
    }
    await expect(engine.deflate.decompress(bad, { format: 'zlib' })).rejects.toThrowError(want);
    const big = await engine.deflate.compress(blocks[0], { format: 'gzip' });
    await expect(engine.deflate.decompress(big, { format: 'gzip', originalSize: 100 })).rejects.toMatchObject({ code: 'ECORRUPT' });
  });

  it('takes a pool carved from its runtime (shared with a controller), and refuses one from another memory', async () => {
    const rt = new fp.Runtime();
    const pool = fp.SlabPool.create(rt, [{ size: 4096, count: 16 }]);
    const e = await Engine.start({ workers: 1, runtime: rt, pool });
    try {
      expect(e.pool).toBe(pool);
      expect(await e.crc32(new Uint8Array(100).fill(7))).toBe(fp.crc32(new Uint8Array(100).fill(7)));
    } finally {
      await e.close();
    }
    const other = fp.SlabPool.create(new fp.Runtime(), [{ size: 4096, count: 16 }]);
    await expect(Engine.start({ workers: 1, runtime: rt, pool: other })).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/options\.pool/) });
  });

  it('begin(): the engine is there at once; a job sent while its worker starts runs once it has (an open reads metadata meanwhile)', async () => {
    const { engine: e, ready } = await Engine.begin({ workers: 1, runtime: new fp.Runtime(), classes: [{ size: 4096, count: 16 }] });
    try {
      const bytes = new Uint8Array(100).fill(9);
      const early = e.crc32(bytes);
      await ready;
      expect(await early).toBe(fp.crc32(bytes));
      expect(e.workers).toBe(1);
    } finally {
      await e.close();
    }
  });

  it('back-pressure: submit accepts no more than the rings hold', async () => {
    const small = await Engine.start({ workers: 1, runtime: new fp.Runtime(), ringCapacity: 8, classes: [{ size: 4096, count: 64 }] });
    try {
      const ds = Array.from({ length: 40 }, () => small.pool.alloc(16));
      ds.forEach((d) => small.prepare(d, jobs.OP_NOP));
      const first = small.submit(ds);
      expect(first).toBeLessThanOrEqual(8);
      let done = 0;
      let sent = first;
      while (done < ds.length) {
        await small.waitForCompletions();
        done += small.poll().length;
        sent += small.submit(ds.slice(sent));
      }
      expect(done).toBe(40);
    } finally {
      await small.close();
    }
  });
});

describe('engine failures', () => {
  it('a crashed worker fails its jobs in flight with EWORKER and is replaced', async () => {
    const engine = await Engine.start({ workers: 1, runtime: new fp.Runtime(), classes: [{ size: 4096, count: 64 }] });
    try {
      const before = engine.crc32(blocks[0]);
      expect(await before).toBe(fp.crc32(blocks[0]));
      const crash = engine.pool.alloc(16);
      const victims = Array.from({ length: 10 }, () => engine.pool.alloc(16));
      engine.prepare(crash, jobs.OP_TEST_CRASH);
      victims.forEach((d) => engine.prepare(d, jobs.OP_NOP));
      expect(engine.submit([crash, ...victims])).toBe(11);
      const seen: number[] = [];
      while (seen.length < 11) {
        await engine.waitForCompletions();
        seen.push(...engine.poll());
      }
      expect(engine.statusOf(crash)).toBe(jobs.STATUS_WORKER_CRASHED);
      for (const d of victims) expect([jobs.STATUS_OK, jobs.STATUS_WORKER_CRASHED]).toContain(engine.statusOf(d));
      expect(engine.crashes).toBe(1);
      // The replacement serves new work.
      expect(await engine.crc32(blocks[1])).toBe(fp.crc32(blocks[1]));
      // A promise job in flight during a crash rejects with EWORKER.
      const p = engine.crc32(blocks[2]);
      engine.submit([crash]);
      const r = await Promise.allSettled([p]);
      expect(r[0].status === 'fulfilled' || (r[0] as PromiseRejectedResult).reason.code === 'EWORKER').toBe(true);
    } finally {
      await engine.close();
    }
  });

  it('close drains jobs in flight by default', async () => {
    const engine = await Engine.start({ workers: 2, runtime: new fp.Runtime(), classes: [{ size: 4096, count: 600 }] });
    const all = Promise.all(blocks.slice(0, 300).map((b) => engine.crc32(b)));
    await engine.close();
    const got = await all;
    expect(got).toEqual(blocks.slice(0, 300).map((b) => fp.crc32(b)));
  });

  it('close without drain cancels what has not run; nothing is lost or hangs', async () => {
    const engine = await Engine.start({ workers: 1, runtime: new fp.Runtime(), classes: [{ size: 4096, count: 600 }] });
    const runs = Promise.allSettled(blocks.slice(0, 500).map((b) => engine.lz4.compressBlock(b)));
    await engine.close({ drain: false });
    const settled = await runs;
    for (const s of settled) {
      if (s.status === 'rejected') expect(s.reason.code).toBe('ECANCELED');
    }
    expect(settled.length).toBe(500);
    await expect(engine.crc32(blocks[0])).rejects.toMatchObject({ code: 'ENXIO' });
  });
});
