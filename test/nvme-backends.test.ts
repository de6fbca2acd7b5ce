/**
 * The NVMe scheduler over its backends: the file backend against node:fs, the
 * fault backend's power-cut, flush, removal, media-error, destage and latency
 * semantics. Imports the built package: device workers load dist/nvme/.
 *
 * Every wait is bounded by a deadline, so a lost completion fails a test
 * instead of hanging it.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fp from '../dist/index.js';
import { prng } from './helpers/data.js';

const { nvme } = fp;
type Backend = fp.nvme.Backend;
type Controller = fp.nvme.Controller;
type IoQpair = fp.nvme.IoQpair;
type Status = fp.nvme.Status;
type IoCallback = fp.nvme.IoCallback;
type FaultBackend = fp.nvme.FaultBackend;
type MemoryBackend = fp.nvme.MemoryBackend;
type PowerCutMode = fp.nvme.PowerCutMode;

const SECTOR = 512;
const DEADLINE_MS = 20_000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---- controllers and temp files, always cleaned up ----

const opened = new Set<Controller>();
afterEach(async () => {
  const cs = [...opened];
  opened.clear();
  await Promise.all(cs.map((c) => c.close()));
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-nvme-'));
let tmpFiles = 0;
const tmpFile = (name: string) => path.join(tmp, `${tmpFiles++}-${name}`);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The error code a call throws synchronously ('none' if it returns). */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return 'none';
}

/**
 * One controller and one queue pair, with promise wrappers: every command's
 * callback is counted, so a command that completes twice is caught.
 */
class Host {
  readonly c: Controller;
  readonly qp: IoQpair;
  pending = 0;
  duplicates = 0;

  private constructor(c: Controller, qp: IoQpair) {
    this.c = c;
    this.qp = qp;
  }

  static async open(backend: Backend, opts: fp.nvme.ControllerOptions = {}, qpOpts: fp.nvme.IoQpairOptions = {}): Promise<Host> {
    const c = await nvme.Controller.open(backend, { runtime: new fp.Runtime(), ioWorkers: 1, ...opts });
    opened.add(c);
    return new Host(c, c.allocIoQpair(qpOpts));
  }

  get ns() {
    return this.c.ns(1);
  }

  get bs(): number {
    return this.ns.blockSize;
  }

  /** Submits one command; settles with its status once a completion pass runs its callback. */
  submit(fn: (cb: IoCallback) => void): Promise<Status> {
    return new Promise<Status>((resolve, reject) => {
      let calls = 0;
      this.pending++;
      try {
        fn((st) => {
          if (++calls > 1) {
            this.duplicates++;
            return;
          }
          this.pending--;
          resolve(st);
        });
      } catch (e) {
        this.pending--;
        reject(e);
      }
    });
  }

  /** Polls until every submitted command has completed (or the deadline fails the test). */
  async drain(ms = DEADLINE_MS): Promise<void> {
    const deadline = performance.now() + ms;
    while (this.pending > 0) {
      if (performance.now() > deadline) throw new Error(`${this.pending} commands did not complete within ${ms} ms`);
      this.qp.processCompletions(0);
      if (this.pending === 0) break;
      if (this.qp.outstandingCount > 0) await this.qp.waitForCompletions(50);
      else await sleep(1);
    }
  }

  async run(fn: (cb: IoCallback) => void): Promise<Status> {
    const p = this.submit(fn);
    await this.drain();
    return p;
  }

  /** Submits writes of whole blocks; buffers are freed once they complete. */
  writeAsync(lba: number, data: Uint8Array, flags = 0): Promise<Status> {
    const pool = this.c.pool;
    const d = pool.alloc(data.length);
    pool.bytes(d, true).set(data);
    return this.submit((cb) => this.qp.write(this.ns, d, lba, data.length / this.bs, cb, undefined, flags)).finally(() => pool.free(d));
  }

  readAsync(lba: number, count: number): Promise<{ status: Status; data: Uint8Array }> {
    const pool = this.c.pool;
    const d = pool.alloc(count * this.bs);
    pool.bytes(d, true).fill(0xee, 0, count * this.bs); // stale bytes a lazy read would leave behind
    return this.submit((cb) => this.qp.read(this.ns, d, lba, count, cb)).then(
      (status) => ({ status, data: pool.bytes(d, true).slice(0, count * this.bs) }),
    ).finally(() => pool.free(d));
  }

  async write(lba: number, data: Uint8Array, flags = 0): Promise<Status> {
    const p = this.writeAsync(lba, data, flags);
    await this.drain();
    return p;
  }

  async read(lba: number, count: number): Promise<Uint8Array> {
    const p = this.readAsync(lba, count);
    await this.drain();
    const { status, data } = await p;
    expect(status.isError, `read ${count} blocks at LBA ${lba}: ${status}`).toBe(false);
    return data;
  }

  flush(): Promise<Status> {
    return this.run((cb) => this.qp.flush(this.ns, cb));
  }

  writeZeroes(lba: number, count: number): Promise<Status> {
    return this.run((cb) => this.qp.writeZeroes(this.ns, lba, count, cb));
  }

