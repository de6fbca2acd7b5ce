// Deflate compression and decompression: flashpack against node:zlib (sync and
// streaming), fflate and pako, at levels 1 and 6, in the raw, zlib and gzip
// formats.
//
// buildDeflateCases() first runs an untimed pass that round-trips every block
// through every library, checks that flashpack's output is byte-identical to
// node:zlib's (it implements zlib's algorithm), and cross-decodes the peers'
// output with flashpack; then it returns the timed cases. Each decompress case
// decodes that library's own output. The streaming rows (raw format only, to
// keep the run short) open one stream per block, as a caller compressing
// independent blocks or small files would.
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import * as fp from '../dist/index.js';
import { sizeLabel } from './corpus.mjs';
import { blackhole } from './run.mjs';

const require = createRequire(import.meta.url);
const fflate = require('fflate');
const pako = require('pako');

const LEVELS = [1, 6];
const FORMATS = ['raw', 'zlib', 'gzip'];

/**
 * Per-task budget for this group: 120 tasks (2 sizes x 60) must fit in about
 * 3 minutes, so fewer samples per task than the default; a pass over the
 * corpus is 30-300 ms, so 5 passes still average out timer noise.
 */
export const DEFLATE_BENCH_OPTIONS = Object.freeze({
  time: 800,
  iterations: 5,
  warmup: true,
  warmupTime: 200,
  warmupIterations: 2,
  throws: true,
});

