/**
 * Every public failure of flashpack is a FlashpackError with a stable `code`
 * (like Node's fs errors) and a message that names the offending value.
 */
export type FlashpackErrorCode =
  | 'ECORRUPT' // input bytes are not a valid encoding (or fail a checksum)
  | 'EINVAL' // an argument is out of its documented range
  | 'ENOMEM' // the shared memory cannot hold the request
  | 'ENOTSUP' // valid input using a feature flashpack does not implement
  | 'ENOSPC'
  | 'ETIMEDOUT'
  | 'ENXIO' // the device is gone (removed, failed, closed)
  | 'EIO' // the device failed a command (media error, write fault): carries the NVMe status
  | 'EWORKER' // a worker thread died with the job in flight (it has been replaced)
  | 'ECANCELED' // the job was canceled (engine.close({ drain: false }))
  | 'EINTERNAL'; // a broken internal invariant: a bug, never bad input

export class FlashpackError extends Error {
  readonly code: FlashpackErrorCode;

  constructor(code: FlashpackErrorCode, message: string) {
    super(message);
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
