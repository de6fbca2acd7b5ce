/**
 * A volume a newcomer cannot hurt themselves with (issue 12): create refuses
 * to format over data, one writer per image across threads and processes (a
 * killed holder releases its lock), read-only opens that never write, a clean
 * exit that keeps every acknowledged write, sizes that hold what they claim,
 * scripts run with `-e` or from standard input, and arguments checked up front.
 * Imports the built package: the engine and device workers load dist/.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FlashpackError, Volume, nvme } from '../dist/index.js';
import { prng, randomBytes } from './helpers/data.js';

const BS = 4096;
const dist = pathToFileURL(path.join(import.meta.dirname, '..', 'dist', 'index.js')).href;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-safety-'));
let n = 0;
const image = (): string => path.join(dir, `v${n++}.img`);
const small = { workers: 1, ioWorkers: 1 } as const;

const live = new Set<Volume>();
async function track(p: Promise<Volume>): Promise<Volume> {
  const v = await p;
  live.add(v);
  return v;
}
afterEach(async () => {
  for (const v of [...live]) await v.close().catch(() => v.abandon());
  live.clear();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function failure(p: Promise<unknown> | (() => unknown)): Promise<FlashpackError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(FlashpackError);
    return err as FlashpackError;
  }
  return expect.fail('expected a FlashpackError, but it succeeded');
}

const sha = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Runs a module script in a child Node (a file, `-e` or standard input), returning its exit code and output. */
function runScript(source: string, how: 'file' | 'eval' | 'stdin'): { code: number; out: string } {
  const file = path.join(dir, `script-${n++}.mjs`);
  if (how === 'file') fs.writeFileSync(file, source);
  const args = how === 'file' ? [file] : how === 'eval' ? ['--input-type=module', '-e', source] : ['--input-type=module'];
  try {
    const out = execFileSync(process.execPath, args, { input: how === 'stdin' ? source : undefined, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 120_000 });
    return { code: 0, out };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, out: `${e.stdout}\n${e.stderr}` };
  }
}

