/**
 * The engine trip (dm-vdo's hash and compress steps, here one job per block
 * in the engine's workers: vdo/prepare-job.ts): writes added in one microtask
 * wave go to the engine as one burst, and each answer moves its write on
 * synchronously through `prepared(job, status)`.
 *
 * Invariants: a write is added only in stage PREPARING (asserted) and is
 * either queued here, on the engine, or handed back (prepared or failed) —
 * exactly once per add; a write going back for compression is sent without
 * the known table, so it is compressed whatever the index says.
 */
import { FlashpackError } from '../errors.js';
import { assertionFailed } from '../assert.js';
import type { Engine } from '../engine/engine.js';
import { Stage, STAGE_NAMES, type DataVio } from './data-vio.js';
import { OP_PREPARE_BLOCK, PREPARE_CODEC_DEFLATE, PREPARE_CODEC_LZ4, PREPARE_CODEC_NONE, prepareArg } from './prepare-job.js';
import type { Codec } from './encodings.js';

/** Deflate level of a volume's compression (speed over ratio, as LZ4's default). */
const DEFLATE_LEVEL = 1;

export class PrepareStage {
  private readonly engine: Engine;
  /** The volume block: each write's data, and the buffer its compressed form may fill. */
  private readonly blockBytes: number;
  private readonly compress: boolean;
  /** DESC_ARG without and with the known table. */
  private readonly arg: number;
  private readonly withTable: number;
  /** The known table's address (0: dedupe is off). */
  private readonly knownTable: number;
  private readonly prepared: (job: DataVio, status: number) => void;
  private readonly failed: (job: DataVio, err: Error) => void;
  /** Added and not yet on the engine (rings full, or waiting for an output buffer). */
  private readonly queue: DataVio[] = [];
  private queued = false;
  /** Writes on the engine, by data descriptor. */
  private readonly onEngine: (DataVio | undefined)[] = [];
  private onEngineCount = 0;
  private pumping = false;
  /** The next write waits for a free block buffer for its compressed form. */
  private waitingForOut = false;
  private readonly batch: number[] = [];

  constructor(engine: Engine, blockBytes: number, codec: Codec, knownTable: number, log2Buckets: number,
    prepared: (job: DataVio, status: number) => void, failed: (job: DataVio, err: Error) => void) {
    this.engine = engine;
    this.blockBytes = blockBytes;
    this.compress = codec !== 'none';
    const c = codec === 'lz4' ? PREPARE_CODEC_LZ4 : codec === 'deflate' ? PREPARE_CODEC_DEFLATE : PREPARE_CODEC_NONE;
    this.arg = prepareArg(c, DEFLATE_LEVEL, 0);
    this.withTable = prepareArg(c, DEFLATE_LEVEL, log2Buckets);
    this.knownTable = knownTable;
    this.prepared = prepared;
    this.failed = failed;
  }

  /** Queues a write for this wave's burst. */
  add(job: DataVio): void {
    if (job.stage !== Stage.PREPARING) throw assertionFailed(`data_vio ${job.id} sent to the engine in ${STAGE_NAMES[job.stage]}`);
    this.queue.push(job);
    if (this.queued) return;
    this.queued = true;
    queueMicrotask(() => {
      this.queued = false;
      this.dispatch();
    });
  }

  /** Sends what is queued as one burst, as far as output buffers and the rings allow. */
  private dispatch(): void {
    const jobs = this.queue;
    if (jobs.length === 0 || this.waitingForOut) return;
    const pool = this.engine.pool;
    const batch = this.batch;
    batch.length = 0;
    for (const job of jobs) {
      if (this.compress && job.out < 0) {
        job.out = pool.tryAlloc(this.blockBytes);
        if (job.out < 0) {
          this.awaitOut(job);
          break;
        }
      }
      pool.setLength(job.desc, this.blockBytes);
      const out = job.out >= 0 ? job.out : 0;
      if (job.recompressing || this.knownTable === 0) this.engine.prepare(job.desc, OP_PREPARE_BLOCK, out, this.arg);
      else this.engine.prepare(job.desc, OP_PREPARE_BLOCK, out, this.withTable, this.knownTable);
      batch.push(job.desc);
    }
    let sent = 0;
    try {
      sent = batch.length === 0 ? 0 : this.engine.submit(batch);
    } catch (err) {
      // The engine is closed (the volume was abandoned): these writes cannot run.
      for (const job of jobs.splice(0)) this.failed(job, err as Error);
      return;
    }
    for (let k = 0; k < sent; k++) this.onEngine[batch[k]] = jobs[k];
    this.onEngineCount += sent;
    // What did not fit goes when the engine answers.
    if (sent === jobs.length) jobs.length = 0;
    else jobs.splice(0, sent);
    if (sent > 0) this.pump();
  }

  /** The pool is out of block buffers: the burst resumes when one is freed. */
  private awaitOut(job: DataVio): void {
    this.waitingForOut = true;
    this.engine.pool.allocAsync(this.blockBytes).then(
      (out) => {
        job.out = out;
        this.waitingForOut = false;
        this.dispatch();
      },
      (err: Error) => {
        this.waitingForOut = false;
        this.queue.splice(this.queue.indexOf(job), 1);
        this.failed(job, err);
        this.dispatch();
      },
    );
  }

  /** Reaps the engine's answers while writes are on it. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    void (async () => {
      try {
        while (this.onEngineCount > 0) {
          const done = this.engine.poll();
          for (const idx of done) {
            const job = this.onEngine[idx];
            if (job === undefined) continue;
            this.onEngine[idx] = undefined;
            this.onEngineCount--;
            try {
              this.prepared(job, this.engine.statusOf(idx));
            } catch (err) {
              this.failed(job, err as Error);
            }
          }
          if (done.length > 0) {
            if (this.queue.length > 0) this.dispatch();
            continue;
          }
          if (this.engine.inflight === 0) {
            // Nothing is left to answer (the engine was closed under us): these writes are lost.
            const err = new FlashpackError('ECANCELED', 'volume: the engine stopped with blocks in flight');
            for (let idx = 0; idx < this.onEngine.length; idx++) {
              const job = this.onEngine[idx];
              if (job === undefined) continue;
              this.onEngine[idx] = undefined;
              this.onEngineCount--;
              this.failed(job, err);
            }
            break;
          }
          await this.engine.waitForCompletions();
        }
      } finally {
        this.pumping = false;
      }
    })();
  }
}
