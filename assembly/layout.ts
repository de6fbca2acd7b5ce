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

/** dataCheck's (xxh3.ts) 16-byte XXH3-128 result. */
export const CTX_CHECK_OUT: usize = 16;
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
/** A valid block that decodes past the output room (value: its size, saturated to u32; value2: the room). */
export const E_LZ4_OUTPUT_TOO_SMALL: u32 = 11;

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

// --- deflate / inflate (deflate.ts, inflate.ts, deflate-format.ts) ----------

/** Stream formats: raw deflate (RFC 1951), zlib (RFC 1950), gzip (RFC 1952). */
export const FORMAT_RAW: u32 = 0;
export const FORMAT_ZLIB: u32 = 1;
export const FORMAT_GZIP: u32 = 2;
/** The deflate window (RFC 1951: distances up to 32768). */
export const WINDOW_BYTES: usize = 32768;

// Inflate scratch: one per stream (or per thread for one-shot calls). It starts
// with the ctx error record (CTX_ERROR_*), so errors decode like lz4's; the
// rest is the resumable decoder state, laid out here once.
export const INFLATE_ERROR_POS_HIGH: usize = 16; // u32: bits 32..63 of the error's byte position
export const INFLATE_MODE: usize = 20;
export const INFLATE_FORMAT: usize = 24;
export const INFLATE_BITCOUNT: usize = 28;
export const INFLATE_BITBUF: usize = 32; // u64
export const INFLATE_IN_TOTAL: usize = 40; // u64: input bytes consumed before this call
export const INFLATE_CHECK: usize = 48; // running Adler-32 / CRC-32 of this member's output
export const INFLATE_MEMBER_OUT: usize = 52; // this member's output bytes mod 2^32 (gzip ISIZE)
export const INFLATE_LAST: usize = 56; // the current block is the final one
export const INFLATE_LENGTH: usize = 60; // stored bytes left, or pending match length
export const INFLATE_DIST: usize = 64; // pending match distance
export const INFLATE_HOLD: usize = 68; // multi-byte header/trailer field being read
export const INFLATE_HAVE: usize = 72; // bytes (or code lengths) of the current field read so far
export const INFLATE_FLAGS: usize = 76; // gzip FLG
export const INFLATE_HCRC: usize = 80; // CRC-32 of the gzip header so far
export const INFLATE_NLEN: usize = 84;
export const INFLATE_NDIST: usize = 88;
export const INFLATE_NCODE: usize = 92;
export const INFLATE_TABLES: usize = 96; // pointer: current literal/length table (static fixed or dynamic)
export const INFLATE_REACH: usize = 100; // this member's output before the call's dst position, up to the window
export const INFLATE_IN_USED: usize = 104; // input bytes the last call consumed
export const INFLATE_OUT_USED: usize = 108; // dst position after the last call
export const INFLATE_FIELD_POS: usize = 112; // u64: input byte where the current header field began
export const INFLATE_IP: usize = 120; // call-local pointers, valid during a call
export const INFLATE_IEND: usize = 124;
export const INFLATE_OP: usize = 128;
export const INFLATE_OEND: usize = 132;
export const INFLATE_LOWEST: usize = 136; // lowest output address a match of this member may reach
export const INFLATE_CHECK_FROM: usize = 140; // output not yet checksummed starts here
export const INFLATE_SRC: usize = 144;
export const INFLATE_BYTE: usize = 148; // one-byte slot for header CRC updates
export const INFLATE_WINDOW: usize = 188; // largest distance allowed: 32768, or the zlib header's CINFO window
export const INFLATE_HEADER: usize = 152; // the 10 fixed bytes of a gzip header
export const INFLATE_FAST_ILIMIT: usize = 164; // the fast loop's input and output limits (kept
export const INFLATE_FAST_OLIMIT: usize = 168; // in memory: fewer values live across the loop)
export const INFLATE_LENS: usize = 192; // u8[320]: code lengths of a dynamic block
export const INFLATE_WORK: usize = 512; // u16[320]: symbols sorted by code length
export const INFLATE_PRECODE_TABLE: usize = 1152; // u16[128]: code-length code, 7-bit direct
export const INFLATE_DYNAMIC_TABLES: usize = 1408; // u32 literal/length table, then the distance table
export const INFLATE_SCRATCH_BYTES: usize = 1408 + (1536 + 512) * 4;