  deallocate(ranges: { lba: number; count: number }[]): Promise<Status> {
    return this.run((cb) => this.qp.deallocate(this.ns, ranges, cb));
  }

  async close(): Promise<void> {
    await this.c.close();
    opened.delete(this.c);
  }
}

// ---- data: every 512-byte sector is distinct per (tag, sector number) ----

/** `blocks` blocks of `bs` bytes starting at `lba`, each 512-byte sector seeded by (tag, its sector number). */
function pattern(tag: number, lba: number, blocks: number, bs: number): Uint8Array {
  const out = new Uint8Array(blocks * bs);
  const first = (lba * bs) / SECTOR;
  for (let s = 0; s < out.length / SECTOR; s++) out.set(sectorData(tag, first + s), s * SECTOR);
  return out;
}

function sectorData(tag: number, sector: number): Uint8Array {
  const r = prng(tag * 1_000_003 + sector * 7919 + 1);
  const out = new Uint8Array(SECTOR);
  for (let i = 0; i < SECTOR; i += 4) {
    const v = (r() * 2 ** 32) >>> 0;
    out[i] = v;
    out[i + 1] = v >>> 8;
    out[i + 2] = v >>> 16;
    out[i + 3] = v >>> 24;
  }
  return out;
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0;

/** Which tag each 512-byte sector of `bytes` (starting at LBA `lba`) holds exactly, or -1 for none of them. */
function classify(bytes: Uint8Array, lba: number, bs: number, tags: number[]): number[] {
  const first = (lba * bs) / SECTOR;
  const out: number[] = [];
  for (let s = 0; s < bytes.length / SECTOR; s++) {
    const got = bytes.subarray(s * SECTOR, (s + 1) * SECTOR);
    out.push(tags.find((t) => sameBytes(got, t === 0 ? new Uint8Array(SECTOR) : sectorData(t, first + s))) ?? -1);
  }
  return out;
}

const ZERO = 0; // tag for a zeroed sector in classify()

// =====================================================================

describe('FileBackend', () => {
  for (const bs of [4096, 512]) {
    it(`${bs}-byte namespace: blocks round-trip and land in the file at lba × ${bs} (positional I/O), both ways`, async () => {
      const file = tmpFile(`rt-${bs}.img`);
      const size = 512 * bs;
      const backend = new nvme.FileBackend(file, { blockSize: bs, size });
      expect(fs.statSync(file).size).toBe(size);
      expect(backend.blocks).toBe(512);
      const h = await Host.open(backend, { ioWorkers: 2 });
      expect(h.ns.blockSize).toBe(bs);
      expect(h.ns.blocks).toBe(512);
      // Single blocks, a few blocks, the last block, and one I/O larger than MDTS (split into children).
      const big = Math.floor((160 * 1024) / bs);
      expect(big).toBeGreaterThan(h.ns.maxTransferBlocks);
      const writes: [number, number][] = [[0, 1], [5, 3], [100, big], [511, 1]];
      for (const [lba, n] of writes) expect((await h.write(lba, pattern(7, lba, n, bs))).isError).toBe(false);
      const onDisk = fs.readFileSync(file);
      for (const [lba, n] of writes) {
        expect(sameBytes(await h.read(lba, n), pattern(7, lba, n, bs)), `read back LBA ${lba}`).toBe(true);
        expect(sameBytes(onDisk.subarray(lba * bs, (lba + n) * bs), pattern(7, lba, n, bs)), `file bytes at LBA ${lba}`).toBe(true);
      }
      // Untouched blocks are the file's zeroes.
      expect((await h.read(1, 4)).every((b) => b === 0)).toBe(true);
      // A write through node:fs at an offset reads back through the controller.
      const fd = fs.openSync(file, 'r+');
      try {
        fs.writeSync(fd, pattern(9, 40, 2, bs), 0, 2 * bs, 40 * bs);
      } finally {
        fs.closeSync(fd);
      }
      expect(sameBytes(await h.read(40, 2), pattern(9, 40, 2, bs))).toBe(true);
      // A read spanning written and unwritten blocks.
      const span = await h.read(4, 5);
      expect(sameBytes(span.subarray(0, bs), new Uint8Array(bs))).toBe(true);
      expect(sameBytes(span.subarray(bs, 4 * bs), pattern(7, 5, 3, bs))).toBe(true);
      expect(sameBytes(span.subarray(4 * bs), new Uint8Array(bs))).toBe(true);
      await h.close();
    });

    it(`${bs}-byte namespace: FUA writes and flush succeed and the data is in the file`, async () => {
      const file = tmpFile(`fua-${bs}.img`);
      const h = await Host.open(new nvme.FileBackend(file, { blockSize: bs, size: 64 * bs }));
      const st = await h.write(10, pattern(3, 10, 4, bs), nvme.IO_FLAGS_FUA);
      expect(st.isError, String(st)).toBe(false);
      expect(st).toBe(nvme.SUCCESS);
      expect((await h.write(20, pattern(4, 20, 2, bs))).isError).toBe(false);
      const fl = await h.flush();
      expect(fl.isError, String(fl)).toBe(false);
      const onDisk = fs.readFileSync(file);
      expect(sameBytes(onDisk.subarray(10 * bs, 14 * bs), pattern(3, 10, 4, bs))).toBe(true);
      expect(sameBytes(onDisk.subarray(20 * bs, 22 * bs), pattern(4, 20, 2, bs))).toBe(true);
      await h.close();
    });

    it(`${bs}-byte namespace: write zeroes and deallocate read back as zeroes, in the file too, and leave neighbours alone`, async () => {
      const file = tmpFile(`zero-${bs}.img`);
      const h = await Host.open(new nvme.FileBackend(file, { blockSize: bs, size: 128 * bs }), { ioWorkers: 2 });
      expect((await h.write(0, pattern(5, 0, 128, bs))).isError).toBe(false);
      expect((await h.writeZeroes(10, 20)).isError).toBe(false);
      expect((await h.deallocate([{ lba: 50, count: 5 }, { lba: 127, count: 1 }, { lba: 60, count: 2 }])).isError).toBe(false);
      const all = await h.read(0, 128);
      const onDisk = fs.readFileSync(file);
      expect(sameBytes(all, new Uint8Array(onDisk))).toBe(true);
      const zeroed = new Set<number>();
      for (const [lba, n] of [[10, 20], [50, 5], [127, 1], [60, 2]]) for (let b = lba; b < lba + n; b++) zeroed.add(b);
      for (let b = 0; b < 128; b++) {
        const got = all.subarray(b * bs, (b + 1) * bs);
        const want = zeroed.has(b) ? new Uint8Array(bs) : pattern(5, b, 1, bs);
        expect(sameBytes(got, want), `LBA ${b} ${zeroed.has(b) ? 'zeroed' : 'kept'}`).toBe(true);
      }
      await h.close();
    });
  }

  it('write-behind: completed writes start a background sync every bytesPerSync bytes, one at a time; 0 never does', async () => {
    const bs = 4096;
    const behind = new nvme.FileBackend(tmpFile('behind.img'), { size: 1024 * bs, bytesPerSync: 64 * bs });
    const never = new nvme.FileBackend(tmpFile('never.img'), { size: 1024 * bs, bytesPerSync: 0 });
    for (const backend of [behind, never]) {
      const h = await Host.open(backend);
      // 63 blocks: under the bound; then one more block crosses it.
      expect((await h.write(0, pattern(1, 0, 63, bs))).isError).toBe(false);
      expect(backend.backgroundSyncs).toBe(0);
      expect((await h.write(63, pattern(1, 63, 1, bs))).isError).toBe(false);
      // Four 64-block writes completing in one pass start at most one sync while one runs.
      const batch = [1, 2, 3, 4].map((k) => h.writeAsync(64 * k, pattern(2, 64 * k, 64, bs)));
      await h.drain();
      for (const st of await Promise.all(batch)) expect(st.isError).toBe(false);
      await h.close();
    }
    expect(behind.backgroundSyncs).toBeGreaterThanOrEqual(1);
    expect(behind.backgroundSyncs).toBeLessThanOrEqual(5);
    expect(never.backgroundSyncs).toBe(0);
    expect(codeOf(() => new nvme.FileBackend(tmpFile('bad.img'), { size: bs, bytesPerSync: -1 }))).toBe('EINVAL');
  });

  it('opening: a missing path without size is ENOENT (the OS error as cause); a file smaller than one block, a bad block size or size is EINVAL', () => {
    expect(codeOf(() => new nvme.FileBackend(path.join(tmp, 'no-such-file.img')))).toBe('ENOENT');
    try {
      new nvme.FileBackend(path.join(tmp, 'no-such-file.img'));
    } catch (err) {
      expect(((err as Error).cause as { code?: string }).code).toBe('ENOENT');
    }
    expect(fs.existsSync(path.join(tmp, 'no-such-file.img'))).toBe(false);
    const small = tmpFile('small.img');
    fs.writeFileSync(small, new Uint8Array(1000));
    expect(codeOf(() => new nvme.FileBackend(small, { blockSize: 4096 }))).toBe('EINVAL');
    expect(codeOf(() => new nvme.FileBackend(small, { blockSize: 512 }))).toBe('none'); // 1 whole 512-byte block
    const empty = tmpFile('empty.img');
    fs.writeFileSync(empty, new Uint8Array(0));
    expect(codeOf(() => new nvme.FileBackend(empty, { blockSize: 512 }))).toBe('EINVAL');
    for (const blockSize of [0, 1024, 2048, 8192, 513]) {
      expect(codeOf(() => new nvme.FileBackend(tmpFile('bs.img'), { blockSize, size: 1 << 20 })), `block size ${blockSize}`).toBe('EINVAL');
    }
    for (const size of [0, -4096, 4097, 1.5]) {
      expect(codeOf(() => new nvme.FileBackend(tmpFile('sz.img'), { blockSize: 4096, size })), `size ${size}`).toBe('EINVAL');
    }
    // An existing file without size: its whole blocks.
    const odd = tmpFile('odd.img');
    fs.writeFileSync(odd, new Uint8Array(3 * 4096 + 100));
    expect(new nvme.FileBackend(odd).blocks).toBe(3);
    // size grows a smaller file, never shrinks a larger one.
    new nvme.FileBackend(odd, { size: 8 * 4096 });
    expect(fs.statSync(odd).size).toBe(8 * 4096);
  });

  it('three device workers: hundreds of concurrent random writes, then reads, all correct (and in the file)', async () => {
    const file = tmpFile('many.img');
    const blocks = 1024;
    const h = await Host.open(new nvme.FileBackend(file, { size: blocks * 4096 }), { ioWorkers: 3 });
    expect(h.c.ioWorkers).toBe(3);
    const rand = prng(42);
    // 400 distinct LBAs (a shuffled prefix), so the order concurrent writes land in does not matter.
    const lbas = Array.from({ length: blocks }, (_, i) => i);
    for (let i = lbas.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [lbas[i], lbas[j]] = [lbas[j], lbas[i]];
    }
    const chosen = lbas.slice(0, 400);
    const writes = chosen.map((lba, i) => h.writeAsync(lba, pattern(100 + (i % 5), lba, 1, 4096), i % 17 === 0 ? nvme.IO_FLAGS_FUA : 0));
    expect(h.qp.queuedCount).toBeGreaterThan(0); // more than the trackers: the rest wait in the software queue
    await h.drain();
    const wst = await Promise.all(writes);
    expect(wst.filter((s) => s.isError).map(String), `the controller: ${h.c.whyDown ?? 'live'}`).toEqual([]);
    const reads = chosen.map((lba) => h.readAsync(lba, 1));
    await h.drain();
    const got = await Promise.all(reads);
    const onDisk = fs.readFileSync(file);
    let bad = 0;
    chosen.forEach((lba, i) => {
      const want = pattern(100 + (i % 5), lba, 1, 4096);
      if (got[i].status.isError || !sameBytes(got[i].data, want) || !sameBytes(onDisk.subarray(lba * 4096, (lba + 1) * 4096), want)) bad++;
    });
    expect(bad).toBe(0);
    expect(h.duplicates).toBe(0);
    // Blocks never written are still zero.
    const untouched = lbas.slice(400, 420);
    for (const lba of untouched) expect(onDisk.subarray(lba * 4096, (lba + 1) * 4096).every((b) => b === 0)).toBe(true);
    await h.close();
  });
});

// =====================================================================

const BS = 4096;
const SPB = BS / SECTOR;
const A = 1; // flushed
const B = 2; // unflushed
const C = 3; // FUA (or a second unflushed value)
const D = 4;

interface CutResult {
  report: fp.nvme.PowerCutReport;
  /** Blocks 0..47 as a new controller reads them after power-on. */
  after: Uint8Array;
}

/**
 * On a fresh controller: A on blocks 0..47 and flush, B on 0..15 (no flush),
 * C with FUA on 16..31; cut the power; power on; read back through a new controller.
 */
async function cutScenario(fault: FaultBackend, opts: fp.nvme.PowerCutOptions): Promise<CutResult> {
  const h = await Host.open(fault, { ioWorkers: 2 });
  expect((await h.write(0, pattern(A, 0, 48, BS))).isError).toBe(false);
  expect((await h.flush()).isError).toBe(false);
  expect(fault.unflushedWrites).toBe(0);
  const b = [h.writeAsync(0, pattern(B, 0, 8, BS)), h.writeAsync(8, pattern(B, 8, 8, BS))];
  const c = h.writeAsync(16, pattern(C, 16, 16, BS), nvme.IO_FLAGS_FUA);
  await h.drain();
  for (const st of [...(await Promise.all(b)), await c]) expect(st.isError).toBe(false);
  // What the cache holds before the cut reads back as the newest data.
  expect(sameBytes(await h.read(0, 16), pattern(B, 0, 16, BS))).toBe(true);
  const report = fault.powerCut(opts);
  expect(h.c.failed).toBe(true);
  expect(codeOf(() => h.qp.read(h.ns, 0, 0, 1, () => {}))).toBe('ENXIO');
  await h.close();
  // Still off: no controller attaches.
  await expect(nvme.Controller.open(fault, { runtime: new fp.Runtime(), ioWorkers: 1 })).rejects.toMatchObject({ code: 'ENXIO' });
  fault.powerOn();
  const h2 = await Host.open(fault);
  const after = await h2.read(0, 48);
  await h2.close();
  return { report, after };
}

describe('FaultBackend power cut', () => {
  it("'drop': unflushed writes vanish (A where B was), FUA writes and flushed data survive", async () => {
    const mem = new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS });
    const fault = new nvme.FaultBackend(mem);
    const { report, after } = await cutScenario(fault, { mode: 'drop' });
    expect(sameBytes(after.subarray(0, 16 * BS), pattern(A, 0, 16, BS))).toBe(true);
    expect(sameBytes(after.subarray(16 * BS, 32 * BS), pattern(C, 16, 16, BS))).toBe(true);
    expect(sameBytes(after.subarray(32 * BS), pattern(A, 32, 16, BS))).toBe(true);
    expect(report.sectors).toBe(16 * SPB);
    expect(report.sectorsReverted).toBe(16 * SPB);
    expect(report.unflushedWrites).toBeGreaterThanOrEqual(2);
    // The medium itself (not just what a controller reads) holds the result.
    expect(sameBytes(mem.bytes().subarray(0, 48 * BS), after)).toBe(true);
  });

  it("'keep': the cache made it — B survives, as do C and A", async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }));
    const { report, after } = await cutScenario(fault, { mode: 'keep' });
    expect(sameBytes(after.subarray(0, 16 * BS), pattern(B, 0, 16, BS))).toBe(true);
    expect(sameBytes(after.subarray(16 * BS, 32 * BS), pattern(C, 16, 16, BS))).toBe(true);
    expect(sameBytes(after.subarray(32 * BS), pattern(A, 32, 16, BS))).toBe(true);
    expect(report.sectorsReverted).toBe(0);
  });

  it("'tear': every 512-byte sector of the B blocks is exactly A's or B's, torn blocks occur, the seed decides, flushed and FUA data survive", async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }));
    const outcomes: number[][] = [];
    let tornBlocks = 0;
    const seen = new Set<number>();
    for (const seed of [1, 2, 3, 4, 1]) {
      const { report, after } = await cutScenario(fault, { mode: 'tear', seed });
      const sectors = classify(after.subarray(0, 16 * BS), 0, BS, [A, B]);
      expect(sectors.filter((t) => t === -1).length, `garbage sectors with seed ${seed}`).toBe(0);
      sectors.forEach((t) => seen.add(t));
      for (let b = 0; b < 16; b++) if (new Set(sectors.slice(b * SPB, (b + 1) * SPB)).size > 1) tornBlocks++;
      expect(report.sectors).toBe(16 * SPB);
      expect(report.sectorsReverted).toBe(sectors.filter((t) => t === A).length);
      expect(sameBytes(after.subarray(16 * BS, 32 * BS), pattern(C, 16, 16, BS))).toBe(true);
      expect(sameBytes(after.subarray(32 * BS), pattern(A, 32, 16, BS))).toBe(true);
      outcomes.push(sectors);
    }
    expect([...seen].sort()).toEqual([A, B]);
    expect(tornBlocks).toBeGreaterThan(0);
    expect(outcomes[4]).toEqual(outcomes[0]); // same seed, same tear
    expect(outcomes[1]).not.toEqual(outcomes[0]);
  });

  it("'tear' with 4 KiB atomic sectors never splits a block", async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }), { sectorBytes: 4096 });
    const seen = new Set<number>();
    for (const seed of [11, 12]) {
      const { report, after } = await cutScenario(fault, { mode: 'tear', seed });
      expect(report.sectors).toBe(16);
      const sectors = classify(after.subarray(0, 16 * BS), 0, BS, [A, B]);
      expect(sectors.includes(-1)).toBe(false);
      for (let b = 0; b < 16; b++) expect(new Set(sectors.slice(b * SPB, (b + 1) * SPB)).size, `block ${b} torn`).toBe(1);
      sectors.forEach((t) => seen.add(t));
    }
    expect(seen.size).toBe(2);
  });

  it('overlapping unflushed writes (A flushed, then B, then C on the same blocks): each sector comes back as A, B or C', async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 16 * BS, blockSize: BS }));
    const seen = new Set<number>();
    let mixed = 0;
    const setup = async (): Promise<void> => {
      const h = await Host.open(fault);
      expect((await h.write(0, pattern(A, 0, 8, BS))).isError).toBe(false);
      expect((await h.writeZeroes(8, 2)).isError).toBe(false); // whatever the last round left there
      expect((await h.flush()).isError).toBe(false);
      expect(fault.unflushedWrites).toBe(0);
      expect((await h.write(0, pattern(B, 0, 8, BS))).isError).toBe(false);
      // C overlaps B partly: blocks 2..7 (and 8..9 beyond B).
      expect((await h.write(2, pattern(C, 2, 8, BS))).isError).toBe(false);
      expect(fault.unflushedWrites).toBe(2);
      await h.close();
    };
    const readBack = async (): Promise<number[]> => {
      fault.powerOn();
      const h = await Host.open(fault);
      const got = await h.read(0, 10);
      await h.close();
      return classify(got, 0, BS, [A, B, C, ZERO]);
    };
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      await setup();
      const report = fault.powerCut({ mode: 'tear', seed });
      expect(report.unflushedWrites).toBe(2);
      expect(report.sectors).toBe(10 * SPB);
      const sectors = await readBack();
      for (let s = 0; s < 10 * SPB; s++) {
        const block = Math.floor(s / SPB);
        // Blocks 0..1: A or B. Blocks 2..7: A, B or C. Blocks 8..9: zero (durable) or C.
        const allowed = block < 2 ? [A, B] : block < 8 ? [A, B, C] : [ZERO, C];
        expect(allowed, `seed ${seed} sector ${s} holds ${sectors[s]}`).toContain(sectors[s]);
      }
      for (let s = 2 * SPB; s < 8 * SPB; s++) seen.add(sectors[s]);
      if (new Set(sectors.slice(2 * SPB, 8 * SPB)).size > 1) mixed++;
    }
    expect([...seen].sort()).toEqual([A, B, C]);
    expect(mixed).toBeGreaterThan(0);
    // 'drop' takes every sector back to A (or zero); 'keep' leaves the newest.
    await setup();
    fault.powerCut({ mode: 'drop' });
    expect(await readBack()).toEqual([...Array(8 * SPB).fill(A), ...Array(2 * SPB).fill(ZERO)]);
    await setup();
    fault.powerCut({ mode: 'keep' });
    expect(await readBack()).toEqual([...Array(2 * SPB).fill(B), ...Array(8 * SPB).fill(C)]);
  });

  it("over a FileBackend: 'drop' leaves the flushed and FUA data in the file and reverts the rest", async () => {
    const file = tmpFile('cut.img');
    const fault = new nvme.FaultBackend(new nvme.FileBackend(file, { size: 64 * BS, blockSize: BS }));
    const { report, after } = await cutScenario(fault, { mode: 'drop' });
    const want = new Uint8Array(48 * BS);
    want.set(pattern(A, 0, 16, BS), 0);
    want.set(pattern(C, 16, 16, BS), 16 * BS);
    want.set(pattern(A, 32, 16, BS), 32 * BS);
    expect(sameBytes(after, want)).toBe(true);
    expect(sameBytes(fs.readFileSync(file).subarray(0, 48 * BS), want)).toBe(true);
    expect(report.sectorsReverted).toBe(16 * SPB);
  });

  it('a power cut with I/O in flight completes it with a path error, exactly once', async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }));
    const h = await Host.open(fault, { ioWorkers: 2 });
    fault.setLatency({ writeUs: 30_000_000, readUs: 30_000_000 }); // none can finish before the cut
    const ps = Array.from({ length: 8 }, (_, i) => (i % 2 ? h.writeAsync(i, pattern(B, i, 1, BS)) : h.readAsync(i, 1).then((r) => r.status)));
    await sleep(20);
    fault.powerCut({ mode: 'drop' });
    await h.drain(10_000);
    const sts = await Promise.all(ps);
    for (const st of sts) {
      expect(st.isError).toBe(true);
      expect(st.sct).toBe(nvme.SCT_PATH);
      expect(st.dnr).toBe(true);
    }
    await sleep(50);
    h.qp.processCompletions(0);
    expect(h.duplicates).toBe(0);
    await h.close();
  });
});

