/**
 * Online growth of the physical size (Volume.resize({ physicalSize }),
 * `flashpack resize --physical-size`): a full volume takes new data once
 * grown, while writes go on; the image file is extended; the reference count
 * region moves to the new tail (twice: the first tail becomes data); the
 * counts survive a clean close (a clean open takes them from the new region),
 * a crash and a power cut at every step of the growth; check agrees; what is
 * refused. And the namespace growth under it (Controller.growNamespace).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { Volume, checkVolume, nvme } from '../dist/index.js';
import { codeOf } from './helpers/codes.js';
import { prng, randomBytes } from './helpers/data.js';
import { volumeFiles } from './helpers/volume-files.js';

const BS = 4096;
const MiB = 2 ** 20;
const { image, track, untrack } = volumeFiles('grow-physical');
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

/** Random (incompressible, never duplicate) blocks written at LBAs, kept in `model`. */
function writer(v: () => Volume, model: Map<number, Uint8Array>, seed: number): (lba: number) => Promise<void> {
  const rand = prng(seed);
  return (lba) => {
    const d = randomBytes(BS, rand);
    model.set(lba, d);
    return v().write(lba * BS, d);
  };
}

async function expectModel(v: Volume, model: Map<number, Uint8Array>, when: string): Promise<void> {
  for (const [lba, d] of model) expect(same(await v.read(lba * BS, BS), d), `${when}: LBA ${lba}`).toBe(true);
}

