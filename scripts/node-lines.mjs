// Installs official Node builds for the given release lines (majors; default
// 22 24 26) into .cache/node-lines/<major>/, from npm's `node-<os>-<arch>`
// packages, and prints each binary's version. A line already installed is kept
// as it is. test/runtimes.test.ts runs the smoke suites under every line found
// there; .ci/run also runs the full suite under the newest.
//
//   node scripts/node-lines.mjs [major...]
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const DEFAULT_MAJORS = ['22', '24', '26'];
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const linesDir = join(root, '.cache', 'node-lines');
const pkg = `node-${process.platform === 'win32' ? 'win' : process.platform}-${process.arch}`;

/** The node binary of one installed line (the layout test/runtimes.test.ts looks for). */
export function nodeLineBin(major) {
  return join(linesDir, major, 'node_modules', pkg, 'bin', 'node');
}

function install(major) {
  const bin = nodeLineBin(major);
  if (existsSync(bin)) return { bin, installed: false };
  execFileSync('npm', ['install', '--prefix', join(linesDir, major), '--no-save', '--no-audit', '--no-fund', '--loglevel=error', `${pkg}@${major}`], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (!existsSync(bin)) throw new Error(`npm installed ${pkg}@${major} but ${bin} is missing`);
  return { bin, installed: true };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const majors = process.argv.length > 2 ? process.argv.slice(2) : DEFAULT_MAJORS;
  for (const major of majors) {
    if (!/^\d+$/.test(major)) throw new Error(`node-lines: expected a major version such as 22, got ${JSON.stringify(major)}`);
    const { bin, installed } = install(major);
    const version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
    if (!version.startsWith(`v${major}.`)) throw new Error(`node-lines: ${bin} is ${version}, not Node ${major}`);
    console.log(`node ${major}: ${version} ${installed ? 'installed' : 'already installed'} at ${bin}`);
  }
}
