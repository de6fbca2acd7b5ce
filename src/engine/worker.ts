/**
 * An engine worker: one WASM instance on the shared memory, a submission ring
 * it drains in bursts and a completion ring it fills. It parks in Atomics.wait
 * (never inside WASM) when idle and leaves when its submission ring is closed.
 * Runs as a node:worker_threads worker on Node and a Web Worker on Deno and Bun.
 */
import { parentPort, type ParentPort } from '../wasm/spawn.js';
import { instantiate } from '../wasm/runtime.js';
import { compressRegion } from '../codec/deflate.js';
import { readLayout } from '../shm/layout.js';
import { Ring } from '../shm/ring.js';
import { bufferSpanning } from '../shm/growth.js';
import {
  OP_NOP, OP_CRC32, OP_CRC32C, OP_ADLER32, OP_LZ4_COMPRESS, OP_LZ4_DECOMPRESS, OP_FINGERPRINT, OP_DEFLATE_COMPRESS, OP_INFLATE, OP_TEST_CRASH,
  STATUS_OK, STATUS_INCOMPRESSIBLE, STATUS_LZ4_ERROR_BASE, STATUS_SIZE_MISMATCH, STATUS_BAD_OP, STATUS_BAD_LINK,
  STATUS_INFLATE_ERROR, STATUS_OUTPUT_OVERFLOW,
  DOORBELL_COUNT, DOORBELL_SLEEPERS, type WorkerInit, type WorkerReply,
} from './jobs.js';
import { loadJobs, type JobHost, type JobRunner } from './registered-jobs.js';

const BURST = 64;

type Port = ParentPort<WorkerInit, WorkerReply>;