describe('volume.resize({ physicalSize })', () => {
  it('a full volume grows its file while writes go on, takes new data, and keeps every block across a close, a clean open, a second growth and a crash', async () => {
    const p = image();
    let v = await track(Volume.create(p, { logicalSize: 64 * MiB, physicalSize: 4 * MiB, codec: 'lz4', workers: 1 }));
    const model = new Map<number, Uint8Array>();
    const write = writer(() => v, model, 21);
    const before = v.stats();
    const dataBlocks = before.physicalBlocks - before.overheadBlocksUsed;
    // Fill it: incompressible blocks, one per LBA, until the data region is full.
    let lba = 0;
    for (; lba < dataBlocks - 8; lba++) await write(lba);
    await v.flush();
    let full = false;
    for (let i = 0; i < 64 && !full; i++, lba++) {
      full = (await codeOf(write(lba))) === 'ENOSPC';
      if (full) model.delete(lba);
    }
    expect(full).toBe(true);
    await v.flush();

    // Grow with writes in flight: 100 blocks freed by a discard give them room.
    await v.discard(0, 100 * BS);
    for (let i = 0; i < 100; i++) model.delete(i);
    await v.flush();
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) inflight.push(write(i));
    const grown = v.resize({ physicalSize: 16 * MiB });
    for (let i = 40; i < 80; i++) inflight.push(write(i));
    await grown;
    await Promise.all(inflight);
    expect(fs.statSync(p).size).toBe(16 * MiB);
    expect(v.physicalSize).toBe(16 * MiB);
    expect(v.stats().physicalBlocks).toBe((16 * MiB) / BS);
    // Room for about 3,000 more blocks now.
    const next = lba;
    for (; lba < next + 2500; lba++) await write(lba);
    await v.flush();
    await expectModel(v, model, 'after the growth');
    const used = v.stats().dataBlocksUsed;
    await untrack(v, 'close');
    expect((await checkVolume(p)).problems).toEqual([]);

    // A clean open takes the counts from the moved region: usage as before, nothing rebuilt.
    v = await track(Volume.open(p, { workers: 1 }));
    expect(v.openedClean).toBe(true);
    expect(v.physicalSize).toBe(16 * MiB);
    await v.loaded;
    expect(v.stats().dataBlocksUsed).toBe(used);
    await expectModel(v, model, 'after a clean open');

    // A second growth: the first tail region becomes data. Then a crash after a flush.
    await v.resize({ physicalSize: 24 * MiB, logicalSize: 128 * MiB });
    for (let i = 0; i < 1500; i++, lba++) await write(lba);
    await write((128 * MiB) / BS - 1);
    await v.flush();
    await untrack(v, 'abandon');
    v = await track(Volume.open(p, { workers: 1 }));
    expect(v.openedClean).toBe(false);
    expect(v.physicalSize).toBe(24 * MiB);
    expect(v.logicalSize).toBe(128 * MiB);
    await expectModel(v, model, 'after a crash');
    await v.loaded;
    const s = v.stats();
    expect(s.dataBlocksUsed).toBe(model.size);
    await untrack(v, 'close');
    const r = await checkVolume(p, { scrub: true });
    expect(r.problems).toEqual([]);
    expect(r.physicalBlocks).toBe((24 * MiB) / BS);
  }, 120_000);

  it('a power cut at any point of the growth opens at the old or the new size with every flushed block, and the counts right', async () => {
    // Cut once the growth has made k device writes, for k = 0, 1, 2, … until it returns before the cut. Each
    // of its writes takes 1.5 ms (the fault backend's latency), so the poll below sees them one at a time.
    const cutAt = new Set<number>();
    const sizes = new Set<number>();
    let k = 0;
    for (let done = false; !done; k++) {
      const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 12 * MiB }));
      let v = await Volume.create(fault, { logicalSize: 8 * MiB, physicalSize: 6 * MiB, codec: 'lz4', workers: 1 });
      const model = new Map<number, Uint8Array>();
      const write = writer(() => v, model, 100 + k);
      for (let lba = 0; lba < 300; lba++) await write(lba);
      await v.flush();
      fault.setLatency({ writeUs: 1500 });
      const writesBefore = v.stats().biosOut.write;
      const grown = v.resize({ physicalSize: 12 * MiB });
      let finished = false;
      void grown.then(() => (finished = true), () => (finished = true));
      while (!finished && v.stats().biosOut.write - writesBefore < k) await new Promise((r) => setImmediate(r));
      done = finished;
      const at = v.stats().biosOut.write - writesBefore;
      cutAt.add(at);
      fault.powerCut({ mode: k % 2 === 0 ? 'drop' : 'tear', seed: k });
      await grown.catch(() => {});
      await v.abandon();
      fault.powerOn();
      fault.setLatency({ writeUs: 0 });
      const when = `cut after ${at} writes of the growth`;
      v = await Volume.open(fault, { workers: 1 });
      expect([6 * MiB, 12 * MiB], when).toContain(v.physicalSize);
      sizes.add(v.physicalSize);
      if (done) expect(v.physicalSize).toBe(12 * MiB);
      await expectModel(v, model, when);
      await v.loaded;
      expect(v.stats().dataBlocksUsed, when).toBe(model.size);
      // The new room is usable: 1,000 more blocks fit only after the growth.
      if (v.physicalSize === 12 * MiB) {
        for (let lba = 300; lba < 1300; lba++) await write(lba);
        await v.flush();
        await expectModel(v, model, `${when}, then filled`);
      }
      await v.close();
      if (k > 60) throw new Error('the growth did not finish in 60 device writes');
    }
    // Cuts landed at many points of it, and both outcomes happened.
    expect(cutAt.size).toBeGreaterThanOrEqual(6);
    expect([...sizes].sort((a, b) => a - b)).toEqual([6 * MiB, 12 * MiB]);
  }, 180_000);

  it('refuses to shrink, a growth too small to move the count region, a backend that cannot grow, a read-only volume', async () => {
    const p = image();
    const v = await track(Volume.create(p, { logicalSize: 64 * MiB, physicalSize: 8 * MiB, codec: 'lz4', workers: 1 }));
    const message = async (q: Promise<unknown>): Promise<string> => q.then(() => 'ok', (err: Error) => `${(err as { code?: string }).code}: ${err.message}`);
    expect(await message(v.resize({ physicalSize: 4 * MiB }))).toBe(`EINVAL: volume.resize: physicalSize ${4 * MiB} is smaller than the volume's ${8 * MiB} bytes; shrinking is refused (data may live past the new end)`);
    expect(await message(v.resize({ physicalSize: 8 * MiB + BS }))).toMatch(/^EINVAL: volume\.resize: physicalSize 8392704 grows the volume by less than its reference count region moved to the new end takes \(4 blocks\); grow it to at least 8409088 bytes$/);
    expect(await codeOf(v.resize({ physicalSize: 8 * MiB + 100 }))).toBe('EINVAL');
    expect(await codeOf(v.resize({ physicalSize: 2 ** 44 }))).toBe('EINVAL');
    const writes = v.stats().biosOut.write;
    await v.resize({ physicalSize: 8 * MiB });
    expect(v.stats().biosOut.write).toBe(writes);
    expect(fs.statSync(p).size).toBe(8 * MiB);
    await untrack(v, 'close');
    const ro = await track(Volume.open(p, { workers: 1, readOnly: true }));
    expect(await codeOf(ro.resize({ physicalSize: 16 * MiB }))).toBe('EROFS');
    await untrack(ro, 'close');

    // A fault backend cannot grow its namespace; a memory backend grows within its maxSize.
    const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 8 * MiB }));
    const f = await Volume.create(fault, { logicalSize: 8 * MiB, codec: 'lz4', workers: 1 });
    expect(await message(f.resize({ physicalSize: 16 * MiB }))).toMatch(/^ENOTSUP: controller\.growNamespace: a fault backend cannot grow/);
    expect(f.physicalSize).toBe(8 * MiB);
    await f.close();
    const mem = new nvme.MemoryBackend({ size: 8 * MiB, maxSize: 12 * MiB });
    const m = await Volume.create(mem, { logicalSize: 8 * MiB, codec: 'lz4', workers: 1 });
    expect(await codeOf(m.resize({ physicalSize: 16 * MiB }))).toBe('ENOSPC');
    await m.resize({ physicalSize: 12 * MiB });
    expect(mem.blocks).toBe((12 * MiB) / BS);
    await m.close();
    const again = await Volume.open(mem, { workers: 1 });
    expect(again.physicalSize).toBe(12 * MiB);
    await again.close();
  }, 60_000);

  it('flashpack resize --physical-size extends a closed image; check finds it whole', () => {
    const p = image();
    const bin = join(import.meta.dirname, '..', 'bin', 'flashpack.mjs');
    const run = (...args: string[]): { status: number | null; stdout: string; stderr: string } => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
    expect(run('create', p, '--size', '64M', '--physical-size', '8M').status).toBe(0);
    const grown = run('resize', p, '--physical-size', '32M', '--json');
    expect(grown.stderr).toBe('');
    expect(JSON.parse(grown.stdout)).toEqual({ path: p, from: 64 * MiB, logicalSize: 64 * MiB, fromPhysical: 8 * MiB, physicalSize: 32 * MiB, served: false });
    expect(fs.statSync(p).size).toBe(32 * MiB);
    expect(run('check', p).status).toBe(0);
    const shrunk = run('resize', p, '--physical-size', '16M');
    expect(shrunk.status).toBe(1);
    expect(shrunk.stderr).toMatch(/^flashpack resize: EINVAL: volume\.resize: physicalSize 16777216 is smaller than the volume's 33554432 bytes/);
  });
});

