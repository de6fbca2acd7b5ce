/**
 * Every public failure is a FlashpackError (issue 12): each entry point checks
 * its arguments at the call, with a stable code and a message that names the
 * argument and describes what it got — never a dump of a large array — and a
 * closed object says ENXIO wherever it is used. Imports the built package:
 * the engine's and the controller's workers load dist/.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as fp from '../dist/index.js';
import { modelDecodeBlock } from './helpers/lz4-model.js';

const { lz4, deflate, nvme, Engine, Ring, SlabPool, Runtime, FlashpackError } = fp;

/** A 16 KiB array: passed where an index is expected, it must not end up in a message. */
const big = new Uint8Array(16384);

interface Failure {
  code: string;
  message: string;
}

function check(err: unknown): Failure {
  expect(err).toBeInstanceOf(FlashpackError);
  const { code, message } = err as fp.FlashpackError;
  // describe() keeps messages short: a type and a size, never the bytes.
  expect(message.length, message).toBeLessThan(300);
  expect(message).not.toMatch(/0,0,0/);
  return { code, message };
}

function failure(fn: () => unknown): Failure {
  try {
    fn();
  } catch (err) {
    return check(err);
  }
  throw new Error('expected a FlashpackError, nothing was thrown');
}

async function rejection(p: Promise<unknown> | (() => Promise<unknown>)): Promise<Failure> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    return check(err);
  }
  throw new Error('expected a FlashpackError, the promise resolved');
}

/** Expects `fn` to fail with `code` and a message matching every pattern. */
function expectFailure(fn: () => unknown, code: string, ...patterns: RegExp[]): void {
  const f = failure(fn);
  expect(f.code, f.message).toBe(code);
  for (const p of patterns) expect(f.message).toMatch(p);
}

async function expectRejection(p: Promise<unknown> | (() => Promise<unknown>), code: string, ...patterns: RegExp[]): Promise<void> {
  const f = await rejection(p);
  expect(f.code, f.message).toBe(code);
  for (const pattern of patterns) expect(f.message).toMatch(pattern);
}

const text = new TextEncoder().encode('flashpack stores fixed-size blocks with inline deduplication and compression. '.repeat(60)).slice(0, 4096);

