// CRC-32, CRC-32C, Adler-32 and the XXH3-128 fingerprint: flashpack against its peers.
//
// buildCrcCases() first checks known test vectors and that every library returns
// the same value as flashpack for every block (untimed), then returns the timed
// cases: one call = the checksum of every block of the corpus, each block on its own.
import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import * as fp from '../dist/index.js';
import { sizeLabel } from './corpus.mjs';
import { blackhole } from './run.mjs';

const require = createRequire(import.meta.url);
const hashWasm = require('hash-wasm');
const nodeRs = require('@node-rs/crc32');

const CRC32C_POLY_REFLECTED = 0x82f63b78;

/** hash-wasm's binary digest is the checksum in big-endian order. */
const be32 = (d) => ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0;

let hashers; // created once: hash-wasm's factories are async (they instantiate WASM)
async function hashWasmHashers() {
  hashers ??= {
    crc32: await hashWasm.createCRC32(),
    crc32c: await hashWasm.createCRC32(CRC32C_POLY_REFLECTED),
    adler32: await hashWasm.createAdler32(),
    xxh128: await hashWasm.createXXHash128(),
  };
  return hashers;
}

/**
 * @param {{ blocks: Uint8Array[], size: number, rt: import('../dist/index.js').Runtime, corpusPtr: number }} ctx
 *   blocks: views of the corpus; the same bytes sit in shared memory at corpusPtr.
 */
