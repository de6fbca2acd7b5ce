import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** The vendored corpus (test/corpus, see its README). */
export const corpusRoot = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..', 'corpus');

/** Every corpus file, sorted by folder then name. */
export function corpusFiles(): { name: string; data: Uint8Array }[] {
  const out: { name: string; data: Uint8Array }[] = [];
  for (const dir of ['cantrbry', 'calgary', 'snappy']) {
    for (const f of readdirSync(join(corpusRoot, dir)).sort()) out.push({ name: `${dir}/${f}`, data: new Uint8Array(readFileSync(join(corpusRoot, dir, f))) });
  }
  return out;
}

export function corpusConcat(): Uint8Array {
  const files = corpusFiles();
  const out = new Uint8Array(files.reduce((a, f) => a + f.data.length, 0));
  let at = 0;
  for (const f of files) {
    out.set(f.data, at);
    at += f.data.length;
  }
  return out;
}

/** Seeded PRNG (mulberry32): reproducible fuzz and random data. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(n: number, rand: () => number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 256) | 0;
  return out;
}

export function pieces(data: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let off = 0; off < data.length; off += size) out.push(data.subarray(off, Math.min(off + size, data.length)));
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