describe('codecs: a valid block or stream that does not fit dst is ENOSPC, not ECORRUPT', () => {
  const block = lz4.compressBlock(text);

  it('lz4.decompressBlockInto names the decoded size and dst.length', () => {
    expectFailure(() => lz4.decompressBlockInto(block, new Uint8Array(4095)), 'ENOSPC', /decodes to 4096 bytes, more than dst.length 4095/);
    expectFailure(() => lz4.decompressBlockInto(block, new Uint8Array(100)), 'ENOSPC', /decodes to 4096 bytes/);
    expectFailure(() => lz4.decompressBlockInto(block, new Uint8Array(0)), 'ENOSPC', /decodes to 4096 bytes/);
    // Still exact when it fits.
    expect(lz4.decompressBlockInto(block, new Uint8Array(4096))).toBe(4096);
  });

  it('lz4.decompressBlockInto still blames a bad block, even when dst is also too small', () => {
    const truncated = block.subarray(0, block.length - 3);
    expectFailure(() => lz4.decompressBlockInto(truncated, new Uint8Array(100)), 'ECORRUPT');
    const farMatch = Uint8Array.from([0x10, 0x61, 70, 0, 0x50, 1, 2, 3, 4, 5]);
    expectFailure(() => lz4.decompressBlockInto(farMatch, new Uint8Array(2)), 'ECORRUPT', /match offset 70 at byte 2/);
  });

  it('property: a mutated block into a random dst is ENOSPC exactly when it is valid but decodes past dst (model decoder as oracle)', () => {
    let seed = 12345;
    const rand = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const bases = [block, lz4.compressBlock(text.subarray(0, 300)), lz4.compressBlock(new Uint8Array(1000)), lz4.compressBlock(fp.fingerprint(text))];
    const seen = { ok: 0, ENOSPC: 0, ECORRUPT: 0 };
    for (let i = 0; i < 3000; i++) {
      const src = bases[i % bases.length].slice();
      for (let k = Math.floor(rand() * 3); k > 0; k--) src[Math.floor(rand() * src.length)] = Math.floor(rand() * 256);
      const cap = Math.floor(rand() * 4200);
      const exact = modelDecodeBlock(src, cap);
      const unlimited = modelDecodeBlock(src, 255 * src.length + 64);
      let got: number | Failure;
      try {
        got = lz4.decompressBlockInto(src, new Uint8Array(cap));
      } catch (err) {
        got = check(err);
      }
      const want = exact.ok ? exact.bytes.length : unlimited.ok && unlimited.bytes.length > cap ? 'ENOSPC' : 'ECORRUPT';
      expect(typeof got === 'number' ? got : got.code, `block ${Buffer.from(src).toString('hex').slice(0, 80)} into ${cap} bytes`).toBe(want);
      seen[typeof want === 'number' ? 'ok' : want]++;
    }
    // The mutations reach all three outcomes.
    expect(Math.min(seen.ok, seen.ENOSPC, seen.ECORRUPT)).toBeGreaterThan(100);
  });

  it('lz4.decompressBlockAt is ENOSPC for a dstCap too small', () => {
    const rt = fp.runtime();
    const src = rt.reserve(block.length);
    const dst = rt.reserve(4096);
    rt.u8.set(block, src);
    expectFailure(() => lz4.decompressBlockAt(src, block.length, dst, 4000, rt.ctx), 'ENOSPC', /decodes to 4096 bytes, more than dstCap 4000/);
  });

  it('lz4.decompressBlock keeps ECORRUPT for more than originalSize (a claim about the block) and says so', () => {
    expectFailure(() => lz4.decompressBlock(block, 4000), 'ECORRUPT', /decodes to 4096 bytes, more than originalSize 4000/);
  });

  it('deflate.decompressInto names the stream\'s size; a stream bad past dst is still ECORRUPT', () => {
    const data = new Uint8Array(100_000).map((_, i) => (i * 7) % 251);
    for (const format of ['raw', 'zlib', 'gzip'] as const) {
      const stream = deflate.compress(data, { format });
      expectFailure(() => deflate.decompressInto(stream, new Uint8Array(50_000), { format }), 'ENOSPC',
        new RegExp(`decodes to 100000 bytes, more than dst.length 50000`));
      expect(deflate.decompressInto(stream, new Uint8Array(100_000), { format })).toBe(100_000);
    }
    const zlib = deflate.compress(data, { format: 'zlib' });
    const badTrailer = zlib.slice();
    badTrailer[badTrailer.length - 1] ^= 1;
    expectFailure(() => deflate.decompressInto(badTrailer, new Uint8Array(50_000), { format: 'zlib' }), 'ECORRUPT', /Adler-32/);
  });

  it('deflate.decompressAt is ENOSPC for a dstCap too small', () => {
    const rt = fp.runtime();
    const stream = deflate.compress(text);
    const src = rt.reserve(stream.length);
    const dst = rt.reserve(4096);
    rt.u8.set(stream, src);
    expectFailure(() => deflate.decompressAt(src, stream.length, dst, 1000, rt.inflateScratch), 'ENOSPC', /decodes to 4096 bytes, more than dstCap 1000/);
  });
});

