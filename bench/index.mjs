// flashpack benchmark harness.
//
//   node bench/index.mjs [group...]      groups: lz4, crc, deflate (default: all)
//
// One process, flashpack and its peers side by side, on the test corpus
// (test/corpus) cut into 4 KiB blocks and 1 MiB chunks. Every library is
// verified in an untimed pass before anything is timed. Tables go to stdout
// (markdown), progress to stderr, and the same numbers to bench/results/latest.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as fp from '../dist/index.js';
import { loadCorpus, projectRoot, sizeLabel, splitBlocks } from './corpus.mjs';
import { buildCrcCases } from './crc.mjs';
import { buildDeflateCases, DEFLATE_BENCH_OPTIONS } from './deflate.mjs';
import { buildLz4Cases } from './lz4.mjs';
import { BENCH_OPTIONS, runCases } from './run.mjs';
import { formatMBps, formatRatio, markdownTable } from './table.mjs';

const GROUPS = {
  lz4: { title: 'LZ4 block', build: buildLz4Cases, compression: true },
  crc: { title: 'Checksums', build: buildCrcCases, compression: false },
  deflate: { title: 'Deflate', build: buildDeflateCases, compression: true, options: DEFLATE_BENCH_OPTIONS },
};
const SIZES = [4 << 10, 1 << 20];
const RESULTS_FILE = path.join(projectRoot, 'bench', 'results', 'latest.json');

const started = performance.now();
const log = (...args) => console.error(...args);

// --- arguments -------------------------------------------------------------
const args = process.argv.slice(2);
if (args.includes('-h') || args.includes('--help')) {
  console.log(`usage: node bench/index.mjs [${Object.keys(GROUPS).join('|')}]...   (default: all groups)`);
  process.exit(0);
}
const unknown = args.filter((g) => !(g in GROUPS));
if (unknown.length) {
  console.error(`unknown group(s): ${unknown.join(', ')}; known: ${Object.keys(GROUPS).join(', ')}`);
  process.exit(2);
}
const groups = args.length ? [...new Set(args)] : Object.keys(GROUPS);

warnIfDistStale();

// --- corpus, also copied once into flashpack's shared memory ---------------
const corpus = loadCorpus();
const rt = fp.runtime();
const corpusPtr = rt.reserve(corpus.bytes.length, 64);
rt.u8.set(corpus.bytes, corpusPtr); // rt.u8 read after reserve(): the memory may have grown

const env = environment();
console.log(`# flashpack benchmarks\n`);
console.log(`- ${env.cpu.model} (${env.cpu.count} logical CPUs), ${env.os}; Node ${env.node}`);
console.log(`- corpus: ${corpus.files.length} files, ${corpus.bytes.length.toLocaleString('en-US')} bytes (${path.relative(projectRoot, corpus.dir)}); partial tail dropped per block size`);
console.log(`- peers: ${Object.entries(env.versions).filter(([k]) => k !== 'flashpack' && k !== 'tinybench').map(([k, v]) => `${k} ${v}`).join(', ')}`);
console.log(`- tinybench ${env.versions.tinybench}: ${JSON.stringify(BENCH_OPTIONS)}; one task = one pass over every block`);
for (const group of groups) {
  if (GROUPS[group].options) console.log(`- ${group} group: tinybench ${JSON.stringify(GROUPS[group].options)} (more cases, fewer samples each)`);
}
console.log(`- MB/s = MB of uncompressed input per pass ÷ mean pass latency (10^6 bytes); ratio vs flashpack = flashpack MB/s ÷ row MB/s (>1: flashpack is faster)`);

// --- verify everything first (untimed), so a mismatch aborts before timing --
const plans = [];
for (const group of groups) {
  for (const size of SIZES) {
    const blocks = splitBlocks(corpus.bytes, size);
    const label = `${group} ${sizeLabel(size)}`;
    log(`verifying ${label} (${blocks.length} blocks)…`);
    const cases = await GROUPS[group].build({ blocks, size, rt, corpusPtr });
    plans.push({ group, size, blocks: blocks.length, bytesPerPass: blocks.length * size, label, cases });
  }
}
log(`all libraries verified in ${((performance.now() - started) / 1000).toFixed(1)} s; timing…`);

// --- time ------------------------------------------------------------------
const tables = [];
for (const plan of plans) {
  const rows = await runCases(plan.label, plan.cases, {
    options: GROUPS[plan.group].options,
    progress: (r) => log(`  ${plan.label}: ${r.library} ${r.operation}: ${formatMBps(r.mbps)} MB/s ±${r.rmePercent.toFixed(1)}% (${r.samples} passes)`),
  });
  const table = { group: plan.group, blockSize: plan.size, blocks: plan.blocks, bytesPerPass: plan.bytesPerPass, rows };
  if (GROUPS[plan.group].options) table.tinybench = GROUPS[plan.group].options;
  tables.push(table);
  console.log(`\n${render(table)}`);
}

