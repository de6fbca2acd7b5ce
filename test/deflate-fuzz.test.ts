/**
 * Fuzzes inflate (raw, zlib, gzip) with mutated real streams and synthesized
 * ones (test/helpers/deflate-synth.ts) against node:zlib as the oracle: each
 * input must decode to exactly node:zlib's bytes or throw ECORRUPT where
 * node:zlib rejects it; no other exception, no hang. FUZZ_ITERATIONS sets the
 * count per format (default 100,000 each). Every 16th input is also decoded as
 * a stream in random chunks and must give the same bytes or the same error.
 *
 * The deliberate differences (src/codec/deflate.ts) are part of the oracle:
 * node:zlib ignores bytes after the end of a raw or zlib stream, and after a
 * gzip member stops at a zero byte and ignores the rest; flashpack rejects
 * both unless everything after the last member is zero. flashpack rejects a
 * zlib stream's distances past the window its header declares. A zlib preset
 * dictionary is ENOTSUP here and "Missing dictionary" in node:zlib.
 */
import { describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { deflate, crc32, adler32, FlashpackError, type DeflateFormat } from '../src/index.js';
import { corpusConcat, equalBytes, prng, randomBytes } from './helpers/data.js';
import { synthesizeDeflate, wrap } from './helpers/deflate-synth.js';
import { maxDistance } from './helpers/inflate-model.js';

const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 100_000);
const corpus = corpusConcat();

type Oracle = { ok: true; bytes: Uint8Array } | { ok: false; code: string; why: string };

/**
 * What flashpack must do with `input`, from node:zlib's verdict and the
 * documented differences. node:zlib runs with windowBits 15: by default its
 * inflateSync takes the window from the zlib header, and then whether a
 * distance past it fails depends on node's 16 KiB output chunks; flashpack
 * always rejects one (checked here with the model decoder).
 */
function oracle(input: Uint8Array, format: DeflateFormat): Oracle {
  const f = format === 'raw' ? zlib.inflateRawSync : format === 'zlib' ? zlib.inflateSync : zlib.gunzipSync;
  let result: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    result = f(input, { info: true, windowBits: 15 }) as unknown as typeof result;
  } catch (e) {
    // A valid zlib header asking for a preset dictionary is ENOTSUP as soon as
    // it is read, even if the stream is cut short after it.
    const code = (e as { code?: string }).code === 'Z_NEED_DICT' || (format === 'zlib' && wantsDictionary(input)) ? 'ENOTSUP' : 'ECORRUPT';
    return { ok: false, code, why: `node:zlib: ${(e as Error).message}` };
  }
  const consumed = result.engine.bytesWritten;
  if (consumed < input.length) {
    const rest = input.subarray(consumed);
    if (format !== 'gzip' || rest.some((b) => b !== 0)) return { ok: false, code: 'ECORRUPT', why: `${input.length - consumed} trailing bytes` };
  }
  if (format === 'zlib' && input[0] >> 4 < 7) {
    const window = 1 << ((input[0] >> 4) + 8);
    const used = maxDistance(input, 2);
    if (used > window) return { ok: false, code: 'ECORRUPT', why: `distance ${used} past the header's ${window}-byte window` };
  }
  return { ok: true, bytes: new Uint8Array(result.buffer) };
}

function wantsDictionary(b: Uint8Array): boolean {
  return b.length >= 2 && (b[0] * 256 + b[1]) % 31 === 0 && (b[0] & 15) === 8 && b[0] >> 4 <= 7 && (b[1] & 0x20) !== 0;
}

/** b without the n bytes at `at`. */
function cut(b: Uint8Array, at: number, n: number): Uint8Array {
  const end = Math.min(b.length, at + n);
  const x = new Uint8Array(b.length - (end - at));
  x.set(b.subarray(0, at));
  x.set(b.subarray(end), at);
  return x;
}

function mutate(src: Uint8Array, rand: () => number): Uint8Array {
  let b = src.slice();
  const rounds = 1 + ((rand() * 3) | 0);
  for (let r = 0; r < rounds; r++) {
    const at = (rand() * Math.max(1, b.length)) | 0;
    switch ((rand() * 10) | 0) {
      case 0: if (b.length) b[at] ^= 1 << ((rand() * 8) | 0); break;
      case 1: if (b.length) b[at] = (rand() * 256) | 0; break;
      case 2: b = b.slice(0, at); break;
      case 3: { const x = new Uint8Array(b.length + 1 + ((rand() * 16) | 0)); x.set(b); x.set(randomBytes(x.length - b.length, rand), b.length); b = x; break; }
      case 4: { const x = new Uint8Array(b.length + 1 + ((rand() * 4) | 0)); x.set(b); b = x; break; } // zero padding
      case 5: if (b.length) b[at] ^= 1 << ((rand() * 8) | 0); break;
      case 6: if (b.length > 1) { b[at] ^= 0xff; } break;
      case 7: { const x = new Uint8Array(b.length + 1); x.set(b.subarray(0, at)); x[at] = (rand() * 256) | 0; x.set(b.subarray(at), at + 1); b = x; break; }
      case 8: if (b.length > 4) b = cut(b, at, 1 + ((rand() * 4) | 0)); break;
      default: if (b.length > 1) b = cut(b, at, 1);
    }
  }
  return b;
}

