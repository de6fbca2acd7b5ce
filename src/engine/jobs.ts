/**
 * Engine jobs: what a descriptor's DESC_OP asks a worker to do, and the status
 * it answers with in DESC_STATUS. Inputs are the descriptor's buffer and length;
 * outputs go to the descriptor named in DESC_LINK (codecs) or to the job
 * descriptor's own result fields (checksums in DESC_CHECKSUM).
 */
import type { WasmMemory, WasmModule } from '../wasm/wasm-types.js';

export const OP_NOP = 0;
export const OP_CRC32 = 1;
export const OP_CRC32C = 2;
export const OP_ADLER32 = 3;
/** DESC_ARG: acceleration (0 = 1). Output: the linked descriptor's length. */
export const OP_LZ4_COMPRESS = 4;
/** DESC_ARG: the exact decoded size (0 = any size up to the output capacity). */
export const OP_LZ4_DECOMPRESS = 5;
/** XXH3-128 of the buffer (seed DESC_ARG) into DESC_RESULT (16 bytes, big-endian). */
export const OP_FINGERPRINT = 6;
/** DESC_ARG: level | format << 8 (format 0 raw, 1 zlib, 2 gzip). Output: the linked descriptor. */
export const OP_DEFLATE_COMPRESS = 7;
/** DESC_ARG: format. Output: the linked descriptor (its capacity bounds the output). */
export const OP_INFLATE = 8;
/** Ops from OP_REGISTERED_MIN up are jobs registered by module (registered-jobs.ts). */
/** Test-only: the worker throws, as a crashed accelerator would vanish. */
export const OP_TEST_CRASH = 255;

export const STATUS_OK = 0;
/** The output did not fit its descriptor: store the input raw ("incompressible"). */
export const STATUS_INCOMPRESSIBLE = 1;
/** Set by the host while a job is queued or running. */
export const STATUS_PENDING = 2;
/** Negative statuses below this are LZ4 block error kinds (assembly/layout.ts), negated. */
export const STATUS_LZ4_ERROR_BASE = -100;
export const STATUS_SIZE_MISMATCH = -200;
export const STATUS_BAD_OP = -201;
export const STATUS_BAD_LINK = -202;
export const STATUS_WORKER_CRASHED = -203;
export const STATUS_CANCELED = -204;
/** Inflate rejected the stream: the error record is in DESC_CHECKSUM, DESC_AUX and DESC_RESULT. */
export const STATUS_INFLATE_ERROR = -205;
/** The decoded data did not fit the output descriptor. */
export const STATUS_OUTPUT_OVERFLOW = -206;

/** Messages between the engine and a worker (startup and shutdown only; work goes through rings). */
export interface WorkerInit {
  type: 'init';
  module: WasmModule;
  memory: WasmMemory;
  index: number;
  submitAt: number;
  completeAt: number;
  doorbellAt: number;
  ctxAt: number;
  poolAt: number;
  deflateScratchAt: number;
  inflateScratchAt: number;
  /** Idle polls of the submission ring before parking. */
  spins: number;
  /** URLs of modules whose jobs this worker runs (registered-jobs.ts). */
  jobModules: string[];
}

export type WorkerReply = { type: 'ready'; index: number } | { type: 'closed'; index: number };

/** Doorbell: workers bump DOORBELL_COUNT after publishing completions and notify if the host sleeps. */
export const DOORBELL_COUNT = 0;
export const DOORBELL_SLEEPERS = 1;
export const DOORBELL_BYTES = 128;