describe('controller.growNamespace', () => {
  it('a read past the end fails until the namespace grows; then the device workers take it', async () => {
    const mem = new nvme.MemoryBackend({ size: 1 * MiB, maxSize: 2 * MiB });
    const c = await nvme.Controller.open(mem, { ioWorkers: 2 });
    try {
      const qp = c.allocIoQpair();
      const buf = c.pool.alloc(BS);
      const status = (lba: number): Promise<number> => new Promise((resolve) => {
        qp.read(c.ns(1), buf, lba, 1, (st) => resolve(st.sct * 256 + st.sc));
        const poll = (): void => {
          if (qp.processCompletions() === 0) setImmediate(poll);
        };
        poll();
      });
      const past = (1 * MiB) / BS;
      expect(() => qp.read(c.ns(1), buf, past, 1, () => {})).toThrow(/past the namespace's 256 blocks/);
      expect(await codeOf(Promise.resolve().then(() => c.growNamespace(1024)))).toBe('ENOSPC');
      c.growNamespace(512);
      expect(c.ns(1).blocks).toBe(512);
      expect(await status(past)).toBe(0);
      expect(await status(511)).toBe(0);
      c.pool.free(buf);
      c.freeIoQpair(qp);
    } finally {
      await c.close();
    }
  });

  it('a file backend extends its file', async () => {
    const p = image();
    const fb = new nvme.FileBackend(p, { size: 1 * MiB });
    fb.grow(512);
    expect(fs.statSync(p).size).toBe(2 * MiB);
    expect(fb.blocks).toBe(512);
    const ro = new nvme.FileBackend(p, { readOnly: true });
    expect(() => ro.grow(1024)).toThrow(/read-only/);
  });
});
