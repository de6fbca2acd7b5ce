// Generates assembly/generated/deflate-tables.ts: the constant tables of the
// deflate compressor (zlib's trees.c static tables) and of the inflater (symbol
// templates of its decode-table entries, the fixed-code decode tables, and the
// shuffle patterns of short-distance match copies). Static data of the WASM
// module: immutable, rewritten identically by every instantiation.
//
// The inflater's decode-table entry (u32), defined here once and exported to
// assembly/inflate.ts:
//   literal/length table  bit 31 LIT: literal, value in bits 16..23
//                         bit 30 SUB: pointer to a subtable at entry offset
//                                     bits 16..27, indexed by bits 8..11 bits
//                         bit 29 EOB: end of block
//                         bit 28 BAD: no code (hole of an incomplete code,
//                                     symbols 286-287 of the fixed code)
//                         otherwise a length: base in bits 16..24
//   distance table        base in bits 16..31; bit 6 SUB (offset in bits
//                         16..31, index bits in 8..11); bit 7 BAD
//   both                  bits 0..5: bits to drop (codeword + extra bits),
//                         bits 8..12: codeword bits (extra = total - codeword)
import { mkdirSync, writeFileSync } from 'node:fs';

export const LIT = 0x80000000;
export const SUB = 0x40000000;
export const EOB = 0x20000000;
export const BAD = 0x10000000;
export const DSUB = 0x40;
export const DBAD = 0x80;
export const LITLEN_ROOT_BITS = 10;
export const DIST_ROOT_BITS = 8;
// Entries reserved per table. zlib's `enough` bounds a complete code's table
// (1332 for 286 literal/length symbols with a 10-bit root, 402 for 30 distance
// symbols with an 8-bit root); the builder asserts against these.
export const LITLEN_TABLE_ENTRIES = 1536;
export const DIST_TABLE_ENTRIES = 512;

// RFC 1951 3.2.5: length codes 257..285 and distance codes 0..29.
const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const BL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
const EXTRA_BLBITS = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];

const reverse = (code, len) => {
  let r = 0;
  for (let i = 0; i < len; i++) r = (r << 1) | ((code >> i) & 1);
  return r;
};
const fixedLitlenLengths = () => Array.from({ length: 288 }, (_, s) => (s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8));

/** Canonical codes (RFC 1951 3.2.2), bit-reversed for LSB-first output. */
function canonicalCodes(lengths) {
  const count = new Array(16).fill(0);
  for (const l of lengths) if (l) count[l]++;
  const next = new Array(16).fill(0);
  let code = 0;
  for (let bits = 1; bits < 16; bits++) {
    code = (code + count[bits - 1]) << 1;
    next[bits] = code;
  }
  return lengths.map((l) => (l ? reverse(next[l]++, l) : 0));
}

// --- inflater ---------------------------------------------------------------
const litlenTemplate = new Array(288);
for (let s = 0; s < 288; s++) {
  if (s < 256) litlenTemplate[s] = (LIT | (s << 16)) >>> 0;
  else if (s === 256) litlenTemplate[s] = EOB;
  else if (s < 286) litlenTemplate[s] = ((LENGTH_BASE[s - 257] << 16) | LENGTH_EXTRA[s - 257]) >>> 0;
  else litlenTemplate[s] = BAD;
}
const distTemplate = new Array(32);
for (let s = 0; s < 32; s++) distTemplate[s] = s < 30 ? ((DIST_BASE[s] << 16) | DIST_EXTRA[s]) >>> 0 : DBAD;
const withCodeword = (template, len) => (template + len + (len << 8)) >>> 0;

// The fixed code is complete and no codeword exceeds its root, so its tables
// need no subtables: every entry is a replicated codeword.
function fixedTable(lengths, template, rootBits, entries) {
  const table = new Array(entries).fill(0);
  const codes = canonicalCodes(lengths);
  lengths.forEach((len, s) => {
    for (let i = codes[s]; i < 1 << rootBits; i += 1 << len) table[i] = withCodeword(template[s], len);
  });
  return table;
}
const fixedTables = [
  ...fixedTable(fixedLitlenLengths(), litlenTemplate, LITLEN_ROOT_BITS, LITLEN_TABLE_ENTRIES),
  ...fixedTable(new Array(32).fill(5), distTemplate, DIST_ROOT_BITS, DIST_TABLE_ENTRIES),
];

// Short-distance match copies (distance d < 16) replicate a d-byte pattern with
// i8x16.swizzle: row d of PATTERN_INDEX picks byte i % d, row d of
// PATTERN_ROTATE advances the pattern by 16 bytes.
const patternIndex = [];
const patternRotate = [];
for (let d = 0; d < 16; d++) {
  for (let i = 0; i < 16; i++) {
    patternIndex.push(d ? i % d : 0);
    patternRotate.push(d ? (i + 16) % d : 0);
  }
}

