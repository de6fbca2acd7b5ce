/**
 * Online growth of the logical size (Volume.resize, `flashpack resize`):
 * while writes go on, across a clean close, a crash and a power cut; what is
 * refused (shrinking, a read-only or closed volume); and
 * `check` finding both superblock copies in agreement afterwards.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Volume, checkVolume, nvme } from '../dist/index.js';
import { codeOf } from './helpers/codes.js';
import { prng, randomBytes } from './helpers/data.js';
import { volumeFiles } from './helpers/volume-files.js';

const BS = 4096;
const MiB = 2 ** 20;
const TiB = 2 ** 40;
const { image, track, untrack } = volumeFiles('resize');
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

describe('volume.resize', () => {
  it('grows from 64 MiB to 1 TiB while writes go on; the new size holds after a close, a crash and in check', async () => {
    const p = image();
    let v = await track(Volume.create(p, { logicalSize: 64 * MiB, physicalSize: 256 * MiB, codec: 'lz4', workers: 1 }));
    const rand = prng(8);
    const model = new Map<number, Uint8Array>();
    const write = (lba: number): Promise<void> => {
      const d = randomBytes(BS, rand);
      model.set(lba, d);
      return v.write(lba * BS, d);
    };
    const oldBlocks = (64 * MiB) / BS;
    // Writes in flight across the resize, all inside the old size.
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) inflight.push(write(Math.floor(rand() * oldBlocks)));
    const grown = v.resize({ logicalSize: TiB });
    for (let i = 0; i < 200; i++) inflight.push(write(Math.floor(rand() * oldBlocks)));
    await grown;
    expect(v.logicalSize).toBe(TiB);
    expect(v.stats().logicalBlocks).toBe(TiB / BS);
    // Past the old end, and at the new last block.
    for (const lba of [oldBlocks, oldBlocks + 424 * 968 + 5, TiB / BS - 1]) inflight.push(write(lba));
    await Promise.all(inflight);
    const expectModel = async (vol: Volume, when: string): Promise<void> => {
      for (const [lba, d] of model) expect(same(await vol.read(lba * BS, BS), d), `${when}: LBA ${lba}`).toBe(true);
    };
    await expectModel(v, 'after the resize');
    await untrack(v, 'close');
    expect((await checkVolume(p)).problems).toEqual([]);

    v = await track(Volume.open(p, { workers: 1 }));
    expect(v.logicalSize).toBe(TiB);
    await expectModel(v, 'after a close');
    // Grow again, write past the old end, crash after a flush.
    await v.resize({ logicalSize: 2 * TiB });
    await write(2 * (TiB / BS) - 7);
    await v.flush();
    await untrack(v, 'abandon');
    v = await track(Volume.open(p, { workers: 1 }));
    expect(v.logicalSize).toBe(2 * TiB);
    await expectModel(v, 'after a crash');
    await untrack(v, 'close');
    const r = await checkVolume(p, { scrub: true });
    expect(r.problems).toEqual([]);
    expect(r.logicalBlocks).toBe((2 * TiB) / BS);
  }, 60_000);

  it('a power cut right after resize() returns keeps the new size; one during it opens at the old or the new size with every flushed block', async () => {
    for (const during of [false, true]) {
      const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 32 * MiB }));
      let v = await Volume.create(fault, { logicalSize: 16 * MiB, physicalSize: 32 * MiB, codec: 'lz4', workers: 1 });
      const d = randomBytes(BS, prng(4));
      await v.write(5 * BS, d);
      await v.flush();
      const grown = v.resize({ logicalSize: 64 * MiB });
      if (!during) await grown;
      fault.powerCut({ mode: 'drop' });
      await grown.catch(() => {});
      await v.abandon();
      fault.powerOn();
      v = await Volume.open(fault, { workers: 1 });
      if (!during) expect(v.logicalSize).toBe(64 * MiB);
      else expect([16 * MiB, 64 * MiB]).toContain(v.logicalSize);
      expect(same(await v.read(5 * BS, BS), d)).toBe(true);
      await v.close();
    }
  });

  it('refuses to shrink, a read-only or closed volume; the same size changes nothing', async () => {
    const p = image();
    const v = await track(Volume.create(p, { logicalSize: 64 * MiB, codec: 'lz4', workers: 1 }));
    const message = async (q: Promise<unknown>): Promise<string> => q.then(() => 'ok', (err: Error) => `${(err as { code?: string }).code}: ${err.message}`);
    expect(await message(v.resize({ logicalSize: 32 * MiB }))).toBe(`EINVAL: volume.resize: logicalSize ${32 * MiB} is smaller than the volume's ${64 * MiB} bytes; shrinking is refused (it would drop the data past the new end)`);
    expect(await codeOf(v.resize({ logicalSize: 64 * MiB + 100 }))).toBe('EINVAL');
    expect(await codeOf(v.resize({ logicalSize: 2 ** 51 }))).toBe('EINVAL');
    expect(await codeOf(v.resize({ logicalSize: '1G' as unknown as number }))).toBe('EINVAL');
    expect(await codeOf(v.resize({ size: 1 } as never))).toBe('EINVAL');
    const writes = v.stats().biosOut.write;
    await v.resize({ logicalSize: 64 * MiB });
    await v.resize({});
    expect(v.stats().biosOut.write).toBe(writes);
    await untrack(v, 'close');
    expect(await codeOf(v.resize({ logicalSize: TiB }))).toBe('ENXIO');
    const ro = await track(Volume.open(p, { workers: 1, readOnly: true }));
    expect(await codeOf(ro.resize({ logicalSize: TiB }))).toBe('EROFS');
  });

  it('flashpack resize grows a closed volume, and refuses to shrink it (exit 1, the error code)', () => {
    const p = image();
    const bin = join(import.meta.dirname, '..', 'bin', 'flashpack.mjs');
    const run = (...args: string[]): { status: number | null; stdout: string; stderr: string } => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
    expect(run('create', p, '--size', '64M').status).toBe(0);
    const grown = run('resize', p, '--size', '1T', '--json');
    expect(grown.status).toBe(0);
    expect(JSON.parse(grown.stdout)).toMatchObject({ path: p, from: 64 * MiB, logicalSize: TiB });
    const shrunk = run('resize', p, '--size', '1G');
    expect(shrunk.status).toBe(1);
    expect(shrunk.stderr).toMatch(/^flashpack resize: EINVAL: volume\.resize: logicalSize 1073741824 is smaller than the volume's 1099511627776 bytes/);
  });
});
