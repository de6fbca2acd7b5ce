// Child processes for bench/nbd.mjs: a private temp directory, NBD servers
// started one at a time and stopped with SIGTERM, commands run to completion
// (fio, qemu-img, the flashpack command), and cleanup that leaves nothing
// running and nothing in the temp dir, also on SIGINT/SIGTERM or a crash.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';

const TAIL = 16 << 10;
const live = new Set(); // every child still running
let tmpRoot = null;
const flashpackImages = new Set(); // for lock/pointer leftovers of a killed server

/** The private temp directory (created on first use). */
export function tmp(name = '') {
  tmpRoot ??= fs.mkdtempSync(path.join(os.tmpdir(), 'flashpack-nbd-bench-'));
  return path.join(tmpRoot, name);
}

function track(child, label) {
  const rec = { child, label, stdout: '', stderr: '', exit: null };
  live.add(rec);
  child.stdout?.on('data', (d) => { rec.stdout = (rec.stdout + d).slice(-4 * TAIL); });
  child.stderr?.on('data', (d) => { rec.stderr = (rec.stderr + d).slice(-TAIL); });
  rec.exited = new Promise((resolve) => {
    child.on('error', (err) => { rec.stderr += `\nspawn error: ${err.message}`; });
    child.on('close', (code, signal) => {
      live.delete(rec);
      rec.exit = { code, signal };
      resolve(rec.exit);
    });
  });
  return rec;
}

/** Runs a command to completion: { code, signal, stdout, stderr, ms }. Never throws on exit status. */
export async function run(cmd, args, { cwd = tmp() } = {}) {
  const t0 = performance.now();
  const rec = track(spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }), `${cmd} ${args[0] ?? ''}`);
  const { code, signal } = await rec.exited;
  return { code, signal, stdout: rec.stdout, stderr: rec.stderr, ms: performance.now() - t0 };
}

/** Like run(), but throws with the command's stderr unless it exits 0. */
export async function runOk(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(-2000)}`);
  return r;
}

/**
 * Whether an NBD server answers on `sock`: reads the newstyle greeting, sends
 * the client flags and NBD_OPT_ABORT, and waits for the server to close, so
 * the probe is a clean, complete negotiation (a bare connect-and-drop makes
 * nbdkit and qemu-nbd log a broken handshake).
 */
function connectable(sock) {
  return new Promise((resolve) => {
    const s = net.connect(sock);
    let got = 0;
    let greeted = false;
    const done = (ok) => { clearTimeout(timer); s.destroy(); resolve(ok); };
    const timer = setTimeout(() => done(greeted), 5000);
    s.on('data', (d) => {
      got += d.length;
      if (!greeted && got >= 18) {
        greeted = true;
        const msg = Buffer.alloc(20);
        msg.writeUInt32BE(3, 0); // NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES
        msg.writeBigUInt64BE(0x49484156454f5054n, 4); // IHAVEOPT
        msg.writeUInt32BE(2, 12); // NBD_OPT_ABORT, no data
        s.write(msg);
      }
    });
    s.once('close', () => done(greeted));
    s.once('error', () => done(greeted));
  });
}

/**
 * Starts a server listening on unix socket `sock` and waits until it accepts
 * connections. Returns { stop(): { ms, code, signal, stderr }, rec }.
 */
export async function startServer(label, cmd, args, sock, { image } = {}) {
  fs.rmSync(sock, { force: true });
  if (image) flashpackImages.add(image);
  const rec = track(spawn(cmd, args, { cwd: tmp(), stdio: ['ignore', 'pipe', 'pipe'] }), label);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (rec.exit) throw new Error(`${label} exited at start (${rec.exit.code ?? rec.exit.signal}): ${rec.stderr.trim()}`);
    if (fs.existsSync(sock) && (await connectable(sock))) break;
    if (Date.now() > deadline) {
      await stop(rec, 'SIGKILL');
      throw new Error(`${label} did not listen on ${sock} within 30 s: ${rec.stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { rec, stop: (timeoutMs) => stop(rec, 'SIGTERM', timeoutMs) };
}

/** SIGTERM (then SIGKILL after timeoutMs); resolves { ms, code, signal, stderr, killed }. */
async function stop(rec, sig = 'SIGTERM', timeoutMs = 120_000) {
  const t0 = performance.now();
  let killed = false;
  if (!rec.exit) rec.child.kill(sig);
  const timer = setTimeout(() => { killed = true; rec.child.kill('SIGKILL'); }, timeoutMs);
  const { code, signal } = await rec.exited;
  clearTimeout(timer);
  return { ms: performance.now() - t0, code, signal, stderr: rec.stderr, killed };
}

/** Stops everything still running (SIGTERM, then SIGKILL after 20 s) and removes the temp dir. */
export async function cleanup() {
  await Promise.all([...live].map((rec) => stop(rec, 'SIGTERM', 20_000)));
  cleanupSync();
}

/** Synchronous last resort (process 'exit'): SIGKILL what is left, remove temp files. */
export function cleanupSync() {
  for (const rec of live) {
    try { rec.child.kill('SIGKILL'); } catch { /* gone */ }
  }
  // A flashpack server killed hard leaves its control socket dir (os.tmpdir()/fpctl-*),
  // named in <image>.lock/serve.<pid>.json; a clean close removes both itself.
  for (const img of flashpackImages) {
    const lockDir = `${img}.lock`;
    if (!fs.existsSync(lockDir)) continue;
    for (const f of fs.readdirSync(lockDir)) {
      try {
        const { socket } = JSON.parse(fs.readFileSync(path.join(lockDir, f), 'utf8'));
        const dir = path.dirname(socket);
        if (path.basename(dir).startsWith('fpctl-') && path.dirname(dir) === os.tmpdir()) fs.rmSync(dir, { recursive: true, force: true });
      } catch { /* not a pointer file */ }
    }
  }
  if (tmpRoot) fs.rmSync(tmpRoot, { recursive: true, force: true });
}

/** Installs SIGINT/SIGTERM and exit handlers: stop children, remove temp files, exit 130/143. */
export function installCleanupHandlers(log = console.error) {
  let stopping = false;
  const onSignal = (sig) => {
    if (stopping) return;
    stopping = true;
    log(`\n${sig}: stopping servers and removing temp files`);
    cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('exit', cleanupSync);
}

/** du --block-size=1: bytes allocated on disk. */
export async function duBytes(file) {
  const r = await runOk('du', ['--block-size=1', '-s', file]);
  return Number(r.stdout.split(/\s/)[0]);
}

/** First line of `cmd --version`, or null. */
export async function versionOf(cmd, arg = '--version') {
  try {
    const r = await run(cmd, [arg]);
    return (r.stdout || r.stderr).split('\n')[0].trim() || null;
  } catch {
    return null;
  }
}
