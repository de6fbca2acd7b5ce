// NVMe smoke suite under Node, Deno and Bun (run by test/runtimes.test.ts):
// device workers over memory and file backends, split I/O, queue-full
// queueing, hot removal, power cut 'drop' and 'keep', and close. Prints one
// JSON line; exits non-zero on any failure. Deno needs --allow-read
// --allow-write (the file backend) and --allow-env (the temp directory).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fp from '../../dist/index.js';
import { check, equal, report } from './report.mjs';

const { nvme } = fp;
const BS = 4096;
const DEADLINE_MS = 20_000;

/** `blocks` blocks whose bytes depend on (tag, block, offset). */
function pattern(tag, lba, blocks, bs = BS) {
  const out = new Uint8Array(blocks * bs);
  for (let i = 0; i < out.length; i++) {
    const b = lba + Math.floor(i / bs);
    out[i] = (tag * 131 + b * 31 + (i % bs) * 7 + ((i % bs) >> 8)) & 0xff;
  }
  return out;
}

/** One controller, one queue pair and promise wrappers over the callback API. */
async function host(backend, ioWorkers = 2, qpOpts = {}) {
  const c = await nvme.Controller.open(backend, { runtime: new fp.Runtime(), ioWorkers });
  const qp = c.allocIoQpair(qpOpts);
  const ns = c.ns(1);
  const h = {
    c, qp, ns, pending: 0, calls: 0,
    submit(fn) {
      return new Promise((resolve, reject) => {
        h.pending++;
        try {
          fn((st) => {
            h.calls++;
            h.pending--;
            resolve(st);
          });
        } catch (e) {
          h.pending--;
          reject(e);
        }
      });
    },
    async drain() {
      const deadline = performance.now() + DEADLINE_MS;
      while (h.pending > 0) {
        if (performance.now() > deadline) throw new Error(`${h.pending} commands did not complete in ${DEADLINE_MS} ms`);
        qp.processCompletions(0);
        if (h.pending === 0) break;
        if (qp.outstandingCount > 0) await qp.waitForCompletions(50);
        else await new Promise((r) => setTimeout(r, 1));
      }
    },
    writeAsync(lba, data, flags = 0) {
      const d = c.pool.alloc(data.length);
      c.pool.bytes(d, true).set(data);
      return h.submit((cb) => qp.write(ns, d, lba, data.length / ns.blockSize, cb, undefined, flags)).finally(() => c.pool.free(d));
    },
    async write(lba, data, flags = 0) {
      const p = h.writeAsync(lba, data, flags);
      await h.drain();
      return p;
    },
    async read(lba, count) {
      const d = c.pool.alloc(count * ns.blockSize);
      try {
        const p = h.submit((cb) => qp.read(ns, d, lba, count, cb));
        await h.drain();
        const st = await p;
        return st.isError ? null : c.pool.bytes(d, true).slice(0, count * ns.blockSize);
      } finally {
        c.pool.free(d);
      }
    },
    async flush() {
      const p = h.submit((cb) => qp.flush(ns, cb));
      await h.drain();
      return p;
    },
  };
  return h;
}