describe('codecs: wrong-typed arguments are EINVAL naming the argument', () => {
  it('inputs that are not bytes (ArrayBufferView and ArrayBuffer stay accepted)', () => {
    expectFailure(() => lz4.compressBlock('abc' as unknown as Uint8Array), 'EINVAL', /lz4\.compressBlock: src must be .*, got the string "abc"/);
    expectFailure(() => lz4.decompressBlockInto(text, [1, 2] as unknown as Uint8Array), 'EINVAL', /dst must be .*, got an array of 2 elements/);
    expectFailure(() => deflate.decompress(null as unknown as Uint8Array), 'EINVAL', /deflate\.decompress: src must be .*, got null/);
    expectFailure(() => fp.crc32(42 as unknown as Uint8Array), 'EINVAL', /crc32: data must be .*, got the number 42/);
    expect(fp.crc32(new DataView(text.buffer))).toBe(fp.crc32(text));
    expect(lz4.decompressFrame(lz4.compressFrame(text.buffer as ArrayBuffer)).length).toBe(4096);
  });

  it('sizes, levels and seeds: strings, floats, negatives and NaN', () => {
    expectFailure(() => lz4.decompressBlock(text, '4096' as unknown as number), 'EINVAL', /lz4\.decompressBlock: originalSize must be an integer .*, got the string "4096"/);
    expectFailure(() => lz4.compressBound(-1), 'EINVAL', /lz4\.compressBound: n must be .*, got the number -1/);
    expectFailure(() => deflate.compressBound(1.5), 'EINVAL', /deflate\.compressBound: n must be .*, got the number 1\.5/);
    expectFailure(() => deflate.compress(text, { level: '6' as unknown as number }), 'EINVAL', /deflate\.compress: options\.level must be an integer from 0 to 9, got the string "6"/);
    expectFailure(() => deflate.header('zlib', Number.NaN), 'EINVAL', /deflate\.header: level must be .*, got the number NaN/);
    expectFailure(() => deflate.createCompressor({ level: 10 }), 'EINVAL', /deflate\.createCompressor: options\.level/);
    expectFailure(() => deflate.decompress(text, { format: 'zip' as fp.DeflateFormat }), 'EINVAL', /options\.format must be 'raw', 'zlib' or 'gzip', got the string "zip"/);
    expectFailure(() => lz4.compressBlock(text, { acceleration: 1.5 }), 'EINVAL', /lz4\.compressBlock: options\.acceleration must be an integer from 1 to 65537, got the number 1\.5/);
    expectFailure(() => fp.crc32Combine('1' as unknown as number, 0, 0), 'EINVAL', /crc32Combine: crcA must be .*, got the string "1"/);
    expectFailure(() => fp.adler32Combine(1, -1, 0), 'EINVAL', /adler32Combine: adlerB must be/);
    expectFailure(() => fp.fingerprint(text, '7' as unknown as number), 'EINVAL', /fingerprint: seed must be .*, got the string "7"/);
  });

  it('options that are not objects, and options of the wrong type', () => {
    expectFailure(() => lz4.compressFrame(text, { blockSize: '64k' as unknown as 65536 }), 'EINVAL',
      /lz4\.compressFrame: options\.blockSize must be one of 65536, 262144, 1048576, 4194304, got the string "64k"/);
    expectFailure(() => lz4.compressFrame(text, null as unknown as fp.Lz4FrameOptions), 'EINVAL', /lz4\.compressFrame: options must be an options object, got null/);
    expectFailure(() => lz4.compressFrame(text, { blockChecksum: 'yes' as unknown as boolean }), 'EINVAL', /options\.blockChecksum must be a boolean, got the string "yes"/);
    expectFailure(() => deflate.compress(text, [] as unknown as fp.DeflateOptions), 'EINVAL', /deflate\.compress: options must be an options object, got an array of 0 elements/);
    expectFailure(() => lz4.compressBlock(text, 3 as unknown as fp.Lz4CompressOptions), 'EINVAL', /options must be an options object, got the number 3/);
    expectFailure(() => deflate.footer('gzip', null as unknown as fp.FooterFields), 'EINVAL', /deflate\.footer: fields must be/);
    expectFailure(() => deflate.footer('gzip', { checksum: 1, length: -1 }), 'EINVAL', /deflate\.footer: fields\.length must be/);
  });

  it('pointer-level entry points check their regions and lengths', () => {
    const rt = fp.runtime();
    const at = rt.reserve(64);
    expectFailure(() => fp.crc32At(big as unknown as number, 4), 'EINVAL', /crc32At: ptr must be .*, got a Uint8Array of 16384 bytes/);
    expectFailure(() => fp.crc32cAt(at, -4), 'EINVAL', /crc32cAt: length must be/);
    expectFailure(() => fp.adler32At(rt.memory.buffer.byteLength - 2, 4), 'EINVAL', /adler32At: ptr: bytes .* outside the shared memory/);
    expectFailure(() => lz4.compressBlockAt(at, 16, Number.NaN, 64, rt.ctx), 'EINVAL', /lz4\.compressBlockAt: dstPtr must be .*, got the number NaN/);
    expectFailure(() => lz4.decompressBlockAt(at, 16, at, 64, '0' as unknown as number), 'EINVAL', /lz4\.decompressBlockAt: ctx/);
    expectFailure(() => deflate.compressAt(at, 16, at, 64, -1), 'EINVAL', /deflate\.compressAt: scratch/);
  });

  it('a finished stream is ENXIO, like anything closed', () => {
    const c = deflate.createCompressor();
    c.finish();
    expectFailure(() => c.push(text), 'ENXIO', /DeflateCompressor\.push: the stream is finished/);
    expectFailure(() => deflate.createDecompressor().push('x' as unknown as Uint8Array), 'EINVAL', /DeflateDecompressor\.push: chunk must be/);
  });
});