// =====================================================================

describe('FaultBackend flush ordering', () => {
  for (const opts of [{ mode: 'drop' }, { mode: 'tear', seed: 5 }, { mode: 'tear', seed: 6 }, { mode: 'keep' }] as { mode: PowerCutMode; seed?: number }[]) {
    it(`writes completed before a flush survive a '${opts.mode}' cut${opts.seed ? ` (seed ${opts.seed})` : ''}; unflushedWrites counts them down to 0`, async () => {
      const mem = new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS });
      const fault = new nvme.FaultBackend(mem);
      const h = await Host.open(fault, { ioWorkers: 2 });
      expect(fault.unflushedWrites).toBe(0);
      const xs = Array.from({ length: 16 }, (_, i) => h.writeAsync(i, pattern(A, i, 1, BS)));
      await h.drain();
      expect((await Promise.all(xs)).every((s) => !s.isError)).toBe(true);
      expect(fault.unflushedWrites).toBe(16);
      expect((await h.flush()).isError).toBe(false);
      expect(fault.unflushedWrites).toBe(0);
      // After the flush: Y over half of X and on fresh blocks.
      const ys = Array.from({ length: 16 }, (_, i) => h.writeAsync(8 + i, pattern(B, 8 + i, 1, BS)));
      await h.drain();
      expect((await Promise.all(ys)).every((s) => !s.isError)).toBe(true);
      expect(fault.unflushedWrites).toBe(16);
      const report = fault.powerCut(opts);
      expect(report.unflushedWrites).toBe(16);
      expect(fault.unflushedWrites).toBe(0);
      await h.close();
      fault.powerOn();
      const h2 = await Host.open(fault);
      const got = await h2.read(0, 24);
      const sectors = classify(got, 0, BS, [A, B, ZERO]);
      // Blocks 0..7: only X ever touched them, before the flush.
      expect(sectors.slice(0, 8 * SPB).every((t) => t === A)).toBe(true);
      // Blocks 8..15: X (flushed) or Y; 16..23: zero (durable) or Y.
      for (let s = 8 * SPB; s < 16 * SPB; s++) expect([A, B]).toContain(sectors[s]);
      for (let s = 16 * SPB; s < 24 * SPB; s++) expect([ZERO, B]).toContain(sectors[s]);
      if (opts.mode === 'drop') {
        // Writes after the flush may be lost: here they all are.
        expect(sectors.slice(8 * SPB, 16 * SPB).every((t) => t === A)).toBe(true);
        expect(sectors.slice(16 * SPB).every((t) => t === ZERO)).toBe(true);
      }
      if (opts.mode === 'keep') expect(sectors.slice(8 * SPB).every((t) => t === B)).toBe(true);
      if (opts.mode === 'tear') expect(new Set(sectors.slice(8 * SPB)).size).toBeGreaterThan(1);
      await h2.close();
    });
  }
});

