/**
 * Loads the flashpack WASM module against one shared WebAssembly.Memory, the same
 * way on Node, Deno and Bun: the module is embedded (base64), compiled
 * synchronously at import, and instantiated with `{ env: { memory } }`.
 *
 * Memory map: [0, memoryBase) unused · static data (constant tables) up to
 * heapBase · then the region this runtime manages, handed out by `reserve()`
 * (fixed regions: codec contexts, later pools and rings) with a staging area for
 * the synchronous codec API always placed above the last reservation.
 */
import { wasmBase64 } from './binary.generated.js';
import { FlashpackError, badArgument, checkIndex } from '../errors.js';
import { isSharedMemory, wasmApi, type WasmGlobal, type WasmMemory, type WasmModule } from './wasm-types.js';

export interface WasmExports {
  memory: WasmMemory;
  heapBase(): number;
  tablesBase(): number;
  TABLES_BASE: WasmGlobal;
  CTX_BYTES: WasmGlobal;
  CTX_ERROR_KIND: WasmGlobal;
  CTX_ERROR_POS: WasmGlobal;
  CTX_ERROR_VALUE: WasmGlobal;
  CTX_ERROR_VALUE2: WasmGlobal;
  crc32(ptr: number, len: number, crc: number): number;
  crc32c(ptr: number, len: number, crc: number): number;
  adler32(ptr: number, len: number, adler: number): number;
  xxh32(ptr: number, len: number, seed: number): number;
  xxh32Init(ctx: number, seed: number): void;
  xxh32Update(ctx: number, ptr: number, len: number): void;
  xxh32Digest(ctx: number): number;
  lz4CompressBound(n: number): number;
  lz4Compress(src: number, srcLen: number, dst: number, dstCap: number, ctx: number, acceleration: number): number;
  lz4Decompress(src: number, srcLen: number, dst: number, dstCap: number, prefixLen: number, ctx: number): number;
  spscEnqueue(r: number, src: number, n: number): number;
  spscDequeue(r: number, dst: number, max: number): number;
  mpmcEnqueue(r: number, src: number, n: number): number;
  mpmcDequeue(r: number, dst: number, max: number): number;
  mpmcPush(r: number, value: number): number;
  mpmcPop(r: number): bigint;
  slabAlloc(pool: number, cls: number): number;
  slabFree(pool: number, idx: number): number;
  xxh128(ptr: number, len: number, seedLo: number, seedHi: number, out: number, ctx: number): void;
  /** Bits 64–95 of the seed-0 XXH3-128 of [ptr, ptr+len) (a volume's data check; ctx is scratch). */
  dataCheck(ptr: number, len: number, ctx: number): number;
  copyBytes(dst: number, src: number, len: number): void;
  zeroBytes(dst: number, len: number): void;
  /** 1 when the len bytes at p are all zero, else 0. */
  allZero(p: number, len: number): number;
  /** 1 when the len bytes at a equal those at b, else 0. */
  bytesEqual(a: number, b: number, len: number): number;
  FORMAT_RAW: WasmGlobal;
  FORMAT_ZLIB: WasmGlobal;
  FORMAT_GZIP: WasmGlobal;
  INFLATE_SCRATCH_BYTES: WasmGlobal;
  INFLATE_MODE: WasmGlobal;
  INFLATE_IN_USED: WasmGlobal;
  INFLATE_OUT_USED: WasmGlobal;
  INFLATE_ERROR_POS_HIGH: WasmGlobal;
  deflateHeader(dst: number, format: number, level: number): number;
  deflateFooter(dst: number, format: number, check: number, length: number): number;
  DEFLATE_SCRATCH_BYTES: WasmGlobal;
  DEFLATE_IN_USED: WasmGlobal;
  DEFLATE_OUT_USED: WasmGlobal;
  DEFLATE_NO_FLUSH: WasmGlobal;
  DEFLATE_FINISH: WasmGlobal;
  deflateInit(scratch: number, level: number): void;
  deflate(scratch: number, src: number, srcLen: number, dst: number, dstCap: number, flush: number): number;
  deflateCompress(scratch: number, src: number, srcLen: number, dst: number, dstCap: number, level: number): number;
  inflateInit(scratch: number, format: number): void;
  inflate(scratch: number, src: number, srcLen: number, dst: number, dstPos: number, dstCap: number, final: number): number;
}

export const WASM_PAGE_BYTES = 65536;
/** The module declares its memory as at most 2 GiB, so every offset is a positive i32. */
export const MEMORY_MAX_PAGES = 32768;
const MEMORY_INITIAL_PAGES = 256;
const STAGE_GRANULE_BYTES = 1 << 20;

