/**
 * The `flashpack` command (bin/flashpack.mjs over the built dist/): every
 * subcommand's help, usage errors (exit 2), failures (exit 1, one stderr line
 * with the error code), create/stats/copy/check end to end on files in a
 * temp directory, copy under Deno and Bun, and the control socket that lets
 * `stats` ask a serving process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { FlashpackError, Volume } from '../dist/index.js';
import { MAP_ENTRIES_PER_PAGE, decodeSuperblock } from '../dist/vdo/encodings.js';
import { VolumeLock, lockDirOf } from '../dist/vdo/volume-lock.js';
import { entryOffset, imageReader, leafBlock } from './helpers/map-image.js';
import { askServer, startControl, REQUEST_BYTES_MAX } from '../dist/nbd/control.js';
import { corpusRoot, prng, randomBytes } from './helpers/data.js';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin', 'flashpack.mjs');
const MiB = 1 << 20;
let dir: string;

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

function flashpack(args: string[], exe: string[] = [process.execPath]): Ran {
  const r = spawnSync(exe[0], [...exe.slice(1), bin, ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(args: string[], exe?: string[]): Ran {
  const r = flashpack(args, exe);
  expect(r.status, `flashpack ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

const at = (name: string): string => join(dir, name);
const stderrLines = (r: Ran): string[] => r.stderr.split('\n').filter((l) => l.length > 0);

/** Random bytes, corpus text, 4 MiB of zeroes, random again: 1 MiB chunks of every kind, and a length that is no multiple of 1 MiB (or 4096). */
function mixedFile(name: string): Uint8Array {
  const rand = prng(7);
  const text = readFileSync(join(corpusRoot, 'cantrbry', 'alice29.txt'));
  const parts = [randomBytes(1.5 * MiB, rand), text, text, new Uint8Array(4 * MiB), randomBytes(12345, rand)];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  writeFileSync(at(name), out);
  return out;
}

