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
