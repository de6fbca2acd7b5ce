/**
 * The block map's checkpoint writes against a device whose writes complete
 * only when the test says, reading the page buffer at completion (as a DMA
 * may): a page being written is neither evicted (its buffer freed and reused
 * by the next load, or the page reloaded from the old media copy) nor torn
 * by mappings set while its write is in flight.
 */
import { describe, expect, it } from 'vitest';
import { Runtime, SlabPool } from '../dist/index.js';
import { BlockMap, mappingOf } from '../dist/vdo/block-map.js';
import { MAP_ENTRIES_PER_PAGE } from '../dist/vdo/encodings.js';
import type { BlockDevice } from '../dist/vdo/block-device.js';

const NONCE = 0x1234567;

/** Blocks in a Map; writes wait in `held` until release(). */
class HeldDevice {
  readonly media = new Map<number, Uint8Array>();
  readonly held: { vb: number; desc: number; done: () => void }[] = [];
  hold = false;
  constructor(private readonly pool: SlabPool) {}
  private buf(desc: number): Uint8Array {
    const at = this.pool.bufferOf(desc);
    return new Uint8Array(this.pool.memory.buffer, at, 4096);
  }
  async flush(): Promise<void> {}
  async read(vb: number, desc: number): Promise<void> {
    this.buf(desc).set(this.media.get(vb) ?? new Uint8Array(4096));
  }
  write(vb: number, desc: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.media.set(vb, this.buf(desc).slice());
        resolve();
      };
      if (this.hold) this.held.push({ vb, desc, done });
      else done();
    });
  }
  release(): void {
    this.hold = false;
    for (const w of this.held.splice(0)) w.done();
  }
}

function setup(): { pool: SlabPool; dev: HeldDevice; map: () => BlockMap } {
  const pool = SlabPool.create(new Runtime(), [{ size: 4096, count: 64 }]);
  const dev = new HeldDevice(pool);
  // Root at block 1; tree pages from block 10 on, as a depot would hand them out.
  let next = 10;
  const map = (): BlockMap => {
    const m = new BlockMap(dev as unknown as BlockDevice, pool, 1, MAP_ENTRIES_PER_PAGE * 20, NONCE, 2, 2, 1000);
    m.setAllocator({ allocateMapPage: () => next++ });
    return m;
  };
  return { pool, dev, map };
}

async function mappingAt(map: BlockMap, lba: number): Promise<number> {
  const p = await map.page(lba);
  try {
    return map.get(p, lba);
  } finally {
    map.unpin(p);
  }
}

async function setAt(map: BlockMap, lba: number, m: number): Promise<void> {
  const p = await map.page(lba);
  await map.place(p);
  map.set(p, lba, m, 0);
  map.unpin(p);
}

describe('block map checkpoint writes in flight', () => {
  it('a page being written stays cached while loads of other pages need room, and lands whole', async () => {
    const { dev, map: newMap } = setup();
    const map = newMap();
    await setAt(map, 5, mappingOf(100, 1));
    dev.hold = true;
    const checkpoint = map.writeDirty();
    await new Promise((r) => setTimeout(r, 5));
    expect(dev.held.length).toBe(1);
    // Loads of twelve other pages through a two-page cache, while page 0's write is held.
    for (let pi = 1; pi <= 12; pi++) expect(await mappingAt(map, pi * MAP_ENTRIES_PER_PAGE)).toBe(0);
    expect(await mappingAt(map, 5)).toBe(mappingOf(100, 1));
    dev.release();
    await checkpoint;
    // A fresh cache reads page 0 from the media: whole, and with the mapping.
    expect(await mappingAt(newMap(), 5)).toBe(mappingOf(100, 1));
  });

  it('mappings set while the page is being written never tear it; the next checkpoint writes them', async () => {
    const { dev, map: newMap } = setup();
    const map = newMap();
    await setAt(map, 0, mappingOf(100, 1));
    dev.hold = true;
    const checkpoint = map.writeDirty();
    await new Promise((r) => setTimeout(r, 5));
    expect(dev.held.length).toBe(1);
    // Every sector of the page changes while the write is in flight.
    for (let lba = 1; lba < MAP_ENTRIES_PER_PAGE; lba += 37) await setAt(map, lba, mappingOf(200 + lba, 1));
    dev.release();
    await checkpoint;
    const media = newMap();
    expect(await mappingAt(media, 0)).toBe(mappingOf(100, 1)); // no sector fails its checksum
    expect(map.dirtyPages).toBe(1);
    await map.writeDirty();
    const after = newMap();
    for (let lba = 1; lba < MAP_ENTRIES_PER_PAGE; lba += 37) expect(await mappingAt(after, lba)).toBe(mappingOf(200 + lba, 1));
  });

  it('a page written by two checkpoints in a row lands with the newer copy', async () => {
    const { dev, map: newMap } = setup();
    const map = newMap();
    await setAt(map, 0, mappingOf(100, 1));
    dev.hold = true;
    const first = map.writeDirty();
    await new Promise((r) => setTimeout(r, 5));
    await setAt(map, 0, mappingOf(300, 1));
    const second = map.writeDirty();
    await new Promise((r) => setTimeout(r, 5));
    // The second write waits for the first: one held write, not two racing.
    expect(dev.held.length).toBe(1);
    dev.release();
    await first;
    dev.release();
    await second;
    expect(await mappingAt(newMap(), 0)).toBe(mappingOf(300, 1));
  });
});
