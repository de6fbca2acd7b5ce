/**
 * Attaching a volume's machinery to its image: the lock, a fresh runtime with
 * the engine and its buffer classes sized from the options, the controller and
 * its device workers; and the superblock copies at blocks 0 and 1. Every step
 * that fails gives back what the steps before it took.
 */
import { FlashpackError } from '../errors.js';
import { Engine } from '../engine/engine.js';
import { Controller } from '../nvme/controller.js';
import type { Backend } from '../nvme/backend.js';
import { Runtime } from '../wasm/runtime.js';
import { SlabPool } from '../shm/slab.js';
import { availableCores } from '../wasm/spawn.js';
import { BlockDevice } from './block-device.js';
import { STAGING_BYTES } from './data-writer.js';
import { PREPARE_JOB_MODULE } from './prepare-job.js';
import { VolumeLock, takeBackend, type LockMode } from './volume-lock.js';
import { EMPTY_PROBE_BYTES, describeHead } from './image-file.js';
import { DEFAULT_CACHE_PAGES, DEFAULT_MAX_INFLIGHT, type OpenOptions } from './volume-options.js';
import {
  BLOCK_BYTES, FORMAT_VERSION_REASON, OLDER_FORMAT_HOWTO, SUPERBLOCK_COPIES, decodeSuperblock, encodeSuperblock, type Superblock,
} from './encodings.js';

/** Staging buffers for gathered data writes (data-writer.ts). */
const STAGING_BUFFERS = 16;
/** 4 KiB buffers kept for reuse beyond the pipeline's two per write: reads, dedupe checks, journal and map I/O. */
const KEPT_SPARE_BUFFERS = 256;

/** What an open volume holds on its image: the lock, released at close. */
export interface Hold {
  release(): void;
  /** The image path, or "a volume" for a backend object (for messages). */
  name: string;
}

export interface Attached {
  engine: Engine;
  ctrlr: Controller;
  dev: BlockDevice;
  /** Device-worker spin while writes are not streaming; 0 = leave the controller's setting alone (a core is free). */
  idleSpin: number;
}

/**
 * Locks the target for `mode`, makes a path's backend under the lock, and
 * attaches the engine and controller; the lock is released again if any
 * step fails.
 */
export async function holdAndAttach(target: string | Backend, mode: LockMode, opts: OpenOptions, fileBackend: (path: string) => Backend): Promise<Attached & { hold: Hold }> {
  let hold: Hold;
  if (typeof target === 'string') {
    const lock = VolumeLock.take(target, mode);
    hold = { release: () => lock.release(), name: target };
  } else {
    hold = { release: takeBackend(target, mode), name: 'a volume' };
  }
  try {
    const backend = typeof target === 'string' ? fileBackend(target) : target;
    return { hold, ...(await attach(backend, opts)) };
  } catch (err) {
    hold.release();
    throw err;
  }
}

