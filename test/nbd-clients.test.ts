/**
 * `flashpack serve` against the reference NBD clients, each a real process on
 * a unix socket: qemu-img moves an ext4 disk image in and out byte for byte
 * and maps its free space as zero extents; nbdcopy copies both ways over
 * several connections; nbdinfo reads the export's flags; fio's nbd engine
 * writes with four connections at once and verifies, and its data survives
 * a SIGTERM restart; qemu-io holds a connection open while others write
 * (multi-conn coherence) and sends TRIM, WRITE_ZEROES, FUA and FLUSH. Every
 * image passes `flashpack check` afterwards. Runs bin/flashpack.mjs, so
 * `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { corpusRoot, prng, randomBytes } from './helpers/data.js';
import {
  Interactive, type FioJob, type ServeProcess, flashpack, hasTool, killAll, ok, parseFioJson, removeTempDirs, run, serve, tempDir,
} from './helpers/nbd.js';

const MiB = 1 << 20;
const BS = 4096;
const dir = tempDir('nbd-clients');
const at = (name: string): string => path.join(dir, name);
/** Every image made here; each must pass `flashpack check` at the end. */
const images: string[] = [];
const servers = new Set<ServeProcess>();

beforeAll(() => {
  // Hard requirements (Debian: qemu-utils, libnbd-bin, fio, e2fsprogs): a missing one fails here, by name.
  for (const tool of ['qemu-img', 'qemu-io', 'nbdinfo', 'nbdcopy', 'fio', 'mkfs.ext4', 'e2fsck']) expect(hasTool(tool), `${tool} is not on the PATH`).toBe(true);
});

afterAll(() => {
  killAll();
  removeTempDirs();
});

async function createVolume(name: string, size: string, extra: string[] = []): Promise<string> {
  const img = at(name);
  ok(await flashpack(['create', img, '--size', size, ...extra]));
  images.push(img);
  return img;
}

async function start(img: string, extra: string[] = []): Promise<ServeProcess> {
  const s = await serve(img, { socket: `${img}.sock` }, extra);
  servers.add(s);
  return s;
}

/** SIGTERM; the server must exit 0 (every acknowledged write flushed, the image marked clean). */
async function stop(s: ServeProcess): Promise<string> {
  servers.delete(s);
  return s.stop();
}

/** The server's live NBD counters, asked through its control socket by `flashpack stats`. */
async function nbdCounters(img: string): Promise<Record<string, number>> {
  const doc = JSON.parse(ok(await flashpack(['stats', img, '--json'])).stdout) as { source: string; stats: { nbd: Record<string, number> } };
  expect(doc.source).toBe('server');
  return doc.stats.nbd;
}

interface Extent {
  start: number;
  length: number;
  zero: boolean;
  data: boolean;
}

/** Extents must tile [0, size) in order with no gap or overlap. */
function expectTiling(extents: { start: number; length: number }[], size: number): void {
  let next = 0;
  for (const e of extents) {
    expect(e.start, `extent at ${e.start} after ${next}`).toBe(next);
    expect(e.length).toBeGreaterThan(0);
    next = e.start + e.length;
  }
  expect(next).toBe(size);
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Bytes of `img` in 4 KiB blocks that are all zero. */
function zeroBlockBytes(img: Uint8Array): number {
  let n = 0;
  for (let o = 0; o < img.length; o += BS) if (isZero(img.subarray(o, o + BS))) n += BS;
  return n;
}

/** Parses `nbdinfo --map` lines: "offset length type description". */
function parseNbdinfoMap(text: string): { start: number; length: number; type: number; desc: string }[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s*$/.exec(line);
      if (m === null) throw new Error(`nbdinfo --map line not understood: '${line}'`);
      return { start: Number(m[1]), length: Number(m[2]), type: Number(m[3]), desc: m[4] };
    });
}