beforeAll(() => {
  expect(existsSync(join(root, 'dist', 'cli', 'main.js')), 'dist/cli/main.js is built (npm run build; npm test builds first)').toBe(true);
  dir = mkdtempSync(join(tmpdir(), 'flashpack-cli-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('flashpack command line', () => {
  it('prints usage on stdout and exits 0 for --help, every subcommand --help, and --version', () => {
    expect(ok(['--help']).stdout).toMatch(/^usage: flashpack <command>/);
    for (const cmd of ['create', 'stats', 'copy', 'check', 'serve', 'resize']) {
      const r = ok([cmd, '--help']);
      expect(r.stdout).toMatch(new RegExp(`^usage: flashpack ${cmd} `));
      expect(r.stderr).toBe('');
    }
    const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
    expect(ok(['--version']).stdout.trim()).toBe(`flashpack ${version}`);
  });

  it('exits 2 on usage errors, with the usage line and a hint on stderr', () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /^flashpack: usage: unknown command 'frobnicate'/],
      [['create', 'x.img', '--size', '64M', '--bogus'], /^flashpack create: usage: unknown option '--bogus'/],
      [['create', 'x.img', '--size', '64Q'], /^flashpack create: usage: --size must be a size/],
      [['create', 'x.img'], /^flashpack create: usage: --size is required/],
      [['stats'], /^flashpack stats: usage: missing <path>/],
      [['check', 'a', 'b'], /^flashpack check: usage: unexpected argument 'b'/],
      [['copy', 'a', 'b', '--bs', '1000'], /^flashpack copy: usage: --bs must be a multiple of 4096/],
      [['copy', 'a'], /^flashpack copy: usage: missing <dst>/],
      [['resize', 'x.img'], /^flashpack resize: usage: --size or --physical-size is required/],
    ];
    for (const [args, first] of cases) {
      const r = flashpack(args);
      expect(r.status, args.join(' ')).toBe(2);
      const lines = stderrLines(r);
      expect(lines[0]).toMatch(first);
      expect(lines[1]).toMatch(/^try 'flashpack( \w+)? --help'$/);
      expect(lines).toHaveLength(2);
    }
    expect(existsSync(at('x.img'))).toBe(false);
  });

  it('exits 1 on a failure, with one stderr line naming the error code', () => {
    const missing = flashpack(['stats', 'missing.img']);
    expect(missing.status).toBe(1);
    expect(stderrLines(missing)).toHaveLength(1);
    expect(missing.stderr).toMatch(/^flashpack stats: ENOENT: /);
    ok(['create', 'twice.img', '--size', '1M']);
    const again = flashpack(['create', 'twice.img', '--size', '1M']);
    expect(again.status).toBe(1);
    expect(stderrLines(again)).toEqual([expect.stringMatching(/^flashpack create: EEXIST: .*twice\.img already exists .*pass --overwrite/)]);
    ok(['create', 'twice.img', '--size', '2M', '--overwrite']);
    const odd = flashpack(['create', 'odd.img', '--size', '5000']);
    expect(odd.status).toBe(1);
    expect(odd.stderr).toMatch(/^flashpack create: EINVAL: .*logicalSize/);
  });

  it('creates a volume and reports it as vdostats does (text, --human-readable, --verbose, --json), consistent with Volume.sizeFor', () => {
    const created = JSON.parse(ok(['create', 'new.img', '--size', '64M', '--codec', 'deflate', '--no-dedupe', '--sync', '--json']).stdout);
    const size = Volume.sizeFor({ logicalSize: 64 * MiB, codec: 'deflate', dedupe: false, writePolicy: 'sync' });
    expect(created).toMatchObject({ logicalSize: 64 * MiB, imageSize: size, codec: 'deflate', dedupe: false, writePolicy: 'sync', thin: false });
    expect(statSync(at('new.img')).size).toBe(size);

    const doc = JSON.parse(ok(['stats', 'new.img', '--json']).stdout);
    expect(doc.source).toBe('offline');
    expect(doc.device).toBe('new.img');
    expect(doc.kBlocks).toBe(size / 1024);
    expect(doc.stats.physicalBlocks * 4).toBe(doc.kBlocks);
    expect(doc.stats.logicalBlocks).toBe(16384);
    expect(doc.stats.dataBlocksUsed).toBe(0);
    expect(doc.used).toBe((doc.stats.dataBlocksUsed + doc.stats.overheadBlocksUsed) * 4);
    expect(doc.used + doc.available).toBe(doc.kBlocks);
    expect(doc.usePercent).toBe(Math.round((100 * doc.used) / doc.kBlocks));

    const [header, line, ...rest] = ok(['stats', 'new.img']).stdout.trimEnd().split('\n');
    expect(rest).toEqual([]);
    expect(header).toBe('Device  1K-blocks      Used Available Use% Space saving%');
    expect(line.split(/\s+/)).toEqual(['new.img', String(doc.kBlocks), String(doc.used), String(doc.available), `${doc.usePercent}%`, 'N/A']);
    expect(ok(['stats', 'new.img', '--human-readable']).stdout).toMatch(/^Device\s+Size\s+Used\s+Available Use% Space saving%\nnew\.img\s+\d+\.\dM\s+\d+\.\dM\s+\d+\.\dM\s+\d+%\s+N\/A\n$/);
    const verbose = ok(['stats', 'new.img', '--verbose']).stdout;
    expect(verbose).toMatch(/^new\.img : \n/);
    expect(verbose).toMatch(new RegExp(`\\n  physical blocks +: ${doc.stats.physicalBlocks}\\n`));
    expect(verbose).toMatch(/\n  write policy +: sync\n/);
    expect(verbose).toMatch(/\n  data blocks used +: 0\n/);
    expect(verbose).toMatch(/\n  bios in discard +: 0\n/);
  });

  it('copies a file into a new volume and back out byte for byte, the raw image sparse over the zero region', () => {
    const src = mixedFile('mixed.bin');
    const into = JSON.parse(ok(['copy', 'mixed.bin', 'mixed.img', '--json']).stdout);
    expect(into).toMatchObject({ bytes: src.length, created: true, direction: 'file to new volume' });
    expect(into.savingPercent).toBeGreaterThan(0); // zero chunks skipped, the text compressed and deduplicated
    const logical = Math.ceil(src.length / 4096) * 4096;
    const stats = JSON.parse(ok(['stats', 'mixed.img', '--json']).stdout).stats;
    expect(stats.logicalBlocks * 4096).toBe(logical);
    expect(stats.dedupeAdviceValid).toBe(0); // fresh process: counters start at the open

    const out = ok(['copy', 'mixed.img', 'mixed.out']);
    expect(out.stdout).toMatch(/^copied \d+ bytes \([\d.]+ MiB\) in [\d.]+ s, [\d.]+ MB\/s; volume saving \d+%\n$/);
    const back = new Uint8Array(readFileSync(at('mixed.out')));
    expect(back.length).toBe(logical);
    expect(Buffer.compare(back.subarray(0, src.length), src)).toBe(0);
    expect(back.subarray(src.length).every((b) => b === 0)).toBe(true);
    const st = statSync(at('mixed.out'));
    expect(st.blocks * 512).toBeLessThanOrEqual(st.size - 4 * MiB + 8192); // the 4 MiB of zeroes are holes (but for the blocks at its edges)

    // Volume to volume: the logical blocks of one into another.
    ok(['create', 'copy2.img', '--size', '32M']);
    ok(['copy', 'mixed.img', 'copy2.img', '--bs', '64K']);
    ok(['copy', 'copy2.img', 'copy2.out']);
    const back2 = readFileSync(at('copy2.out'));
    expect(back2.length).toBe(32 * MiB);
    expect(Buffer.compare(back2.subarray(0, src.length), src)).toBe(0);
  });

  it('copies into an existing volume from offset 0, discarding zero chunks and keeping what lies past the file', () => {
    const rand = prng(11);
    const old = randomBytes(12 * MiB, rand);
    writeFileSync(at('old.bin'), old);
    const fresh = new Uint8Array(8 * MiB);
    fresh.set(readFileSync(join(corpusRoot, 'calgary', 'book1')).subarray(0, 6 * MiB), 2 * MiB); // 2 MiB of zeroes first
    writeFileSync(at('fresh.bin'), fresh);
    ok(['create', 'exist.img', '--size', '16M']);
    ok(['copy', 'old.bin', 'exist.img']);
    const into = JSON.parse(ok(['copy', 'fresh.bin', 'exist.img', '--json']).stdout);
    expect(into).toMatchObject({ bytes: 8 * MiB, created: false, direction: 'file to volume' });
    ok(['copy', 'exist.img', 'exist.out']);
    const back = readFileSync(at('exist.out'));
    expect(Buffer.compare(back.subarray(0, 8 * MiB), fresh)).toBe(0); // the zero chunks were discarded, not skipped
    expect(Buffer.compare(back.subarray(8 * MiB, 12 * MiB), old.subarray(8 * MiB))).toBe(0);
    expect(back.subarray(12 * MiB).every((b) => b === 0)).toBe(true);

    writeFileSync(at('big.bin'), new Uint8Array(17 * MiB).fill(1));
    const big = flashpack(['copy', 'big.bin', 'exist.img']);
    expect(big.status).toBe(1);
    expect(stderrLines(big)).toEqual([expect.stringMatching(/^flashpack copy: ENOSPC: big\.bin is 17825792 bytes, more than the 16777216-byte logical size/)]);
    const flags = flashpack(['copy', 'fresh.bin', 'exist.img', '--codec', 'none']);
    expect(flags.status).toBe(2);
  });

  it('refuses to replace a non-empty file without --overwrite (EEXIST), and replaces it with it', () => {
    writeFileSync(at('precious.txt'), 'do not lose me\n');
    const r = flashpack(['copy', 'mixed.img', 'precious.txt']);
    expect(r.status).toBe(1);
    expect(stderrLines(r)).toEqual([expect.stringMatching(/^flashpack copy: EEXIST: precious\.txt already exists .*--overwrite/)]);
    expect(readFileSync(at('precious.txt'), 'utf8')).toBe('do not lose me\n');
    const into = flashpack(['copy', 'mixed.bin', 'precious.txt']);
    expect(into.status).toBe(1);
    expect(into.stderr).toMatch(/^flashpack copy: EEXIST: .*format a volume over it/);
    ok(['copy', 'mixed.img', 'precious.txt', '--overwrite']);
    expect(Buffer.compare(readFileSync(at('precious.txt')), readFileSync(at('mixed.out')))).toBe(0);
  });

  it('checks a good volume (exit 0) and finds one corrupted block-map page byte (exit 1)', () => {
    const good = ok(['check', 'mixed.img']);
    expect(good.stdout).toMatch(/^mixed\.img: clean, 0 problems; \d+ logical blocks used, \d+ data blocks, \d+ packed blocks\n$/);
    const report = JSON.parse(ok(['check', 'mixed.img', '--json', '--no-decode']).stdout);
    expect(report).toMatchObject({ ok: true, problems: [], clean: true });

    writeFileSync(at('bad.img'), readFileSync(at('mixed.img')));
    const img = new Uint8Array(readFileSync(at('bad.img')));
    const sb = decodeSuperblock(img.subarray(0, 4096));
    if (typeof sb === 'string') throw new Error(sb);
    const leaf0 = leafBlock(imageReader(img), sb, 0); // block map page 0: LBAs 0–423
    expect(leaf0).toBeGreaterThanOrEqual(sb.dataStart);
    const fd = openSync(at('bad.img'), 'r+');
    const byte = new Uint8Array(1);
    const where = leaf0 * 4096 + 100; // page 0, sector 0: entries of LBAs 0–52
    readSync(fd, byte, 0, 1, where);
    byte[0] ^= 0x5a;
    writeSync(fd, byte, 0, 1, where);
    closeSync(fd);
    const bad = flashpack(['check', 'bad.img']);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(new RegExp(`block map page 0 \\(PBN ${leaf0}\\) sector 0`));
    expect(bad.stdout).toMatch(/\nbad\.img: clean, 1 problem; /);
    expect(JSON.parse(flashpack(['check', 'bad.img', '--json']).stdout).ok).toBe(false);
  });

  it('check --scrub finds a damaged data block that the plain check cannot see (exit 1), naming PBN and LBA', () => {
    const img = new Uint8Array(readFileSync(at('mixed.img')));
    const sb = decodeSuperblock(img.subarray(0, 4096));
    if (typeof sb === 'string') throw new Error(sb);
    // The first LBA stored as a whole (uncompressed) block, from block map page 0.
    let lba = 0;
    let pbn = 0;
    for (; lba < MAP_ENTRIES_PER_PAGE; lba++) {
      const e = entryOffset(imageReader(img), sb, lba);
      expect(e).toBeGreaterThan(0);
      pbn = (img[e] | (img[e + 1] << 8) | (img[e + 2] << 16) | (img[e + 3] << 24)) >>> 0;
      if (img[e + 4] === 1 && pbn !== 0) break;
    }
    expect(lba).toBeLessThan(MAP_ENTRIES_PER_PAGE);
    img[pbn * 4096 + 123] ^= 0x10;
    writeFileSync(at('rot.img'), img);
    ok(['check', 'rot.img']);
    const bad = flashpack(['check', 'rot.img', '--scrub']);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(new RegExp(`^PBN ${pbn}: holds data whose check 0x[0-9a-f]{8} does not match the block map's .*referenced by LBAs? ${lba}\\b`, 'm'));
    expect(bad.stdout).toMatch(/\nrot\.img: clean, 1 problem; /);
    expect(JSON.parse(flashpack(['check', 'rot.img', '--scrub', '--json']).stdout).problems).toHaveLength(1);
    const both = flashpack(['check', 'rot.img', '--scrub', '--no-decode']);
    expect(both.status).toBe(2);
    expect(stderrLines(both)).toEqual([expect.stringMatching(/^flashpack check: usage: --scrub .* cannot go with --no-decode/), "try 'flashpack check --help'"]);
  });

  it('check refuses a volume open for writing (EBUSY)', () => {
    const lock = VolumeLock.take(at('mixed.img'), 'write');
    try {
      const r = flashpack(['check', 'mixed.img']);
      expect(r.status).toBe(1);
      expect(stderrLines(r)).toEqual([expect.stringMatching(/^flashpack check: EBUSY: .*open for writing by process/)]);
      const c = flashpack(['copy', 'mixed.bin', 'mixed.img']);
      expect(c.stderr).toMatch(/^flashpack copy: EBUSY: .*; stop the server or copy through NBD, e\.g\. nbdcopy\n$/);
    } finally {
      lock.release();
    }
  });

  for (const [runtime, exe] of [
    ['Deno', [join(root, 'node_modules', '.bin', 'deno'), 'run', '-A']],
    ['Bun', [join(root, 'node_modules', '.bin', 'bun')]],
  ] as const) {
    it(`copies into a new volume and back out under ${runtime}`, () => {
      expect(existsSync(exe[0]), `${exe[0]} is installed (npm install)`).toBe(true);
      const name = runtime.toLowerCase();
      const into = JSON.parse(ok(['copy', 'mixed.bin', `${name}.img`, '--json'], [...exe]).stdout);
      expect(into).toMatchObject({ created: true, bytes: statSync(at('mixed.bin')).size });
      ok(['copy', `${name}.img`, `${name}.out`], [...exe]);
      expect(Buffer.compare(readFileSync(at(`${name}.out`)), readFileSync(at('mixed.out')))).toBe(0);
      expect(readdirSync(dir).filter((f) => f.endsWith('.lock'))).toEqual([]);
    });
  }
});

