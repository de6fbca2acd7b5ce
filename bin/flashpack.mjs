#!/usr/bin/env node
// The flashpack command (src/cli/main.ts, built into dist/). The exit code is
// set, not forced: the process ends when its work is done, so volumes close
// and output drains first.
import process from 'node:process';
import { main } from '../dist/cli/main.js';

// A reader that goes away (`flashpack stats --verbose | head -1`) is not an error.
process.stdout.on('error', (err) => {
  if (err.code !== 'EPIPE') throw err;
});
process.exitCode = await main(process.argv.slice(2));
