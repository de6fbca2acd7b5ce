/**
 * The published declarations (dist/*.d.ts) type-check in a consumer project that
 * has no lib.dom: lib es2022, @types/node as installed, strict, skipLibCheck off,
 * NodeNext. The consumer lives in a temp directory with node_modules/flashpack
 * linked to this checkout (so `exports` and `types` resolve as from npm) and
 * node_modules/@types linked to ours; it is compiled with our tsc.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

const CONSUMER = `import { Volume, Engine, nvme, lz4, deflate, crc32, crc32c, fingerprint, FlashpackError, runtime, Runtime, Ring, SlabPool, readLayout, jobs } from 'flashpack';
import type { FlashpackErrorCode, VolumeOptions, VolumeStats, EngineOptions, WasmExports } from 'flashpack';

const data = new Uint8Array(4096).fill(7);
const block: Uint8Array = lz4.compressBlock(data, { acceleration: 1 });
const back: Uint8Array = lz4.decompressBlock(block, data.length);
const frame: Uint8Array = lz4.compressFrame(back, { contentChecksum: true });
const gz: Uint8Array = deflate.compress(lz4.decompressFrame(frame), { level: 6, format: 'gzip' });
const stream = deflate.createCompressor({ level: 1, format: 'zlib' });
const z: Uint8Array[] = [stream.push(data), stream.finish()];
const sums: number[] = [crc32(deflate.decompress(gz, { format: 'gzip' })), crc32c(z[0]), fingerprint(data).length];

const rt: Runtime = runtime();
const exportsOf: WasmExports = rt.exports;
const pages: number = rt.memory.grow(0);
const bytes: number = rt.memory.buffer.byteLength;
const layout = readLayout(exportsOf);
const ringAt = rt.reserve(Ring.bytes(layout, 64, 'spsc'), 64);
const ring: Ring = Ring.init(rt.memory, layout, ringAt, 64, 'spsc');
const pool: SlabPool = SlabPool.create(rt);

const options: EngineOptions = { workers: 1, memory: rt.memory };
const engine = await Engine.start(options);
await engine.lz4.compressBlock(data);
const d = engine.pool.alloc(4096);
engine.prepare(d, jobs.OP_LZ4_COMPRESS, engine.pool.alloc(4096));
await engine.close();

const backend = new nvme.MemoryBackend({ size: 1 << 20 });
const ctrlr = await nvme.Controller.open(backend);
const qp = ctrlr.allocIoQpair({ ioQueueSize: 256, ioQueueRequests: 512 });
const buf = ctrlr.pool.alloc(4096);
qp.write(ctrlr.ns(1), buf, 0, 1, (status) => { if (status.isError) throw new Error(String(status)); });
while (qp.outstandingCount + qp.queuedCount > 0) if (qp.processCompletions(0) === 0) await qp.waitForCompletions();
await ctrlr.close();

const volumeOptions: VolumeOptions = { logicalSize: 1 << 20, codec: 'lz4', writePolicy: 'async' };
const v = await Volume.create(new nvme.MemoryBackend({ size: 16 << 20 }), volumeOptions);
await v.write(0, data);
const read: Uint8Array = await v.read(0, data.length);
await v.flush();
const stats: VolumeStats = v.stats();
await v.close();

try {
  lz4.decompressBlock(new Uint8Array([0xff]), 10);
} catch (e) {
  if (e instanceof FlashpackError) {
    const code: FlashpackErrorCode = e.code;
    console.log(code, sums, pages, bytes, ring, pool, read.length, stats);
  }
}
`;

// With lib.dom, flashpack's memory and module are WebAssembly's own types, both ways.
const DOM_CONSUMER = `import { Runtime, runtime, wasmModule } from 'flashpack';

const memory: WebAssembly.Memory = runtime().memory;
const rt = new Runtime(new WebAssembly.Memory({ initial: 256, maximum: 32768, shared: true }));
const module: WebAssembly.Module = wasmModule();
console.log(memory, module, new WebAssembly.Instance(wasmModule(), { env: { memory: rt.memory } }));
`;

function typeCheck(lib: string[], files: Record<string, string>): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'flashpack-consumer-'));
  try {
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(root, join(dir, 'node_modules', 'flashpack'), 'dir');
    symlinkSync(join(root, 'node_modules', '@types'), join(dir, 'node_modules', '@types'), 'dir');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib, types: ['node'],
        strict: true, skipLibCheck: false, noEmit: true,
      },
      files: Object.keys(files),
    }));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    const r = spawnSync(process.execPath, [tsc, '-p', dir], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    return { status: r.status, output: `${r.stdout}${r.stderr}`.replaceAll(root, '<flashpack>') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('published type declarations', () => {
  it('type-check in a consumer with lib es2022 and @types/node only (no lib.dom), strict, skipLibCheck off', () => {
    const { status, output } = typeCheck(['es2022'], { 'index.ts': CONSUMER });
    expect(output.split('\n').filter((l) => l.includes('error TS'))).toEqual([]);
    expect(status).toBe(0);
  });

  it('type-check in a consumer that also has lib.dom, where they are interchangeable with its WebAssembly types', () => {
    const { status, output } = typeCheck(['es2022', 'dom'], { 'index.ts': CONSUMER, 'dom.ts': DOM_CONSUMER });
    expect(output.split('\n').filter((l) => l.includes('error TS'))).toEqual([]);
    expect(status).toBe(0);
  });
});
