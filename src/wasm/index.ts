/** The WASM module and the shared memory it runs on. */
export { Runtime, runtime, wasmModule, instantiate, WASM_PAGE_BYTES, MEMORY_MAX_PAGES } from './runtime.js';
export type { WasmExports } from './runtime.js';
export type { WasmMemory, WasmModule, WasmGlobal } from './wasm-types.js';