function decodeStreamed(input: Uint8Array, format: DeflateFormat, rand: () => number): Uint8Array {
  const d = deflate.createDecompressor({ format });
  const parts: Uint8Array[] = [];
  for (let off = 0; off < input.length;) {
    // Runs of 1-3 byte pushes between larger ones: every state gets resumed.
    const n = rand() < 0.15 ? 1 + ((rand() * 3) | 0) : 1 + ((rand() * 600) | 0);
    parts.push(d.push(input.subarray(off, off + n)));
    off += n;
  }
  d.finish();
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function outcome(fn: () => Uint8Array): { bytes?: Uint8Array; error?: FlashpackError } {
  try {
    return { bytes: fn() };
  } catch (e) {
    if (!(e instanceof FlashpackError)) throw e;
    return { error: e };
  }
}

function seeds(format: DeflateFormat, rand: () => number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const node = (d: Uint8Array, level: number) => new Uint8Array(format === 'raw' ? zlib.deflateRawSync(d, { level }) : format === 'zlib' ? zlib.deflateSync(d, { level }) : zlib.gzipSync(d, { level }));
  for (let i = 0; i < 120; i++) {
    const size = [0, 1, 20, 100, 600, 2000, 5000][i % 7];
    const off = (rand() * (corpus.length - size)) | 0;
    const data = i % 10 === 9 ? new Uint8Array(size).fill(i) : i % 10 === 8 ? randomBytes(size, rand) : corpus.subarray(off, off + size);
    const level = i % 10;
    out.push(deflate.compress(data, { level, format }));
    out.push(node(data, (level + 3) % 10));
  }
  if (format === 'gzip') {
    const data = corpus.subarray(0, 3000);
    out.push(new Uint8Array(execFileSync('gzip', ['-c', '-n'], { input: data })));
    out.push(new Uint8Array(execFileSync('pigz', ['-c', '-i'], { input: data })));
    out.push(Uint8Array.from([...out[0], ...out[3]])); // two members
  }
  return out;
}

describe('inflate fuzz against node:zlib', () => {
  for (const format of ['raw', 'zlib', 'gzip'] as DeflateFormat[]) {
    it(`${ITERATIONS} mutated, synthesized and random ${format} streams: node:zlib's bytes or its rejection, one-shot and streamed`, () => {
      const rand = prng(0xdef1a7e + format.length);
      const pool = seeds(format, rand);
      let accepted = 0;
      let synthesizedAccepted = 0;
      let streamed = 0;
      for (let i = 0; i < ITERATIONS; i++) {
        const kind = i % 10;
        let input: Uint8Array;
        if (kind < 4) {
          input = wrap(synthesizeDeflate(rand), format, rand, crc32, adler32);
          if (kind === 3) input = mutate(input, rand);
        } else if (kind < 9) {
          input = mutate(pool[(rand() * pool.length) | 0], rand);
        } else {
          input = randomBytes((rand() * 40) | 0, rand);
        }
        const want = oracle(input, format);
        const got = outcome(() => deflate.decompress(input, { format }));
        const hex = Buffer.from(input).toString('hex').slice(0, 240);
        if (want.ok) {
          if (!got.bytes) throw new Error(`node:zlib decodes but flashpack threw ${String(got.error)}: ${hex}`);
          expect(equalBytes(got.bytes, want.bytes), `bytes differ from node:zlib's: ${hex}`).toBe(true);
          accepted++;
          if (kind < 3) synthesizedAccepted++;
        } else {
          if (got.bytes) throw new Error(`node:zlib rejects (${want.why}) but flashpack decoded ${got.bytes.length} bytes: ${hex}`);
          if (got.error!.code !== want.code) throw new Error(`expected ${want.code} (${want.why}), flashpack threw ${String(got.error)}: ${hex}`);
        }
        if (i % 16 === 0) {
          const s = outcome(() => decodeStreamed(input, format, rand));
          if (got.bytes) expect(s.bytes && equalBytes(s.bytes, got.bytes), `streamed decode differs: ${hex}`).toBe(true);
          else expect(s.error?.message, `streamed decode error differs: ${hex}`).toBe(got.error!.message);
          streamed++;
        }
      }
      expect(accepted).toBeGreaterThan(ITERATIONS / 20);
      expect(synthesizedAccepted).toBeGreaterThan(ITERATIONS / 100);
      expect(streamed).toBeGreaterThan(ITERATIONS / 17);
    });
  }
});
