/**
 * The same package under Node, Deno and Bun (both installed from npm as
 * devDependencies): each runs the test/smoke/*.mjs suites against the built dist/.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const bin = (name: string) => join(root, 'node_modules', '.bin', name);
const smoke = (file: string) => join(root, 'test', 'smoke', file);

// The codec smoke suite needs no Deno permissions (the module is embedded); the
// engine's workers load dist/engine/worker.js, which takes --allow-read. The
// NVMe suite's file backend also writes a file in a temp directory, which takes
// --allow-write, and os.tmpdir() reads TMPDIR (or TMP, TEMP): --allow-env.
const denoPermissions: Record<string, string[]> = {
  'smoke.mjs': [],
  'engine.mjs': ['--allow-read'],
  'nvme.mjs': ['--allow-read', '--allow-write', '--allow-env=TMPDIR,TMP,TEMP'],
  'volume.mjs': ['--allow-read', '--allow-write', '--allow-env=TMPDIR,TMP,TEMP'],
};
const runtimes: [string, string, (file: string) => string[]][] = [
  ['node', process.execPath, (f) => [smoke(f)]],
  ['deno', bin('deno'), (f) => ['run', ...denoPermissions[f], smoke(f)]],
  ['bun', bin('bun'), (f) => [smoke(f)]],
];

function run(exe: string, args: string[]): { runtime: string; failures: string[]; checks: number } {
  expect(existsSync(exe), `${exe} is installed (npm install)`).toBe(true);
  const out = execFileSync(exe, args, { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'ignore'], timeout: 120_000 });
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe('runtime smoke suites', () => {
  for (const [name, exe, args] of runtimes) {
    it(`imports the package and round-trips every codec under ${name}`, () => {
      const result = run(exe, args('smoke.mjs'));
      expect(result.runtime.startsWith(name)).toBe(true);
      expect(result.failures).toEqual([]);
    });
    it(`runs the engine (workers, rings, crash recovery, close) under ${name}`, () => {
      const result = run(exe, args('engine.mjs'));
      expect(result.runtime.startsWith(name)).toBe(true);
      expect(result.checks).toBeGreaterThanOrEqual(10);
      expect(result.failures).toEqual([]);
    });
    it(`runs the NVMe scheduler (memory and file backends, split I/O, queueing, removal, power cut, close) under ${name}`, () => {
      const result = run(exe, args('nvme.mjs'));
      expect(result.runtime.startsWith(name)).toBe(true);
      expect(result.checks).toBeGreaterThanOrEqual(10);
      expect(result.failures).toEqual([]);
    });
    it(`runs a volume (file and fault backends, dedupe, compression, discard, reopen, power cut) under ${name}`, () => {
      const result = run(exe, args('volume.mjs'));
      expect(result.runtime.startsWith(name)).toBe(true);
      expect(result.checks).toBeGreaterThanOrEqual(10);
      expect(result.failures).toEqual([]);
    });
  }
});