// --- compressor (zlib trees.c tr_static_init) -------------------------------
const lengthCode = new Array(256);
const baseLength = [];
{
  let length = 0;
  let code;
  for (code = 0; code < 28; code++) {
    baseLength[code] = length;
    for (let n = 0; n < 1 << LENGTH_EXTRA[code]; n++) lengthCode[length++] = code;
  }
  // Length 258 (lc 255) has its own code 28, overwriting code 27's last entry.
  lengthCode[length - 1] = code;
  baseLength[28] = 255;
}
const distCode = new Array(512);
const baseDist = [];
{
  let dist = 0;
  let code;
  for (code = 0; code < 16; code++) {
    baseDist[code] = dist;
    for (let n = 0; n < 1 << DIST_EXTRA[code]; n++) distCode[dist++] = code;
  }
  dist >>= 7;
  for (; code < 30; code++) {
    baseDist[code] = dist << 7;
    for (let n = 0; n < 1 << (DIST_EXTRA[code] - 7); n++) distCode[256 + dist++] = code;
  }
}
// Per match-length offset lc = length - 3: the length symbol's index (0..28)
// in bits 0..7, its extra-bit count in bits 8..15, the extra value in 16..31.
const lengthSymbol = lengthCode.map((code, lc) => (code | (LENGTH_EXTRA[code] << 8) | ((lc - baseLength[code]) << 16)) >>> 0);
// Static trees as zlib's ct_data: code in the low 16 bits, length in the high 16.
const staticLtree = (() => {
  const lens = fixedLitlenLengths();
  const codes = canonicalCodes(lens);
  return lens.map((l, s) => (codes[s] | (l << 16)) >>> 0);
})();
const staticDtree = Array.from({ length: 30 }, (_, s) => (reverse(s, 5) | (5 << 16)) >>> 0);

// --- emit -------------------------------------------------------------------
const hex = (v) => '0x' + (v >>> 0).toString(16).padStart(8, '0');
const rows = (values, per, fmt) => {
  const out = [];
  for (let i = 0; i < values.length; i += per) out.push('  ' + values.slice(i, i + per).map(fmt).join(', '));
  return out.join(',\n');
};
const data = (name, type, values, align = 16) => {
  const fmt = type === 'u32' ? hex : String;
  return `export const ${name}: usize = memory.data<${type}>([\n${rows(values, type === 'u32' ? 8 : 16, fmt)}\n], ${align});\n`;
};

let out = '// Generated by scripts/gen-deflate-tables.mjs; do not edit.\n';
for (const [k, v] of Object.entries({ LIT, SUB, EOB, BAD, DSUB, DBAD })) out += `export const ${k}: u32 = ${hex(v)};\n`;
out += `export const LITLEN_ROOT_BITS: u32 = ${LITLEN_ROOT_BITS};\n`;
out += `export const DIST_ROOT_BITS: u32 = ${DIST_ROOT_BITS};\n`;
out += `export const LITLEN_TABLE_ENTRIES: usize = ${LITLEN_TABLE_ENTRIES};\n`;
out += `export const DIST_TABLE_ENTRIES: usize = ${DIST_TABLE_ENTRIES};\n`;
out += `/** Byte offset of the distance table from the literal/length table, in scratch and in FIXED_TABLES. */\n`;
out += `export const DIST_TABLE_OFFSET: usize = ${LITLEN_TABLE_ENTRIES * 4};\n`;
out += data('LITLEN_TEMPLATE', 'u32', litlenTemplate);
out += data('DIST_TEMPLATE', 'u32', distTemplate);
out += data('FIXED_TABLES', 'u32', fixedTables, 64);
out += data('PATTERN_INDEX', 'u8', patternIndex);
out += data('PATTERN_ROTATE', 'u8', patternRotate);
out += data('BL_ORDER', 'u8', BL_ORDER);
out += data('EXTRA_BLBITS', 'u8', EXTRA_BLBITS);
out += data('EXTRA_LBITS', 'u8', LENGTH_EXTRA);
out += data('EXTRA_DBITS', 'u8', DIST_EXTRA);
out += data('BASE_DIST', 'u16', baseDist);
out += data('DIST_CODE', 'u8', distCode);
out += data('LENGTH_SYMBOL', 'u32', lengthSymbol);
out += data('STATIC_LTREE', 'u32', staticLtree);
out += data('STATIC_DTREE', 'u32', staticDtree);

mkdirSync(new URL('../assembly/generated/', import.meta.url), { recursive: true });
writeFileSync(new URL('../assembly/generated/deflate-tables.ts', import.meta.url), out);
