/**
 * The same package under Node, Deno and Bun (both installed from npm as
 * devDependencies): each runs the test/smoke/*.mjs suites against the built dist/.
 * So does every other Node release line installed in .cache/node-lines/<major>/
 * (`node scripts/node-lines.mjs`); under CI (process.env.CI), 22, 24 and 26 must be there.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const bin = (name: string) => join(root, 'node_modules', '.bin', name);
const smoke = (file: string) => join(root, 'test', 'smoke', file);

// The codec smoke suite needs no Deno permissions (the module is embedded); the
// engine's workers load dist/engine/worker.js, which takes --allow-read. The
// NVMe suite's file backend also writes a file in a temp directory, which takes
// --allow-write, and os.tmpdir() reads TMPDIR (or TMP, TEMP): --allow-env. The
// volume suite runs a child of its own runtime (a script that exits without
// close): --allow-run.
const denoPermissions: Record<string, string[]> = {
  'smoke.mjs': [],
  'engine.mjs': ['--allow-read'],
  'nvme.mjs': ['--allow-read', '--allow-write', '--allow-env=TMPDIR,TMP,TEMP'],
  'volume.mjs': ['--allow-read', '--allow-write', '--allow-env=TMPDIR,TMP,TEMP', '--allow-run'],
};
// [test label, executable, arguments per suite, what the suite's report names as its runtime]
const runtimes: [string, string, (file: string) => string[], string][] = [
  ['node', process.execPath, (f) => [smoke(f)], 'node'],
  ['deno', bin('deno'), (f) => ['run', ...denoPermissions[f], smoke(f)], 'deno'],
  ['bun', bin('bun'), (f) => [smoke(f)], 'bun'],
];

// Node release lines besides the one running vitest (scripts/node-lines.mjs installs them).
const REQUIRED_NODE_LINES = ['22', '24', '26'];
const nodeLinesDir = join(root, '.cache', 'node-lines');
const nodePackage = `node-${process.platform === 'win32' ? 'win' : process.platform}-${process.arch}`;
const nodeLineBin = (major: string) => join(nodeLinesDir, major, 'node_modules', nodePackage, 'bin', 'node');
const installedLines = existsSync(nodeLinesDir) ? readdirSync(nodeLinesDir).filter((m) => /^\d+$/.test(m) && existsSync(nodeLineBin(m))) : [];
const ownLine = process.versions.node.split('.')[0];
const missingLines: string[] = [];
for (const major of [...new Set([...REQUIRED_NODE_LINES, ...installedLines])].sort((a, b) => Number(a) - Number(b))) {
  if (major === ownLine) continue; // the 'node' runtime above
  // Under CI a missing line stays in the list, and run() fails on its missing binary.
  if (!installedLines.includes(major) && !process.env.CI) missingLines.push(major);
  else runtimes.push([`node ${major}`, nodeLineBin(major), (f) => [smoke(f)], `node v${major}.`]);
}

function run(exe: string, args: string[]): { runtime: string; failures: string[]; checks: number } {
  expect(existsSync(exe), `${exe} is installed (npm install; Node lines: node scripts/node-lines.mjs)`).toBe(true);
  const child = spawnSync(exe, args, { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  // A suite that found failures still prints its report (and exits 1): parse it, so
  // the assertion on `failures` names the failing check. Without a report, show why.
  const last = (child.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last);
  } catch {
    const why = child.error ? String(child.error) : `exit ${child.status} signal ${child.signal}`;
    throw new Error(`${exe} ${args.join(' ')}: no report (${why})\nstdout: ${(child.stdout ?? '').slice(-2000)}\nstderr: ${(child.stderr ?? '').slice(-2000)}`);
  }
}

describe('runtime smoke suites', () => {
  for (const [name, exe, args, reports] of runtimes) {
    it(`imports the package and round-trips every codec under ${name}`, () => {
      const result = run(exe, args('smoke.mjs'));
      expect(result.runtime.startsWith(reports), `ran under ${result.runtime}`).toBe(true);
      expect(result.failures).toEqual([]);
    });
    it(`runs the engine (workers, rings, crash recovery, close) under ${name}`, () => {
      const result = run(exe, args('engine.mjs'));
      expect(result.runtime.startsWith(reports), `ran under ${result.runtime}`).toBe(true);
      expect(result.checks).toBeGreaterThanOrEqual(10);
      expect(result.failures).toEqual([]);
    });
    it(`runs the NVMe scheduler (memory and file backends, split I/O, queueing, removal, power cut, close) under ${name}`, () => {
      const result = run(exe, args('nvme.mjs'));
      expect(result.runtime.startsWith(reports), `ran under ${result.runtime}`).toBe(true);
      expect(result.checks).toBeGreaterThanOrEqual(10);
      expect(result.failures).toEqual([]);
    });
    it(`runs a volume (file and fault backends, dedupe, compression, discard, reopen, power cut) under ${name}`, () => {
      const result = run(exe, args('volume.mjs'));
      expect(result.runtime.startsWith(reports), `ran under ${result.runtime}`).toBe(true);
      expect(result.checks).toBeGreaterThanOrEqual(10);
      expect(result.failures).toEqual([]);
    });
  }
  // Lines not installed here are named, not skipped: CI requires them all (above);
  // elsewhere `node scripts/node-lines.mjs` brings them.
  if (missingLines.length > 0) console.warn(`runtime smoke suites: node ${missingLines.join(', ')} not installed in .cache/node-lines (node scripts/node-lines.mjs)`);
});
