/**
 * flashpack: a block storage engine for JavaScript runtimes. This is the public
 * surface; each folder's index.ts is its own.
 */
export { FlashpackError } from './errors.js';
export type { FlashpackErrorCode } from './errors.js';
export * from './codec/index.js';
export { Runtime, runtime, wasmModule } from './wasm/index.js';
export { Ring, SlabPool, DEFAULT_CLASSES, readLayout } from './shm/index.js';
export type { RingKind, WaitResult, SizeClass, Layout } from './shm/index.js';
export { Engine, jobs } from './engine/index.js';
export * as nvme from './nvme/index.js';
export { Volume, Packer, simulatePacking, checkVolume } from './vdo/index.js';
export type { CheckReport, CheckProblem, CheckOptions } from './vdo/index.js';
export type { VolumeOptions, OpenOptions, VolumeStats, VolumeExtent, ScrubOptions, ScrubReport, ResizeOptions, BadBlock, Codec, WritePolicy, PackerPolicy, PackingResult } from './vdo/index.js';
export type { EngineOptions, CloseOptions } from './engine/index.js';
export type { WasmExports, WasmMemory, WasmModule, WasmGlobal } from './wasm/index.js';
export * as nbd from './nbd/index.js';
export * as replication from './replication/index.js';
export { Cluster, ClusterVolume, Store } from './replication/index.js';
