/**
 * Volume image files for a test file: a temporary folder removed after the
 * file's tests, and the volumes a test opened closed (or abandoned) after it,
 * whatever it left behind.
 */
import { afterAll, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Volume } from '../../dist/index.js';

export interface VolumeFiles {
  /** A new image path in the folder. */
  image(): string;
  /** The volume `p` resolves to, closed after the test unless untracked first. */
  track(p: Promise<Volume>): Promise<Volume>;
  /** Closes (or abandons: a crash) a tracked volume now. */
  untrack(v: Volume, how: 'close' | 'abandon'): Promise<void>;
}

export function volumeFiles(name: string): VolumeFiles {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `flashpack-${name}-`));
  let n = 0;
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const live = new Set<Volume>();
  afterEach(async () => {
    for (const v of [...live]) await v.close().catch(() => v.abandon());
    live.clear();
  });
  return {
    image: () => path.join(dir, `v${n++}.img`),
    async track(p) {
      const v = await p;
      live.add(v);
      return v;
    },
    async untrack(v, how) {
      live.delete(v);
      await (how === 'close' ? v.close() : v.abandon());
    },
  };
}