// --- save ------------------------------------------------------------------
const elapsedSeconds = (performance.now() - started) / 1000;
fs.mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
fs.writeFileSync(RESULTS_FILE, `${JSON.stringify({
  generatedAt: new Date().toISOString(),
  command: `node bench/index.mjs${args.length ? ` ${args.join(' ')}` : ''}`,
  elapsedSeconds: Number(elapsedSeconds.toFixed(1)),
  environment: env,
  corpus: {
    dir: path.relative(projectRoot, corpus.dir),
    bytes: corpus.bytes.length,
    files: corpus.files,
  },
  tinybench: BENCH_OPTIONS,
  method: 'mbps = bytesPerPass / 1e6 / (meanLatencyMs / 1e3), from the mean pass latency (not tinybench throughput.mean, a mean of reciprocals); '
    + 'bytesPerPass counts uncompressed bytes for compress and decompress; vsFlashpack = flashpack (Uint8Array API) mbps / row mbps, null for other flashpack rows; '
    + 'compressionRatio = uncompressed / compressed bytes (lz4-wasm-nodejs includes its 4-byte size prefix per block; lz4js blocks with no match count at raw size)',
  tables, // row.role: 'baseline' (flashpack's Uint8Array API), 'variant' (other flashpack APIs) or 'peer'
}, null, 2)}\n`);
log(`\nwrote ${path.relative(process.cwd(), RESULTS_FILE)}; total ${elapsedSeconds.toFixed(1)} s`);

// ---------------------------------------------------------------------------

function render(table) {
  const { title, compression } = GROUPS[table.group];
  const columns = [
    { title: 'library', align: 'left' },
    { title: 'operation', align: 'left' },
    { title: 'MB/s', align: 'right' },
    { title: 'ratio vs flashpack', align: 'right' },
  ];
  if (compression) columns.push({ title: 'compression ratio', align: 'right' });
  const rows = table.rows.map((r) => {
    const cells = [r.library, r.operation, formatMBps(r.mbps), formatRatio(r.vsFlashpack, '×')];
    if (compression) cells.push(r.compressionRatio == null ? '' : formatRatio(r.compressionRatio));
    return cells;
  });
  const notes = [...new Map(table.rows.filter((r) => r.note).map((r) => [r.library, r.note]))]
    .map(([library, note]) => `- ${library}: ${note}`);
  return [
    `## ${title}, ${sizeLabel(table.blockSize)} blocks`,
    '',
    `${table.blocks.toLocaleString('en-US')} blocks, ${(table.bytesPerPass / 1e6).toFixed(2)} MB per pass.`,
    '',
    markdownTable(columns, rows),
    ...(notes.length ? ['', ...notes] : []),
  ].join('\n');
}

function environment() {
  const pkgVersion = (dir) => JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  const dep = (name) => pkgVersion(path.join(projectRoot, 'node_modules', name));
  const versions = {
    flashpack: pkgVersion(projectRoot),
    tinybench: dep('tinybench'),
    'lz4 (node-lz4)': dep('lz4'),
    liblz4: liblz4Version(),
    'lz4-wasm-nodejs': dep('lz4-wasm-nodejs'),
    lz4js: dep('lz4js'),
    'hash-wasm': dep('hash-wasm'),
    '@node-rs/crc32': dep('@node-rs/crc32'),
    zlib: process.versions.zlib,
    fflate: dep('fflate'),
    pako: dep('pako'),
  };
  const cpus = os.cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpu: { model: cpus[0]?.model ?? 'unknown', count: cpus.length },
    git: gitRevision(),
    distBuiltAt: fs.statSync(path.join(projectRoot, 'dist', 'wasm', 'binary.generated.js')).mtime.toISOString(),
    versions,
  };
}

/** The liblz4 that node-lz4 was built from, read from its bundled header. */
function liblz4Version() {
  try {
    const h = fs.readFileSync(path.join(projectRoot, 'node_modules', 'lz4', 'deps', 'lz4', 'lib', 'lz4.h'), 'utf8');
    const part = (k) => h.match(new RegExp(`#define LZ4_VERSION_${k}\\s+(\\d+)`))[1];
    return `${part('MAJOR')}.${part('MINOR')}.${part('RELEASE')}`;
  } catch {
    return 'unknown';
  }
}

function gitRevision() {
  try {
    const git = (...a) => execFileSync('git', a, { cwd: projectRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    // --no-optional-locks: never take .git/index.lock (others use this checkout)
    return { commit: git('rev-parse', 'HEAD'), dirty: git('--no-optional-locks', 'status', '--porcelain', '--', 'src', 'assembly').length > 0 };
  } catch {
    return null;
  }
}

/** The bench imports dist/; say so when src/ or assembly/ is newer than the build. */
function warnIfDistStale() {
  const newest = (dir) => {
    let t = 0;
    if (!fs.existsSync(dir)) return t;
    for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
      if (e.isFile()) t = Math.max(t, fs.statSync(path.join(e.parentPath ?? e.path, e.name)).mtimeMs);
    }
    return t;
  };
  const built = ['dist/index.js', 'dist/wasm/binary.generated.js']
    .map((f) => path.join(projectRoot, f))
    .filter((f) => fs.existsSync(f))
    .map((f) => fs.statSync(f).mtimeMs);
  const source = Math.max(newest(path.join(projectRoot, 'src')), newest(path.join(projectRoot, 'assembly')));
  if (built.length < 2 || Math.min(...built) < source) {
    log('warning: dist/ is older than src/ or assembly/ (or a build is running); run `node scripts/build.mjs` (or `npm run bench`) to measure the current code');
  }
}