const codeOf = (fn) => {
  try {
    fn();
  } catch (e) {
    return e.code;
  }
  return 'none';
};

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-nvme-smoke-'));
const controllers = [];
try {
  // Memory backend: round trip, and one I/O larger than MDTS (split into children).
  const mem = new nvme.MemoryBackend({ size: 256 * BS, blockSize: BS });
  const h = await host(mem);
  controllers.push(h.c);
  check('memory: write succeeds', !(await h.write(3, pattern(1, 3, 2))).isError);
  check('memory: read back equals', equal(await h.read(3, 2), pattern(1, 3, 2)));
  check('memory: the medium holds the bytes', equal(mem.bytes().subarray(3 * BS, 5 * BS), pattern(1, 3, 2)));
  const big = 3 * h.ns.maxTransferBlocks + 5;
  check('split: the I/O becomes several commands', nvme.childCount(10, big, h.ns.maxTransferBlocks, 0) === 4);
  check('split: write and read back', !(await h.write(10, pattern(2, 10, big))).isError && equal(await h.read(10, big), pattern(2, 10, big)));

  // Queue-full queueing: 4 entries, 3 trackers; the rest wait in the software queue.
  const small = h.c.allocIoQpair({ ioQueueSize: 4 });
  {
    const ps = [];
    let done = 0;
    const descs = [];
    for (let i = 0; i < 10; i++) {
      const d = h.c.pool.alloc(BS);
      descs.push(d);
      h.c.pool.bytes(d, true).set(pattern(3, 100 + i, 1));
      ps.push(new Promise((resolve) => small.write(h.ns, d, 100 + i, 1, (st) => {
        done++;
        resolve(st);
      })));
    }
    check('queue full: requests wait in the software queue', small.outstandingCount === 3 && small.queuedCount === 7);
    const deadline = performance.now() + DEADLINE_MS;
    while (done < 10 && performance.now() < deadline) {
      small.processCompletions(0);
      if (done < 10) await small.waitForCompletions(50);
    }
    const sts = await Promise.all(ps);
    descs.forEach((d) => h.c.pool.free(d));
    check('queue full: every queued write completes successfully', done === 10 && sts.every((s) => !s.isError));
    check('queue full: data lands', equal(await h.read(100, 10), pattern(3, 100, 10)));
    h.c.freeIoQpair(small);
  }

  // Close: new commands are refused afterwards.
  await h.c.close();
  check('close: submissions after close are ENXIO', codeOf(() => h.qp.flush(h.ns, () => {})) === 'ENXIO');

  // File backend in a temp directory: round trip, data at lba × block size in the file.
  const file = path.join(dir, 'ns.img');
  const fb = new nvme.FileBackend(file, { blockSize: 512, size: 1024 * 512 });
  check('file: created at the requested size', fs.statSync(file).size === 1024 * 512 && fb.blocks === 1024);
  const f = await host(fb);
  controllers.push(f.c);
  const fbig = f.ns.maxTransferBlocks + 44;
  check('file: write (split), FUA write and flush succeed', !(await f.write(7, pattern(4, 7, fbig, 512))).isError &&
    !(await f.write(900, pattern(5, 900, 2, 512), nvme.IO_FLAGS_FUA)).isError && !(await f.flush()).isError);
  check('file: read back equals', equal(await f.read(7, fbig), pattern(4, 7, fbig, 512)));
  const disk = fs.readFileSync(file);
  check('file: bytes sit at lba × 512 in the file', equal(disk.subarray(7 * 512, (7 + fbig) * 512), pattern(4, 7, fbig, 512)) &&
    equal(disk.subarray(900 * 512, 902 * 512), pattern(5, 900, 2, 512)));
  check('file: a missing path without size is ENOENT', codeOf(() => new nvme.FileBackend(path.join(dir, 'missing.img'))) === 'ENOENT');
  await f.c.close();

  // Hot removal: commands in flight fail with a path error; new ones are ENXIO.
  const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }));
  const r = await host(fault);
  controllers.push(r.c);
  fault.setLatency({ writeUs: 100_000 });
  const inflight = Array.from({ length: 6 }, (_, i) => r.writeAsync(i, pattern(6, i, 1)));
  await new Promise((res) => setTimeout(res, 20));
  fault.remove();
  await r.drain();
  const rst = await Promise.all(inflight);
  check('removal: in-flight commands complete once each with a path error', r.calls === 6 && rst.every((s) => s.isError ? s.sct === nvme.SCT_PATH : true) && rst.some((s) => s.sct === nvme.SCT_PATH));
  check('removal: new submissions are ENXIO', codeOf(() => r.qp.flush(r.ns, () => {})) === 'ENXIO' && codeOf(() => r.c.allocIoQpair()) === 'ENXIO');
  await r.c.close();
  check('removal: close resolves', true);

  // Power cut: 'drop' loses unflushed writes and keeps flushed and FUA ones; 'keep' keeps them.
  for (const mode of ['drop', 'keep']) {
    const pf = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }));
    const a = await host(pf);
    controllers.push(a.c);
    await a.write(0, pattern(7, 0, 16));
    await a.flush();
    await a.write(0, pattern(8, 0, 4)); // unflushed
    await a.write(8, pattern(9, 8, 4), nvme.IO_FLAGS_FUA);
    const rep = pf.powerCut({ mode });
    await a.c.close();
    pf.powerOn();
    const b = await host(pf, 1);
    controllers.push(b.c);
    const got = await b.read(0, 16);
    const want = new Uint8Array(pattern(7, 0, 16));
    if (mode === 'keep') want.set(pattern(8, 0, 4), 0);
    want.set(pattern(9, 8, 4), 8 * BS);
    check(`power cut '${mode}': ${mode === 'drop' ? 'unflushed writes lost' : 'unflushed writes kept'}, flushed and FUA data survive`, equal(got, want));
    check(`power cut '${mode}': report`, rep.sectorsReverted === (mode === 'drop' ? 4 * 8 : 0));
    await b.c.close();
  }
} catch (e) {
  check(`no exception (${e?.stack ?? e})`, false);
} finally {
  await Promise.all(controllers.map((c) => c.close()));
  fs.rmSync(dir, { recursive: true, force: true });
}
check('temp directory removed', !fs.existsSync(dir));

report();
