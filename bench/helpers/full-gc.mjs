// A full garbage collection right before a measured phase, so the phase's GC
// share counts the garbage the phase makes, not what the phase before it (a
// read-back of the last volume, the raw LZ4 probe) left for the collector.
// v8's gc() is reached without --expose-gc on the command line: flags given
// there go to the volume's worker threads as well, and they refuse some.
import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

/** Collects everything unreachable now (a full, synchronous mark-compact). */
export function fullGc() {
  gc();
}