export async function attach(backend: Backend, opts: OpenOptions): Promise<Attached> {
  // A volume's pools and queues are carved from a runtime's memory for good; a
  // fresh runtime per volume gives all of it back when the volume is closed.
  const inflight = opts.maxInflight ?? DEFAULT_MAX_INFLIGHT;
  const cachePages = opts.cachePages ?? DEFAULT_CACHE_PAGES;
  // 4 KiB buffers: two per write in the pipeline (its data and its compressed form), the
  // block map cache, and room for reads, dedupe checks and journal blocks. Sized from the
  // options, so a deep pipeline cannot take the buffers its own writes need to finish.
  const buffers = Math.max(8192, 2 * inflight + cachePages + 2048);
  // The main thread, the engine workers and the device workers are all busy during
  // a write stream: with no core to spare, an idle worker that spins only takes
  // time from the thread it waits for (on 2 cores, ingest ran 10–20% faster
  // with workers that park at once). Engine workers only work for writes, so they
  // park at once; device workers park at once while writes stream through the
  // pipeline (SPIN_OFF_WRITES) and spin otherwise, so a read at low queue depth
  // costs no wake-up.
  const cores = await availableCores();
  const workers = opts.workers ?? Math.max(1, cores - 1);
  const ioWorkers = opts.ioWorkers ?? Math.min(4, Math.max(1, cores - 1));
  const oversubscribed = 1 + workers + ioWorkers > cores;
  const rt = opts.runtime ?? new Runtime();
  const pool = SlabPool.create(rt, [{ size: 4096, count: buffers }, { size: STAGING_BYTES, count: STAGING_BUFFERS }]);
  // The engine's workers and the device workers start side by side (each takes tens of ms to spawn).
  const [started, opened] = await Promise.allSettled([
    Engine.start({ runtime: rt, pool, workers, spinIterations: oversubscribed ? 0 : undefined, jobs: [PREPARE_JOB_MODULE] }),
    Controller.open(backend, { runtime: rt, pool, ioWorkers }),
  ]);
  if (started.status === 'rejected' || opened.status === 'rejected') {
    if (started.status === 'fulfilled') await started.value.close();
    if (opened.status === 'fulfilled') await opened.value.close();
    throw started.status === 'rejected' ? started.reason : (opened as PromiseRejectedResult).reason;
  }
  const engine = started.value;
  const ctrlr = opened.value;
  // The main thread allocates and frees every buffer: it reuses the ones it freed
  // last (in the CPU cache, and in pages already faulted in) instead of cycling
  // through the whole pool. Enough for the pipeline's working set, faulted in
  // now rather than by the first writes.
  pool.keepFreed(4096, Math.min(buffers, 2 * inflight + KEPT_SPARE_BUFFERS), true);
  pool.keepFreed(STAGING_BYTES, STAGING_BUFFERS, true);
  return { engine, ctrlr, dev: new BlockDevice(ctrlr), idleSpin: oversubscribed ? ctrlr.spinIterations : 0 };
}

export async function detach(engine: Engine, ctrlr: Controller): Promise<void> {
  await ctrlr.close();
  await engine.close();
}

/** A backend must read as zeroes at its start (EEXIST otherwise, naming what it holds). */
export async function refuseUnlessBlank(engine: Engine, dev: BlockDevice): Promise<void> {
  const blocks = Math.min(dev.blocks, EMPTY_PROBE_BYTES / BLOCK_BYTES);
  const d = await engine.pool.allocAsync(STAGING_BYTES);
  try {
    await dev.read(0, d, blocks);
    const head = engine.pool.bytes(d, true).slice(0, blocks * BLOCK_BYTES);
    if (!head.every((b) => b === 0)) {
      throw new FlashpackError('EEXIST', `Volume.create: the backend already holds ${describeHead(head)}; pass { overwrite: true } to format over it`);
    }
  } finally {
    engine.pool.free(d);
  }
}

export async function writeSuperblocks(engine: Engine, dev: BlockDevice, sb: Superblock, copies: number[]): Promise<void> {
  const d = engine.pool.alloc(4096);
  try {
    encodeSuperblock(sb, engine.pool.bytes(d, true));
    for (const c of copies) await dev.write(c, d, true);
  } finally {
    engine.pool.free(d);
  }
}

/** Both copies; the valid one with the higher generation. Neither valid: ECORRUPT naming both reasons. */
export async function readSuperblock(engine: Engine, dev: BlockDevice): Promise<Superblock> {
  const d = engine.pool.alloc(4096);
  const found: (Superblock | string)[] = [];
  try {
    for (let c = 0; c < SUPERBLOCK_COPIES; c++) {
      await dev.read(c, d);
      found.push(decodeSuperblock(engine.pool.bytes(d, true)));
    }
  } finally {
    engine.pool.free(d);
  }
  const valid = found.filter((f): f is Superblock => typeof f !== 'string');
  if (valid.length === 0) {
    const other = found.find((f) => typeof f === 'string' && f.startsWith(FORMAT_VERSION_REASON));
    if (other !== undefined) throw new FlashpackError('ENOTSUP', `volume: superblock of ${other}: to move it to this format, ${OLDER_FORMAT_HOWTO}`);
    throw new FlashpackError('ECORRUPT', `volume: no valid superblock (copy A: ${found[0]}; copy B: ${found[1]})`);
  }
  valid.sort((a, b) => b.generation - a.generation);
  return valid[0];
}
