/**
 * flashpack: a block storage engine for JavaScript runtimes. This is the public
 * surface; each folder's index.ts is its own.
 */
export { FlashpackError } from './errors.js';
export type { FlashpackErrorCode } from './errors.js';
export * from './codec/index.js';
export { Runtime, runtime, wasmModule } from './wasm/index.js';
export type { WasmExports } from './wasm/index.js';
