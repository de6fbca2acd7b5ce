/**
 * `flashpack serve` under Deno and Bun: real NBD clients write and read
 * through it, SIGTERM closes the volume cleanly, and the image checks clean.
 * (TLS-PSK is Node-only: those runtimes' node:tls has no pskCallback, and
 * serve says so with ENOTSUP.)
 */
import { describe, it, expect, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { flashpack, hasTool, killAll, ok, removeTempDirs, repoRoot, run, serve, tempDir } from './helpers/nbd.js';

const runtimes: [string, string[]][] = [
  ['Deno', [path.join(repoRoot, 'node_modules', '.bin', 'deno'), 'run', '-A']],
  ['Bun', [path.join(repoRoot, 'node_modules', '.bin', 'bun')]],
];

afterAll(() => {
  killAll();
  removeTempDirs();
});

describe.skipIf(!hasTool('nbdcopy'))('flashpack serve under other runtimes', () => {
  for (const [name, runtime] of runtimes) {
    it(`${name}: nbdcopy in and out byte-identical, block status from the map, clean close on SIGTERM`, async () => {
      const dir = tempDir(`flashpack-serve-${name.toLowerCase()}-`);
      const img = path.join(dir, 'v.img');
      ok(await flashpack(['create', img, '--size', '32M']));
      const src = path.join(dir, 'in.bin');
      const data = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(1 << 20), randomBytes(5000)]);
      fs.writeFileSync(src, data);
      const sock = path.join(dir, 's.sock');
      const server = await serve(img, { socket: sock }, [], runtime);
      const uri = `nbd+unix:///?socket=${sock}`;
      ok(await run('nbdcopy', [src, uri]));
      const out = path.join(dir, 'out.bin');
      ok(await run('nbdcopy', [uri, out]));
      const back = fs.readFileSync(out);
      expect(back.length).toBe(32 << 20);
      expect(Buffer.compare(back.subarray(0, data.length), data)).toBe(0);
      const map = ok(await run('nbdinfo', ['--map', uri])).stdout;
      expect(map).toMatch(/hole,zero/);
      const log = await server.stop();
      expect(log).toMatch(/closed cleanly/);
      const check = await flashpack(['check', img]);
      expect(check.code, check.stdout + check.stderr).toBe(0);
      expect(check.stdout).toMatch(/clean, 0 problems/);
    });

    it(`${name}: --tls-psk is refused at start with ENOTSUP (no TLS-PSK in its node:tls)`, async () => {
      const dir = tempDir(`flashpack-serve-${name.toLowerCase()}-`);
      const img = path.join(dir, 'v.img');
      ok(await flashpack(['create', img, '--size', '4M']));
      const psk = path.join(dir, 'keys.psk');
      fs.writeFileSync(psk, `alice:${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
      const r = await run(runtime[0], [...runtime.slice(1), path.join(repoRoot, 'bin', 'flashpack.mjs'), 'serve', img, '--listen', '127.0.0.1:0', '--tls-psk', psk]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/ENOTSUP/);
      expect(fs.existsSync(`${img}.lock`)).toBe(false);
    });
  }
});
