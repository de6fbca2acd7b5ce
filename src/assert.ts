/**
 * Assertions on invariants the code relies on (TigerBeetle style). A failed
 * one is a bug in flashpack, never bad input: it throws EINTERNAL with what
 * was expected, and the caller fails the operation (a volume fails itself)
 * rather than going on to write what a broken invariant would produce.
 *
 * assert() takes a constant message, so the check allocates nothing; where
 * the message needs values, test the condition and throw assertionFailed().
 */
import { FlashpackError } from './errors.js';

export function assertionFailed(what: string): FlashpackError {
  return new FlashpackError('EINTERNAL', `assertion failed: ${what}`);
}

export function assert(condition: boolean, what: string): asserts condition {
  if (!condition) throw assertionFailed(what);
}
