/**
 * Every public failure of flashpack is a FlashpackError with a stable `code`
 * (like Node's fs errors) and a message that names the offending value and
 * its type. An operating-system error behind a failure is kept as `cause`.
 */
export type FlashpackErrorCode =
  | 'ECORRUPT' // input bytes are not a valid encoding (or fail a checksum)
  | 'EINVAL' // an argument is missing, of the wrong type, or out of its documented range
  | 'ENOMEM' // the shared memory (or a pool) cannot hold the request
  | 'ENOTSUP' // valid input using a feature flashpack does not implement
  | 'ENOSPC' // no room: a full volume, or an output buffer too small for the result
  | 'ETIMEDOUT'
  | 'ENXIO' // the device or object is gone: removed, failed, or closed (Volume, Engine, Controller, qpair alike)
  | 'EIO' // the device failed a command (media error, write fault): carries the NVMe status
  | 'EWORKER' // a worker thread died with the job in flight (it has been replaced)
  | 'ECANCELED' // the job was canceled (engine.close({ drain: false }))
  | 'ENOENT' // a path that does not exist (the OS error is the cause)
  | 'EACCES' // the OS refused access to a path (the OS error is the cause)
  | 'EEXIST' // create() found something at the path, and overwrite was not asked for
  | 'EBUSY' // the volume is open elsewhere (the message names the holder)
  | 'EROFS' // a write to a volume opened read-only
  | 'EINTERNAL'; // a broken internal invariant: a bug, never bad input

export class FlashpackError extends Error {
  readonly code: FlashpackErrorCode;

  constructor(code: FlashpackErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FlashpackError';
    this.code = code;
  }
}

export function invalid(message: string): FlashpackError {
  return new FlashpackError('EINVAL', message);
}

export function corrupt(message: string): FlashpackError {
  return new FlashpackError('ECORRUPT', message);
}

/** Hex for messages: 0x0000abcd. */
export function hex32(v: number): string {
  return '0x' + (v >>> 0).toString(16).padStart(8, '0');
}

/**
 * A short description of any value for an error message: its type and, for
 * small primitives, the value itself — never a dump of a large array or object
 * (`a Uint8Array of 4096 bytes`, `the string '4096'`, `the number 1.5`).
 */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  switch (typeof v) {
    case 'number':
      return `the number ${v}`;
    case 'bigint':
      return `the bigint ${v}n`;
    case 'boolean':
      return `the boolean ${v}`;
    case 'string':
      return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
    case 'symbol':
      return `a symbol`;
    case 'function':
      return `a function`;
  }
  if (ArrayBuffer.isView(v)) return `${article(v.constructor.name)} of ${v.byteLength} bytes`;
  if (v instanceof ArrayBuffer) return `an ArrayBuffer of ${v.byteLength} bytes`;
  if (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer) return `a SharedArrayBuffer of ${v.byteLength} bytes`;
  if (Array.isArray(v)) return `an array of ${v.length} elements`;
  const name = (v as object).constructor?.name;
  return name && name !== 'Object' ? article(name) : 'an object';
}

function article(name: string): string {
  return (/^[AEIOU]/.test(name) && !name.startsWith('Uint') ? 'an ' : 'a ') + name; // a Uint8Array, an Int32Array
}

/** EINVAL: `what` must be `expected`, naming what it got: "volume.write: offset must be a whole number of bytes ≥ 0, got the string '4096'". */
export function badArgument(what: string, expected: string, got: unknown): FlashpackError {
  return invalid(`${what} must be ${expected}, got ${describe(got)}`);
}

/** A non-negative safe integer, or EINVAL naming the argument and what it got. */
export function checkIndex(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw badArgument(what, 'a whole number ≥ 0', v);
  return v;
}

/** An options argument: undefined (→ {}), or a plain object; EINVAL otherwise. */
export function checkOptions<T extends object>(what: string, v: T | undefined): T {
  if (v === undefined) return {} as T;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw badArgument(what, 'an options object', v);
  return v;
}

/** An integer from `min` to `max`, or EINVAL naming the argument and what it got. */
export function checkInteger(what: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw badArgument(what, `an integer from ${min} to ${max}`, v);
  return v;
}

/** A boolean option (undefined → `dflt`), or EINVAL naming it. */
export function checkBoolean(what: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw badArgument(what, 'a boolean', v);
  return v;
}

/** ENXIO for a call on something closed or freed: "engine.submit after close()". */
export function afterClose(what: string, closedBy = 'close()'): FlashpackError {
  return new FlashpackError('ENXIO', `${what} after ${closedBy}`);
}

/** A callback argument, or EINVAL naming it. */
export function checkFunction(what: string, v: unknown): void {
  if (typeof v !== 'function') throw badArgument(what, 'a function', v);
}

/**
 * An operating-system error (node:fs, Deno, Bun) as a FlashpackError: ENOENT
 * and EACCES/EPERM keep their codes, EEXIST too, anything else is EIO; the OS
 * error is the cause.
 */
export function fromOsError(err: unknown, message: string): FlashpackError {
  const os = (err as { code?: string } | null)?.code;
  const code: FlashpackErrorCode =
    os === 'ENOENT' || os === 'ENOTDIR' ? 'ENOENT'
    : os === 'EACCES' || os === 'EPERM' ? 'EACCES'
    : os === 'EEXIST' ? 'EEXIST'
    : os === 'EROFS' ? 'EROFS'
    : os === 'EBUSY' ? 'EBUSY'
    : os === 'EISDIR' ? 'EINVAL'
    : 'EIO';
  const why = err instanceof Error ? err.message : String(err);
  return new FlashpackError(code, `${message}: ${why}`, { cause: err });
}