// =====================================================================

describe('FaultBackend hot removal', () => {
  it('remove() with 10 commands in flight (200 ms latency, 2 workers): each callback fires once, with a path error or success; then ENXIO; close resolves', async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }));
    const h = await Host.open(fault, { ioWorkers: 2 });
    expect((await h.write(0, pattern(A, 0, 10, BS))).isError).toBe(false);
    fault.setLatency({ readUs: 200_000, writeUs: 200_000 });
    const ps = Array.from({ length: 10 }, (_, i) => (i % 2 ? h.writeAsync(i, pattern(B, i, 1, BS)) : h.readAsync(i, 1).then((r) => r.status)));
    expect(h.pending).toBe(10);
    await sleep(30); // two are sleeping in the device, the rest wait in the submission queue
    fault.remove();
    expect(h.c.failed).toBe(true);
    await h.drain(10_000);
    const sts = await Promise.all(ps);
    for (const st of sts) {
      if (st.isError) {
        expect(st.sct, String(st)).toBe(nvme.SCT_PATH);
        expect(st.sc).toBe(nvme.SC_HOST_PATH_ERROR);
        expect(st.dnr).toBe(true);
      }
    }
    expect(sts.filter((s) => s.sct === nvme.SCT_PATH).length).toBeGreaterThan(0);
    // Keep polling: nothing completes a second time.
    for (let i = 0; i < 5; i++) {
      h.qp.processCompletions(0);
      await sleep(10);
    }
    expect(h.duplicates).toBe(0);
    expect(h.qp.outstandingCount).toBe(0);
    expect(codeOf(() => h.qp.read(h.ns, 0, 0, 1, () => {}))).toBe('ENXIO');
    expect(codeOf(() => h.qp.flush(h.ns, () => {}))).toBe('ENXIO');
    expect(codeOf(() => h.c.allocIoQpair())).toBe('ENXIO');
    let timer: ReturnType<typeof setTimeout> | undefined;
    const closed = await Promise.race([
      h.c.close().then(() => 'closed'),
      new Promise<string>((r) => (timer = setTimeout(() => r('close hung'), 10_000))),
    ]);
    clearTimeout(timer);
    expect(closed).toBe('closed');
  });

  it('removal wakes commands sleeping a 30 s latency at once and fails requests still in the software queue', async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }));
    const h = await Host.open(fault, { ioWorkers: 2 }, { ioQueueSize: 4 });
    expect(h.qp.trackers).toBe(3);
    fault.setLatency({ readUs: 30_000_000, writeUs: 30_000_000 });
    const ps = Array.from({ length: 8 }, (_, i) => h.writeAsync(i, pattern(B, i, 1, BS)));
    expect(h.qp.queuedCount).toBe(5);
    await sleep(30);
    fault.remove();
    await h.drain(10_000); // far less than the 30 s the device would sleep
    const sts = await Promise.all(ps);
    expect(sts.map((s) => s.sct)).toEqual(Array(8).fill(nvme.SCT_PATH));
    expect(h.qp.queuedCount).toBe(0);
    expect(h.duplicates).toBe(0);
    await h.close();
  });
});

