// LZ4 block compression and decompression: flashpack against its peers.
//
// buildLz4Cases() first runs an untimed pass that round-trips every block through
// every library (and cross-decodes raw blocks with liblz4 and flashpack), then
// returns the timed cases. Each decompress case decodes that library's own output.
import { createRequire } from 'node:module';
import * as fp from '../dist/index.js';
import { sizeLabel } from './corpus.mjs';
import { blackhole } from './run.mjs';

const require = createRequire(import.meta.url);
const liblz4 = loadLiblz4();
const lz4wasm = require('lz4-wasm-nodejs');
const lz4js = require('lz4js');

const LZ4JS_HASH_ENTRIES = 1 << 16; // lz4js's hashSize

/**
 * node-lz4's native addon, or null under a Node whose ABI it was not built for
 * (node-gyp builds it at `npm install`): liblz4's cases and the interop checks
 * against it are then left out, and the run says so.
 */
function loadLiblz4() {
  try {
    return require('lz4');
  } catch (e) {
    if (e?.code !== 'ERR_DLOPEN_FAILED') throw e;
    console.error(`bench lz4: liblz4 left out (its addon is not built for this Node ABI, ${process.version}): ${e.message.split('\n')[0]}`);
    return null;
  }
}

function sameBytes(a, b) {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/**
 * @param {{ blocks: Uint8Array[], size: number, rt: import('../dist/index.js').Runtime, corpusPtr: number }} ctx
 *   blocks: views of the corpus; the same bytes sit in shared memory at corpusPtr.
 */
export function buildLz4Cases({ blocks, size, rt, corpusPtr }) {
  const n = blocks.length;
  const total = n * size;
  const fail = (library, i, what) => {
    throw new Error(`LZ4 verification failed: ${library}, ${sizeLabel(size)} block #${i} (corpus offset ${i * size}): ${what}`);
  };
  const { compressBlock, decompressBlock, compressBound, compressBlockAt, decompressBlockAt } = fp.lz4;
  const ctx = rt.ctx;
  const sum = (arrays) => arrays.reduce((s, a) => s + a.length, 0);

  // --- flashpack, Uint8Array API ------------------------------------------
  const fpComp = blocks.map((block, i) => {
    const c = compressBlock(block);
    const back = decompressBlock(c, size);
    if (!sameBytes(back, block)) fail('flashpack', i, 'decompressBlock(compressBlock(x)) !== x');
    return c;
  });

  // --- flashpack, pointer API on bytes already in shared memory ------------
  const bound = compressBound(size);
  const compScratch = rt.reserve(bound, 16); // compress target, reused per block
  const decompOut = rt.reserve(size, 16); // decompress target, reused per block
  const atComp = blocks.map((block, i) => {
    const len = compressBlockAt(corpusPtr + i * size, size, compScratch, bound, ctx);
    if (!(len > 0 && len <= bound)) fail('flashpack (in shared memory)', i, `compressBlockAt returned ${len}`);
    return rt.u8.slice(compScratch, compScratch + len);
  });
  const atLen = new Int32Array(n);
  const atOff = new Int32Array(n);
  const packed = rt.reserve(Math.max(1, sum(atComp)), 16);
  {
    const u8 = rt.u8; // re-read: reserve() may have grown the memory
    let at = packed;
    atComp.forEach((c, i) => {
      u8.set(c, at);
      atOff[i] = at;
      atLen[i] = c.length;
      at += c.length;
    });
  }
  for (let i = 0; i < n; i++) {
    const got = decompressBlockAt(atOff[i], atLen[i], decompOut, size, ctx);
    if (got !== size) fail('flashpack (in shared memory)', i, `decompressBlockAt returned ${got}, expected ${size}`);
    if (!sameBytes(rt.u8.subarray(decompOut, decompOut + size), blocks[i])) {
      fail('flashpack (in shared memory)', i, 'decompressBlockAt output differs from the input');
    }
  }

  // --- liblz4 via node-lz4 (LZ4_compress_default / LZ4_decompress_safe) ---
  const libOut = liblz4 ? new Uint8Array(liblz4.encodeBound(size)) : null;
  const libDst = new Uint8Array(size);
  const libComp = !liblz4 ? [] : blocks.map((block, i) => {
    const len = liblz4.encodeBlock(block, libOut);
    if (!(len > 0)) fail('liblz4', i, `encodeBlock returned ${len}`);
    const c = libOut.slice(0, len);
    const got = liblz4.decodeBlock(c, libDst);
    if (got !== size || !sameBytes(libDst, block)) fail('liblz4', i, `round trip failed (decodeBlock returned ${got})`);
    return c;
  });

  // --- lz4-wasm-nodejs (lz4_flex; output = 4-byte LE size prefix + block) ---
  const wasmComp = blocks.map((block, i) => {
    const c = lz4wasm.compress(block);
    const prefix = c[0] | (c[1] << 8) | (c[2] << 16) | (c[3] << 24);
    if (prefix !== size) fail('lz4-wasm-nodejs', i, `size prefix ${prefix}, expected ${size}`);
    if (!sameBytes(lz4wasm.decompress(c), block)) fail('lz4-wasm-nodejs', i, 'round trip differs');
    return c;
  });

  // --- lz4js (pure JS) -------------------------------------------------------
  // Its 64K-entry hash table holds absolute positions and must be zeroed before
  // every independent block: stale entries from the previous block can produce
  // offset-0 matches (invalid LZ4). The zeroing is part of its timed pass.
  // compressBlock returns 0 when it finds no match; such blocks are stored raw
  // (counted at full size in the ratio, and "decompressed" by a copy).
  const jsHash = new Uint32Array(LZ4JS_HASH_ENTRIES);
  const jsDst = new Uint8Array(lz4js.compressBound(size));
  const jsOut = new Uint8Array(size);
  const jsRaw = new Uint8Array(n);
  const jsComp = blocks.map((block, i) => {
    jsHash.fill(0);
    const len = lz4js.compressBlock(block, jsDst, 0, size, jsHash);
    if (len === 0) {
      jsRaw[i] = 1;
      return block.slice();
    }
    const c = jsDst.slice(0, len);
    const got = lz4js.decompressBlock(c, jsOut, 0, c.length, 0);
    if (got !== size || !sameBytes(jsOut, block)) fail('lz4js', i, `round trip failed (decompressBlock returned ${got})`);
    return c;
  });
  const jsRawCount = jsRaw.reduce((s, x) => s + x, 0);

  // --- interoperability: raw LZ4 blocks must decode with liblz4 ------------
  // Fatal for flashpack. For peers it is only reported: each peer's decompress
  // case decodes its own output, and lz4js is known to emit blocks whose last
  // match starts 11 bytes before the end (the format requires >= 12), which
  // LZ4_decompress_safe rejects.
  const interop = [
    ['flashpack', true, fpComp],
    ['flashpack (in shared memory)', true, atComp],
    ['lz4-wasm-nodejs', false, wasmComp.map((c) => c.subarray(4))],
    ['lz4js', false, jsComp.map((c, i) => (jsRaw[i] ? null : c))],
  ];
  const rejectedByLiblz4 = {};
  for (const [library, fatal, comp] of liblz4 ? interop : []) {
    let rejected = 0;
    comp.forEach((c, i) => {
      if (c === null) return;
      const got = liblz4.decodeBlock(c, libDst);
      if (got === size && sameBytes(libDst, blocks[i])) return;
      if (fatal) fail(library, i, `liblz4 cannot decode its block (decodeBlock returned ${got})`);
      rejected++;
    });
    rejectedByLiblz4[library] = rejected;
  }
  libComp.forEach((c, i) => {
    if (!sameBytes(decompressBlock(c, size), blocks[i])) fail('flashpack', i, "decompressBlock of liblz4's block differs");
  });
  const interopNote = (library) => (rejectedByLiblz4[library]
    ? `; ${rejectedByLiblz4[library]} of its ${n} blocks are rejected by liblz4's LZ4_decompress_safe`
    : '');

  // --- flashpack into caller-supplied buffers (no allocation per call) -----
  const { compressBlockInto, decompressBlockInto } = fp.lz4;
  const intoDst = new Uint8Array(size);
  const intoComp = new Uint8Array(bound);
  fpComp.forEach((c, i) => {
    const got = decompressBlockInto(c, intoDst);
    if (got !== size || !sameBytes(intoDst, blocks[i])) {
      fail('flashpack (into caller buffer)', i, `decompressBlockInto returned ${got} / output differs`);
    }
    const len = compressBlockInto(blocks[i], intoComp);
    if (len !== c.length || !sameBytes(intoComp.subarray(0, len), c)) fail('flashpack (into caller buffer)', i, 'compressBlockInto differs from compressBlock');
  });

  // --- timed cases: one call = every block of the corpus at this size -------
  // Each pass is its own loop (no shared helper taking a callback) so that no
  // case pays for a megamorphic call per block.
  const compress = (library, role, compressedBytes, fn, note) => ({ library, operation: 'compress', role, bytes: total, compressedBytes, fn, note });
  const decompress = (library, role, fn, note) => ({ library, operation: 'decompress', role, bytes: total, fn, note });
  const wasmNote = `output carries a 4-byte size prefix, counted in its ratio${interopNote('lz4-wasm-nodejs')}`;
  const jsNote = `hash table zeroed per block (needed for valid independent blocks); ${jsRawCount} of ${n} blocks had no match and are stored raw${interopNote('lz4js')}`;

  const cases = [
    compress('flashpack', 'baseline', sum(fpComp), () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += compressBlock(blocks[i]).length;
      blackhole.value ^= acc;
    }),
    compress('flashpack (in shared memory)', 'variant', sum(atComp), () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += compressBlockAt(corpusPtr + i * size, size, compScratch, bound, ctx);
      blackhole.value ^= acc;
    }),
    compress('flashpack (into caller buffer)', 'variant', sum(fpComp), () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += compressBlockInto(blocks[i], intoComp);
      blackhole.value ^= acc;
    }),
    ...(!liblz4 ? [] : [compress('liblz4 (node-lz4)', 'peer', sum(libComp), () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += liblz4.encodeBlock(blocks[i], libOut);
      blackhole.value ^= acc;
    })]),
    compress('lz4-wasm-nodejs', 'peer', sum(wasmComp), () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += lz4wasm.compress(blocks[i]).length;
      blackhole.value ^= acc;
    }, wasmNote),
    compress('lz4js', 'peer', sum(jsComp), () => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        jsHash.fill(0);
        acc += lz4js.compressBlock(blocks[i], jsDst, 0, size, jsHash);
      }
      blackhole.value ^= acc;
    }, jsNote),

    decompress('flashpack', 'baseline', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += decompressBlock(fpComp[i], size).length;
      blackhole.value ^= acc;
    }),
    decompress('flashpack (in shared memory)', 'variant', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += decompressBlockAt(atOff[i], atLen[i], decompOut, size, ctx);
      blackhole.value ^= acc;
    }),
  ];
  cases.push(
    decompress('flashpack (into caller buffer)', 'variant', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += decompressBlockInto(fpComp[i], intoDst);
      blackhole.value ^= acc;
    }),
    ...(!liblz4 ? [] : [decompress('liblz4 (node-lz4)', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += liblz4.decodeBlock(libComp[i], libDst);
      blackhole.value ^= acc;
    })]),
    decompress('lz4-wasm-nodejs', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += lz4wasm.decompress(wasmComp[i]).length;
      blackhole.value ^= acc;
    }),
    decompress('lz4js', 'peer', () => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const c = jsComp[i];
        if (jsRaw[i]) {
          jsOut.set(c);
          acc += size;
        } else {
          acc += lz4js.decompressBlock(c, jsOut, 0, c.length, 0);
        }
      }
      blackhole.value ^= acc;
    }),
  );
  return cases;
}
