// Engine smoke suite under Node, Deno and Bun (run by test/runtimes.test.ts):
// results equal the synchronous codecs, the batch API, crash recovery, and both
// close modes. Prints one JSON line; exits non-zero on any failure.
import * as fp from '../../dist/index.js';
import { check, equal, report } from './report.mjs';
const text = new TextEncoder().encode('the engine runs the codecs in workers over rings in shared memory. '.repeat(400));
const blocks = [];
for (let off = 0; off + 4096 <= text.length; off += 4096) blocks.push(text.subarray(off, off + 4096));
const classes = [{ size: 4096, count: 256 }, { size: 65536, count: 8 }];

const engine = await fp.Engine.start({ workers: 2, runtime: new fp.Runtime(), classes });
check('two workers', engine.workers === 2);
const results = await Promise.all(blocks.map(async (b) => {
  const packed = await engine.lz4.compressBlock(b);
  const back = await engine.lz4.decompressBlock(packed, b.length);
  return (await engine.crc32(b)) === fp.crc32(b) && (await engine.crc32c(b)) === fp.crc32c(b) && equal(packed, fp.lz4.compressBlock(b)) && equal(back, b) &&
    equal(await engine.fingerprint(b), fp.fingerprint(b)) &&
    equal(await engine.deflate.decompress(await engine.deflate.compress(b, { format: 'gzip' }), { format: 'gzip', originalSize: b.length }), b);
}));
check('promise API equals the synchronous codecs', results.every(Boolean));
try {
  await engine.lz4.decompressBlock(Uint8Array.of(0x10, 0x61, 70, 0, 0x50, 1, 2, 3, 4, 5), 100);
  check('corrupt block rejects', false);
} catch (e) {
  check('corrupt block rejects with ECORRUPT', e instanceof fp.FlashpackError && e.code === 'ECORRUPT');
}
// Batch API
const ds = blocks.map((b) => {
  const d = engine.pool.alloc(4096);
  engine.pool.write(d, b);
  engine.prepare(d, fp.jobs.OP_CRC32);
  return d;
});
let sent = engine.submit(ds);
const done = [];
while (done.length < ds.length) {
  await engine.waitForCompletions();
  done.push(...engine.poll());
  sent += engine.submit(ds.slice(sent));
}
check('batch API completes every job', new Set(done).size === ds.length);
check('batch API results', ds.every((d, i) => engine.checksumOf(d) === fp.crc32(blocks[i])));
ds.forEach((d) => engine.pool.free(d));
// Crash recovery
const crash = engine.pool.alloc(16);
engine.prepare(crash, fp.jobs.OP_TEST_CRASH);
engine.submit([crash]);
while (engine.poll().length === 0) await engine.waitForCompletions();
check('crashed job reports STATUS_WORKER_CRASHED', engine.statusOf(crash) === fp.jobs.STATUS_WORKER_CRASHED);
engine.pool.free(crash);
check('crash counted', engine.crashes === 1);
check('replacement worker serves jobs', (await engine.crc32(blocks[0])) === fp.crc32(blocks[0]));
// Close, draining jobs in flight
const drained = Promise.all(blocks.map((b) => engine.crc32(b)));
await engine.close();
check('close drains jobs in flight', (await drained).every((v, i) => v === fp.crc32(blocks[i])));
// Close, canceling
const e2 = await fp.Engine.start({ workers: 1, runtime: new fp.Runtime(), classes });
const canceled = Promise.allSettled(blocks.concat(blocks, blocks).map((b) => e2.lz4.compressBlock(b)));
await e2.close({ drain: false });
const settled = await canceled;
check('cancel settles every call with a result or ECANCELED', settled.every((s) => s.status === 'fulfilled' || s.reason.code === 'ECANCELED'));

report();
