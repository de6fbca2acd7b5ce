// The flashpack WASM module: codec kernels over an imported shared memory.
// Entry points take (pointer, length) integers into that memory and a ctx
// (layout.ts); no entry point allocates or keeps state between calls.
export {
  CTX_BYTES, CTX_ERROR_KIND, CTX_ERROR_POS, CTX_ERROR_VALUE, CTX_ERROR_VALUE2,
} from "./layout";
export { crc32, crc32c, tablesBase } from "./crc32";
export { TABLES_BASE } from "./generated/tables";
export { adler32 } from "./adler32";
export { xxh32, xxh32Init, xxh32Update, xxh32Digest } from "./xxhash32";
export { lz4CompressBound, lz4Compress, lz4Decompress } from "./lz4";
export { xxh128 } from "./xxh3";

/** First byte above the module's static data: the library manages memory from here. */
export function heapBase(): usize {
  return __heap_base;
}