// =====================================================================

describe('FaultBackend media errors', () => {
  it('injected LBAs fail: reads with UNRECOVERED_READ_ERROR, writes with WRITE_FAULT (SCT 2, dnr); other LBAs work; clearMediaErrors restores', async () => {
    const mem = new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS });
    const fault = new nvme.FaultBackend(mem);
    const h = await Host.open(fault);
    expect((await h.write(0, pattern(A, 0, 40, BS))).isError).toBe(false);
    fault.injectMediaError(5, 2, 'read');
    fault.injectMediaError(10, 1, 'write');
    fault.injectMediaError(20, 1, 'both');
    const readSt = async (lba: number, n: number) => {
      const p = h.readAsync(lba, n);
      await h.drain();
      return (await p).status;
    };
    for (const [lba, n] of [[5, 1], [6, 1], [3, 3], [6, 4], [20, 1]]) {
      const st = await readSt(lba, n);
      expect(st.sct, `read ${n} at ${lba}: ${st}`).toBe(nvme.SCT_MEDIA_ERROR);
      expect(st.sc).toBe(nvme.SC_UNRECOVERED_READ_ERROR);
      expect(st.sc).toBe(0x81);
      expect(st.dnr).toBe(true);
    }
    // Neighbours and write-only LBAs read fine.
    expect(sameBytes(await h.read(4, 1), pattern(A, 4, 1, BS))).toBe(true);
    expect(sameBytes(await h.read(7, 3), pattern(A, 7, 3, BS))).toBe(true);
    expect(sameBytes(await h.read(10, 1), pattern(A, 10, 1, BS))).toBe(true);
    // Writes.
    for (const [lba, n] of [[10, 1], [9, 2], [20, 1]]) {
      const st = await h.write(lba, pattern(D, lba, n, BS));
      expect(st.sct, `write ${n} at ${lba}: ${st}`).toBe(nvme.SCT_MEDIA_ERROR);
      expect(st.sc).toBe(nvme.SC_WRITE_FAULT);
      expect(st.dnr).toBe(true);
    }
    // A faulted write changed nothing.
    expect(sameBytes(mem.bytes().subarray(9 * BS, 11 * BS), pattern(A, 9, 2, BS))).toBe(true);
    expect((await h.write(5, pattern(D, 5, 2, BS))).isError).toBe(false); // read-only error: writes pass
    expect((await h.write(11, pattern(D, 11, 1, BS))).isError).toBe(false);
    fault.clearMediaErrors();
    expect(sameBytes(await h.read(5, 2), pattern(D, 5, 2, BS))).toBe(true);
    expect((await h.write(10, pattern(D, 10, 1, BS))).isError).toBe(false);
    expect((await h.write(20, pattern(D, 20, 1, BS))).isError).toBe(false);
    expect(sameBytes(await h.read(20, 1), pattern(D, 20, 1, BS))).toBe(true);
    expect(sameBytes(await h.read(10, 1), pattern(D, 10, 1, BS))).toBe(true);
    await h.close();
  });

  it('a media error on one child fails the whole split I/O', async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 128 * BS, blockSize: BS }));
    const h = await Host.open(fault, { ioWorkers: 2 });
    expect(h.ns.maxTransferBlocks).toBe(32);
    expect((await h.write(0, pattern(A, 0, 96, BS))).isError).toBe(false);
    fault.injectMediaError(70, 1, 'read');
    const p = h.readAsync(0, 96);
    await h.drain();
    const st = (await p).status;
    expect(st.sct).toBe(nvme.SCT_MEDIA_ERROR);
    expect(st.sc).toBe(nvme.SC_UNRECOVERED_READ_ERROR);
    expect(sameBytes(await h.read(0, 64), pattern(A, 0, 64, BS))).toBe(true);
    await h.close();
  });
});

