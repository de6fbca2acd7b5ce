/**
 * The WebAssembly JS API as flashpack uses it, typed here rather than by lib.dom
 * (which the package is built without, and which @types/node 20 does not
 * replace), so the published declarations type-check in a consumer with only
 * lib es2022 and @types/node. The shapes are lib.dom's, so a `WebAssembly.Memory`
 * or `WebAssembly.Module` from any runtime is one of these and back.
 */

/** A WebAssembly.Memory; flashpack's is shared, so `buffer` is in fact a SharedArrayBuffer. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(deltaPages: number): number;
}

/** A compiled WebAssembly.Module (opaque, as in lib.dom). */
export interface WasmModule {}

/** An exported WebAssembly.Global; every global flashpack's module exports is an i32 constant. */
export interface WasmGlobal {
  readonly value: number;
  valueOf(): number;
}

interface WasmNamespace {
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => { readonly exports: object };
}

/** A shared WebAssembly.Memory (by shape: its buffer is a SharedArrayBuffer and it grows). */
export function isSharedMemory(memory: unknown): memory is WasmMemory {
  const m = memory as WasmMemory | null;
  return typeof m === 'object' && m !== null && typeof m.grow === 'function' &&
    typeof SharedArrayBuffer !== 'undefined' && m.buffer instanceof SharedArrayBuffer;
}

/** The runtime's global `WebAssembly` (Node, Deno and Bun all have it), typed as above. */
export const wasmApi = (globalThis as unknown as { WebAssembly: WasmNamespace }).WebAssembly;
