/**
 * The superblock's format version: a volume of another version is refused at
 * open with ENOTSUP saying how to move its data (issue 17: format-1 volumes
 * "upgrade in place or are refused with a message saying how"), never read
 * with this build's layout.
 */
import { describe, expect, it } from 'vitest';
import { FlashpackError, Runtime, Volume, nvme } from '../dist/index.js';
import { crc32c } from '../dist/codec/checksum.js';
import { SB_VERSION, SB_VERSION_BLOCK_BYTES, SECTOR_BYTES } from '../dist/vdo/encodings.js';

const BS = 4096;

/** Rewrites both superblock copies' version field and reseals their CRC-32C. */
function setVersion(img: Uint8Array, version: number): void {
  for (let c = 0; c < 2; c++) {
    const v = new DataView(img.buffer, img.byteOffset + c * BS, SECTOR_BYTES);
    v.setUint32(4, version, true);
    v.setUint32(8, 0, true);
    v.setUint32(8, crc32c(img.subarray(c * BS, c * BS + SECTOR_BYTES)), true);
  }
}

describe('format version', () => {
  for (const other of [2, SB_VERSION - 1, SB_VERSION_BLOCK_BYTES + 1]) {
    it(`a volume of format version ${other} is refused with ENOTSUP naming the version and how to copy its data`, async () => {
      const backend = new nvme.MemoryBackend({ size: 8 << 20 });
      const v = await Volume.create(backend, { logicalSize: 1 << 20, codec: 'lz4', workers: 1, runtime: new Runtime() });
      await v.write(0, new Uint8Array(BS).fill(9));
      await v.close();
      setVersion(backend.bytes(), other);
      let err: unknown = null;
      try {
        const w = await Volume.open(backend, { workers: 1, runtime: new Runtime() });
        await w.close();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FlashpackError);
      expect((err as FlashpackError).code).toBe('ENOTSUP');
      expect((err as Error).message).toContain(`format version ${other} (this build reads ${SB_VERSION} and ${SB_VERSION_BLOCK_BYTES})`);
      expect((err as Error).message).toContain('flashpack copy');
      // Refused, not damaged: with its version back, it opens and reads what was written.
      setVersion(backend.bytes(), SB_VERSION);
      const w = await Volume.open(backend, { workers: 1, runtime: new Runtime() });
      expect((await w.read(0, BS))[100]).toBe(9);
      await w.close();
    });
  }
});
