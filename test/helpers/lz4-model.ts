/**
 * A byte-at-a-time LZ4 block decoder written straight from the format spec plus
 * liblz4's LZ4_decompress_safe acceptance rules: the test oracle for the WASM
 * decoder. Slow and obvious on purpose.
 */
export type ModelResult = { ok: true; bytes: Uint8Array } | { ok: false; why: string };

export function modelDecodeBlock(src: Uint8Array, cap: number, prefix: Uint8Array = new Uint8Array(0)): ModelResult {
  const fail = (why: string): ModelResult => ({ ok: false, why });
  if (src.length === 0) return fail('empty input');
  if (cap === 0) return src.length === 1 && src[0] === 0 ? { ok: true, bytes: new Uint8Array(0) } : fail('empty output');
  const out = new Uint8Array(prefix.length + cap);
  out.set(prefix);
  let ip = 0;
  let op = prefix.length;
  const iend = src.length;
  const oend = out.length;
  for (;;) {
    const token = src[ip++];
    let lit = token >> 4;
    if (lit === 15) {
      if (iend - ip <= 15) return fail('literal length truncated');
      let s: number;
      do {
        s = src[ip++];
        lit += s;
        if (lit > iend - ip) return fail('literals past input');
      } while (s === 255);
    }
    if (lit + 12 > oend - op || lit + 8 > iend - ip) {
      if (lit > iend - ip) return fail('literals past input');
      if (lit > oend - op) return fail('output overflow');
      if (ip + lit !== iend) return fail('last sequence not last');
      for (let i = 0; i < lit; i++) out[op++] = src[ip++];
      return { ok: true, bytes: out.slice(prefix.length, op) };
    }
    for (let i = 0; i < lit; i++) out[op++] = src[ip++];
    const offset = src[ip] | (src[ip + 1] << 8);
    ip += 2;
    if (offset === 0) return fail('offset 0');
    if (offset > op) return fail('offset beyond window');
    let ml = token & 15;
    if (ml === 15) {
      let s: number;
      do {
        s = src[ip++];
        ml += s;
        if (iend - ip <= 4) return fail('match length truncated');
      } while (s === 255);
    }
    ml += 4;
    if (ml + 5 > oend - op) return fail(ml > oend - op ? 'output overflow' : 'match in last literals');
    for (let i = 0; i < ml; i++, op++) out[op] = out[op - offset];
  }
}

/** Parses a block into its sequences (for checking the encoder's end-of-block rules). */
export function parseSequences(src: Uint8Array): { litStart: number; litLen: number; matchLen: number; offset: number }[] {
  const seqs: { litStart: number; litLen: number; matchLen: number; offset: number }[] = [];
  let ip = 0;
  let op = 0;
  while (ip < src.length) {
    const token = src[ip++];
    let lit = token >> 4;
    if (lit === 15) for (let s = 255; s === 255; ) lit += s = src[ip++];
    const litStart = op;
    ip += lit;
    op += lit;
    if (ip >= src.length) {
      seqs.push({ litStart, litLen: lit, matchLen: 0, offset: 0 });
      break;
    }
    const offset = src[ip] | (src[ip + 1] << 8);
    ip += 2;
    let ml = token & 15;
    if (ml === 15) for (let s = 255; s === 255; ) ml += s = src[ip++];
    ml += 4;
    seqs.push({ litStart, litLen: lit, matchLen: ml, offset });
    op += ml;
  }
  return seqs;
}