describe('runtime, Ring and SlabPool', () => {
  it('Runtime checks its memory and reserve() its sizes', () => {
    expectFailure(() => new Runtime({} as unknown as fp.Runtime['memory']), 'EINVAL', /Runtime: memory must be a shared WebAssembly\.Memory, got an object/);
    const rt = new Runtime();
    expectFailure(() => rt.reserve(-1), 'EINVAL', /runtime\.reserve: bytes must be/);
    expectFailure(() => rt.reserve(64, 3), 'EINVAL', /runtime\.reserve: align must be a power of two/);
  });

  it('Ring: capacity, kind, offset and ranges', () => {
    const rt = new Runtime();
    const layout = fp.readLayout(rt.exports);
    const at = rt.reserve(4096, 128);
    expectFailure(() => Ring.init(rt.memory, layout, at, 12, 'spsc'), 'EINVAL', /Ring\.init: capacity must be a power of two from 2 to 2\^30, got the number 12/);
    expectFailure(() => Ring.init(rt.memory, layout, at, 8, 'fifo' as fp.RingKind), 'EINVAL', /Ring\.init: kind must be 'spsc' or 'mpmc', got the string "fifo"/);
    expectFailure(() => new Ring(rt.memory, layout, at + 4), 'EINVAL', /not 128-byte aligned/);
    const ring = Ring.init(rt.memory, layout, at, 8, 'spsc');
    expectFailure(() => ring.enqueue([1, 2], 1, 5), 'EINVAL', /ring\.enqueue: start .* and count .* must select whole elements of the 2-element array/);
    expect(ring.size).toBe(0);
    expectFailure(() => ring.dequeue(null as unknown as number[], 1), 'EINVAL', /ring\.dequeue: array must be an array/);
    expectFailure(() => fp.readLayout(null as unknown as fp.WasmExports), 'EINVAL', /readLayout: exports/);
  });

  it('SlabPool: sizes and descriptor indices of the wrong type name the argument, briefly', () => {
    const rt = new Runtime();
    const pool = SlabPool.create(rt, [{ size: 4096, count: 4 }]);
    expectFailure(() => pool.bytes(big as unknown as number), 'EINVAL', /pool\.bytes: descriptor must be a descriptor index from 0 to 3, got a Uint8Array of 16384 bytes/);
    expectFailure(() => pool.alloc('4096' as unknown as number), 'EINVAL', /pool\.alloc: size must be a whole number of bytes, got the string "4096"/);
    expectFailure(() => pool.alloc(big as unknown as number), 'EINVAL', /got a Uint8Array of 16384 bytes/);
    expectFailure(() => pool.free(big as unknown as number), 'EINVAL', /got a Uint8Array of 16384 bytes/);
    const d = pool.alloc(4096);
    expectFailure(() => pool.write(d, 'abc' as unknown as Uint8Array), 'EINVAL', /pool\.write: data must be/);
    expectFailure(() => pool.setLength(d, -1), 'EINVAL', /pool\.setLength: len must be/);
    expectFailure(() => pool.keepFreed(4096, '2' as unknown as number), 'EINVAL', /pool\.keepFreed: max must be .*, got the string "2"/);
    expectFailure(() => SlabPool.create(new Runtime(), [{ size: '4096' as unknown as number, count: 1 }]), 'EINVAL', /class size \(the string "4096"\)/);
    expectFailure(() => SlabPool.create(null as unknown as fp.Runtime), 'EINVAL', /SlabPool\.create: rt must be a Runtime, got null/);
  });
});