describe('create refuses to destroy data', () => {
  it('EEXIST for a text file, naming the path and what it holds; the file is untouched', async () => {
    const p = image();
    fs.writeFileSync(p, 'my precious notes\nline two\n');
    const before = sha(p);
    const err = await failure(Volume.create(p, { logicalSize: 1 << 20, ...small }));
    expect(err.code).toBe('EEXIST');
    expect(err.message).toContain(p);
    expect(err.message).toMatch(/text \("my precious notes/);
    expect(sha(p)).toBe(before);
    expect(fs.existsSync(`${p}.lock`)).toBe(false);
  });

  it('EEXIST for a volume full of data, which still opens with every byte; overwrite: true formats it', async () => {
    const p = image();
    const data = randomBytes(64 * BS, prng(1));
    let v = await track(Volume.create(p, { logicalSize: 1 << 20, ...small }));
    await v.write(0, data);
    await v.close();
    const before = sha(p);
    const err = await failure(Volume.create(p, { logicalSize: 2 << 20, ...small }));
    expect(err.code).toBe('EEXIST');
    expect(err.message).toMatch(/a flashpack volume \(logical size 1048576 bytes/);
    expect(sha(p)).toBe(before);
    v = await track(Volume.open(p, small));
    expect(Buffer.compare(await v.read(0, data.length), data)).toBe(0);
    await v.close();
    v = await track(Volume.create(p, { logicalSize: 2 << 20, overwrite: true, ...small }));
    expect(v.logicalSize).toBe(2 << 20);
    expect((await v.read(0, data.length)).every((b) => b === 0)).toBe(true);
  });

  it('an empty file is formatted; a directory is EINVAL; a missing directory is ENOENT with the OS error as cause', async () => {
    const p = image();
    fs.writeFileSync(p, '');
    const v = await track(Volume.create(p, { logicalSize: 1 << 20, ...small }));
    await v.close();
    expect((await failure(Volume.create(dir, { logicalSize: 1 << 20, ...small }))).code).toBe('EINVAL');
    const missing = await failure(Volume.create(path.join(dir, 'no', 'such', 'dir.img'), { logicalSize: 1 << 20, ...small }));
    expect(missing.code).toBe('ENOENT');
    expect((missing.cause as { code?: string }).code).toBe('ENOENT');
  });

  it('EEXIST for a backend that holds a volume or any data; overwrite: true formats it', async () => {
    const mem = new nvme.MemoryBackend({ size: 8 << 20 });
    const v = await track(Volume.create(mem, { logicalSize: 1 << 20, ...small }));
    await v.write(0, Uint8Array.of(1, 2, 3));
    await v.close();
    expect((await failure(Volume.create(mem, { logicalSize: 1 << 20, ...small }))).message).toMatch(/already holds a flashpack volume/);
    const junk = new nvme.MemoryBackend({ size: 8 << 20 });
    junk.bytes()[40_000] = 7;
    expect((await failure(Volume.create(junk, { logicalSize: 1 << 20, ...small }))).code).toBe('EEXIST');
    const w = await track(Volume.create(mem, { logicalSize: 1 << 20, overwrite: true, ...small }));
    expect((await w.read(0, 3)).every((b) => b === 0)).toBe(true);
  });
});

describe('one writer per image', () => {
  it('a second open in the same process is EBUSY naming this process; read-only opens share; the lock goes with close', async () => {
    const p = image();
    const v = await track(Volume.create(p, { logicalSize: 1 << 20, ...small }));
    for (const readOnly of [false, true]) {
      const err = await failure(Volume.open(p, { ...small, readOnly }));
      expect(err.code).toBe('EBUSY');
      expect(err.message).toMatch(new RegExp(`open for writing by this process \\(pid ${process.pid}\\)`));
    }
    await v.close();
    expect(fs.existsSync(`${p}.lock`)).toBe(false);
    const r1 = await track(Volume.open(p, { ...small, readOnly: true }));
    const r2 = await track(Volume.open(p, { ...small, readOnly: true }));
    const err = await failure(Volume.open(p, small));
    expect(err.code).toBe('EBUSY');
    expect(err.message).toMatch(/open read-only by this process/);
    await r1.close();
    await r2.close();
    const w = await track(Volume.open(p, small));
    await w.close();
  });

  it('a backend object takes one writer', async () => {
    const mem = new nvme.MemoryBackend({ size: 8 << 20 });
    const v = await track(Volume.create(mem, { logicalSize: 1 << 20, ...small }));
    expect((await failure(Volume.open(mem, small))).code).toBe('EBUSY');
    await v.close();
    await (await track(Volume.open(mem, small))).close();
  });

  it('two processes: the second is EBUSY naming the holder; a holder killed with SIGKILL releases the lock', async () => {
    const p = image();
    const data = randomBytes(8 * BS, prng(2));
    const v0 = await track(Volume.create(p, { logicalSize: 1 << 20, ...small }));
    await v0.write(0, data);
    await v0.close();
    // The child opens the volume, says so, and waits to be killed.
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      import { Volume } from '${dist}';
      const v = await Volume.open(${JSON.stringify(p)}, { workers: 1, ioWorkers: 1 });
      console.log('open');
      setInterval(() => {}, 1000);
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (b: Buffer) => b.toString().includes('open') && resolve());
        child.on('exit', (code) => reject(new Error(`child exited with ${code}`)));
      });
      for (const readOnly of [false, true]) {
        const err = await failure(Volume.open(p, { ...small, readOnly }));
        expect(err.code).toBe('EBUSY');
        expect(err.message).toContain(`process ${child.pid}`);
      }
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    // The dead holder's file is still there, and locks nothing.
    expect(fs.readdirSync(`${p}.lock`).length).toBe(1);
    const v = await track(Volume.open(p, small));
    expect(Buffer.compare(await v.read(0, data.length), data)).toBe(0);
    await v.close();
    expect(fs.existsSync(`${p}.lock`)).toBe(false);
  });
});

