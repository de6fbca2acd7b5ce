import { badArgument, invalid } from '../errors.js';
import type { Runtime } from '../wasm/runtime.js';

/**
 * Accepts any ArrayBufferView (Uint8Array, Buffer, DataView…) or ArrayBuffer as
 * bytes, without copying; EINVAL otherwise. `what` names the argument
 * ("lz4.compressBlock: src").
 */
export function bytesOf(data: ArrayBufferView | ArrayBuffer, what: string): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const buffer: unknown = data;
  if (buffer instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer)) {
    return new Uint8Array(buffer);
  }
  throw badArgument(what, 'a Uint8Array, another ArrayBufferView or an ArrayBuffer', data);
}

/** A non-negative safe integer argument up to `max`, or EINVAL naming it (`what`: "lz4.compressBound: n"). */
export function sizeArg(value: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw badArgument(what, max === Number.MAX_SAFE_INTEGER ? 'an integer from 0 to 2^53-1' : `an integer from 0 to ${max}`, value);
  }
  return value;
}

/** A u32 argument (a checksum, a seed half), or EINVAL naming it. */
export function u32Arg(value: unknown, what: string): number {
  if (typeof value !== 'number' || (value >>> 0) !== value) throw badArgument(what, 'an integer from 0 to 0xffffffff', value);
  return value;
}

/** An optional u32 seed (`what` names the function). */
export function seedArg(value: unknown, what: string, dflt: number): number {
  return value === undefined ? dflt : u32Arg(value, `${what}: seed`);
}

/**
 * A byte offset into the shared memory such that [ptr, ptr+bytes) lies inside
 * it, or EINVAL naming `what` ("crc32At: ptr"). `bytes` was checked by the caller.
 */
export function regionArg(rt: Runtime, ptr: unknown, bytes: number, what: string): number {
  const at = sizeArg(ptr, what);
  const end = at + bytes;
  // rt.u8 can lag a growth made through another instance; the memory cannot.
  if (end > rt.u8.length && end > rt.memory.buffer.byteLength) {
    throw invalid(`${what}: bytes ${at}..${end} lie outside the shared memory (${rt.memory.buffer.byteLength} bytes)`);
  }
  return at;
}
