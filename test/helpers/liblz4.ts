/**
 * liblz4 as a test oracle, through the `lz4` package's native addon. node-gyp
 * builds the addon at `npm install` for the Node that ran the install; another
 * Node's ABI refuses to load it (ERR_DLOPEN_FAILED). Then `liblz4` is null and
 * the oracle's cases are skipped under a name that says why (`liblz4Case`), while
 * every other check runs. Any other failure to load is a broken install and throws.
 */
import { createRequire } from 'node:module';

export interface Liblz4 {
  decodeBlock(input: Buffer, output: Buffer): number;
  encodeBlock(input: Buffer, output: Buffer): number;
  encodeBound(n: number): number;
}

export const liblz4SkipReason = `liblz4 addon not built for this Node ABI, ${process.version}`;

function load(): Liblz4 | null {
  try {
    return createRequire(import.meta.url)('lz4') as Liblz4;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_DLOPEN_FAILED') return null;
    throw e;
  }
}

/** liblz4 1.9.2 (node-lz4's bundled copy), or null when its addon does not load under this Node. */
export const liblz4: Liblz4 | null = load();

/** A test name that carries the skip reason when the oracle is missing. */
export function liblz4Case(name: string): string {
  return liblz4 ? name : `${name} (${liblz4SkipReason})`;
}
