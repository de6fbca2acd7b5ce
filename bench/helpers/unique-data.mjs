// Write data for bench/replication.mjs: random and incompressible (slices of
// a random pool), every 4 KiB block stamped with a unique 64-bit counter, so
// nothing compresses and nothing deduplicates.
import crypto from 'node:crypto';

const BLOCK_BYTES = 4096;
const POOL_BYTES = 16 << 20;

const pool = crypto.randomFillSync(new Uint8Array(POOL_BYTES));
let stamp = BigInt(Date.now()) << 20n;

/** Fills `buf` (a multiple of 4 KiB) with random pool bytes and a unique counter at the start of each block. */
export function fillUnique(buf, view) {
  const at = Math.floor(Math.random() * ((POOL_BYTES - buf.length) / 64)) * 64;
  buf.set(pool.subarray(at, at + buf.length));
  for (let b = 0; b < buf.length; b += BLOCK_BYTES) view.setBigUint64(b, stamp++, true);
}

/** `n` write buffers of `bytes` each, one per lane: [{ buf, view }]. */
export function laneBuffers(n, bytes) {
  return Array.from({ length: n }, () => {
    const buf = new Uint8Array(bytes);
    return { buf, view: new DataView(buf.buffer) };
  });
}
