// Runtime smoke suite: imports the built package the way a user would and
// round-trips data through every codec. Run by test/runtimes.test.ts under
// Node, Deno and Bun; prints one JSON line and exits non-zero on any mismatch.
import * as fp from '../../dist/index.js';
import { check, equal, report } from './report.mjs';

const text = new TextEncoder().encode('flashpack smoke test: the quick brown fox jumps over the lazy dog. '.repeat(200));
const random = new Uint8Array(70_000);
let x = 12345;
for (let i = 0; i < random.length; i++) random[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;

check('crc32 check value', fp.crc32(new TextEncoder().encode('123456789')) === 0xcbf43926);
check('crc32c check value', fp.crc32c(new TextEncoder().encode('123456789')) === 0xe3069283);
check('adler32 check value', fp.adler32(new TextEncoder().encode('123456789')) === 0x091e01de);
check('crc32 combine', fp.crc32Combine(fp.crc32(text), fp.crc32(random), random.length) === fp.crc32(Uint8Array.from([...text, ...random])));
for (const [name, data] of [['text', text], ['random', random], ['empty', new Uint8Array(0)]]) {
  const block = fp.lz4.compressBlock(data);
  check(`lz4 block ${name}`, equal(fp.lz4.decompressBlock(block, data.length), data));
  const frame = fp.lz4.compressFrame(data, { blockChecksum: true });
  check(`lz4 frame ${name}`, equal(fp.lz4.decompressFrame(frame), data));
}
try {
  fp.lz4.decompressBlock(Uint8Array.of(0x10, 0x61, 70, 0, 0x50, 1, 2, 3, 4, 5), 100);
  check('lz4 corrupt block throws', false);
} catch (e) {
  check('lz4 corrupt block throws FlashpackError ECORRUPT', e instanceof fp.FlashpackError && e.code === 'ECORRUPT');
}
// Fingerprints: xxHash's own XXH128 sanity vectors (cli/xsum_sanity_check.c),
// whose buffer is bytes of a 64-bit multiplicative sequence.
const sanity = new Uint8Array(2367);
for (let i = 0, gen = 2654435761n; i < sanity.length; i++, gen = (gen * 11400714785074694797n) & 0xffffffffffffffffn) sanity[i] = Number(gen >> 56n);
const hex = (b) => Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
check('fingerprint empty', hex(fp.fingerprint(new Uint8Array(0))) === '99aa06d3014798d86001c324468d497f');
check('fingerprint 222 bytes', hex(fp.fingerprint(sanity.subarray(0, 222))) === '337e09641b948717f1aebd597cec6b3a');
check('fingerprint 2367 bytes seeded', hex(fp.fingerprint(sanity, 2654435761)) === 'd23aae4b76c31ecb6f5360ae69c2f406');
{
  const rt = fp.runtime();
  const at = rt.reserve(random.length + 16);
  rt.u8.set(random, at);
  fp.fingerprintAt(at, random.length, at + random.length, 0x89abcdef, 0x01234567);
  check('fingerprintAt equals fingerprint', hex(rt.u8.subarray(at + random.length, at + random.length + 16)) === hex(fp.fingerprint(random, 0x0123456789abcdefn)));
}
for (const [name, data] of [['text', text], ['random', random], ['empty', new Uint8Array(0)]]) {
  for (const format of ['raw', 'zlib', 'gzip']) {
    for (const level of [0, 1, 6, 9]) {
      const c = fp.deflate.compress(data, { level, format });
      check(`deflate ${format} level ${level} ${name}`, equal(fp.deflate.decompress(c, { format }), data));
    }
    const z = fp.deflate.createCompressor({ level: 6, format });
    const d = fp.deflate.createDecompressor({ format });
    const parts = [];
    for (let off = 0; off < data.length; off += 4999) parts.push(d.push(z.push(data.subarray(off, off + 4999))));
    parts.push(d.push(z.finish()), d.finish());
    const back = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (back.set(p, at), at + p.length), 0);
    check(`deflate ${format} stream ${name}`, equal(back, data));
  }
}
check('deflate zlib header', equal(fp.deflate.header('zlib', 9), [0x78, 0xda]));
const le32 = (v) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255, v >>> 24];
check('deflate gzip footer', equal(fp.deflate.footer('gzip', { checksum: fp.crc32(text), length: text.length }), [...le32(fp.crc32(text)), ...le32(text.length)]));
try {
  fp.deflate.decompress(Uint8Array.of(0x07));
  check('deflate corrupt stream throws', false);
} catch (e) {
  check('deflate corrupt stream throws FlashpackError ECORRUPT', e instanceof fp.FlashpackError && e.code === 'ECORRUPT');
}
report();
