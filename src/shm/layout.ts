/**
 * The shared-memory layouts of rings, descriptors and pools, read from the WASM
 * module's exported constants (assembly/layout.ts), so TypeScript never restates
 * an offset that AssemblyScript defines.
 */
import { badArgument, invalid } from '../errors.js';
import type { WasmExports } from '../wasm/runtime.js';
import type { WasmGlobal } from '../wasm/wasm-types.js';

const NAMES = [
  'RING_HEAD', 'RING_PROD_TAIL_CACHE', 'RING_TAIL', 'RING_CONS_HEAD_CACHE', 'RING_SLEEPERS', 'RING_PROD_SLEEPERS',
  'RING_CLOSED', 'RING_CAPACITY', 'RING_KIND', 'RING_SLOTS', 'RING_SPSC', 'RING_MPMC',
  'DESC_BYTES', 'DESC_BUF', 'DESC_CAP', 'DESC_LEN', 'DESC_OP', 'DESC_STATUS', 'DESC_CHECKSUM', 'DESC_TAG', 'DESC_LINK',
  'DESC_ARG', 'DESC_STATE', 'DESC_CLASS', 'DESC_AUX', 'DESC_RESULT', 'DESC_FREE', 'DESC_ALLOCATED',
  'POOL_CLASSES', 'POOL_DESCS', 'POOL_NDESCS', 'POOL_CLASS0', 'POOL_CLASS_BYTES', 'POOL_MAX_CLASSES', 'POOL_HEADER_BYTES',
  'CLASS_SIZE', 'CLASS_COUNT', 'CLASS_FIRST', 'CLASS_RING', 'CLASS_BUFS',
] as const;

export type Layout = { readonly [K in (typeof NAMES)[number]]: number };

/** The layout constants of a module instance's exports (`runtime().exports`); EINVAL for anything else. */
export function readLayout(exports: WasmExports): Layout {
  if (exports === null || typeof exports !== 'object') throw badArgument('readLayout: exports', "a module's exports (runtime().exports)", exports);
  const globals = exports as unknown as Record<string, WasmGlobal>;
  const out: Record<string, number> = {};
  for (const name of NAMES) {
    const g = globals[name];
    if (!g) throw invalid(`readLayout: exports lack the layout constant ${name} (not runtime().exports?)`);
    out[name] = (g.value as number) >>> 0;
  }
  return Object.freeze(out) as Layout;
}
