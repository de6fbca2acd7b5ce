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
export { spscEnqueue, spscDequeue, mpmcEnqueue, mpmcDequeue, mpmcPush, mpmcPop } from "./ring";
export { slabAlloc, slabFree } from "./slab";
export {
  RING_HEAD, RING_PROD_TAIL_CACHE, RING_TAIL, RING_CONS_HEAD_CACHE, RING_SLEEPERS, RING_PROD_SLEEPERS, RING_CLOSED,
  RING_CAPACITY, RING_KIND, RING_SLOTS, RING_SPSC, RING_MPMC,
  DESC_BYTES, DESC_BUF, DESC_CAP, DESC_LEN, DESC_OP, DESC_STATUS, DESC_CHECKSUM, DESC_TAG, DESC_LINK, DESC_ARG,
  DESC_STATE, DESC_CLASS, DESC_AUX, DESC_RESULT, DESC_FREE, DESC_ALLOCATED,
  POOL_CLASSES, POOL_DESCS, POOL_NDESCS, POOL_CLASS0, POOL_CLASS_BYTES, POOL_MAX_CLASSES, POOL_HEADER_BYTES,
  CLASS_SIZE, CLASS_COUNT, CLASS_FIRST, CLASS_RING, CLASS_BUFS, SLAB_OK, SLAB_FOREIGN, SLAB_DOUBLE_FREE,
} from "./layout";
export { xxh128, dataCheck } from "./xxh3";
export { copyBytes, zeroBytes, allZero, bytesEqual } from "./mem";

/** First byte above the module's static data: the library manages memory from here. */
export function heapBase(): usize {
  return __heap_base;
}
export {
  FORMAT_RAW, FORMAT_ZLIB, FORMAT_GZIP, INFLATE_SCRATCH_BYTES, INFLATE_MODE, INFLATE_IN_USED, INFLATE_OUT_USED,
  INFLATE_ERROR_POS_HIGH,
} from "./layout";
export { deflateHeader, deflateFooter } from "./deflate-format";
export { inflateInit, inflate } from "./inflate";
export {
  DEFLATE_SCRATCH_BYTES, DEFLATE_IN_USED, DEFLATE_OUT_USED, DEFLATE_NO_FLUSH, DEFLATE_FINISH,
} from "./layout";
export { deflateInit, deflate, deflateCompress } from "./deflate";