/** Random and zero regions (and a repeated run, for dedupe) in `size` bytes. */
function mixedContent(size: number, seed: number): Uint8Array {
  const rand = prng(seed);
  const out = new Uint8Array(size);
  let o = 0;
  while (o < size) {
    const len = Math.min(size - o, (1 + Math.floor(rand() * 16)) * 64 * 1024);
    const kind = Math.floor(rand() * 3);
    if (kind === 0) out.set(randomBytes(len, rand), o);
    else if (kind === 1) out.set(out.subarray(0, len), o); // a copy of the start: dedupe material
    o += len; // kind 2: zeroes
  }
  return out;
}

describe('an ext4 disk image through qemu-img', () => {
  let img: string;
  let server: ServeProcess;
  let disk: Uint8Array;
  const size = 64 * MiB;

  beforeAll(async () => {
    const tree = at('tree');
    fs.cpSync(corpusRoot, path.join(tree, 'corpus'), { recursive: true });
    const rand = prng(7);
    fs.mkdirSync(path.join(tree, 'gen', 'deep', 'er'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'gen', 'random.bin'), randomBytes(2 * MiB, rand));
    fs.writeFileSync(path.join(tree, 'gen', 'zeros.bin'), new Uint8Array(3 * MiB));
    const holed = new Uint8Array(4 * MiB);
    holed.set(randomBytes(MiB, rand), 0);
    holed.set(randomBytes(512 * 1024, rand), 3 * MiB);
    fs.writeFileSync(path.join(tree, 'gen', 'deep', 'with-zeros.bin'), holed);
    for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(tree, 'gen', 'deep', 'er', `note-${i}.txt`), `note ${i}\n`.repeat(i * 10));
    fs.symlinkSync('../corpus', path.join(tree, 'gen', 'corpus-link'));
    const raw = at('disk.raw');
    ok(await run('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', '-d', tree, raw, '64M']));
    disk = new Uint8Array(fs.readFileSync(raw));
    expect(disk.length).toBe(size);
    img = await createVolume('ext4.img', '64M');
    server = await start(img);
  });

  it('qemu-img convert writes the image into the export and reads back every byte; e2fsck finds the copy clean', async () => {
    ok(await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', at('disk.raw'), server.uri]));
    ok(await run('qemu-img', ['convert', '-f', 'raw', server.uri, '-O', 'raw', at('out.raw')]));
    const out = new Uint8Array(fs.readFileSync(at('out.raw')));
    expect(out.length).toBe(size);
    expect(Buffer.compare(out, disk)).toBe(0);
    ok(await run('e2fsck', ['-f', '-n', at('out.raw')]));
  });

  it('qemu-img map reports the free space as zero, non-data extents tiling the export, each truly zero', async () => {
    const extents = JSON.parse(ok(await run('qemu-img', ['map', '--output=json', '-f', 'raw', server.uri])).stdout) as Extent[];
    expectTiling(extents, size);
    const zeros = extents.filter((e) => e.zero && !e.data);
    expect(zeros.length).toBeGreaterThan(0);
    expect(extents.some((e) => e.data && !e.zero)).toBe(true);
    for (const e of zeros) expect(isZero(disk.subarray(e.start, e.start + e.length)), `zero extent ${e.start}+${e.length}`).toBe(true);
    // The ext4 image is mostly free space: nearly every all-zero 4 KiB block is reported as such.
    const reported = zeros.reduce((a, e) => a + e.length, 0);
    expect(Math.max(...zeros.map((e) => e.length))).toBeGreaterThanOrEqual(4 * MiB);
    expect(reported).toBeGreaterThanOrEqual(0.9 * zeroBlockBytes(disk));
  });

  it('nbdinfo --map lists hole,zero extents (base:allocation) summing to the export size', async () => {
    const extents = parseNbdinfoMap(ok(await run('nbdinfo', ['--map', server.uri])).stdout);
    expectTiling(extents, size);
    const zeros = extents.filter((e) => (e.type & 2) !== 0);
    expect(zeros.length).toBeGreaterThan(0);
    expect(zeros.every((e) => e.desc === 'hole,zero' || e.desc === 'zero')).toBe(true);
    expect(extents.some((e) => e.desc === 'data' && e.type === 0)).toBe(true);
    for (const e of zeros) expect(isZero(disk.subarray(e.start, e.start + e.length)), `zero extent ${e.start}+${e.length}`).toBe(true);
    expect(zeros.reduce((a, e) => a + e.length, 0)).toBeGreaterThanOrEqual(0.9 * zeroBlockBytes(disk));
  });
});

