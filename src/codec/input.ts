import { invalid } from '../errors.js';

/** Accepts any ArrayBufferView (Uint8Array, Buffer, DataView…) as bytes, without copying. */
export function bytesOf(data: ArrayBufferView | ArrayBuffer, what: string): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const buffer: unknown = data;
  if (buffer instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer)) {
    return new Uint8Array(buffer);
  }
  throw invalid(`${what}: expected a Uint8Array or ArrayBufferView, got ${data === null ? 'null' : typeof data}`);
}

/** A non-negative safe integer argument, or EINVAL naming it. */
export function sizeArg(value: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw invalid(`${what}: expected an integer from 0 to ${max}, got ${String(value)}`);
  }
  return value;
}

/** An optional u32 seed. */
export function seedArg(value: unknown, what: string, dflt: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw invalid(`${what}: seed must be an integer from 0 to 0xffffffff, got ${String(value)}`);
  }
  return value;
}
