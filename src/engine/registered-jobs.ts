/**
 * Jobs the engine runs without knowing what they are for: a module that
 * exports `jobs` (JobDefinition[]) and is named by URL in
 * `Engine.start({ jobs })`. Each worker imports the module at start, binds
 * every definition to its memory views and runs it for descriptors whose
 * DESC_OP is the job's op; the host imports it too, to refuse an op outside
 * the registered range or named twice. A volume's one-trip front end
 * (vdo/prepare-job.ts) is such a job, so the generic worker knows no volume
 * layout.
 *
 * Invariants: a registered op is in [OP_REGISTERED_MIN, OP_REGISTERED_MAX] and
 * never one of jobs.ts's; a job returns a status (STATUS_OK,
 * STATUS_INCOMPRESSIBLE, STATUS_BAD_LINK, or one of its own at
 * STATUS_REGISTERED_MIN and above) and throws only for a bug, which the engine
 * treats as a crashed worker.
 */
import type { WasmExports } from '../wasm/runtime.js';
import { badArgument, invalid } from '../errors.js';

export const OP_REGISTERED_MIN = 64;
export const OP_REGISTERED_MAX = 254;
/** A registered job's own statuses start here (the engine's are below). */
export const STATUS_REGISTERED_MIN = 16;

/** Word offsets of a descriptor's fields (DESC_* >> 2). */
export interface DescFields {
  readonly buf: number;
  readonly cap: number;
  readonly len: number;
  readonly op: number;
  readonly status: number;
  readonly checksum: number;
  readonly link: number;
  readonly arg: number;
  readonly aux: number;
  readonly result: number;
}

/** What a worker lends a registered job. */
export interface JobHost {
  readonly exports: WasmExports;
  /** Views of the shared memory; replaced when covers() finds it grown, so read them per call. */
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly fields: DescFields;
  /** Whether bytes [0, end) are in the memory (renewing the views if it grew). */
  covers(end: number): boolean;
  /** The word index of the output descriptor job descriptor `d` (pool index `idx`) links, or −1. */
  linked(idx: number, d: number): number;
  /** This worker's codec context and deflate scratch (byte addresses). */
  readonly ctx: number;
  readonly deflateScratch: number;
}

/** Runs the job for descriptor pool index `idx` at word `d`; returns its status. */
export type JobRunner = (idx: number, d: number) => number;

export interface JobDefinition {
  readonly op: number;
  readonly name: string;
  bind(host: JobHost): JobRunner;
}

/**
 * Imports the modules and returns their jobs by op. EINVAL for a module
 * that does not load or has no `jobs` array, an op out of range, or an op two jobs claim.
 */
export async function loadJobs(urls: readonly string[]): Promise<Map<number, JobDefinition>> {
  const byOp = new Map<number, JobDefinition>();
  for (const url of urls) {
    let m: { jobs?: unknown };
    try {
      m = (await import(url)) as { jobs?: unknown };
    } catch (err) {
      throw invalid(`engine: job module ${url} does not load (${(err as Error).message})`);
    }
    if (!Array.isArray(m.jobs)) throw invalid(`engine: job module ${url} exports no jobs array`);
    for (const j of m.jobs as JobDefinition[]) {
      if (!Number.isInteger(j?.op) || j.op < OP_REGISTERED_MIN || j.op > OP_REGISTERED_MAX || typeof j.bind !== 'function') {
        throw badArgument(`engine: job ${j?.name} of ${url}: op`, `an integer from ${OP_REGISTERED_MIN} to ${OP_REGISTERED_MAX} with bind()`, j?.op);
      }
      const twice = byOp.get(j.op);
      if (twice !== undefined) throw invalid(`engine: op ${j.op} registered twice (${twice.name} and ${j.name})`);
      byOp.set(j.op, j);
    }
  }
  return byOp;
}
