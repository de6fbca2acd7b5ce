/**
 * Blocks travel compressed where that saves network bytes: the client
 * compresses a write's data with LZ4 (one block of up to 1 MiB) and sends it
 * with FLAG_COMPRESSED when it is smaller by more than a head's worth; the
 * primary forwards those bytes to its replicas as they came, and every store
 * decompresses before writing. A payload that does not decompress to exactly
 * the request's length is corrupt (CORRUPT, nothing written).
 */
import { FlashpackError } from '../errors.js';
import { compressBlock, decompressBlockInto } from '../codec/lz4.js';
import { FLAG_COMPRESSED, HEAD_BYTES } from './wire.js';

/** The bytes to send for `data`, and the head flags that say how. */
export function packPayload(data: Uint8Array): { bytes: Uint8Array; flags: number } {
  const packed = compressBlock(data);
  return packed.length + HEAD_BYTES < data.length ? { bytes: packed, flags: FLAG_COMPRESSED } : { bytes: data, flags: 0 };
}

/** The `length` bytes a payload stands for. ECORRUPT if a compressed one does not decode to exactly that. */
export function unpackPayload(bytes: Uint8Array, flags: number, length: number): Uint8Array {
  if ((flags & FLAG_COMPRESSED) === 0) {
    if (bytes.length !== length) throw new FlashpackError('ECORRUPT', `payload of ${bytes.length} bytes for a ${length}-byte request`);
    return bytes;
  }
  const out = new Uint8Array(length);
  let n: number;
  try {
    n = decompressBlockInto(bytes, out);
  } catch (err) {
    throw new FlashpackError('ECORRUPT', `compressed payload of ${bytes.length} bytes does not decode: ${(err as Error).message}`, { cause: err });
  }
  if (n !== length) throw new FlashpackError('ECORRUPT', `compressed payload decodes to ${n} bytes, not the request's ${length}`);
  return out;
}
