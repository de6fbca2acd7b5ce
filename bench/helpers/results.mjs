// The end of a long benchmark run, shared by the benchmarks that start
// processes: the problems found, the total time, and the numbers written to
// bench/results/<name>.json.
import fs from 'node:fs';
import path from 'node:path';

/** Prints the problems and the total, writes the results file; returns the exit code. */
export function finishRun({ file, command, elapsedSeconds, out, problems, failed, log }) {
  if (problems.length) {
    console.log('\n## Problems\n');
    for (const p of problems) console.log(`- ${p}`);
  }
  console.log(`\nTotal ${(elapsedSeconds / 60).toFixed(1)} min${failed ? '; FAILED' : ''}.`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const record = { generatedAt: new Date().toISOString(), command, elapsedSeconds: Number(elapsedSeconds.toFixed(1)), ...out, problems, failed };
  fs.writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
  log(`wrote ${path.relative(process.cwd(), file)}`);
  return failed ? 1 : 0;
}
