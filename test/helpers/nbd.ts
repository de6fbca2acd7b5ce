/**
 * Driving `flashpack serve` and the NBD reference clients (qemu-img, qemu-io,
 * nbdinfo, nbdcopy, fio) as real processes. Every wait is bounded, every
 * child is tracked: `killAll()` (afterAll) and process exit SIGKILL whatever
 * is still running, so a failed test never leaves a server behind.
 * Servers listen only on a unix socket in a temp dir or on 127.0.0.1 (or an
 * explicitly requested address in a test of the refusal).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const repoRoot = path.resolve(import.meta.dirname, '..', '..');
export const flashpackBin = path.join(repoRoot, 'bin', 'flashpack.mjs');

/** How long a client command may run before it is killed (a hung client fails its test, it does not hang the suite). */
export const COMMAND_TIMEOUT_MS = 60_000;
/** How long `flashpack serve` may take to accept its first connection. */
const SERVE_READY_TIMEOUT_MS = 20_000;
/** How long `flashpack serve` may take to exit after SIGTERM (it flushes and closes the volume). */
const SERVE_STOP_TIMEOUT_MS = 30_000;
const POLL_INTERVAL_MS = 50;
/** Output kept per stream of a child (the tail, where errors are). */
const OUTPUT_BYTES_MAX = 8 << 20;

const live = new Set<ChildProcess>();
const dirs = new Set<string>();

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** SIGKILLs every child still running (and their process groups are theirs to clean: clients here do not fork servers). */
export function killAll(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}
process.once('exit', killAll);

/** A fresh private directory under the OS temp dir, removed by `removeTempDirs()`. */
export function tempDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `flashpack-${prefix}-`));
  dirs.add(d);
  return d;
}

export function removeTempDirs(): void {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

/** Whether an executable is on the PATH. */
export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

export interface RunResult {
  command: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

export interface RunOptions {
  timeoutMs?: number;
  input?: string | Uint8Array;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Runs a command to completion (killed after `timeoutMs`), capturing its output. Never rejects for a failing command. */
export function run(cmd: string, args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  const command = [cmd, ...args].map(quote).join(' ');
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] }));
    const out = collect(child.stdout!);
    const err = collect(child.stderr!);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs ?? COMMAND_TIMEOUT_MS);
    child.stdin!.on('error', () => {}); // a command that does not read its input
    child.stdin!.end(o.input ?? '');
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${command}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ command, code, signal, stdout: out(), stderr: err(), timedOut, ms: Date.now() - started });
    });
  });
}

/** `node bin/flashpack.mjs <args>`. */
export function flashpack(args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [flashpackBin, ...args], o);
}

/** The result if the command exited 0; otherwise an error carrying its command line, exit status and output. */
export function ok(r: RunResult): RunResult {
  if (r.code !== 0) throw new Error(explain(r));
  return r;
}

export function explain(r: RunResult): string {
  const status = r.timedOut ? 'timed out' : r.signal !== null ? `killed by ${r.signal}` : `exit ${r.code}`;
  return `${r.command}: ${status} after ${r.ms} ms\n--- stdout\n${tail(r.stdout)}\n--- stderr\n${tail(r.stderr)}`;
}

