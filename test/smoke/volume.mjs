// Volume smoke suite under Node, Deno and Bun (run by test/runtimes.test.ts):
// a volume on a file (create, unaligned and duplicate writes, zero blocks,
// discard, flush, close, reopen), one on a fault backend (power cut after a
// flush, recovery), and one whose logical and physical sizes grow online. Prints one JSON line; exits non-zero on any failure.
// Deno needs --allow-read --allow-write (the file), --allow-env (temp dir) and
// --allow-run (a child that writes and exits without close).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fp from '../../dist/index.js';
import { check, equal, report } from './report.mjs';

const { Volume, nvme } = fp;
const text = new TextEncoder().encode('a volume keeps blocks reduced: zero, dedupe, compress, pack. '.repeat(300));
const block = (i) => {
  const b = new Uint8Array(4096);
  b.set(text.subarray(i % 64, (i % 64) + 4096));
  b[0] = i & 255;
  return b;
};

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-volume-'));
try {
  const image = path.join(dir, 'volume.img');
  let v = await Volume.create(image, { logicalSize: 8 << 20, workers: 1 });
  await Promise.all(Array.from({ length: 64 }, (_, i) => v.write(i * 4096, block(i % 16))));
  await v.write(100 * 4096, new Uint8Array(4096));
  await v.write(5000, new TextEncoder().encode('unaligned'));
  await v.discard(40 * 4096, 8 * 4096);
  await v.flush();
  const s = v.stats();
  check('duplicates share blocks', s.dataBlocksUsed < 16);
  check('compressed fragments were packed', s.compressedFragmentsWritten > 0 && s.compressedBlocksWritten > 0);
  check('zero block allocates nothing', s.zeroBlocksWritten === 1);
  const expect0 = block(1).slice();
  expect0.set(new TextEncoder().encode('unaligned'), 5000 - 4096);
  check('unaligned write reads back', equal(await v.read(4096, 4096), expect0));
  check('discarded range reads zeroes', (await v.read(40 * 4096, 8 * 4096)).every((x) => x === 0));
  await v.close();
  v = await Volume.open(image, { workers: 1 });
  check('reopened volume keeps its codec', v.codec === 'lz4');
  check('reopened volume reads every block', equal(await v.read(63 * 4096, 4096), block(63 % 16)) && equal(await v.read(4096, 4096), expect0));
  check('reopened volume keeps the discard', (await v.read(44 * 4096, 4096)).every((x) => x === 0));
  await v.close();

  const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 8 << 20 }));
  let w = await Volume.create(fault, { logicalSize: 8 << 20, codec: 'deflate', workers: 1 });
  await Promise.all(Array.from({ length: 32 }, (_, i) => w.write(i * 4096, block(i))));
  await w.flush();
  await Promise.all(Array.from({ length: 32 }, (_, i) => w.write(i * 4096, block(i + 100))));
  fault.powerCut({ mode: 'drop' });
  await w.abandon();
  fault.powerOn();
  w = await Volume.open(fault, { workers: 1 });
  let flushed = true;
  for (let i = 0; i < 32; i++) flushed &&= equal(await w.read(i * 4096, 4096), block(i));
  check('after a power cut every flushed write reads back', flushed);
  check('recovered volume uses deflate', w.codec === 'deflate');
  await w.write(0, block(7));
  await w.flush();
  check('recovered volume takes new writes', equal(await w.read(0, 4096), block(7)));
  await w.close();

  // One writer: a second open is EBUSY; read-only opens share and never write.
  v = await Volume.open(image, { workers: 1 });
  const busy = await Volume.open(image, { workers: 1, readOnly: true }).then(() => 'ok', (e) => e.code);
  check('a second open of an open volume is EBUSY', busy === 'EBUSY');
  await v.close();
  const before = fs.readFileSync(image);
  // (`await using` where the syntax exists; Node 20 has Symbol.asyncDispose but not the syntax.)
  const r1 = await Volume.open(image, { workers: 1, readOnly: true });
  const r2 = await Volume.open(image, { workers: 1, readOnly: true });
  check('read-only opens share the volume', equal(await r2.read(63 * 4096, 4096), block(63 % 16)) && r1.readOnly);
  check('a read-only volume refuses writes with EROFS', (await r1.write(0, new Uint8Array(1)).then(() => 'ok', (e) => e.code)) === 'EROFS');
  await r1[Symbol.asyncDispose]();
  await r2[Symbol.asyncDispose]();
  check('read-only opens leave the image byte-identical', Buffer.compare(before, fs.readFileSync(image)) === 0);
  check('Symbol.asyncDispose released the lock', !fs.existsSync(`${image}.lock`));

  // A child of this runtime writes and ends without flush or close.
  const exitImage = path.join(dir, 'exit.img');
  const writer = new URL('./exit-writer.mjs', import.meta.url).pathname;
  const child = typeof Deno !== 'undefined'
    ? new Deno.Command(Deno.execPath(), { args: ['run', '--allow-read', '--allow-write', '--allow-env=TMPDIR,TMP,TEMP', writer, exitImage], stdout: 'null' }).outputSync().code
    : (await import('node:child_process')).spawnSync(process.execPath, [writer, exitImage], { stdio: 'ignore' }).status;
  check('a script that ends without close exits 0', child === 0);
  const x = await Volume.open(exitImage, { workers: 1 });
  let kept = equal(await x.read(64 * 4096, 14), new TextEncoder().encode('the last write'));
  for (let i = 0; i < 64; i++) kept &&= (await x.read(i * 4096, 4096)).every((b) => b === i + 1);
  check('every acknowledged write survives a clean exit without close', kept);
  await x.close();

  // Online growth of both sizes: the image file is extended, the device workers take the new blocks.
  const grown = path.join(dir, 'grown.img');
  let g = await Volume.create(grown, { logicalSize: 8 << 20, physicalSize: 4 << 20, workers: 1 });
  const noise = (i) => {
    const b = new Uint8Array(4096);
    let x = (i + 1) * 2654435761;
    for (let k = 0; k < 4096; k++) b[k] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
    return b;
  };
  for (let i = 0; i < 700; i++) await g.write(i * 4096, noise(i));
  await g.resize({ logicalSize: 16 << 20, physicalSize: 16 << 20 });
  check('resize extends the image file', fs.statSync(grown).size === 16 << 20 && g.physicalSize === 16 << 20);
  for (let i = 700; i < 2500; i++) await g.write(i * 4096, noise(i));
  await g.close();
  g = await Volume.open(grown, { workers: 1 });
  let all = g.physicalSize === 16 << 20 && g.logicalSize === 16 << 20;
  for (let i = 0; i < 2500; i += 7) all &&= equal(await g.read(i * 4096, 4096), noise(i));
  check('a grown volume reopens with every block', all);
  await g.close();

  // A volume of 64 KiB blocks: whole blocks packed, unaligned writes read-modify-write, reopened.
  const big = path.join(dir, 'big.img');
  let b = await Volume.create(big, { logicalSize: 8 << 20, blockBytes: 65536, workers: 1 });
  const chunk = new TextEncoder().encode('a volume keeps blocks reduced: zero, dedupe, compress, pack. '.repeat(1100)).subarray(0, 65536);
  for (let i = 0; i < 32; i++) await b.write(i * 65536, chunk);
  await b.write(100_000, noise(1));
  await b.flush();
  const bs = b.stats();
  check('64 KiB blocks: duplicates dedupe, the packer packs', bs.blockBytes === 65536 && bs.dataBlocksUsed <= 3 && bs.compressedFragmentsWritten > 0);
  await b.close();
  b = await Volume.open(big, { workers: 1 });
  const want = new Uint8Array(32 * 65536);
  for (let i = 0; i < 32; i++) want.set(chunk, i * 65536);
  want.set(noise(1), 100_000);
  check('64 KiB blocks: reopened, every byte reads back', b.blockBytes === 65536 && equal(await b.read(0, want.length), want));
  await b.close();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
report();
