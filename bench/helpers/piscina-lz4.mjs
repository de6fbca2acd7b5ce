// piscina task: the same synchronous flashpack codec the engine runs.
import * as fp from '../../dist/index.js';

export default function compress(block) {
  return fp.lz4.compressBlock(block);
}