export async function buildCrcCases({ blocks, size, rt, corpusPtr }) {
  if (typeof zlib.crc32 !== 'function') throw new Error(`node:zlib.crc32 needs Node >= 20.15 (this is ${process.version})`);
  const hw = await hashWasmHashers();
  const n = blocks.length;
  const total = n * size;
  const { crc32, crc32c, adler32, crc32At, fingerprint, fingerprintAt } = fp;
  const hex = (v) => (typeof v === 'string' ? v : `0x${(v >>> 0).toString(16).padStart(8, '0')}`);
  const hex128 = (b) => Buffer.from(b).toString('hex');
  const outPtr = rt.reserve(16); // fingerprintAt's output slot

  // One-shot checksum per library, for verification only.
  const viaHashWasm = (h) => (data) => {
    h.init();
    h.update(data);
    return be32(h.digest('binary'));
  };
  const impls = {
    'CRC-32': [
      ['flashpack', (b) => crc32(b) >>> 0],
      ['flashpack (in shared memory)', (b, i) => crc32At(corpusPtr + i * size, size, 0) >>> 0],
      ['hash-wasm', viaHashWasm(hw.crc32)],
      ['node:zlib', (b) => zlib.crc32(b) >>> 0],
      ['@node-rs/crc32', (b) => nodeRs.crc32(b) >>> 0],
    ],
    'CRC-32C': [
      ['flashpack', (b) => crc32c(b) >>> 0],
      ['hash-wasm', viaHashWasm(hw.crc32c)],
      ['@node-rs/crc32', (b) => nodeRs.crc32c(b) >>> 0],
    ],
    'Adler-32': [
      ['flashpack', (b) => adler32(b) >>> 0],
      ['hash-wasm', viaHashWasm(hw.adler32)],
    ],
    // Fingerprints compare as hex strings (canonical byte order).
    'XXH3-128': [
      ['flashpack', (b) => hex128(fingerprint(b))],
      ['flashpack (in shared memory)', (b, i) => {
        fingerprintAt(corpusPtr + i * size, size, outPtr);
        return hex128(rt.u8.subarray(outPtr, outPtr + 16));
      }],
      ['hash-wasm', (b) => {
        hw.xxh128.init();
        hw.xxh128.update(b);
        return hex128(hw.xxh128.digest('binary'));
      }],
    ],
  };

  // Known check values of "123456789" catch a wrong variant that peers share.
  const check = new TextEncoder().encode('123456789');
  // XXH3-128's is from the reference xxhash.h (XXH3_128bits_withSeed, seed 0), high half first.
  const expected = { 'CRC-32': 0xcbf43926, 'CRC-32C': 0xe3069283, 'Adler-32': 0x091e01de, 'XXH3-128': '33119477ede5dcd5e9716427681d5860' };
  for (const [algo, list] of Object.entries(impls)) {
    for (const [library, f] of list) {
      if (library.includes('shared memory')) continue; // reads the corpus, not `check`
      const got = f(check, 0);
      if (got !== expected[algo]) {
        throw new Error(`${algo} verification failed: ${library} gives ${hex(got)} for "123456789", expected ${hex(expected[algo])}`);
      }
    }
    // Every block: every library equals flashpack.
    const [[, reference], ...others] = list;
    for (let i = 0; i < n; i++) {
      const want = reference(blocks[i], i);
      for (const [library, f] of others) {
        const got = f(blocks[i], i);
        if (got !== want) {
          throw new Error(`${algo} verification failed: ${sizeLabel(size)} block #${i} (corpus offset ${i * size}): ` +
            `${library} gives ${hex(got)}, flashpack gives ${hex(want)}`);
        }
      }
    }
  }

  // Timed passes, each its own loop. hash-wasm is used as documented for a
  // reusable hasher: init, update, digest('binary').
  const row = (library, operation, role, fn) => ({ library, operation, role, bytes: total, fn });
  const { crc32: hwCrc32, crc32c: hwCrc32c, adler32: hwAdler32, xxh128: hwXxh128 } = hw;
  return [
    row('flashpack', 'CRC-32', 'baseline', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc ^= crc32(blocks[i]);
      blackhole.value ^= acc;
    }),
    row('flashpack (in shared memory)', 'CRC-32', 'variant', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc ^= crc32At(corpusPtr + i * size, size, 0);
      blackhole.value ^= acc;
    }),
    row('hash-wasm', 'CRC-32', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        hwCrc32.init();
        hwCrc32.update(blocks[i]);
        acc ^= hwCrc32.digest('binary')[0];
      }
      blackhole.value ^= acc;
    }),
    row('node:zlib', 'CRC-32', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc ^= zlib.crc32(blocks[i]);
      blackhole.value ^= acc;
    }),
    row('@node-rs/crc32', 'CRC-32', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc ^= nodeRs.crc32(blocks[i]);
      blackhole.value ^= acc;
    }),

    row('flashpack', 'CRC-32C', 'baseline', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc ^= crc32c(blocks[i]);
      blackhole.value ^= acc;
    }),
    row('hash-wasm', 'CRC-32C', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        hwCrc32c.init();
        hwCrc32c.update(blocks[i]);
        acc ^= hwCrc32c.digest('binary')[0];
      }
      blackhole.value ^= acc;
    }),
    row('@node-rs/crc32', 'CRC-32C', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc ^= nodeRs.crc32c(blocks[i]);
      blackhole.value ^= acc;
    }),

    row('flashpack', 'Adler-32', 'baseline', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc ^= adler32(blocks[i]);
      blackhole.value ^= acc;
    }),
    row('hash-wasm', 'Adler-32', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        hwAdler32.init();
        hwAdler32.update(blocks[i]);
        acc ^= hwAdler32.digest('binary')[0];
      }
      blackhole.value ^= acc;
    }),

    // The dedupe fingerprint. fingerprint() copies the block into the shared
    // memory and returns a fresh 16-byte array; fingerprintAt() hashes the corpus
    // where it already sits in the shared memory (the engine's form).
    row('flashpack', 'XXH3-128', 'baseline', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc ^= fingerprint(blocks[i])[0];
      blackhole.value ^= acc;
    }),
    row('flashpack (in shared memory)', 'XXH3-128', 'variant', () => {
      const u8 = rt.u8;
      let acc = 0;
      for (let i = 0; i < n; i++) {
        fingerprintAt(corpusPtr + i * size, size, outPtr);
        acc ^= u8[outPtr];
      }
      blackhole.value ^= acc;
    }),
    row('hash-wasm', 'XXH3-128', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        hwXxh128.init();
        hwXxh128.update(blocks[i]);
        acc ^= hwXxh128.digest('binary')[0];
      }
      blackhole.value ^= acc;
    }),
  ];
}