// Inflate modes (INFLATE_MODE): where a resumed call continues.
export const M_ZLIB_HEADER: u32 = 0;
export const M_GZIP_HEADER: u32 = 1;
export const M_GZIP_XLEN: u32 = 2;
export const M_GZIP_EXTRA: u32 = 3;
export const M_GZIP_NAME: u32 = 4;
export const M_GZIP_COMMENT: u32 = 5;
export const M_GZIP_HCRC: u32 = 6;
export const M_BLOCK: u32 = 7;
export const M_STORED: u32 = 8;
export const M_STORED_COPY: u32 = 9;
export const M_DYN_COUNTS: u32 = 10;
export const M_DYN_PRECODE: u32 = 11;
export const M_DYN_LENS: u32 = 12;
export const M_DECODE: u32 = 13;
export const M_DIST: u32 = 14;
export const M_COPY: u32 = 15;
export const M_TRAILER: u32 = 16;
export const M_MEMBER_END: u32 = 17; // gzip, accepting: another member or zero padding may follow
export const M_ZEROS: u32 = 18; // gzip, accepting: zero padding after the last member
export const M_DONE: u32 = 19; // raw and zlib, accepting: nothing may follow

// inflate() results.
export const INFLATE_COMPLETE: i32 = 0; // input used up, the stream is complete
export const INFLATE_NEED_INPUT: i32 = 1; // input used up, the stream continues
export const INFLATE_NEED_OUTPUT: i32 = 2; // dst is full, call again with room

// Inflate error kinds (CTX_ERROR_KIND); values as noted.
export const E_INFLATE_TRUNCATED: u32 = 20; // value: mode
export const E_INFLATE_ZLIB_CHECK_BITS: u32 = 21; // value: CMF<<8|FLG
export const E_INFLATE_ZLIB_METHOD: u32 = 22; // value: CM
export const E_INFLATE_ZLIB_WINDOW: u32 = 23; // value: CINFO
export const E_INFLATE_ZLIB_DICTIONARY: u32 = 24; // FDICT (ENOTSUP)
export const E_INFLATE_GZIP_MAGIC: u32 = 25; // value: ID1<<8|ID2
export const E_INFLATE_GZIP_METHOD: u32 = 26; // value: CM
export const E_INFLATE_GZIP_FLAGS: u32 = 27; // value: FLG
export const E_INFLATE_GZIP_HEADER_CRC: u32 = 28; // value: stored, value2: computed
export const E_INFLATE_BLOCK_TYPE: u32 = 29;
export const E_INFLATE_STORED_LENGTH: u32 = 30; // value: LEN, value2: NLEN
export const E_INFLATE_TOO_MANY_CODES: u32 = 31; // value: HLIT+257, value2: HDIST+1
export const E_INFLATE_PRECODE: u32 = 32; // value: 1 over-subscribed, 2 incomplete, 3 empty
export const E_INFLATE_REPEAT_NO_PREVIOUS: u32 = 33;
export const E_INFLATE_REPEAT_OVERFLOW: u32 = 34; // value: lengths after the repeat, value2: HLIT+HDIST
export const E_INFLATE_MISSING_EOB: u32 = 35;
export const E_INFLATE_LITLEN_CODE: u32 = 36; // value: 1 over-subscribed, 2 incomplete
export const E_INFLATE_DIST_CODE: u32 = 37; // value: 1 over-subscribed, 2 incomplete
export const E_INFLATE_BAD_LITLEN: u32 = 38; // a code with no symbol (value: 1) or symbol 286/287
export const E_INFLATE_BAD_DIST: u32 = 39; // a code with no symbol, or distance symbol 30/31
export const E_INFLATE_DISTANCE_TOO_FAR: u32 = 40; // value: distance, value2: output available
export const E_INFLATE_CHECKSUM: u32 = 41; // value: stored, value2: computed
export const E_INFLATE_LENGTH: u32 = 42; // value: stored ISIZE, value2: computed
export const E_INFLATE_TRAILING: u32 = 43; // value: the first trailing byte
export const E_INFLATE_INTERNAL: u32 = 44; // a table outgrew its reservation: a bug
export const E_INFLATE_DISTANCE_BEYOND_WINDOW: u32 = 45; // value: distance, value2: the zlib header's window