// =====================================================================

describe('FaultBackend cache destage', () => {
  it('a full cache destages: destages > 0, and a drop cut loses only the writes after the last destage', async () => {
    const mem = new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS });
    // Room for exactly four one-block records (16-byte header + 4 KiB of old data each).
    const fault = new nvme.FaultBackend(mem, { cacheBytes: 4 * (16 + BS) });
    const h = await Host.open(fault);
    for (let lba = 0; lba < 10; lba++) {
      expect((await h.write(lba, pattern(B, lba, 1, BS))).isError).toBe(false);
    }
    // Writes 1-4 logged; the 5th destages them; 5-8 logged; the 9th destages again; 9-10 logged.
    expect(fault.destages).toBe(2);
    expect(fault.unflushedWrites).toBe(2);
    const report = fault.powerCut({ mode: 'drop' });
    expect(report.unflushedWrites).toBe(2);
    expect(report.sectorsReverted).toBe(2 * SPB);
    await h.close();
    fault.powerOn();
    const h2 = await Host.open(fault);
    const got = await h2.read(0, 10);
    expect(sameBytes(got.subarray(0, 8 * BS), pattern(B, 0, 8, BS))).toBe(true);
    expect(got.subarray(8 * BS).every((b) => b === 0)).toBe(true);
    await h2.close();
  });

  it('a write larger than the whole cache is written through and survives a drop cut', async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }), { cacheBytes: 2 * (16 + BS) });
    const h = await Host.open(fault);
    expect((await h.write(0, pattern(B, 0, 1, BS))).isError).toBe(false);
    expect((await h.write(8, pattern(C, 8, 8, BS))).isError).toBe(false);
    expect((await h.write(1, pattern(B, 1, 1, BS))).isError).toBe(false);
    fault.powerCut({ mode: 'drop' });
    await h.close();
    fault.powerOn();
    const h2 = await Host.open(fault);
    const got = await h2.read(0, 16);
    expect(sameBytes(got.subarray(0, BS), pattern(B, 0, 1, BS))).toBe(true); // destaged by the big write
    expect(got.subarray(BS, 2 * BS).every((b) => b === 0)).toBe(true); // logged after it: lost
    expect(sameBytes(got.subarray(8 * BS), pattern(C, 8, 8, BS))).toBe(true);
    await h2.close();
  });
});