describe('Engine', () => {
  let engine: fp.Engine;
  beforeAll(async () => {
    engine = await Engine.start({ workers: 1, runtime: new Runtime(), classes: [{ size: 4096, count: 64 }, { size: 65536, count: 4 }] });
  });
  afterAll(async () => {
    await engine.close();
  });

  it('start() checks its options before it starts anything', async () => {
    await expectRejection(Engine.start(null as unknown as fp.EngineOptions), 'EINVAL', /Engine\.start: options must be an options object, got null/);
    await expectRejection(Engine.start({ workers: '2' as unknown as number }), 'EINVAL', /Engine\.start: options\.workers must be an integer from 1 to 256, got the string "2"/);
    await expectRejection(Engine.start({ ringCapacity: 3 }), 'EINVAL', /options\.ringCapacity must be a power of two/);
    await expectRejection(Engine.start({ runtime: {} as fp.Runtime }), 'EINVAL', /options\.runtime must be a Runtime/);
  });

  it('a Uint8Array where a descriptor index belongs is EINVAL with a short message', () => {
    expectFailure(() => engine.prepare(big as unknown as number, fp.jobs.OP_CRC32), 'EINVAL', /engine\.prepare: descriptor must be .*, got a Uint8Array of 16384 bytes/);
    expectFailure(() => engine.pool.bytes(big as unknown as number), 'EINVAL', /got a Uint8Array of 16384 bytes/);
    expectFailure(() => engine.statusOf(big as unknown as number), 'EINVAL', /engine\.statusOf/);
    expectFailure(() => engine.submit([big as unknown as number]), 'EINVAL', /engine\.submit: descriptor must be/);
    expectFailure(() => engine.submit(7 as unknown as number[]), 'EINVAL', /engine\.submit: batch must be an array/);
    const d = engine.pool.alloc(4096);
    try {
      expectFailure(() => engine.prepare(d, fp.jobs.OP_LZ4_COMPRESS, -1), 'EINVAL', /engine\.prepare: link/);
      expectFailure(() => engine.prepare(d, fp.jobs.OP_LZ4_COMPRESS, d, 1.5), 'EINVAL', /engine\.prepare: arg must be/);
    } finally {
      engine.pool.free(d);
    }
    expectFailure(() => engine.poll('3' as unknown as number), 'EINVAL', /engine\.poll: max must be/);
  });

  it('the promise API names its arguments', async () => {
    await expectRejection(engine.lz4.decompressBlock(text, '4096' as unknown as number), 'EINVAL',
      /engine\.lz4\.decompressBlock: originalSize must be an integer from 0 to 65536, got the string "4096"/);
    await expectRejection(engine.crc32('x' as unknown as Uint8Array), 'EINVAL', /engine\.crc32: src must be .*, got the string "x"/);
    await expectRejection(engine.deflate.compress(text, { level: -1 }), 'EINVAL', /engine\.deflate\.compress: options\.level/);
    await expectRejection(engine.deflate.decompress(text, null as unknown as fp.InflateOptions), 'EINVAL', /engine\.deflate\.decompress: options must be/);
  });

  it('lz4.decompressBlock with originalSize above the decoded size says so (it named an unknown error kind)', async () => {
    const packed = lz4.compressBlock(text);
    await expectRejection(engine.lz4.decompressBlock(packed, 5000), 'ECORRUPT', /decoded 4096 bytes, expected originalSize 5000/);
    await expectRejection(engine.lz4.decompressBlock(packed, 4000), 'ECORRUPT', /decodes to 4096 bytes, more than originalSize 4000/);
  });

  it('deflate.decompress past the largest buffer without originalSize is ENOSPC; with it, ECORRUPT', async () => {
    const stream = deflate.compress(new Uint8Array(100_000));
    await expectRejection(engine.deflate.decompress(stream), 'ENOSPC', /largest buffer \(65536 bytes\)/);
    await expectRejection(engine.deflate.decompress(stream, { originalSize: 4096 }), 'ECORRUPT', /more than originalSize 4096/);
  });

  it('close() checks its options and leaves the engine running when they are bad', async () => {
    await expectRejection(engine.close({ drain: 'no' as unknown as boolean }), 'EINVAL', /engine\.close: options\.drain must be a boolean/);
    await expectRejection(engine.close({ timeoutMs: -1 }), 'EINVAL', /engine\.close: options\.timeoutMs/);
    expect(await engine.crc32(text)).toBe(fp.crc32(text));
  });

  it('a closed engine is ENXIO everywhere, "engine.X after close()"', async () => {
    const e = await Engine.start({ workers: 1, runtime: new Runtime(), classes: [{ size: 4096, count: 8 }] });
    const d = e.pool.alloc(4096);
    await e.close();
    expectFailure(() => e.submit([d]), 'ENXIO', /^engine\.submit after close\(\)$/);
    await expectRejection(e.crc32(text), 'ENXIO', /^engine\.crc32 after close\(\)$/);
    await expectRejection(e.lz4.compressBlock(text), 'ENXIO', /^engine\.lz4\.compressBlock after close\(\)$/);
    await expectRejection(e.execute(d), 'ENXIO', /^engine\.execute after close\(\)$/);
    await e.close(); // closing twice is a no-op
  });

  it('await using closes the engine at the end of the scope ([Symbol.asyncDispose])', async () => {
    let escaped: fp.Engine | undefined;
    {
      await using e = await Engine.start({ workers: 1, runtime: new Runtime(), classes: [{ size: 4096, count: 8 }] });
      escaped = e;
      expect(await e.crc32(text)).toBe(fp.crc32(text));
    }
    await expectRejection(escaped!.crc32(text), 'ENXIO', /after close\(\)/);
    expect(typeof Engine.prototype[Symbol.asyncDispose]).toBe('function');
  });
});

