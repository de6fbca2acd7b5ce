/**
 * Volume blocks larger than 4 KiB (issue 17: "block size chosen at format:
 * 4 KiB to 64 KiB in powers of two, with the packer and compression working
 * per block"). PBNs and metadata stay 4 KiB; a data block is blockBytes of
 * aligned PBNs, and each LBA's whole block is fingerprinted, compressed and
 * packed. Checked against a byte model: random aligned and unaligned writes,
 * discards, flushes, a clean reopen, a crash after a flush, the offline
 * check with scrub, online growth, and real NBD clients.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlashpackError, Runtime, Volume, checkVolume, nvme } from '../dist/index.js';
import { SB_VERSION, SB_VERSION_BLOCK_BYTES, SECTOR_BYTES, decodeSuperblock } from '../dist/vdo/encodings.js';
import { crc32c } from '../dist/codec/checksum.js';
import { prng, randomBytes } from './helpers/data.js';
import { codeOf } from './helpers/codes.js';
import { volumeFiles } from './helpers/volume-files.js';
import { flashpack, hasTool, ok, removeTempDirs, run, serve, tempDir } from './helpers/nbd.js';

const files = volumeFiles('block-size');
const quiet = { workers: 1, ioWorkers: 1 };

const WORDS = 'block map slab journal packer fragment dedupe advice verify scrub checksum sector extent'.split(' ');
function text(n: number, rand: () => number): Uint8Array {
  let s = '';
  while (s.length < n) s += WORDS[Math.floor(rand() * WORDS.length)] + (rand() < 0.05 ? String(Math.floor(rand() * 1e4)) : '') + ' ';
  return new TextEncoder().encode(s.slice(0, n));
}

/** Bytes for a write: text (packs), random (stored raw), zeroes, or a copy of earlier bytes of the model (dedupe). */
function dataFor(n: number, rand: () => number, model: Uint8Array): Uint8Array {
  const x = rand();
  if (x < 0.4) return text(n, rand);
  if (x < 0.65) return randomBytes(n, rand);
  if (x < 0.75) return new Uint8Array(n);
  const from = Math.floor(rand() * (model.length - n));
  return model.slice(from, from + n);
}

async function expectModel(v: Volume, model: Uint8Array, what: string): Promise<void> {
  const got = await v.read(0, model.length);
  const at = got.findIndex((b, i) => b !== model[i]);
  expect(at, `${what}: first wrong byte`).toBe(-1);
}

const CASES = [
  { bb: 8192, codec: 'lz4', dedupe: true, writePolicy: 'async' },
  { bb: 16384, codec: 'deflate', dedupe: true, writePolicy: 'sync' },
  { bb: 32768, codec: 'none', dedupe: false, writePolicy: 'async' },
  { bb: 65536, codec: 'lz4', dedupe: true, writePolicy: 'async' },
] as const;

