/**
 * The known table: the dedupe index's arrays as they lie in the shared memory,
 * owned here because two readers depend on the layout — the index itself
 * (dedupe.ts, the only writer) and the engine job that skips compressing a
 * block whose fingerprint is listed (prepare-job.ts, in the workers).
 *
 * `buckets × KNOWN_WAYS` entries as parallel arrays from the table's address,
 * each column at (its offset × entries) bytes: u32 key low words, u32 key high
 * words (a key is a fingerprint's first 8 bytes as two little-endian words),
 * u32 PBNs, u8 states, u8 used flags; then one u8 clock hand per bucket. A
 * key's bucket is its low word's low log2(buckets) bits. Workers only read it:
 * a torn read costs a needless second engine trip, never a wrong result.
 */
export const KNOWN_WAYS = 4;
export const KEY_LO_AT = 0;
export const KEY_HI_AT = 4;
export const PBN_AT = 8;
export const STATE_AT = 12;
export const USED_AT = 13;
/** The clock column has one byte per bucket, after the entry columns. */
export const CLOCK_AT = 14;
/** Bytes per entry, not counting the clock. */
export const KNOWN_ENTRY_BYTES = CLOCK_AT;
/** Largest log2(buckets) a prepare job's argument can name. */
export const KNOWN_MAX_LOG2_BUCKETS = 28;

/** Bytes of a table of 2^log2Buckets buckets. */
export function knownTableBytes(log2Buckets: number): number {
  const buckets = 2 ** log2Buckets;
  return buckets * KNOWN_WAYS * KNOWN_ENTRY_BYTES + buckets;
}

/**
 * Whether key (lo, hi) is listed in the table at byte `at` of the memory the
 * views see. The caller has checked that the whole table is inside them.
 */
export function knownTableHas(u8: Uint8Array, u32: Uint32Array, at: number, log2Buckets: number, lo: number, hi: number): boolean {
  const entries = 2 ** log2Buckets * KNOWN_WAYS;
  const first = (lo & (2 ** log2Buckets - 1)) * KNOWN_WAYS;
  const los = (at >> 2) + (KEY_LO_AT >> 2) * entries;
  const his = (at >> 2) + (KEY_HI_AT >> 2) * entries;
  const used = at + USED_AT * entries;
  for (let e = first; e < first + KNOWN_WAYS; e++) {
    if (u8[used + e] === 1 && u32[los + e] === lo && u32[his + e] === hi) return true;
  }
  return false;
}