describe('nvme', () => {
  const MiB = 1 << 20;
  const opened: fp.nvme.Controller[] = [];
  async function open(backend: fp.nvme.Backend): Promise<fp.nvme.Controller> {
    const c = await nvme.Controller.open(backend, { runtime: new Runtime(), ioWorkers: 1 });
    opened.push(c);
    return c;
  }
  afterEach(async () => {
    while (opened.length > 0) await opened.pop()!.close();
  });

  it('MemoryBackend without options (or with a bad size) is EINVAL naming size', () => {
    expectFailure(() => new (nvme.MemoryBackend as unknown as new () => unknown)(), 'EINVAL', /nvme\.MemoryBackend: options\.size must be a positive multiple of the 4096-byte block size, got undefined/);
    expectFailure(() => new nvme.MemoryBackend({ size: '4096' as unknown as number }), 'EINVAL', /options\.size .* got the string "4096"/);
    expectFailure(() => new nvme.MemoryBackend({ size: 4096, blockSize: 1024 }), 'EINVAL', /options\.blockSize must be 512 or 4096, got the number 1024/);
  });

  it('FaultBackend checks its backend, options and injections', () => {
    expectFailure(() => new nvme.FaultBackend(null as unknown as fp.nvme.Backend), 'EINVAL', /nvme\.FaultBackend: inner must be a Backend/);
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: MiB }));
    expectFailure(() => fault.injectMediaError(0, 1, 'sometimes' as fp.nvme.MediaErrorKind), 'EINVAL', /kind must be 'read', 'write' or 'both', got the string "sometimes"/);
    expectFailure(() => fault.powerCut({ seed: 'x' as unknown as number }), 'EINVAL', /fault\.powerCut: options\.seed/);
    expect(fault.present(fault.epoch)).toBe(true); // nothing was cut
    expectFailure(() => fault.setLatency({ readUs: '5' as unknown as number }), 'EINVAL', /latency\.readUs .* got the string "5"/);
  });

  it('Controller.open checks the backend and options', async () => {
    await expectRejection(nvme.Controller.open({} as fp.nvme.Backend), 'EINVAL', /nvme\.Controller\.open: backend must be a Backend/);
    const mem = new nvme.MemoryBackend({ size: MiB });
    await expectRejection(nvme.Controller.open(mem, null as unknown as fp.nvme.ControllerOptions), 'EINVAL', /options must be an options object, got null/);
    await expectRejection(nvme.Controller.open(mem, { runtime: new Runtime(), maxTransferBytes: '4096' as unknown as number }), 'EINVAL',
      /options\.maxTransferBytes must be .*, got the string "4096"/);
  });

  it('every command without a callback is EINVAL at the call, naming cb, and consumes nothing', async () => {
    const c = await open(new nvme.MemoryBackend({ size: MiB }));
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const d = c.pool.alloc(4096);
    const none = undefined as unknown as fp.nvme.IoCallback;
    expectFailure(() => qp.write(ns, d, 0, 1, none), 'EINVAL', /^qpair\.write: cb must be a function, got undefined$/);
    expectFailure(() => qp.read(ns, d, 0, 1, none), 'EINVAL', /qpair\.read: cb must be a function/);
    expectFailure(() => qp.flush(ns, 'done' as unknown as fp.nvme.IoCallback), 'EINVAL', /qpair\.flush: cb must be a function, got the string "done"/);
    expectFailure(() => qp.writeZeroes(ns, 0, 1, none), 'EINVAL', /qpair\.writeZeroes: cb must be a function/);
    expectFailure(() => qp.deallocate(ns, [{ lba: 0, count: 1 }], none), 'EINVAL', /qpair\.deallocate: cb must be a function/);
    expect([qp.freeRequests, qp.outstandingCount, qp.queuedCount]).toEqual([512, 0, 0]);
    expect(qp.processCompletions(0)).toBe(0);
  });

  it('wrong-typed command arguments name the argument and never print the bytes', async () => {
    const c = await open(new nvme.MemoryBackend({ size: MiB }));
    const ns = c.ns(1);
    const qp = c.allocIoQpair();
    const d = c.pool.alloc(4096);
    const cb = (): void => {};
    expectFailure(() => qp.write(ns, big as unknown as number, 0, 1, cb), 'EINVAL', /qpair\.write: descriptor must be .*, got a Uint8Array of 16384 bytes/);
    expectFailure(() => qp.write(ns, d, '0' as unknown as number, 1, cb), 'EINVAL', /qpair\.write: lba must be a whole number, got the string "0"/);
    expectFailure(() => qp.read(ns, d, 0, Number.NaN, cb), 'EINVAL', /qpair\.read: lbaCount must be an integer ≥ 1, got the number NaN/);
    expectFailure(() => qp.write(ns, d, 0, 1, cb, undefined, 'fua' as unknown as number), 'EINVAL', /qpair\.write: ioFlags must be .*, got the string "fua"/);
    expectFailure(() => qp.read(big as unknown as fp.nvme.Namespace, d, 0, 1, cb), 'EINVAL', /qpair\.read: ns must be a namespace of this controller .*, got a Uint8Array of 16384 bytes/);
    expectFailure(() => qp.deallocate(ns, 'x' as unknown as fp.nvme.DeallocateRange[], cb), 'EINVAL', /qpair\.deallocate: ranges must be an array/);
    expectFailure(() => qp.processCompletions('1' as unknown as number), 'EINVAL', /qpair\.processCompletions: max must be/);
    expectFailure(() => qp.abort('1' as unknown as number), 'EINVAL', /qpair\.abort: cid must be .*, got the string "1"/);
    await expectRejection(qp.waitForCompletions(-5), 'EINVAL', /qpair\.waitForCompletions: timeoutMs/);
    expectFailure(() => c.registerTimeoutCallback(100, 'cb' as unknown as fp.nvme.TimeoutCallback), 'EINVAL', /registerTimeoutCallback: cb must be a function/);
    expectFailure(() => c.freeIoQpair({} as fp.nvme.IoQpair), 'EINVAL', /freeIoQpair: qp must be an IoQpair, got an object/);
    expectFailure(() => c.ns('1' as unknown as number), 'EINVAL', /controller\.ns: namespace the string "1" does not exist/);
    expectFailure(() => (c.spinIterations = '5' as unknown as number), 'EINVAL', /controller\.spinIterations must be .*, got the string "5"/);
    expectFailure(() => c.allocIoQpair({ ioQueueSize: '64' as unknown as number }), 'EINVAL', /allocIoQpair: options\.ioQueueSize .* got the string "64"/);
    expect([qp.freeRequests, qp.outstandingCount]).toEqual([512, 0]);
  });

  it('a closed controller and a freed qpair are ENXIO, "X after close()" / "after freeIoQpair()"', async () => {
    const c = await open(new nvme.MemoryBackend({ size: MiB }));
    const qp = c.allocIoQpair();
    const freed = c.allocIoQpair();
    c.freeIoQpair(freed);
    expectFailure(() => freed.processCompletions(0), 'ENXIO', /^qpair\.processCompletions after freeIoQpair\(\)$/);
    expectFailure(() => freed.flush(c.ns(1), () => {}), 'ENXIO', /^qpair\.flush after freeIoQpair\(\)$/);
    const d = c.pool.alloc(4096);
    await c.close();
    expectFailure(() => c.allocIoQpair(), 'ENXIO', /^controller\.allocIoQpair after close\(\)$/);
    expectFailure(() => qp.write(c.ns(1), d, 0, 1, () => {}), 'ENXIO', /^qpair\.write after close\(\)$/);
    expectFailure(() => qp.processCompletions(0), 'ENXIO', /^qpair\.processCompletions after close\(\)$/);
  });

  it('await using closes the controller at the end of the scope ([Symbol.asyncDispose])', async () => {
    let escaped: fp.nvme.Controller | undefined;
    {
      await using c = await nvme.Controller.open(new nvme.MemoryBackend({ size: MiB }), { runtime: new Runtime(), ioWorkers: 1 });
      escaped = c;
      c.allocIoQpair();
    }
    expectFailure(() => escaped!.allocIoQpair(), 'ENXIO', /after close\(\)/);
  });
});
