/**
 * The volume's prepare job (vdo/prepare-job.ts), registered with an engine by
 * module: the fingerprint, the compressed form, and the known table that skips
 * compressing what the dedupe index lists. Imports the built package: workers
 * load dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fp from '../dist/index.js';
import * as P from '../dist/vdo/prepare-job.js';
import * as K from '../dist/vdo/known-table.js';
import { corpusConcat, equalBytes, pieces, prng, randomBytes } from './helpers/data.js';
import { runAll } from './helpers/engine.js';

const { Engine, jobs } = fp;
const blocks = pieces(corpusConcat(), 4096).filter((b) => b.length === 4096);

describe('vdo prepare job', () => {
  let engine: InstanceType<typeof Engine>;
  beforeAll(async () => {
    engine = await Engine.start({ workers: 2, runtime: new fp.Runtime(), jobs: [P.PREPARE_JOB_MODULE], classes: [{ size: 4096, count: 512 }] });
  });
  afterAll(async () => {
    await engine.close();
  });

  it('OP_PREPARE_BLOCK: XXH3-128 into DESC_RESULT and the block compressed (LZ4 or raw deflate) or left alone (codec none)', async () => {
    const pool = engine.pool;
    const sample = [...blocks.slice(0, 60), new Uint8Array(4096), randomBytes(4096, prng(7))];
    for (const [codec, arg] of [['lz4', P.PREPARE_CODEC_LZ4], ['deflate', P.prepareArg(P.PREPARE_CODEC_DEFLATE, 1, 0)], ['none', P.PREPARE_CODEC_NONE]] as const) {
      const ds: number[] = [];
      const outs: number[] = [];
      for (const b of sample) {
        const d = pool.alloc(4096);
        const o = pool.alloc(4096);
        pool.write(d, b);
        engine.prepare(d, P.OP_PREPARE_BLOCK, o, arg);
        ds.push(d);
        outs.push(o);
      }
      await runAll(engine, ds);
      sample.forEach((b, i) => {
        const d = ds[i];
        expect(equalBytes(engine.resultOf(d), fp.fingerprint(b)), `${codec} block ${i}: fingerprint`).toBe(true);
        const w = fp.fingerprint(b);
        expect(engine.resultWord(d, 2), `${codec} block ${i}: word 2`).toBe((w[8] | (w[9] << 8) | (w[10] << 16) | (w[11] << 24)) >>> 0);
        const status = engine.statusOf(d);
        if (codec === 'none') expect(status).toBe(jobs.STATUS_OK);
        else if (status === jobs.STATUS_OK) {
          const packed = pool.bytes(outs[i]);
          const back = codec === 'lz4' ? fp.lz4.decompressBlock(packed, 4096) : fp.deflate.decompress(packed, { format: 'raw' });
          expect(equalBytes(back, b), `${codec} block ${i}: round trip`).toBe(true);
        } else expect(status, `${codec} block ${i}: status`).toBe(jobs.STATUS_INCOMPRESSIBLE);
        pool.free(d);
        pool.free(outs[i]);
      });
    }
  });

  it('OP_PREPARE_BLOCK with a known table: a listed fingerprint is STATUS_KNOWN and not compressed; others, no table, or a table past the memory compress', async () => {
    const pool = engine.pool;
    const rt = engine.runtime;
    const lb = 4; // 16 buckets × 4 ways
    const entries = (1 << lb) * K.KNOWN_WAYS;
    const tableAt = rt.reserve(K.knownTableBytes(lb), 64);
    const mem = new DataView(rt.memory.buffer);
    const u8 = new Uint8Array(rt.memory.buffer);
    const sample = blocks.slice(100, 140);
    // List every other block's fingerprint, each in a way of its bucket.
    const fill = new Map<number, number>();
    sample.forEach((b, i) => {
      if (i % 2 !== 0) return;
      const w = fp.fingerprint(b);
      const lo = (w[0] | (w[1] << 8) | (w[2] << 16) | (w[3] << 24)) >>> 0;
      const hi = (w[4] | (w[5] << 8) | (w[6] << 16) | (w[7] << 24)) >>> 0;
      const bucket = lo & ((1 << lb) - 1);
      const way = fill.get(bucket) ?? 0;
      if (way === K.KNOWN_WAYS) return;
      fill.set(bucket, way + 1);
      const e = bucket * K.KNOWN_WAYS + way;
      mem.setUint32(tableAt + 4 * e, lo, true);
      mem.setUint32(tableAt + K.KEY_HI_AT * entries + 4 * e, hi, true);
      u8[tableAt + K.USED_AT * entries + e] = 1;
    });
    const listed = (b: Uint8Array): boolean => {
      const w = fp.fingerprint(b);
      const lo = (w[0] | (w[1] << 8) | (w[2] << 16) | (w[3] << 24)) >>> 0;
      const hi = (w[4] | (w[5] << 8) | (w[6] << 16) | (w[7] << 24)) >>> 0;
      const first = (lo & ((1 << lb) - 1)) * K.KNOWN_WAYS;
      for (let e = first; e < first + K.KNOWN_WAYS; e++) {
        if (u8[tableAt + K.USED_AT * entries + e] === 1 && mem.getUint32(tableAt + 4 * e, true) === lo &&
          mem.getUint32(tableAt + K.KEY_HI_AT * entries + 4 * e, true) === hi) return true;
      }
      return false;
    };
    const run = async (aux: number): Promise<number[]> => {
      const outs: number[] = [];
      const ds = sample.map((b) => {
        const d = pool.alloc(4096);
        pool.write(d, b);
        outs.push(pool.alloc(4096));
        engine.prepare(d, P.OP_PREPARE_BLOCK, outs.at(-1)!, P.prepareArg(P.PREPARE_CODEC_LZ4, 0, lb), aux);
        return d;
      });
      await runAll(engine, ds);
      const statuses = ds.map((d) => engine.statusOf(d));
      ds.forEach((d, i) => {
        expect(equalBytes(engine.resultOf(d), fp.fingerprint(sample[i])), `block ${i}: fingerprint`).toBe(true);
        if (statuses[i] === jobs.STATUS_OK) expect(equalBytes(pool.bytes(outs[i]), fp.lz4.compressBlock(sample[i])), `block ${i}: compressed`).toBe(true);
        pool.free(d);
        pool.free(outs[i]);
      });
      return statuses;
    };
    const withTable = await run(tableAt);
    const knownCount = sample.filter(listed).length;
    expect(knownCount).toBeGreaterThan(10);
    const compressed = (st: number): boolean => st === jobs.STATUS_OK || st === jobs.STATUS_INCOMPRESSIBLE;
    sample.forEach((b, i) => expect(listed(b) ? withTable[i] === P.STATUS_KNOWN : compressed(withTable[i]), `block ${i}: status ${withTable[i]}`).toBe(true));
    for (const aux of [0, rt.memory.buffer.byteLength - 64, tableAt + 1]) {
      expect((await run(aux)).every(compressed), `table at ${aux}`).toBe(true);
    }
  });

  it('prepareArg refuses a codec, level or table size the job cannot name (EINTERNAL: a caller bug)', () => {
    expect(() => P.prepareArg(3, 0, 0)).toThrow(expect.objectContaining({ code: 'EINTERNAL' }));
    expect(() => P.prepareArg(P.PREPARE_CODEC_DEFLATE, 13, 0)).toThrow(expect.objectContaining({ code: 'EINTERNAL' }));
    expect(() => P.prepareArg(P.PREPARE_CODEC_LZ4, 0, K.KNOWN_MAX_LOG2_BUCKETS + 1)).toThrow(expect.objectContaining({ code: 'EINTERNAL' }));
    expect(P.prepareArg(P.PREPARE_CODEC_DEFLATE, 9, 20)).toBe(2 | (9 << 8) | (20 << 16));
  });
});
