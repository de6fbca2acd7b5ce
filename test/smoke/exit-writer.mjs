// Writes to a new volume and ends without flush or close (test/smoke/volume.mjs
// runs it in a child of the same runtime): a clean exit must keep every
// acknowledged write. Usage: exit-writer.mjs <image>.
import process from 'node:process';
import * as fp from '../../dist/index.js';

const image = process.argv.at(-1);
const v = await fp.Volume.create(image, { logicalSize: 1 << 20, workers: 1, ioWorkers: 1 });
for (let i = 0; i < 64; i++) v.write(i * 4096, new Uint8Array(4096).fill(i + 1));
await v.write(64 * 4096, new TextEncoder().encode('the last write'));
