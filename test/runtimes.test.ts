/**
 * The same package under Node, Deno and Bun (both installed from npm as
 * devDependencies): each runs test/smoke/smoke.mjs against the built dist/.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const smoke = join(root, 'test', 'smoke', 'smoke.mjs');
const bin = (name: string) => join(root, 'node_modules', '.bin', name);

const runtimes: [string, string, string[]][] = [
  ['node', process.execPath, [smoke]],
  ['deno', bin('deno'), ['run', smoke]],
  ['bun', bin('bun'), [smoke]],
];

describe('runtime smoke suite', () => {
  for (const [name, exe, args] of runtimes) {
    it(`imports the package and round-trips every codec under ${name}`, () => {
      expect(existsSync(exe), `${exe} is installed (npm install)`).toBe(true);
      const out = execFileSync(exe, args, { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
      const result = JSON.parse(out.trim().split('\n').pop()!);
      expect(result.runtime.startsWith(name)).toBe(true);
      expect(result.failures).toEqual([]);
    });
  }
});