function decodeBase64(text: string): Uint8Array {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

let compiled: WasmModule | undefined;

/** The compiled module, compiled once per process (workers receive it by postMessage). */
export function wasmModule(): WasmModule {
  return (compiled ??= new wasmApi.Module(decodeBase64(wasmBase64)));
}

/** An instance of the module on `memory`; workers pass the Module the host compiled. */
export function instantiate(memory: WasmMemory, module: WasmModule = wasmModule()): WasmExports {
  const readString = (ptr: number): string => {
    if (!ptr) return '';
    const bytes = new Uint8Array(memory.buffer);
    const len = new Uint32Array(memory.buffer, ptr - 4, 1)[0] >>> 1;
    let s = '';
    for (let i = 0; i < len; i++) s += String.fromCharCode(bytes[ptr + 2 * i] | (bytes[ptr + 2 * i + 1] << 8));
    return s;
  };
  const instance = new wasmApi.Instance(module, {
    env: {
      memory,
      abort(msg: number, file: number, line: number, col: number): never {
        throw new FlashpackError('EINTERNAL', `wasm abort: ${readString(msg)} at ${readString(file)}:${line}:${col}`);
      },
    },
  });
  const exports = instance.exports as unknown as WasmExports;
  // The checksum kernels address their tables by literal offsets (scripts/gen-tables.mjs).
  if (exports.tablesBase() !== exports.TABLES_BASE.value) {
    throw new FlashpackError('EINTERNAL', `wasm: constant tables at ${exports.tablesBase()}, kernels expect ${exports.TABLES_BASE.value as number}`);
  }
  return exports;
}

export class Runtime {
  readonly memory: WasmMemory;
  readonly exports: WasmExports;
  /** The main thread's codec context (see assembly/layout.ts). */
  readonly ctx: number;
  readonly ctxBytes: number;
  /** The main thread's deflate and inflate scratch (assembly/layout.ts DEFLATE_*, INFLATE_*), for one-shot calls. */
  readonly deflateScratch: number;
  readonly inflateScratch: number;
  private top: number;
  private stageAt = 0;
  private stageCap = 0;
  private view: Uint8Array;

  /**
   * A runtime on `memory` (a shared WebAssembly.Memory whose maximum is at
   * most 2 GiB), or on a fresh one. Errors: EINVAL for anything else.
   */
  constructor(memory?: WasmMemory) {
    if (memory !== undefined && !isSharedMemory(memory)) {
      throw badArgument('Runtime: memory', 'a shared WebAssembly.Memory', memory);
    }
    this.memory = memory ?? new wasmApi.Memory({ initial: MEMORY_INITIAL_PAGES, maximum: MEMORY_MAX_PAGES, shared: true });
    this.exports = instantiate(this.memory);
    this.view = new Uint8Array(this.memory.buffer);
    this.top = alignUp(this.exports.heapBase(), WASM_PAGE_BYTES);
    this.ctxBytes = this.exports.CTX_BYTES.value as number;
    this.ctx = this.reserve(this.ctxBytes, 64);
    this.deflateScratch = this.reserve(this.exports.DEFLATE_SCRATCH_BYTES.value as number, 64);
    this.inflateScratch = this.reserve(this.exports.INFLATE_SCRATCH_BYTES.value as number, 64);
  }

  /** A byte view of the whole memory (renewed after growth). */
  get u8(): Uint8Array {
    return this.view;
  }

  /**
   * Carves a fixed region; it stays valid for the life of the memory. Errors:
   * EINVAL for bytes that is not a whole number or align that is not a power
   * of two; ENOMEM past the 2 GiB maximum.
   */
  reserve(bytes: number, align = 64): number {
    checkIndex('runtime.reserve: bytes', bytes);
    if (typeof align !== 'number' || !Number.isInteger(align) || align < 1 || align > WASM_PAGE_BYTES || (align & (align - 1)) !== 0) {
      throw badArgument('runtime.reserve: align', 'a power of two from 1 to 65536', align);
    }
    const at = alignUp(this.top, align);
    this.ensure(at + bytes);
    this.top = at + bytes;
    this.stageCap = 0;
    return at;
  }

  /**
   * Scratch for one synchronous codec call: valid until the next stage() or
   * reserve(). Grows the memory when needed; ENOMEM past the 2 GiB maximum.
   */
  stage(bytes: number): number {
    if (bytes <= this.stageCap) return this.stageAt;
    const at = alignUp(this.top, 64);
    const cap = alignUp(bytes, STAGE_GRANULE_BYTES);
    this.ensure(at + cap);
    this.stageAt = at;
    this.stageCap = cap;
    return at;
  }

  /**
   * Stages `input` for one synchronous call with `outBytes` of output room after
   * it: copies it in and returns its offset. The output starts at
   * outputAfter(inAt, input.length).
   */
  stageInput(input: Uint8Array, outBytes: number): number {
    const at = this.stage(outputAfter(0, input.length) + outBytes);
    this.view.set(input, at);
    return at;
  }

  private ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / WASM_PAGE_BYTES);
      try {
        this.memory.grow(pages);
      } catch {
        throw new FlashpackError('ENOMEM', `shared memory cannot grow to ${end} bytes (maximum ${MEMORY_MAX_PAGES * WASM_PAGE_BYTES})`);
      }
    }
    if (this.view.byteLength !== this.memory.buffer.byteLength) this.view = new Uint8Array(this.memory.buffer);
  }
}

/** Where a call's output goes: after its staged input, 16-byte aligned. */
export function outputAfter(inAt: number, inputBytes: number): number {
  return inAt + ((inputBytes + 15) & ~15);
}

let defaultRuntime: Runtime | undefined;

/** The process's runtime, created on first use. */
export function runtime(): Runtime {
  return (defaultRuntime ??= new Runtime());
}