describe('nbdcopy and nbdinfo', () => {
  const size = 32 * MiB;
  let img: string;
  let server: ServeProcess;
  let content: Uint8Array;

  beforeAll(async () => {
    img = await createVolume('copy.img', '32M', ['--codec', 'deflate']);
    content = mixedContent(size, 11);
    fs.writeFileSync(at('mixed.bin'), content);
    server = await start(img);
  });

  it('nbdcopy copies a file of random and zero regions in and out over several connections, identical', async () => {
    ok(await run('nbdcopy', ['--flush', '--connections=4', at('mixed.bin'), server.uri]));
    ok(await run('nbdcopy', ['--connections=4', server.uri, at('mixed.out')]));
    expect(Buffer.compare(fs.readFileSync(at('mixed.out')), content)).toBe(0);
    const c = await nbdCounters(img);
    expect(c.writes).toBeGreaterThan(0);
    expect(c.flushes).toBeGreaterThan(0);
    expect(c.errorReplies).toBe(0);
    expect(c.protocolViolations).toBe(0);
  });

  it('nbdinfo --json reports the size and every capability: flush, fua, trim, zero, fast zero, cache, multi-conn; writable', async () => {
    const info = JSON.parse(ok(await run('nbdinfo', ['--json', server.uri])).stdout) as { protocol: string; structured: boolean; exports: Record<string, unknown>[] };
    expect(info.protocol).toBe('newstyle-fixed');
    expect(info.structured).toBe(true);
    expect(info.exports).toHaveLength(1);
    const e = info.exports[0];
    expect(e['export-size']).toBe(size);
    for (const k of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_fast_zero', 'can_cache', 'can_multi_conn']) expect(e[k], k).toBe(true);
    expect(e.is_read_only).toBe(false);
    expect(e.contexts).toContain('base:allocation');
  });

  it('served --read-only: nbdinfo says read-only, an nbdcopy write fails, a read returns the data', async () => {
    await stop(server);
    const ro = await start(img, ['--read-only']);
    try {
      const info = JSON.parse(ok(await run('nbdinfo', ['--json', ro.uri])).stdout) as { exports: Record<string, unknown>[] };
      expect(info.exports[0].is_read_only).toBe(true);
      expect(info.exports[0]['export-size']).toBe(size);
      const w = await run('nbdcopy', [at('mixed.bin'), ro.uri]);
      expect(w.code, w.stderr).not.toBe(0);
      expect(w.timedOut).toBe(false);
      expect(w.stderr).toMatch(/read-only/); // libnbd refuses from the export's flags, before any WRITE is sent
      ok(await run('nbdcopy', [ro.uri, at('ro.out')]));
      expect(Buffer.compare(fs.readFileSync(at('ro.out')), content)).toBe(0);
    } finally {
      await stop(ro);
    }
    server = await start(img);
  });

  it('connections are coherent: a connection held open sees writes made through others, and theirs see its', async () => {
    // qemu-io keeps one connection for the whole test; nbdcopy and nbdinfo open their own.
    const q = new Interactive('qemu-io', ['-f', 'raw', '-d', 'unmap', server.uri], 'qemu-io> ');
    try {
      expect(await q.send('length')).toMatch(/32 MiB/);
      // Its writes, flushed, reach a new connection.
      expect(await q.send('write -P 0x11 0 1M')).toMatch(/wrote 1048576\/1048576 bytes at offset 0\b/);
      await q.send('flush');
      ok(await run('nbdcopy', [server.uri, at('coherent-1.out')]));
      const seen = new Uint8Array(fs.readFileSync(at('coherent-1.out')));
      expect(seen.subarray(0, MiB).every((b) => b === 0x11)).toBe(true);
      expect(Buffer.compare(seen.subarray(MiB), content.subarray(MiB))).toBe(0);

      // Writes through four other connections reach it.
      const next = new Uint8Array(size);
      next.set(randomBytes(size, prng(12)));
      next.fill(0xc3, 0, MiB);
      next.fill(0x3c, size - MiB);
      fs.writeFileSync(at('next.bin'), next);
      ok(await run('nbdcopy', ['--flush', '--connections=4', at('next.bin'), server.uri]));
      expect(await q.send(`read -P 0xc3 0 1M`)).toMatch(/read 1048576\/1048576 bytes at offset 0\b/);
      expect(await q.send(`read -P 0x3c ${size - MiB} 1M`)).toMatch(new RegExp(`read 1048576/1048576 bytes at offset ${size - MiB}\\b`));
      expect(q.output).not.toMatch(/Pattern verification failed|error/i);

      // TRIM, WRITE_ZEROES (with and without NO_HOLE), a FUA write and FLUSH from the held connection.
      const before = await nbdCounters(img);
      expect(await q.send(`discard ${4 * MiB} ${4 * MiB}`)).toMatch(/discard 4194304\/4194304 bytes/);
      expect(await q.send(`write -z ${8 * MiB} ${4 * MiB}`)).toMatch(/wrote 4194304\/4194304 bytes at offset 8388608\b/);
      expect(await q.send(`write -z -u ${12 * MiB} ${4 * MiB}`)).toMatch(/wrote 4194304\/4194304 bytes at offset 12582912\b/);
      expect(await q.send(`write -f -P 0x77 ${16 * MiB} 64k`)).toMatch(/wrote 65536\/65536 bytes at offset 16777216\b/);
      await q.send('flush');
      expect(await q.send(`read -P 0 ${4 * MiB} ${12 * MiB}`)).toMatch(/read 12582912\/12582912 bytes/);
      expect(q.output).not.toMatch(/Pattern verification failed|error/i);
      const after = await nbdCounters(img);
      expect(after.trims - before.trims).toBeGreaterThanOrEqual(1);
      expect(after.writeZeroes - before.writeZeroes).toBeGreaterThanOrEqual(2);
      expect(after.flushes - before.flushes).toBeGreaterThanOrEqual(1);
      expect(after.errorReplies).toBe(0);

      // Another connection reads the zeroes and sees the trimmed and zeroed ranges as zero extents.
      ok(await run('nbdcopy', [server.uri, at('coherent-2.out')]));
      const got = new Uint8Array(fs.readFileSync(at('coherent-2.out')));
      const want = next.slice();
      want.fill(0, 4 * MiB, 16 * MiB);
      want.fill(0x77, 16 * MiB, 16 * MiB + 65536);
      expect(Buffer.compare(got, want)).toBe(0);
      const map = parseNbdinfoMap(ok(await run('nbdinfo', ['--map', server.uri])).stdout);
      expectTiling(map, size);
      const zeroBytesIn = (from: number, to: number): number =>
        map.filter((e) => (e.type & 2) !== 0).reduce((a, e) => a + Math.max(0, Math.min(to, e.start + e.length) - Math.max(from, e.start)), 0);
      expect(zeroBytesIn(4 * MiB, 16 * MiB)).toBe(12 * MiB);
      expect(zeroBytesIn(16 * MiB, 16 * MiB + 65536)).toBe(0);
      expect(await q.close()).toBe(0);
    } finally {
      q.kill();
    }
  });
});

describe("fio's nbd engine", () => {
  let img: string;
  let server: ServeProcess;
  const jobs = 4;
  const perJob = 4 * MiB;

  beforeAll(async () => {
    img = await createVolume('fio.img', '64M');
    server = await start(img);
  });

  const nbdinfoOk = async (): Promise<void> => void ok(await run('nbdinfo', [server.uri]));

  async function fio(args: string[]): Promise<{ jobs: FioJob[]; stdout: string; stderr: string; code: number | null }> {
    // In the temp dir, saving no verify state: fio writes nothing into the checkout.
    const r = await run('fio', ['--ioengine=nbd', `--uri=${server.uri}`, '--output-format=json', '--verify_state_save=0', ...args], { cwd: dir, timeoutMs: 60_000 });
    expect(r.timedOut, r.stderr).toBe(false);
    const report = parseFioJson(r.stdout);
    return { jobs: report.jobs, stdout: r.stdout, stderr: r.stderr, code: r.code };
  }

  it('random 4 KiB writes, iodepth 16, four jobs on four connections, fsync every 32: every block verifies (crc32c)', async () => {
    const before = await nbdCounters(img);
    const r = await fio([
      '--name=randwrite', '--rw=randwrite', '--bs=4k', '--iodepth=16', `--numjobs=${jobs}`, `--size=${perJob}`, '--offset=0',
      `--offset_increment=${perJob}`, '--fsync=32', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.jobs).toHaveLength(jobs);
    for (const j of r.jobs) {
      expect(j.error, r.stderr).toBe(0);
      expect(j.total_err ?? 0).toBe(0);
      expect(j.write.io_bytes).toBe(perJob);
      expect(j.read.io_bytes).toBe(perJob); // the verify pass
      expect(j.sync.total_ios).toBeGreaterThan(0);
    }
    expect(r.stderr).not.toMatch(/verify:|bad magic|crc32c/i);
    const after = await nbdCounters(img);
    expect(after.connectionsTotal - before.connectionsTotal).toBeGreaterThanOrEqual(jobs);
    expect(after.flushes - before.flushes).toBeGreaterThanOrEqual(jobs * ((perJob / BS / 32) | 0));
    expect(after.errorReplies).toBe(0);
    expect(after.protocolViolations).toBe(0);
  });

  it('FUA writes and FLUSH (qemu-io; fio 3.33 nbd engine has no FUA option) land and read back', async () => {
    const off = 20 * MiB;
    const r = ok(await run('qemu-io', ['-f', 'raw', server.uri, '-c', `write -f -P 0x5a ${off} 64k`, '-c', `writev -f -P 0xa5 ${off + 65536} 4k 4k`,
      '-c', 'flush', '-c', `read -P 0x5a ${off} 64k`, '-c', `read -P 0xa5 ${off + 65536} 8k`]));
    expect(r.stdout).not.toMatch(/Pattern verification failed|error/i);
    expect(r.stdout).toMatch(/read 8192\/8192 bytes/);
  });

  const seq = ['--name=seq', '--rw=write', '--bs=1M', '--iodepth=4', '--size=16M', `--offset=${32 * MiB}`, '--verify=crc32c', '--verify_fatal=1'];

  it('sequential 1 MiB writes survive a SIGTERM restart: a verify-only run after it finds every block', async () => {
    const w = await fio([...seq, '--do_verify=0']);
    expect(w.code, w.stderr).toBe(0);
    expect(w.jobs[0].error).toBe(0);
    expect(w.jobs[0].write.io_bytes).toBe(16 * MiB);
    const log = await stop(server);
    expect(log).toMatch(/closed cleanly/);
    server = await start(img);
    const v = await fio([...seq, '--verify_only']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.jobs[0].error).toBe(0);
    expect(v.jobs[0].read.io_bytes).toBe(16 * MiB);
    expect(v.stderr).not.toMatch(/verify:|bad magic/i);
  });

  it('a read job with --verify over those blocks passes, and over never-written blocks fails (the check has teeth)', async () => {
    const read = ['--name=read', '--rw=read', '--bs=1M', '--iodepth=4', '--size=16M', '--verify=crc32c', '--verify_fatal=1'];
    const good = await fio([...read, `--offset=${32 * MiB}`]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.jobs[0].error).toBe(0);
    expect(good.jobs[0].read.io_bytes).toBe(16 * MiB);
    const bad = await fio([...read, `--offset=${48 * MiB}`]);
    expect(bad.code).not.toBe(0);
    expect(bad.jobs[0].error).not.toBe(0);
    expect(bad.stderr + bad.stdout).toMatch(/bad magic header/);
  });

  it('SIGTERM while fio writes on four connections: the server answers what is in flight, exits 0, and restarts on the image', async () => {
    const before = await nbdCounters(img);
    const load = run('fio', [
      '--ioengine=nbd', `--uri=${server.uri}`, '--name=load', '--rw=randwrite', '--bs=4k', '--iodepth=32', '--numjobs=4', '--size=4M',
      '--offset=0', '--offset_increment=4M', '--time_based', '--runtime=30', '--output-format=json',
    ], { cwd: dir, timeoutMs: 60_000 });
    // Wait (bounded) until writes are flowing on every job's connection.
    const deadline = Date.now() + 20_000;
    for (let c = await nbdCounters(img); c.writes - before.writes < 2000 || c.connections < 4; c = await nbdCounters(img)) {
      expect(Date.now(), 'fio did not get going').toBeLessThan(deadline);
    }
    const t0 = Date.now();
    expect(await stop(server)).toMatch(/SIGTERM: closing[\s\S]*closed cleanly/);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const r = await load;
    expect(r.timedOut, 'fio hung after the server went away').toBe(false);
    server = await start(img);
    await nbdinfoOk();
  });
});

describe('flashpack resize of a served volume', () => {
  it('the server grows both sizes; a new connection sees the new size and writes past the old end; the old data stays', async () => {
    const img = await createVolume('grown.img', '16M', ['--physical-size', '8M']);
    const s = await start(img);
    try {
      const before = randomBytes(6 * MiB, prng(31));
      fs.writeFileSync(at('grown-before.bin'), before);
      ok(await run('nbdcopy', [at('grown-before.bin'), s.uri]));
      const r = ok(await flashpack(['resize', img, '--size', '64M', '--physical-size', '32M', '--json']));
      expect(JSON.parse(r.stdout)).toEqual({ path: img, from: 16 * MiB, logicalSize: 64 * MiB, fromPhysical: 8 * MiB, physicalSize: 32 * MiB, served: true });
      expect(fs.statSync(img).size).toBe(32 * MiB);
      const info = JSON.parse(ok(await run('nbdinfo', ['--json', s.uri])).stdout) as { exports: Record<string, unknown>[] };
      expect(info.exports[0]['export-size']).toBe(64 * MiB);
      // The whole new size through a new connection: the old data, zeroes, and 20 MiB of random data past
      // the old end (more than the old physical size could hold).
      const after = randomBytes(20 * MiB, prng(32));
      const whole = new Uint8Array(64 * MiB);
      whole.set(before, 0);
      whole.set(after, 40 * MiB);
      fs.writeFileSync(at('grown-in.bin'), whole);
      ok(await run('nbdcopy', [at('grown-in.bin'), s.uri]));
      ok(await run('nbdcopy', [s.uri, at('grown.out')]));
      const out = new Uint8Array(fs.readFileSync(at('grown.out')));
      expect(out.length).toBe(64 * MiB);
      expect(Buffer.compare(out.subarray(0, 6 * MiB), before)).toBe(0);
      expect(Buffer.compare(out.subarray(40 * MiB, 60 * MiB), after)).toBe(0);
      // Shrinking is refused by the server, with its code.
      const shrunk = await flashpack(['resize', img, '--size', '32M']);
      expect(shrunk.code).toBe(1);
      expect(shrunk.stderr).toMatch(/^flashpack resize: EINVAL: server \(pid \d+\): volume\.resize: logicalSize 33554432 is smaller/);
    } finally {
      await stop(s);
    }
  });
});

describe('after all of it', () => {
  it('every server stops on SIGTERM with exit 0 and every image passes flashpack check', async () => {
    for (const s of [...servers]) await stop(s);
    expect(images.length).toBe(4); // ext4, nbdcopy, fio, grown
    for (const img of images) {
      const r = ok(await flashpack(['check', img, '--quiet'], { timeoutMs: 60_000 }));
      expect(r.stdout).toMatch(/clean, 0 problems/);
    }
  });
});