describe('control socket (stats of a served volume)', () => {
  it('answers askServer with the handler stats, and nothing after close', async () => {
    const image = at('served.img');
    let asked = 0;
    const control = await startControl(image, { stats: () => ({ asked: ++asked }) });
    const pointer = join(lockDirOf(image), `serve.${process.pid}.json`);
    expect(JSON.parse(readFileSync(pointer, 'utf8'))).toMatchObject({ pid: process.pid });
    const sock = JSON.parse(readFileSync(pointer, 'utf8')).socket as string;
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    expect(await askServer(image, 'stats')).toEqual({ asked: 1 });
    expect(await askServer(image, 'stats')).toEqual({ asked: 2 });
    await control.close();
    expect(existsSync(pointer)).toBe(false);
    expect(existsSync(lockDirOf(image))).toBe(false);
    expect(await askServer(image, 'stats')).toBeNull();
  });

  it('cuts off a request over 4 KiB and answers an unknown op with an error', async () => {
    const image = at('bounded.img');
    const control = await startControl(image, { stats: () => ({}) });
    try {
      const sock = JSON.parse(readFileSync(join(lockDirOf(image), `serve.${process.pid}.json`), 'utf8')).socket as string;
      const talk = (text: string): Promise<string> => new Promise((resolve) => {
        let got = '';
        const c = connect(sock, () => c.write(text));
        c.setEncoding('utf8');
        c.on('data', (d: string) => (got += d));
        c.on('close', () => resolve(got));
        c.on('error', () => resolve(got));
      });
      expect(await talk('x'.repeat(REQUEST_BYTES_MAX + 100))).toBe('');
      expect(JSON.parse(await talk('{"op":"format"}\n'))).toMatchObject({ ok: false, code: 'EINVAL', message: 'control: unknown op "format" (known: stats, resize)' });
      // A server without a resize handler says so.
      expect(JSON.parse(await talk('{"op":"resize","logicalSize":1}\n'))).toMatchObject({ ok: false, code: 'ENOTSUP' });
    } finally {
      await control.close();
    }
  });

  it('passes a resize request to its handler, only the two sizes, and its error back with the code', async () => {
    const image = at('resized.img');
    const asked: unknown[] = [];
    const control = await startControl(image, {
      stats: () => ({}),
      resize: async (sizes) => {
        asked.push(sizes);
        if (sizes.logicalSize === 1) throw new FlashpackError('EINVAL', 'too small');
        return { grown: true };
      },
    });
    try {
      expect(await askServer(image, 'resize', { logicalSize: 1 << 30, physicalSize: 1 << 29, other: 5 } as never)).toEqual({ grown: true });
      expect(asked).toEqual([{ logicalSize: 1 << 30, physicalSize: 1 << 29 }]);
      await expect(askServer(image, 'resize', { logicalSize: 1 })).rejects.toMatchObject({ code: 'EINVAL', message: `server (pid ${process.pid}): too small` });
    } finally {
      await control.close();
    }
  });

  it('ignores and removes the pointer file of a dead process', async () => {
    const image = at('stale.img');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const lockDir = lockDirOf(image);
    rmSync(lockDir, { recursive: true, force: true });
    mkdirSync(lockDir);
    const pointer = join(lockDir, `serve.${dead}.json`);
    writeFileSync(pointer, JSON.stringify({ pid: dead, socket: join(dir, 'nobody.sock'), since: new Date().toISOString() }));
    expect(await askServer(image, 'stats')).toBeNull();
    expect(existsSync(pointer)).toBe(false);
    rmSync(lockDir, { recursive: true, force: true });
  });

  it('flashpack stats asks the serving process instead of opening the image', async () => {
    const image = at('mixed.img');
    const offline = JSON.parse(ok(['stats', 'mixed.img', '--json']).stdout);
    const live = { ...offline.stats, dataBlocksUsed: offline.stats.dataBlocksUsed + 1, biosIn: { ...offline.stats.biosIn, write: 4242 } };
    const lock = VolumeLock.take(image, 'write'); // as a server holds it: a read-only open would fail EBUSY
    const control = await startControl(image, { stats: () => live });
    try {
      // Asynchronously: the control socket is served by this process's event loop.
      const doc = await new Promise<Ran>((resolve) => {
        execFile(process.execPath, [bin, 'stats', 'mixed.img', '--json'], { cwd: dir }, (err, stdout, stderr) => resolve({ status: err ? 1 : 0, stdout, stderr }));
      });
      expect(doc.status, doc.stderr).toBe(0);
      const parsed = JSON.parse(doc.stdout);
      expect(parsed.source).toBe('server');
      expect(parsed.stats.biosIn.write).toBe(4242);
      expect(parsed.used).toBe(offline.used + 4);
    } finally {
      await control.close();
      lock.release();
    }
  });
});