// Deflate scratch: one per stream (or per thread for one-shot calls), zlib's
// deflate_state laid out flat. Offsets of u32 fields unless noted.
export const DEFLATE_LEVEL: usize = 16;
export const DEFLATE_STRSTART: usize = 20;
export const DEFLATE_BLOCK_START: usize = 24; // i32: may go negative after a slide
export const DEFLATE_LOOKAHEAD: usize = 28;
export const DEFLATE_INSERT: usize = 32;
export const DEFLATE_MATCH_LENGTH: usize = 36;
export const DEFLATE_PREV_LENGTH: usize = 40;
export const DEFLATE_MATCH_AVAILABLE: usize = 44;
export const DEFLATE_MATCH_START: usize = 48;
export const DEFLATE_PREV_MATCH: usize = 52;
export const DEFLATE_SYM_NEXT: usize = 56; // symbols in the symbol buffer
export const DEFLATE_OPT_LEN: usize = 60;
export const DEFLATE_STATIC_LEN: usize = 64;
export const DEFLATE_BITCOUNT: usize = 68;
export const DEFLATE_BITBUF: usize = 72; // u64
export const DEFLATE_PENDING: usize = 80; // bytes in the pending buffer not yet copied out
export const DEFLATE_PENDING_OUT: usize = 84; // offset of the first of them
export const DEFLATE_FINISHED: usize = 88; // the final block is in pending
export const DEFLATE_HIGH_WATER: usize = 92; // window bytes below this were written or zeroed
export const DEFLATE_IN_USED: usize = 96; // input bytes the last call consumed
export const DEFLATE_OUT_USED: usize = 100; // output bytes the last call wrote
export const DEFLATE_IP: usize = 104; // call-local input and output pointers
export const DEFLATE_IEND: usize = 108;
export const DEFLATE_OP: usize = 112;
export const DEFLATE_OEND: usize = 116;
export const DEFLATE_MAX_CODE_L: usize = 120;
export const DEFLATE_MAX_CODE_D: usize = 124;
export const DEFLATE_MAX_CODE_BL: usize = 128;
export const DEFLATE_BL_COUNT: usize = 192; // u16[16]
export const DEFLATE_NEXT_CODE: usize = 224; // u16[16]
export const DEFLATE_DYN_LTREE: usize = 256; // ct_data[573]: freq|code u16, dad|len u16
export const DEFLATE_DYN_DTREE: usize = 256 + 573 * 4; // ct_data[61]
export const DEFLATE_BL_TREE: usize = DEFLATE_DYN_DTREE + 61 * 4; // ct_data[39]
export const DEFLATE_HEAP: usize = 3072; // u64[573]: freq << 40 | depth << 32 | node (after the trees, 8-aligned)
export const DEFLATE_ORDER: usize = DEFLATE_HEAP + 573 * 8; // u16[573]: nodes as the heap released them
export const DEFLATE_WINDOW: usize = 12288; // 2 * WINDOW_BYTES, plus DEFLATE_WINDOW_PAD (after DEFLATE_ORDER)
export const DEFLATE_WINDOW_PAD: usize = 64; // 8-byte match compares may read past the window
export const DEFLATE_PREV: usize = DEFLATE_WINDOW + 2 * WINDOW_BYTES + DEFLATE_WINDOW_PAD; // u16[32768]
export const DEFLATE_HASH_BITS: u32 = 15;
export const DEFLATE_HEAD: usize = DEFLATE_PREV + WINDOW_BYTES * 2; // u16[1 << DEFLATE_HASH_BITS]
export const DEFLATE_LIT_BUFSIZE: usize = 16384; // zlib's lit_bufsize at memLevel 8
export const DEFLATE_SYM_BUF: usize = DEFLATE_HEAD + (<usize>1 << DEFLATE_HASH_BITS) * 2; // u32[16384]: dist | lc << 16
/** One block's output: at most 16383 static-coded symbols of 31 bits, or a 32 KiB stored block. */
export const DEFLATE_PENDING_BYTES: usize = 65536 + 256;
export const DEFLATE_PENDING_BUF: usize = DEFLATE_SYM_BUF + DEFLATE_LIT_BUFSIZE * 4;
export const DEFLATE_SCRATCH_BYTES: usize = DEFLATE_PENDING_BUF + DEFLATE_PENDING_BYTES;

// deflate() flush modes and results.
export const DEFLATE_NO_FLUSH: u32 = 0;
export const DEFLATE_FINISH: u32 = 1;
export const DEFLATE_DONE: i32 = 0; // the stream is complete and all of it is out
export const DEFLATE_NEED_INPUT: i32 = 1; // input used up, output drained
export const DEFLATE_NEED_OUTPUT: i32 = 2; // dst is full, call again with room

// Regions must not overlap: checked when the module starts (folded away when true).
assert(DEFLATE_DYN_LTREE >= 192 && DEFLATE_HEAP >= DEFLATE_BL_TREE + 39 * 4, "deflate trees overlap");
assert(DEFLATE_WINDOW >= DEFLATE_ORDER + 573 * 2, "deflate heap overlaps the window");
assert(INFLATE_LENS >= INFLATE_WINDOW + 4 && INFLATE_WORK >= INFLATE_LENS + 320, "inflate state overlaps its tables");