describe('volume block sizes', () => {
  for (const c of CASES) {
    it(`${c.bb / 1024} KiB blocks, ${c.codec}${c.dedupe ? ', dedupe' : ''}, ${c.writePolicy}: reads what a model says across a reopen and a crash; check and scrub clean`, async () => {
      const rand = prng(c.bb + 7);
      const size = 16 << 20;
      const p = files.image();
      let v = await files.track(Volume.create(p, { logicalSize: size, blockBytes: c.bb, codec: c.codec, dedupe: c.dedupe, writePolicy: c.writePolicy, ...quiet }));
      expect(v.blockBytes).toBe(c.bb);
      expect(v.stats().blockBytes).toBe(c.bb);
      const model = new Uint8Array(size);
      const step = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) {
          const x = rand();
          if (x < 0.45) {
            // Whole aligned blocks (1–4).
            const blocks = 1 + Math.floor(rand() * 4);
            const off = Math.floor(rand() * (size / c.bb - blocks)) * c.bb;
            const d = dataFor(blocks * c.bb, rand, model);
            await v.write(off, d);
            model.set(d, off);
          } else if (x < 0.85) {
            // Unaligned: a byte to two blocks anywhere (read-modify-write of the edges).
            const len = 1 + Math.floor(rand() * 2 * c.bb);
            const off = Math.floor(rand() * (size - len));
            const d = dataFor(len, rand, model);
            await v.write(off, d);
            model.set(d, off);
          } else if (x < 0.95) {
            const len = Math.floor(rand() * 3 * c.bb);
            const off = Math.floor(rand() * (size - len));
            await v.discard(off, len);
            model.fill(0, off, off + len);
          } else await v.flush();
        }
      };
      await step(300);
      await expectModel(v, model, 'live');
      await v.flush(); // the packer's bins out: what close leaves
      const s = v.stats();
      expect(s.logicalBlocks).toBe(size / c.bb);
      expect(s.dataBlocksUsed).toBeGreaterThan(0);
      if (c.codec !== 'none') expect(s.compressedFragmentsWritten).toBeGreaterThan(0);
      await files.untrack(v, 'close');

      const report = await checkVolume(p, { scrub: true });
      expect(report.problems).toEqual([]);
      expect(report.blockBytes).toBe(c.bb);
      expect(report.dataBlocksUsed).toBe(s.dataBlocksUsed);

      v = await files.track(Volume.open(p, quiet));
      expect(v.blockBytes).toBe(c.bb);
      await expectModel(v, model, 'after a clean reopen');
      expect((await v.scrub()).bad).toEqual([]);
      await step(150);
      await v.flush();
      await files.untrack(v, 'abandon'); // a crash after the flush: everything written is durable
      v = await files.track(Volume.open(p, quiet));
      await expectModel(v, model, 'after a crash');
      expect((await v.scrub()).bad).toEqual([]);
      await files.untrack(v, 'close');
      expect((await checkVolume(p, { scrub: true })).problems).toEqual([]);
    }, 60_000);
  }

  it('compresses and packs each block whole: data repeating every 2 KiB takes a fraction of the room at 64 KiB that it takes at 4 KiB', async () => {
    const rand = prng(99);
    const chunk = randomBytes(2048, rand);
    const data = new Uint8Array(4 << 20);
    for (let at = 0; at < data.length; at += 2048) {
      // One 2 KiB chunk over and over, each copy marked with its place, so no two blocks of either size dedupe.
      data.set(chunk, at);
      data[at] = at >>> 11;
      data[at + 1] = at >>> 19;
    }
    const used: Record<number, number> = {};
    for (const bb of [4096, 65536]) {
      const v = await files.track(Volume.create(new nvme.MemoryBackend({ size: 16 << 20 }), { logicalSize: data.length, blockBytes: bb, ...quiet, runtime: new Runtime() }));
      await v.write(0, data);
      await v.flush();
      const s = v.stats();
      used[bb] = s.dataBlocksUsed * bb;
      // At 4 KiB a block compresses to just over half a packed block: alone in its bin, it is stored raw.
      if (bb === 65536) expect(s.compressedFragmentsWritten).toBe(64);
      await expectModel(v, data, `${bb}`);
      await files.untrack(v, 'close');
    }
    // At 4 KiB every block holds two copies of the chunk: it compresses to just over 2 KiB, more than half a packed block, so it
    // is stored raw. At 64 KiB one copy of the chunk stands for 32: fourteen blocks share one packed block.
    expect(used[65536] * 8).toBeLessThan(used[4096]);
  }, 30_000);

  it('records the block size in format version 5 (4 KiB stays version 4); a superblock whose version and block size disagree is not valid', async () => {
    for (const bb of [4096, 65536]) {
      const backend = new nvme.MemoryBackend({ size: 16 << 20 });
      const v = await Volume.create(backend, { logicalSize: 1 << 20, blockBytes: bb, ...quiet, runtime: new Runtime() });
      await v.write(0, new Uint8Array(bb).fill(5));
      await v.close();
      const img = backend.bytes();
      const dv = new DataView(img.buffer, img.byteOffset, SECTOR_BYTES);
      expect(dv.getUint32(4, true)).toBe(bb === 4096 ? SB_VERSION : SB_VERSION_BLOCK_BYTES);
      const sb = decodeSuperblock(img.subarray(0, 4096));
      expect(typeof sb === 'string' ? sb : sb.blockBytes).toBe(bb);
      // The other version with this block size: both copies refused as corrupt, not misread.
      for (let c = 0; c < 2; c++) {
        const w = new DataView(img.buffer, img.byteOffset + c * 4096, SECTOR_BYTES);
        w.setUint32(4, bb === 4096 ? SB_VERSION_BLOCK_BYTES : SB_VERSION, true);
        w.setUint32(8, 0, true);
        w.setUint32(8, crc32c(img.subarray(c * 4096, c * 4096 + SECTOR_BYTES)), true);
      }
      expect(decodeSuperblock(img.subarray(0, 4096))).toContain(`block size ${bb} in format version`);
      expect(await codeOf(Volume.open(backend, { ...quiet, runtime: new Runtime() }))).toBe('ECORRUPT');
    }
    // A sealed version-5 superblock naming a block size that is not one of the five, or one its data region does not start on.
    const backend = new nvme.MemoryBackend({ size: 16 << 20 });
    await (await Volume.create(backend, { logicalSize: 1 << 20, blockBytes: 8192, ...quiet, runtime: new Runtime() })).close();
    const img = backend.bytes();
    const base = decodeSuperblock(img.subarray(0, 4096));
    expect(typeof base).toBe('object');
    const reseal = (edit: (v: DataView) => void): string => {
      const b = img.slice(0, 4096);
      const v = new DataView(b.buffer, 0, SECTOR_BYTES);
      edit(v);
      v.setUint32(8, 0, true);
      v.setUint32(8, crc32c(b.subarray(0, SECTOR_BYTES)), true);
      const d = decodeSuperblock(b);
      return typeof d === 'string' ? d : `valid, ${d.blockBytes}`;
    };
    expect(reseal((v) => v.setUint32(96, 12288, true))).toBe('block size 12288 in format version 5');
    expect(reseal((v) => v.setUint32(96, 131072, true))).toBe('block size 131072 in format version 5');
    expect(reseal((v) => v.setUint32(96, 0, true))).toBe('block size 4096 in format version 5');
    // 8 KiB → 64 KiB: the same data start is no longer on a block boundary (or the refs no longer fit before it).
    expect(reseal((v) => v.setUint32(96, 65536, true))).toBe('inconsistent geometry');
  });

  it('flashpack check --scrub names a damaged 64 KiB data block by LBA and PBN', async () => {
    const p = files.image();
    const v = await files.track(Volume.create(p, { logicalSize: 4 << 20, blockBytes: 65536, codec: 'none', dedupe: false, ...quiet }));
    const rand = prng(5);
    for (let k = 0; k < 16; k++) await v.write(k * 65536, randomBytes(65536, rand));
    await files.untrack(v, 'close');
    const sb = decodeSuperblock(fs.readFileSync(p).subarray(0, 4096));
    if (typeof sb === 'string') throw new Error(sb);
    // The last 4 KiB of the first data block (a byte a 4 KiB-block reading would never cover).
    const fd = fs.openSync(p, 'r+');
    const at = (sb.dataStart + 15) * 4096 + 100;
    const one = new Uint8Array(1);
    fs.readSync(fd, one, 0, 1, at);
    one[0] ^= 0xff;
    fs.writeSync(fd, one, 0, 1, at);
    fs.closeSync(fd);
    const r = await checkVolume(p, { scrub: true });
    expect(r.problems.length).toBe(1);
    expect(r.problems[0].where).toBe(`PBN ${sb.dataStart}`);
    expect(r.problems[0].what).toMatch(/does not match the block map's .*; referenced by LBA \d+$/);
    const w = await files.track(Volume.open(p, quiet));
    const report = await w.scrub();
    expect(report.bad.map((b) => b.pbn)).toEqual([sb.dataStart]);
  });

  it('refuses a block size that is not a power of two from 4 KiB to 64 KiB, a size not a multiple of it, and a block size at open', async () => {
    for (const bad of [2048, 12288, 131072, 0, '64K', null]) {
      let err: unknown = null;
      try {
        await Volume.create(new nvme.MemoryBackend({ size: 8 << 20 }), { logicalSize: 1 << 20, blockBytes: bad as number, ...quiet });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FlashpackError);
      expect((err as FlashpackError).code).toBe('EINVAL');
      expect((err as Error).message).toContain('blockBytes');
      expect((err as Error).message).toContain('4096, 8192, 16384, 32768, 65536');
    }
    expect(await codeOf(Volume.create(new nvme.MemoryBackend({ size: 8 << 20 }), { logicalSize: (1 << 20) + 4096, blockBytes: 8192, ...quiet }))).toBe('EINVAL');
    const backend = new nvme.MemoryBackend({ size: 8 << 20 });
    const v = await Volume.create(backend, { logicalSize: 1 << 20, blockBytes: 16384, ...quiet, runtime: new Runtime() });
    // Growth by less than a block: refused; by whole blocks: fine.
    expect(await codeOf(v.resize({ logicalSize: (1 << 20) + 4096 }))).toBe('EINVAL');
    await v.resize({ logicalSize: 2 << 20 });
    expect(v.logicalSize).toBe(2 << 20);
    await v.close();
    const opened = Volume.open(backend, { blockBytes: 4096, ...quiet } as never);
    expect(await codeOf(opened)).toBe('EINVAL');
  });

  it('grows online at 64 KiB blocks, physical and logical, while writes go on', async () => {
    const p = files.image();
    const v = await files.track(Volume.create(p, { logicalSize: 4 << 20, physicalSize: 6 << 20, blockBytes: 65536, codec: 'none', dedupe: false, ...quiet }));
    const rand = prng(3);
    const model = new Uint8Array(12 << 20);
    const writes: Promise<void>[] = [];
    for (let k = 0; k < 48; k++) {
      const d = randomBytes(65536, rand);
      model.set(d, k * 65536);
      writes.push(v.write(k * 65536, d));
    }
    const grown = v.resize({ logicalSize: 12 << 20, physicalSize: 15 << 20 });
    await Promise.all([...writes, grown]);
    expect(fs.statSync(p).size).toBe(15 << 20);
    for (let k = 48; k < 192; k++) {
      const d = randomBytes(65536, rand);
      model.set(d, k * 65536);
      await v.write(k * 65536, d);
    }
    await expectModel(v, model, 'grown');
    await files.untrack(v, 'close');
    expect((await checkVolume(p, { scrub: true })).problems).toEqual([]);
    const w = await files.track(Volume.open(p, quiet));
    await expectModel(w, model, 'grown, reopened');
  }, 30_000);

  it('flashpack create --block-size: the CLI names it, check reports it, a bad one exits 1', async () => {
    const dir = tempDir('block-size-cli');
    const p = path.join(dir, 'v.img');
    const r = ok(await flashpack(['create', p, '--size', '8M', '--block-size', '32K', '--json']));
    expect(JSON.parse(r.stdout).blockBytes).toBe(32768);
    const c = ok(await flashpack(['check', p, '--json']));
    expect(JSON.parse(c.stdout).blockBytes).toBe(32768);
    const bad = await flashpack(['create', path.join(dir, 'w.img'), '--size', '8M', '--block-size', '12K']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('blockBytes');
    removeTempDirs();
  }, 30_000);

  it.skipIf(!hasTool('nbdinfo') || !hasTool('nbdcopy'))('an NBD export advertises the volume block as its preferred block size; nbdcopy round-trips through it', async () => {
    const dir = tempDir('block-size-nbd');
    const p = path.join(dir, 'v.img');
    ok(await flashpack(['create', p, '--size', '16M', '--block-size', '64K']));
    const srv = await serve(p, { socket: path.join(dir, 's') });
    try {
      const info = JSON.parse(ok(await run('nbdinfo', ['--json', srv.uri])).stdout);
      expect(info.exports[0].block_size_preferred).toBe(65536);
      const src = path.join(dir, 'in.raw');
      const out = path.join(dir, 'out.raw');
      const data = new Uint8Array(16 << 20);
      const rand = prng(64);
      for (let at = 0; at < data.length; at += 1 << 20) data.set(rand() < 0.5 ? text(1 << 20, rand) : randomBytes(1 << 20, rand), at);
      fs.writeFileSync(src, data);
      ok(await run('nbdcopy', [src, srv.uri]));
      ok(await run('nbdcopy', [srv.uri, out]));
      expect(Buffer.compare(fs.readFileSync(out), Buffer.from(data))).toBe(0);
    } finally {
      await srv.stop();
      removeTempDirs();
    }
  }, 60_000);
});