describe('read-only opens never write', () => {
  it('open, read, stats and close leave the image byte-identical; write and discard are EROFS', async () => {
    const p = image();
    const data = randomBytes(16 * BS, prng(3));
    const v = await track(Volume.create(p, { logicalSize: 1 << 20, ...small }));
    await v.write(0, data);
    await v.close();
    const before = sha(p);
    const mtime = fs.statSync(p).mtimeMs;
    const r = await track(Volume.open(p, { ...small, readOnly: true }));
    expect(r.readOnly).toBe(true);
    expect(Buffer.compare(await r.read(0, data.length), data)).toBe(0);
    expect(r.stats().logicalBlocksUsed).toBe(16);
    expect((await failure(r.write(0, Uint8Array.of(1)))).code).toBe('EROFS');
    expect((await failure(r.discard(0, BS))).code).toBe('EROFS');
    await r.flush();
    await r.close();
    expect(sha(p)).toBe(before);
    expect(fs.statSync(p).mtimeMs).toBe(mtime);
  });

  it('a volume left without close recovers in memory: its flushed data reads back and the image is unchanged', async () => {
    const p = image();
    const data = randomBytes(32 * BS, prng(4));
    const v = await track(Volume.create(p, { logicalSize: 1 << 20, ...small }));
    await v.write(0, data);
    await v.flush();
    live.delete(v);
    await v.abandon();
    const before = sha(p);
    const r = await track(Volume.open(p, { ...small, readOnly: true }));
    expect(Buffer.compare(await r.read(0, data.length), data)).toBe(0);
    await r.close();
    expect(sha(p)).toBe(before);
  });
});

describe('a clean exit keeps every acknowledged write', () => {
  for (const how of ['file', 'eval', 'stdin'] as const) {
    it(`a script run ${how === 'file' ? 'from a file' : how === 'eval' ? 'with node --input-type=module -e' : 'from standard input'} writes and ends without flush or close: exit 0, every byte there after reopen`, async () => {
      const p = image();
      const { code, out } = runScript(`
        import { Volume } from '${dist}';
        const v = await Volume.create(${JSON.stringify(p)}, { logicalSize: 4 << 20, workers: 1, ioWorkers: 1 });
        let x = 7;
        for (let i = 0; i < 256; i++) {
          const b = new Uint8Array(4096);
          for (let k = 0; k < 4096; k++) b[k] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
          if (i % 3 === 0) b.fill(i & 255, 0, 3000); // some compress
          v.write(i * 4096, b); // not awaited: acknowledged when taken
        }
        await v.write(300 * 4096 + 5, new TextEncoder().encode('unaligned tail'));
        console.log('written', v.unflushed);
      `, how);
      expect(out).toContain('written true');
      expect(code).toBe(0);
      const v = await track(Volume.open(p, small));
      let x = 7;
      for (let i = 0; i < 256; i++) {
        const b = new Uint8Array(BS);
        for (let k = 0; k < BS; k++) b[k] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
        if (i % 3 === 0) b.fill(i & 255, 0, 3000);
        expect(Buffer.compare(await v.read(i * BS, BS), b), `block ${i}`).toBe(0);
      }
      expect(Buffer.from(await v.read(300 * BS + 5, 14)).toString()).toBe('unaligned tail');
    });
  }

  it('an engine starts from a script given with -e (workers do not inherit --input-type)', () => {
    const { code, out } = runScript(`
      import { Engine } from '${dist}';
      const e = await Engine.start({ workers: 1 });
      console.log('crc', await e.crc32(new TextEncoder().encode('123456789')));
      await e.close();
    `, 'eval');
    expect(out).toContain(`crc ${0xcbf43926}`);
    expect(code).toBe(0);
  });
});

