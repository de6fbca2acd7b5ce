// The smoke suites' bookkeeping (test/smoke/*.mjs): count checks, collect
// failures, print one JSON line and exit non-zero on any failure, the same way
// under Node, Deno and Bun.
const failures = [];
let checks = 0;

export function check(name, ok) {
  checks++;
  if (!ok) failures.push(name);
}

export const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

export function report() {
  const runtime = typeof Deno !== 'undefined' ? `deno ${Deno.version.deno}` : typeof Bun !== 'undefined' ? `bun ${Bun.version}` : `node ${process.version}`;
  console.log(JSON.stringify({ runtime, checks, failures }));
  if (failures.length) {
    if (typeof Deno !== 'undefined') Deno.exit(1);
    else process.exit(1);
  }
}
