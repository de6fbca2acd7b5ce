import { expect } from 'vitest';
import { FlashpackError } from '../../dist/index.js';

/** The FlashpackError code a promise rejects with, or 'ok'. Anything else than a FlashpackError fails the test. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(FlashpackError);
    return (err as FlashpackError).code;
  }
}