function sameBytes(a, b) {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

const node = {
  compress: { raw: zlib.deflateRawSync, zlib: zlib.deflateSync, gzip: zlib.gzipSync },
  decompress: { raw: zlib.inflateRawSync, zlib: zlib.inflateSync, gzip: zlib.gunzipSync },
};
const fflateApi = {
  compress: { raw: fflate.deflateSync, zlib: fflate.zlibSync, gzip: fflate.gzipSync },
  decompress: { raw: fflate.inflateSync, zlib: fflate.unzlibSync, gzip: fflate.gunzipSync },
};
const pakoApi = {
  compress: { raw: pako.deflateRaw, zlib: pako.deflate, gzip: pako.gzip },
  decompress: { raw: pako.inflateRaw, zlib: pako.inflate, gzip: pako.ungzip },
};

/** node:zlib's streaming API: one stream per block, output collected on 'data'. */
function nodeStream(create, opts, input) {
  return new Promise((resolve, reject) => {
    const z = create(opts);
    const chunks = [];
    z.on('data', (c) => chunks.push(c));
    z.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    z.on('error', reject);
    z.end(input);
  });
}

/** flashpack's streaming API: one stream per block. */
function fpStream(stream, input) {
  const a = stream.push(input);
  const b = stream.finish();
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * @param {{ blocks: Uint8Array[], size: number, rt: import('../dist/index.js').Runtime, corpusPtr: number }} ctx
 *   blocks: views of the corpus; the same bytes sit in shared memory at corpusPtr.
 */
export async function buildDeflateCases({ blocks, size, rt, corpusPtr }) {
  const n = blocks.length;
  const total = n * size;
  const fail = (library, what, i, why) => {
    throw new Error(`deflate verification failed: ${library} ${what}, ${sizeLabel(size)} block #${i} (corpus offset ${i * size}): ${why}`);
  };
  const sum = (arrays) => arrays.reduce((s, a) => s + a.length, 0);
  const { compress, decompress, compressAt, decompressAt, compressBound, createCompressor, createDecompressor } = fp.deflate;
  const out = new Uint8Array(size);

  // Shared-memory regions for the pointer-level rows: one compressed stream
  // target, one decompressed block target, and the packed compressed corpus.
  const bound = compressBound(size, 'gzip');
  const atDst = rt.reserve(bound, 64);
  const atOut = rt.reserve(size, 64);

  const cases = [];
  const compressCase = (library, role, what, compressedBytes, fn, extra = {}) =>
    cases.push({ library, operation: `compress ${what}`, role, bytes: total, compressedBytes, fn, ...extra });
  const decompressCase = (library, role, what, fn, extra = {}) =>
    cases.push({ library, operation: `decompress ${what}`, role, bytes: total, fn, ...extra });

  for (const format of FORMATS) {
    for (const level of LEVELS) {
      const what = `L${level} ${format}`;
      // --- verification (untimed) -------------------------------------------
      const fpComp = blocks.map((block, i) => {
        const c = compress(block, { level, format });
        if (!sameBytes(decompress(c, { format }), block)) fail('flashpack', what, i, 'decompress(compress(x)) !== x');
        return c;
      });
      const nodeComp = blocks.map((block, i) => {
        const c = new Uint8Array(node.compress[format](block, { level }));
        if (!sameBytes(c, fpComp[i])) fail('flashpack', what, i, 'output differs from node:zlib\'s');
        if (!sameBytes(node.decompress[format](c), block)) fail('node:zlib', what, i, 'round trip differs');
        return c;
      });
      const fflateComp = blocks.map((block, i) => {
        const c = fflateApi.compress[format](block, { level });
        if (!sameBytes(fflateApi.decompress[format](c), block)) fail('fflate', what, i, 'round trip differs');
        if (!sameBytes(decompress(c, { format }), block)) fail('flashpack', what, i, 'cannot decode fflate\'s stream');
        return c;
      });
      const pakoComp = blocks.map((block, i) => {
        const c = pakoApi.compress[format](block, { level });
        if (!sameBytes(pakoApi.decompress[format](c), block)) fail('pako', what, i, 'round trip differs');
        if (!sameBytes(decompress(c, { format }), block)) fail('flashpack', what, i, 'cannot decode pako\'s stream');
        return c;
      });

      // --- timed cases --------------------------------------------------------
      // Each pass is its own loop (no shared helper taking a callback), so no
      // case pays for a megamorphic call per block.
      const opts = { level, format };
      compressCase('flashpack', 'baseline', what, sum(fpComp), () => {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += compress(blocks[i], opts).length;
        blackhole.value ^= acc;
      });
      compressCase('node:zlib', 'peer', what, sum(nodeComp), () => {
        const f = node.compress[format];
        const o = { level };
        let acc = 0;
        for (let i = 0; i < n; i++) acc += f(blocks[i], o).length;
        blackhole.value ^= acc;
      });
      compressCase('fflate', 'peer', what, sum(fflateComp), () => {
        const f = fflateApi.compress[format];
        const o = { level };
        let acc = 0;
        for (let i = 0; i < n; i++) acc += f(blocks[i], o).length;
        blackhole.value ^= acc;
      }, format === 'gzip' ? { note: 'gzip header carries the current time as MTIME' } : {});
      compressCase('pako', 'peer', what, sum(pakoComp), () => {
        const f = pakoApi.compress[format];
        const o = { level };
        let acc = 0;
        for (let i = 0; i < n; i++) acc += f(blocks[i], o).length;
        blackhole.value ^= acc;
      });

      decompressCase('flashpack', 'baseline', what, () => {
        const o = { format };
        let acc = 0;
        for (let i = 0; i < n; i++) acc += decompress(fpComp[i], o).length;
        blackhole.value ^= acc;
      });
      decompressCase('node:zlib', 'peer', what, () => {
        const f = node.decompress[format];
        let acc = 0;
        for (let i = 0; i < n; i++) acc += f(nodeComp[i]).length;
        blackhole.value ^= acc;
      });
      decompressCase('fflate', 'peer', what, () => {
        const f = fflateApi.decompress[format];
        let acc = 0;
        for (let i = 0; i < n; i++) acc += f(fflateComp[i], { out }).length;
        blackhole.value ^= acc;
      }, { note: 'inflates into a preallocated output buffer' });
      decompressCase('pako', 'peer', what, () => {
        const f = pakoApi.decompress[format];
        let acc = 0;
        for (let i = 0; i < n; i++) acc += f(pakoComp[i]).length;
        blackhole.value ^= acc;
      });

      if (format !== 'raw') continue;

      // --- raw only: flashpack on shared memory, and both streaming APIs ------
      const atLen = new Int32Array(n);
      const atComp = blocks.map((block, i) => {
        const len = compressAt(corpusPtr + i * size, size, atDst, bound, rt.deflateScratch, opts);
        if (!(len > 0) || !sameBytes(rt.u8.subarray(atDst, atDst + len), fpComp[i])) fail('flashpack (in shared memory)', what, i, `compressAt returned ${len} / differs`);
        atLen[i] = len;
        return fpComp[i];
      });
      const packed = rt.reserve(Math.max(1, sum(atComp)), 64);
      const atOff = new Int32Array(n);
      {
        const u8 = rt.u8; // re-read: reserve() may have grown the memory
        let at = packed;
        atComp.forEach((c, i) => {
          u8.set(c, at);
          atOff[i] = at;
          at += c.length;
        });
      }
      for (let i = 0; i < n; i++) {
        const got = decompressAt(atOff[i], atLen[i], atOut, size, rt.inflateScratch);
        if (got !== size || !sameBytes(rt.u8.subarray(atOut, atOut + size), blocks[i])) fail('flashpack (in shared memory)', what, i, `decompressAt returned ${got} / differs`);
      }
      for (let i = 0; i < n; i += Math.max(1, n >> 6)) {
        if (!sameBytes(fpStream(createCompressor(opts), blocks[i]), fpComp[i])) fail('flashpack (stream)', what, i, 'differs from compress()');
        if (!sameBytes(fpStream(createDecompressor(), fpComp[i]), blocks[i])) fail('flashpack (stream)', what, i, 'round trip differs');
        if (!sameBytes(await nodeStream(zlib.createDeflateRaw, { level }, blocks[i]), nodeComp[i])) fail('node:zlib (stream)', what, i, 'differs from deflateRawSync');
        if (!sameBytes(await nodeStream(zlib.createInflateRaw, {}, nodeComp[i]), blocks[i])) fail('node:zlib (stream)', what, i, 'round trip differs');
      }

      compressCase('flashpack (in shared memory)', 'variant', what, sum(atComp), () => {
        const scratch = rt.deflateScratch;
        let acc = 0;
        for (let i = 0; i < n; i++) acc += compressAt(corpusPtr + i * size, size, atDst, bound, scratch, opts);
        blackhole.value ^= acc;
      });
      compressCase('flashpack (stream)', 'variant', what, sum(fpComp), () => {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += fpStream(createCompressor(opts), blocks[i]).length;
        blackhole.value ^= acc;
      });
      compressCase('node:zlib (stream)', 'peer', what, sum(nodeComp), async () => {
        const o = { level };
        let acc = 0;
        for (let i = 0; i < n; i++) acc += (await nodeStream(zlib.createDeflateRaw, o, blocks[i])).length;
        blackhole.value ^= acc;
      }, { async: true, note: 'one zlib.createDeflateRaw / createInflateRaw stream per block, awaited' });
      decompressCase('flashpack (in shared memory)', 'variant', what, () => {
        const scratch = rt.inflateScratch;
        let acc = 0;
        for (let i = 0; i < n; i++) acc += decompressAt(atOff[i], atLen[i], atOut, size, scratch);
        blackhole.value ^= acc;
      });
      decompressCase('flashpack (stream)', 'variant', what, () => {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += fpStream(createDecompressor(), fpComp[i]).length;
        blackhole.value ^= acc;
      });
      decompressCase('node:zlib (stream)', 'peer', what, async () => {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += (await nodeStream(zlib.createInflateRaw, {}, nodeComp[i])).length;
        blackhole.value ^= acc;
      }, { async: true });
    }
  }
  // Rows grouped by operation: every library's compress L1 raw together, etc.
  const order = [...new Set(cases.map((c) => c.operation))];
  return cases.sort((a, b) => order.indexOf(a.operation) - order.indexOf(b.operation));
}
