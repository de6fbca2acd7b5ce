// Every byte layout the WASM module shares with TypeScript, defined once here and
// exported as immutable globals (read by src/wasm/runtime.ts), so neither side
// hard-codes an offset the other defines.
//
// A codec context ("ctx") is scratch memory carved by the caller from the shared
// memory, one per thread that runs codecs. The module keeps no mutable state of
// its own: everything a call needs is in its arguments and its ctx.

/** Error record: kind, input position, and two values that name the bad field. */
export const CTX_ERROR_KIND: usize = 0;
export const CTX_ERROR_POS: usize = 4;
export const CTX_ERROR_VALUE: usize = 8;
export const CTX_ERROR_VALUE2: usize = 12;

/** xxHash32 streaming state (xxhash32.ts). */
export const CTX_XXH32_STATE: usize = 64;
export const XXH32_STATE_BYTES: usize = 64;
/** LZ4 hash table: 2^13 u16 offsets (inputs < 64 KiB) or 2^12 u32 positions. */
export const LZ4_HASH_LOG: u32 = 13;
export const CTX_LZ4_TABLE: usize = 128;
export const LZ4_TABLE_BYTES: usize = (<usize>1 << LZ4_HASH_LOG) * 2;
/** XXH3 (xxh3.ts): the eight 64-bit accumulators of the > 240-byte path. */
export const CTX_XXH3_ACC: usize = CTX_LZ4_TABLE + LZ4_TABLE_BYTES;
export const XXH3_ACC_BYTES: usize = 64;
/** XXH3: the secret derived from a non-zero seed (XXH3_initCustomSecret), 192 bytes. */
export const CTX_XXH3_SECRET: usize = CTX_XXH3_ACC + XXH3_ACC_BYTES;
export const XXH3_SECRET_BYTES: usize = 192;
/** Bytes of one codec context; callers align it to 64. */
export const CTX_BYTES: usize = CTX_XXH3_SECRET + XXH3_SECRET_BYTES;

// Error kinds written to CTX_ERROR_KIND (decoded into messages by src/codec/errors.ts).
export const E_LZ4_EMPTY_INPUT: u32 = 1;
export const E_LZ4_LITERAL_LENGTH_TRUNCATED: u32 = 2;
export const E_LZ4_LITERALS_PAST_INPUT: u32 = 3;
export const E_LZ4_OUTPUT_OVERFLOW: u32 = 4;
export const E_LZ4_LAST_SEQUENCE_NOT_LAST: u32 = 5;
export const E_LZ4_OFFSET_ZERO: u32 = 6;
export const E_LZ4_OFFSET_BEYOND_WINDOW: u32 = 7;
export const E_LZ4_MATCH_LENGTH_TRUNCATED: u32 = 8;
export const E_LZ4_MATCH_IN_LAST_LITERALS: u32 = 9;
export const E_LZ4_EMPTY_OUTPUT: u32 = 10;

@inline export function fail(ctx: usize, kind: u32, pos: usize, value: u32, value2: u32): isize {
  store<u32>(ctx + CTX_ERROR_KIND, kind);
  store<u32>(ctx + CTX_ERROR_POS, <u32>pos);
  store<u32>(ctx + CTX_ERROR_VALUE, value);
  store<u32>(ctx + CTX_ERROR_VALUE2, value2);
  return -1;
}

// ---------------------------------------------------------------------------
// Rings (ring.ts, src/shm/ring.ts): a header of 512 bytes, then the slots.
// Free-running u32 indices; each side's index and its private cache of the
// peer's index share a 128-byte line (two lines apart defeat adjacent-line
// prefetch), so producer and consumer never write the same line.
export const RING_HEAD: usize = 0; // producer index (published with a seq-cst store)
export const RING_PROD_TAIL_CACHE: usize = 4; // producer's last seen consumer index
export const RING_TAIL: usize = 128; // consumer index
export const RING_CONS_HEAD_CACHE: usize = 132; // consumer's last seen producer index
export const RING_SLEEPERS: usize = 256; // consumers parked on RING_HEAD (count)
export const RING_PROD_SLEEPERS: usize = 260; // producers parked on RING_TAIL (count)
export const RING_CLOSED: usize = 264; // set to 1 to tell parked consumers to leave
export const RING_CAPACITY: usize = 384; // read-only after init: slots, a power of two
export const RING_KIND: usize = 388; // RING_SPSC or RING_MPMC
export const RING_SLOTS: usize = 512;
export const RING_SPSC: u32 = 1; // slots are u32 values
export const RING_MPMC: u32 = 2; // slots are { seq: u32, value: u32 } (Vyukov)

// ---------------------------------------------------------------------------
// Buffer descriptors (slab.ts, src/shm/slab.ts): 64-byte records, one cache
// line each, in a table indexed from 0.
export const DESC_BYTES: usize = 64;
export const DESC_BUF: usize = 0; // byte offset of the buffer in the memory
export const DESC_CAP: usize = 4; // buffer capacity (its size class)
export const DESC_LEN: usize = 8; // data length
export const DESC_OP: usize = 12; // job opcode (engine)
export const DESC_STATUS: usize = 16; // job status: 0 ok, > 0 informational, < 0 error kind
export const DESC_CHECKSUM: usize = 20; // checksum result (or error position)
export const DESC_TAG: usize = 24; // the owner's tag
export const DESC_LINK: usize = 28; // a job's output descriptor
export const DESC_ARG: usize = 32; // a job's argument (expected size, level, acceleration)
export const DESC_STATE: usize = 36; // DESC_FREE or DESC_ALLOCATED (double-free check)
export const DESC_CLASS: usize = 40; // size class index
export const DESC_AUX: usize = 44; // a second result word (error value)
export const DESC_RESULT: usize = 48; // 16 bytes of result (the fingerprint)
export const DESC_FREE: u32 = 0x46524545; // "FREE"
export const DESC_ALLOCATED: u32 = 0x414c4c43; // "ALLC"

// ---------------------------------------------------------------------------
// Slab pools (slab.ts, src/shm/slab.ts): a header, then per size class a record.
export const POOL_CLASSES: usize = 0; // number of size classes
export const POOL_DESCS: usize = 4; // offset of the descriptor table
export const POOL_NDESCS: usize = 8; // descriptors in all classes
export const POOL_CLASS0: usize = 64; // first class record
export const POOL_CLASS_BYTES: usize = 32;
export const POOL_MAX_CLASSES: u32 = 8;
export const POOL_HEADER_BYTES: usize = POOL_CLASS0 + <usize>POOL_MAX_CLASSES * POOL_CLASS_BYTES;
export const CLASS_SIZE: usize = 0; // buffer bytes
export const CLASS_COUNT: usize = 4; // buffers
export const CLASS_FIRST: usize = 8; // first descriptor index
export const CLASS_RING: usize = 12; // offset of the free list (an MPMC ring of indices)
export const CLASS_BUFS: usize = 16; // offset of the first buffer
// slabFree results
export const SLAB_OK: i32 = 0;
export const SLAB_FOREIGN: i32 = -1;
export const SLAB_DOUBLE_FREE: i32 = -2;