describe('sizes a user would expect', () => {
  it('a 16 MiB volume with default options holds 16 MiB of incompressible data, twice over without a flush between', async () => {
    const p = image();
    const size = 16 << 20;
    const v = await track(Volume.create(p, { logicalSize: size, ...small }));
    expect(v.thin).toBe(false);
    expect(fs.statSync(p).size).toBe(Volume.sizeFor({ logicalSize: size }));
    for (const seed of [5, 6]) {
      const data = randomBytes(size, prng(seed));
      for (let at = 0; at < size; at += 1 << 20) await v.write(at, data.subarray(at, at + (1 << 20)));
      expect(Buffer.compare(await v.read(0, size), data)).toBe(0);
    }
    await v.flush();
    expect(v.stats().dataBlocksUsed).toBe(size / BS);
  });

  it('a 1 MiB volume works; a physical size too small is ENOSPC naming the minimum, before any file exists; a thin volume says so', async () => {
    const p = image();
    const v = await track(Volume.create(p, { logicalSize: 1 << 20, ...small }));
    await v.write(0, randomBytes(1 << 20, prng(7)));
    await v.close();
    const q = image();
    const err = await failure(Volume.create(q, { logicalSize: 1 << 20, physicalSize: 64 * BS, ...small }));
    expect(err.code).toBe('ENOSPC');
    expect(err.message).toMatch(/at least \d+ bytes are needed/);
    expect(fs.existsSync(q)).toBe(false);
    const thin = await track(Volume.create(q, { logicalSize: 64 << 20, physicalSize: 4 << 20, ...small }));
    expect(thin.thin).toBe(true);
    expect(thin.stats().thin).toBe(true);
  });
});

describe('arguments are checked up front', () => {
  it('create with no options, bad types and unknown options are EINVAL naming the option and its type', async () => {
    const p = image();
    const none = await failure(Volume.create(p, undefined as never));
    expect(none.code).toBe('EINVAL');
    expect(none.message).toMatch(/logicalSize is required/);
    expect((await failure(Volume.create(p, { logicalSize: '1M' } as never))).message).toMatch(/logicalSize must be .*, got the string "1M"/);
    expect((await failure(Volume.create(p, { logicalSize: 1 << 20, logicalsize: 5 } as never))).message).toMatch(/unknown option 'logicalsize'/);
    expect((await failure(Volume.create(42 as never, { logicalSize: 1 << 20 }))).message).toMatch(/target must be .*, got the number 42/);
    expect(fs.existsSync(p)).toBe(false);
    const missing = await failure(Volume.open(path.join(dir, 'missing.img'), small));
    expect(missing.code).toBe('ENOENT');
    expect((missing.cause as { code?: string }).code).toBe('ENOENT');
  });

  it('read, write and discard name a bad offset or length and its type; write takes any ArrayBufferView or ArrayBuffer', async () => {
    const v = await track(Volume.create(new nvme.MemoryBackend({ size: 8 << 20 }), { logicalSize: 1 << 20, ...small }));
    const r0 = await failure(v.read(0, undefined as never));
    expect(r0.code).toBe('EINVAL');
    expect(r0.message).toBe('volume.read: length must be a whole number of bytes ≥ 0, got undefined');
    expect((await failure(v.read('4096' as never, 10))).message).toBe('volume.read: offset must be a whole number of bytes ≥ 0, got the string "4096"');
    expect((await failure(v.write(1.5, new Uint8Array(1)))).message).toMatch(/offset must be .*, got the number 1.5/);
    expect((await failure(v.discard(0, 2 << 20))).message).toMatch(/reach past the end of the 1048576-byte volume/);
    const big = await failure(v.write(0, 'x'.repeat(20000) as never));
    expect(big.message.length).toBeLessThan(200);
    const words = new Uint16Array(2048).map((_, i) => i * 7);
    await v.write(0, words);
    await v.write(BS, words.buffer);
    await v.write(2 * BS, new DataView(words.buffer, 2, 8));
    const back = await v.read(0, 3 * BS);
    expect(Buffer.compare(back.subarray(0, BS), new Uint8Array(words.buffer))).toBe(0);
    expect(Buffer.compare(back.subarray(BS, 2 * BS), new Uint8Array(words.buffer))).toBe(0);
    expect(Buffer.compare(back.subarray(2 * BS, 2 * BS + 8), new Uint8Array(words.buffer, 2, 8))).toBe(0);
  });

  it('await using closes the volume at the end of the scope', async () => {
    const p = image();
    {
      await using v = await Volume.create(p, { logicalSize: 1 << 20, ...small });
      await v.write(0, Uint8Array.of(1));
    }
    expect(fs.existsSync(`${p}.lock`)).toBe(false);
    await using w = await Volume.open(p, small);
    expect((await w.read(0, 1))[0]).toBe(1);
  });
});