async function serve(init: WorkerInit, p: Port): Promise<void> {
  const { module, memory } = init;
  const ex = instantiate(memory, module);
  const L = readLayout(ex);
  const submit = new Ring(memory, L, init.submitAt);
  const complete = new Ring(memory, L, init.completeAt);
  let i32 = new Int32Array(memory.buffer);
  let u32 = new Uint32Array(memory.buffer);
  let u8 = new Uint8Array(memory.buffer);
  // The host may carve regions (a volume's known table) after this worker started: renew the
  // views once the growth reaches this thread (bufferSpanning waits for it).
  const covers = (end: number): boolean => {
    if (end <= u8.length) return true;
    const buf = bufferSpanning(memory, end);
    if (buf === null) return false;
    i32 = new Int32Array(buf);
    u32 = new Uint32Array(buf);
    u8 = new Uint8Array(buf);
    return true;
  };
  const doorbell = init.doorbellAt >> 2;
  const ctx = init.ctxAt;
  const descBase = u32[(init.poolAt + L.POOL_DESCS) >> 2] >> 2;
  const descWords = L.DESC_BYTES >> 2;
  const nDescs = u32[(init.poolAt + L.POOL_NDESCS) >> 2];
  const F = {
    buf: L.DESC_BUF >> 2, cap: L.DESC_CAP >> 2, len: L.DESC_LEN >> 2, op: L.DESC_OP >> 2, status: L.DESC_STATUS >> 2,
    checksum: L.DESC_CHECKSUM >> 2, link: L.DESC_LINK >> 2, arg: L.DESC_ARG >> 2, aux: L.DESC_AUX >> 2, result: L.DESC_RESULT >> 2,
  };
  const errWords = ctx >> 2;
  const deflateScratch = init.deflateScratchAt;
  const inflateScratch = init.inflateScratchAt;
  const inflateOutUsed = (inflateScratch + (ex.INFLATE_OUT_USED.value as number)) >> 2;
  const host = { exports: ex };

  // The output descriptor a codec job names in DESC_LINK (word index), or -1.
  const linked = (idx: number, d: number): number => {
    const link = u32[d + F.link];
    return link >= nDescs || link === idx ? -1 : descBase + link * descWords;
  };

  // Registered jobs, by op (an array: the lookup is on the hot path).
  const jobHost: JobHost = {
    exports: ex, fields: F, covers, linked, ctx, deflateScratch,
    get u8() {
      return u8;
    },
    get u32() {
      return u32;
    },
  };
  const registered: (JobRunner | undefined)[] = [];
  for (const [op, job] of await loadJobs(init.jobModules)) registered[op] = job.bind(jobHost);

  const run = (idx: number): void => {
    const d = descBase + idx * descWords;
    const op = u32[d + F.op];
    const buf = u32[d + F.buf];
    const len = u32[d + F.len];
    let status = STATUS_OK;
    switch (op) {
      case OP_NOP:
        break;
      case OP_CRC32:
        u32[d + F.checksum] = ex.crc32(buf, len, 0);
        break;
      case OP_CRC32C:
        u32[d + F.checksum] = ex.crc32c(buf, len, 0);
        break;
      case OP_ADLER32:
        u32[d + F.checksum] = ex.adler32(buf, len, 1);
        break;
      case OP_DEFLATE_COMPRESS:
      case OP_INFLATE: {
        const o = linked(idx, d);
        if (o < 0) {
          status = STATUS_BAD_LINK;
          break;
        }
        const arg = u32[d + F.arg];
        if (op === OP_DEFLATE_COMPRESS) {
          const size = compressRegion(host, deflateScratch, buf, len, u32[o + F.buf], u32[o + F.cap], arg & 255, arg >>> 8);
          if (size === 0) status = STATUS_INCOMPRESSIBLE;
          u32[o + F.len] = size;
        } else {
          ex.inflateInit(inflateScratch, arg);
          const r = ex.inflate(inflateScratch, buf, len, u32[o + F.buf], 0, u32[o + F.cap], 1);
          if (r < 0) {
            // The error record (kind, position low, value, value2, position high).
            const e = inflateScratch >> 2;
            status = STATUS_INFLATE_ERROR;
            u32[d + F.checksum] = u32[e];
            u32[d + F.aux] = u32[e + 1];
            u32[d + F.result] = u32[e + 2];
            u32[d + F.result + 1] = u32[e + 3];
            u32[d + F.result + 2] = u32[e + 4];
          } else if (r !== 0) {
            status = STATUS_OUTPUT_OVERFLOW;
          } else {
            u32[o + F.len] = u32[inflateOutUsed];
          }
        }
        break;
      }
      case OP_FINGERPRINT:
        ex.xxh128(buf, len, u32[d + F.arg], 0, (d + F.result) << 2, ctx);
        break;
      case OP_LZ4_COMPRESS:
      case OP_LZ4_DECOMPRESS: {
        const o = linked(idx, d);
        if (o < 0) {
          status = STATUS_BAD_LINK;
          break;
        }
        const arg = u32[d + F.arg];
        if (op === OP_LZ4_COMPRESS) {
          const size = ex.lz4Compress(buf, len, u32[o + F.buf], u32[o + F.cap], ctx, arg || 1);
          if (size === 0) status = STATUS_INCOMPRESSIBLE;
          u32[o + F.len] = size;
        } else {
          const cap = arg !== 0 ? Math.min(arg, u32[o + F.cap]) : u32[o + F.cap];
          const size = ex.lz4Decompress(buf, len, u32[o + F.buf], cap, 0, ctx);
          if (size < 0) {
            status = STATUS_LZ4_ERROR_BASE - i32[errWords];
            u32[d + F.checksum] = u32[errWords + 1];
            u32[d + F.aux] = u32[errWords + 2];
            u32[d + F.result] = u32[errWords + 3];
          } else {
            u32[o + F.len] = size;
            if (arg !== 0 && size !== arg) {
              status = STATUS_SIZE_MISMATCH;
              u32[d + F.aux] = size;
            }
          }
        }
        break;
      }
      case OP_TEST_CRASH:
        throw new Error(`engine worker ${init.index}: crash requested by descriptor ${idx}`);
      default: {
        const job = registered[op];
        status = job === undefined ? STATUS_BAD_OP : job(idx, d);
      }
    }
    i32[d + F.status] = status;
  };

  p.post({ type: 'ready', index: init.index });
  const batch = new Uint32Array(BURST);
  for (;;) {
    // A closed ring means leave now: the host has drained what it wanted done.
    if (submit.isClosed) break;
    const n = submit.dequeue(batch, BURST);
    if (n === 0) {
      submit.waitNotEmpty(Infinity, init.spins);
      continue;
    }
    for (let k = 0; k < n; k++) run(batch[k]);
    // The host never has more jobs in flight on this worker than the completion
    // ring holds, so this succeeds at once; wait only as a safety net.
    for (let put = 0; put < n; ) {
      put += complete.enqueue(batch, put, n - put);
      if (put < n) complete.waitNotFull(100);
    }
    Atomics.add(i32, doorbell + DOORBELL_COUNT, 1);
    if (Atomics.load(i32, doorbell + DOORBELL_SLEEPERS) !== 0) Atomics.notify(i32, doorbell + DOORBELL_COUNT);
  }
  p.post({ type: 'closed', index: init.index });
}

const p = await parentPort<WorkerInit, WorkerReply>();
// A module that failed to load fails the start: rethrown outside the promise, so every runtime reports it as the worker's error.
p.onInit((init) => {
  serve(init, p).catch((err: unknown) => setTimeout(() => {
    throw err;
  }));
});
