// Types for crash-model.mjs (plain JS so scripts/crash-test.mjs can load it too).

export const BLOCK: number;
export function prng(seed: number): () => number;
export function tag(b: Uint8Array | null): string;

export interface CrashConfig {
  name?: string;
  logicalSize: number;
  /** The volume block (default 4096). */
  blockBytes?: number;
  physicalSize: number;
  codec: 'none' | 'lz4' | 'deflate';
  dedupe: boolean;
  writePolicy: 'async' | 'sync';
  journalBlocks: number;
  cachePages: number;
  maxInflight?: number;
  /** Operations per cycle, at most. */
  maxOps?: number;
  /** Probability that a cycle is a burst of 120–320 small writes (journal roll-over, checkpoints). */
  burst?: number;
  /** Where cuts land: at a random moment (default), during close(), or while a checkpoint writes block map pages. */
  cut?: 'random' | 'close' | 'reopen' | 'checkpoint';
  /** Device flush latency in microseconds (widens the window between a journal write and its flush). */
  flushUs?: number;
  /** The FaultBackend's atomic write unit (default 512). */
  sectorBytes?: number;
  /** Grow the logical size with volume.resize() in the middle of the campaign, up to this many bytes. */
  growTo?: number;
  /** With growTo: grow the physical size too at each resize (to 2 MiB past the logical size), up to this many bytes. */
  growPhysicalTo?: number;
}

export const CONFIGS: Record<'lz4-dedupe-async' | 'deflate-dedupe-sync' | 'none-nodedupe-async' | 'lz4-nodedupe-async-tiny-cache' | 'none-nodedupe-async-atomic4k' | 'lz4-dedupe-sync-checkpoints', CrashConfig>;

export interface CampaignStats {
  /** volume.resize() calls issued. */
  resizes: number;
  cuts: number;
  modes: { tear: number; drop: number; keep: number };
  inflightAtCut: number;
  unflushedAtCut: number;
  sectorsReverted: number;
  ops: number;
  flushes: number;
  reads: number;
  closeCuts: number;
  closedBeforeCut: number;
  /** Opens that found the volume closed cleanly (the superblock's mark: no journal read): after a cut, or the reopen cut style's own. */
  cleanOpens: number;
  checkpointCuts: number;
  cutsWithUnflushed: number;
  cutsDuringFlush: number;
  cutsWithOpsInFlight: number;
  retries: number;
}

export interface CampaignOptions {
  seed: number;
  cuts: number;
  /** Sync policy: an acknowledged write must survive a cut without a flush. */
  syncDurable?: boolean;
  /** Leave unaligned discards that also unmap whole blocks in flight at cuts (they can crash the process). */
  edgeDiscardsInFlight?: boolean;
  /** After a cut, sometimes write the values it lost again (elsewhere or in place), then cut again soon. */
  retryLost?: boolean;
  progress?(cuts: number, stats: CampaignStats): void;
  /** Called after each cut, before the volume reopens (diagnostics: the backend as the cut left it). */
  afterCut?(fault: unknown, cfg: CrashConfig): void;
}

export class CrashViolation extends Error {
  details: { seed: number; cycle: number; config: string };
}

export class CrashModel {
  constructor(blocks: number, opts?: { syncDurable?: boolean });
  verify(observed: Uint8Array): string | null;
  reset(observed: Uint8Array): void;
}

export class DataSource {
  constructor(rand: () => number);
  block(): [Uint8Array, string];
  bytes(n: number, skew?: number): [Uint8Array, string];
}

export function runCampaign(lib: any, cfg: CrashConfig, opts: CampaignOptions): Promise<CampaignStats>;