/** A port nothing listens on right now: the kernel's pick for port 0 on 127.0.0.1, released. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export type Where = { socket: string } | { host: string; port: number };

/** A running `flashpack serve`. */
export class ServeProcess {
  readonly image: string;
  readonly where: Where;
  private readonly child: ChildProcess;
  private readonly err: () => string;
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(child: ChildProcess, image: string, where: Where) {
    this.child = child;
    this.image = image;
    this.where = where;
    this.err = collect(child.stderr!);
    collect(child.stdout!);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What the server wrote on stderr so far. */
  get stderr(): string {
    return this.err();
  }

  /** `nbd+unix:///?socket=…` or `nbd://127.0.0.1:port/` (the empty export name: the only export). */
  get uri(): string {
    return 'socket' in this.where ? `nbd+unix:///?socket=${this.where.socket}` : `nbd://127.0.0.1:${this.where.port}/`;
  }

  /** Resolves once a connection to its address is accepted; rejects if the server exits first or takes too long. */
  async ready(timeoutMs = SERVE_READY_TIMEOUT_MS): Promise<this> {
    const deadline = Date.now() + timeoutMs;
    const where = 'socket' in this.where ? this.where : { host: this.where.host === '0.0.0.0' ? '127.0.0.1' : this.where.host, port: this.where.port };
    for (;;) {
      if (!this.running) throw new Error(`flashpack serve exited (${this.child.exitCode ?? this.child.signalCode}) before it listened:\n${this.stderr}`);
      if (await accepts(where)) return this;
      if (Date.now() > deadline) throw new Error(`flashpack serve did not accept a connection within ${timeoutMs} ms:\n${this.stderr}`);
      await sleep(POLL_INTERVAL_MS);
    }
  }

  /** SIGTERM, then waits for the exit; throws unless it exits 0 in time (SIGKILLed if it does not). Returns its stderr. */
  async stop(timeoutMs = SERVE_STOP_TIMEOUT_MS): Promise<string> {
    if (this.running) this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
    const exit = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (exit === null) {
      this.child.kill('SIGKILL');
      throw new Error(`flashpack serve did not exit within ${timeoutMs} ms of SIGTERM:\n${this.stderr}`);
    }
    if (exit.code !== 0) throw new Error(`flashpack serve exited ${exit.code ?? exit.signal} after SIGTERM, not 0:\n${this.stderr}`);
    return this.stderr;
  }

  /** SIGKILL, for cleanup after a failure. */
  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}

/** Starts `flashpack serve <image> (--socket p | --listen host:port) [extra]` and waits until it accepts. */
/** `runtime`: the command line that runs a script (default: this Node), e.g. [deno, 'run', '-A']. */
export async function serve(image: string, where: Where, extra: readonly string[] = [], runtime: readonly string[] = [process.execPath]): Promise<ServeProcess> {
  const addr = 'socket' in where ? ['--socket', where.socket] : ['--listen', `${where.host}:${where.port}`];
  const child = track(spawn(runtime[0], [...runtime.slice(1), flashpackBin, 'serve', image, ...addr, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const server = new ServeProcess(child, image, where);
  try {
    return await server.ready();
  } catch (err) {
    server.kill();
    throw err;
  }
}

/**
 * A line-driven client kept open across steps (qemu-io reading commands on
 * standard input): its connection stays up while other clients use the
 * export, which is what a multi-connection test needs. The client prints
 * `prompt` once at start and once after each command, so a command is done
 * when the prompts seen outnumber the commands sent. One line is sent at a
 * time, only after the previous command's prompt (qemu-io reads its input
 * through stdio and would leave a second line waiting in its buffer).
 */
export class Interactive {
  private readonly child: ChildProcess;
  private readonly prompt: string;
  private readonly out: () => string;
  private readonly err: () => string;
  private readonly exited: Promise<number | null>;
  private sent = 0;

  constructor(cmd: string, args: readonly string[], prompt: string) {
    this.prompt = prompt;
    this.child = track(spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
    this.child.stdin!.on('error', () => {});
    this.out = collect(this.child.stdout!);
    this.err = collect(this.child.stderr!);
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** Everything it printed: standard output, then standard error. */
  get output(): string {
    return this.out() + this.err();
  }

  /** Sends one command and waits until it is done; returns what it printed (standard output). */
  async send(line: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
    if (line.includes('\n')) throw new Error(`one command at a time: '${line}'`);
    await this.prompts(this.sent + 1, line, timeoutMs);
    const from = this.out().length;
    this.sent++;
    this.child.stdin!.write(`${line}\n`);
    await this.prompts(this.sent + 1, line, timeoutMs);
    return this.out().slice(from);
  }

  private async prompts(n: number, line: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.out().split(this.prompt).length - 1 >= n) return;
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`'${line}': the client exited:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`'${line}': not done within ${timeoutMs} ms:\n${this.output}`);
      await sleep(POLL_INTERVAL_MS);
    }
  }

  /** Closes its input and waits for the exit code (SIGKILL after the timeout). */
  async close(timeoutMs = COMMAND_TIMEOUT_MS): Promise<number | null> {
    this.child.stdin!.end();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
    const code = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (code === 'late') {
      this.child.kill('SIGKILL');
      throw new Error(`the client did not exit within ${timeoutMs} ms:\n${this.output}`);
    }
    return code;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** fio prints "fio: connected to NBD server" lines before its JSON on stdout: the document starts at the first '{'. */
export function parseFioJson(stdout: string): FioReport {
  const at = stdout.indexOf('{');
  if (at < 0) throw new Error(`fio printed no JSON:\n${tail(stdout)}`);
  return JSON.parse(stdout.slice(at)) as FioReport;
}

export interface FioDirection {
  io_bytes: number;
  total_ios: number;
}

export interface FioJob {
  jobname: string;
  error: number;
  read: FioDirection;
  write: FioDirection;
  trim: FioDirection;
  sync: { total_ios: number };
  total_err?: number;
}

export interface FioReport {
  'fio version': string;
  jobs: FioJob[];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function accepts(where: Where): Promise<boolean> {
  return new Promise((resolve) => {
    const s = 'socket' in where ? net.connect(where.socket) : net.connect(where.port, where.host);
    const timer = setTimeout(() => done(false), 1_000);
    const done = (v: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Accumulates a stream's text (keeping the last OUTPUT_BYTES_MAX characters); the getter returns it so far. */
function collect(stream: NodeJS.ReadableStream): () => string {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    text += chunk;
    if (text.length > OUTPUT_BYTES_MAX) text = text.slice(-OUTPUT_BYTES_MAX);
  });
  return () => text;
}

function tail(s: string, chars = 4000): string {
  return s.length > chars ? `…${s.slice(-chars)}` : s;
}

function quote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