// =====================================================================

describe('FaultBackend latency', () => {
  it('with read, write and flush latency set, commands (including split ones) still complete correctly', async () => {
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 128 * BS, blockSize: BS }));
    fault.setLatency({ readUs: 3000, writeUs: 2000, flushUs: 1000 });
    const h = await Host.open(fault, { ioWorkers: 2 });
    const ws = [h.writeAsync(0, pattern(A, 0, 40, BS)), ...Array.from({ length: 8 }, (_, i) => h.writeAsync(50 + i, pattern(B, 50 + i, 1, BS)))];
    await h.drain();
    expect((await Promise.all(ws)).every((s) => !s.isError)).toBe(true);
    expect((await h.flush()).isError).toBe(false);
    const rs = [h.readAsync(0, 40), ...Array.from({ length: 8 }, (_, i) => h.readAsync(50 + i, 1))];
    await h.drain();
    const got = await Promise.all(rs);
    expect(got.every((r) => !r.status.isError)).toBe(true);
    expect(sameBytes(got[0].data, pattern(A, 0, 40, BS))).toBe(true);
    for (let i = 0; i < 8; i++) expect(sameBytes(got[i + 1].data, pattern(B, 50 + i, 1, BS))).toBe(true);
    expect(() => fault.setLatency({ readUs: -1 })).toThrow();
    expect(() => fault.setLatency({ writeUs: 1.5 })).toThrow();
    await h.close();
  });
});
