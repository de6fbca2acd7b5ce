/**
 * The control endpoint of a served image: how `flashpack stats` (and any
 * other command) reaches the server that holds the image's write lock,
 * instead of opening a second writer (DESIGN.md: a served volume is locked;
 * other commands ask the server).
 *
 * The server listens on a unix socket in a private directory (mode 0700) under
 * os.tmpdir(), the socket itself mode 0600, and leaves a pointer file
 * `<image>.lock/serve.<pid>.json` ({pid, socket, since}) beside the volume
 * lock's holder files (volume-lock.ts ignores names it does not parse).
 *
 * Protocol: one request per connection, a JSON line — `{"op":"stats"}`, or
 * `{"op":"resize","logicalSize":n,"physicalSize":n}` (either size may be
 * left out: `flashpack resize` of a served volume) — answered by one JSON
 * line `{"ok":true,"<op>":…}` or `{"ok":false,"code":…,"message":…}`.
 * Bounds: a request over REQUEST_BYTES_MAX closes the connection, so does
 * IDLE_TIMEOUT_MS of silence; at most CONNECTIONS_MAX at once; a client waits
 * at most ASK_TIMEOUT_MS and reads at most REPLY_BYTES_MAX.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import { FlashpackError, fromOsError, type FlashpackErrorCode } from '../errors.js';
import { lockDirOf } from '../vdo/volume-lock.js';

export const REQUEST_BYTES_MAX = 4096;
export const REPLY_BYTES_MAX = 1 << 20;
export const IDLE_TIMEOUT_MS = 5000;
export const ASK_TIMEOUT_MS = 2000;
export const CONNECTIONS_MAX = 16;

/** How long a client waits for a resize (it writes superblocks and a checkpoint; growing a file may take a while). */
export const RESIZE_TIMEOUT_MS = 120_000;

export type ControlOp = 'stats' | 'resize';

/** The sizes a resize request names (Volume.resize checks them). */
export interface ResizeRequest {
  logicalSize?: unknown;
  physicalSize?: unknown;
}

export interface ControlHandlers {
  stats(): unknown;
  /** Grows the served volume; answers what to report (absent: ENOTSUP, the server cannot resize). */
  resize?(sizes: ResizeRequest): Promise<unknown>;
}

interface Pointer {
  pid: number;
  socket: string;
  since: string;
}

const POINTER_RE = /^serve\.(\d+)\.json$/;

function pointerPath(image: string, pid: number): string {
  return path.join(lockDirOf(image), `serve.${pid}.json`);
}

/**
 * Starts a control endpoint for a served image. The pointer file names this
 * process; one endpoint per image per process (a second replaces the first's
 * pointer). close() stops listening, ends open connections and removes the
 * socket and the pointer file.
 */
export async function startControl(image: string, handlers: ControlHandlers): Promise<{ close(): Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fpctl-'));
  const socketPath = path.join(dir, 'ctl.sock');
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => serve(socket, handlers, open));
  server.maxConnections = CONNECTIONS_MAX;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    fs.chmodSync(socketPath, 0o600);
  } catch (err) {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
    throw fromOsError(err, `control: cannot listen on ${socketPath}`);
  }
  server.on('error', () => {}); // a failed accept must not take the server down
  const pointer = pointerPath(image, process.pid);
  const doc: Pointer = { pid: process.pid, socket: socketPath, since: new Date().toISOString() };
  try {
    fs.mkdirSync(path.dirname(pointer), { recursive: true });
    // Written whole, then renamed: a reader never sees half a pointer.
    const tmp = `${pointer}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(doc) + '\n', { mode: 0o644 });
    fs.renameSync(tmp, pointer);
  } catch (err) {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
    throw fromOsError(err, `control: cannot write ${pointer}`);
  }
  let closed = false;
  return {
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      removeQuietly(pointer);
      try {
        fs.rmdirSync(path.dirname(pointer)); // the lock directory, if the volume lock is gone already
      } catch {
        // still holds the lock's files
      }
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of open) s.destroy();
      await done;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function serve(socket: net.Socket, handlers: ControlHandlers, open: Set<net.Socket>): void {
  open.add(socket);
  socket.on('close', () => open.delete(socket));
  socket.on('error', () => socket.destroy());
  socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
  let got = '';
  let answered = false;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    if (answered) return;
    got += chunk;
    if (Buffer.byteLength(got) > REQUEST_BYTES_MAX) {
      socket.destroy();
      return;
    }
    const nl = got.indexOf('\n');
    if (nl < 0) return;
    answered = true;
    void answer(got.slice(0, nl), handlers).then((reply) => socket.end(JSON.stringify(reply) + '\n'));
  });
}

async function answer(line: string, handlers: ControlHandlers): Promise<unknown> {
  try {
    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      throw new FlashpackError('EINVAL', 'control: the request is not a JSON line');
    }
    const r = req as ({ op?: unknown } & ResizeRequest) | null;
    const op = r?.op;
    if (op === 'stats') return { ok: true, stats: await handlers.stats() };
    if (op === 'resize') {
      if (handlers.resize === undefined) throw new FlashpackError('ENOTSUP', 'control: this server cannot resize what it serves');
      const sizes: ResizeRequest = {};
      if (r?.logicalSize !== undefined) sizes.logicalSize = r.logicalSize;
      if (r?.physicalSize !== undefined) sizes.physicalSize = r.physicalSize;
      return { ok: true, resize: await handlers.resize(sizes) };
    }
    throw new FlashpackError('EINVAL', `control: unknown op ${JSON.stringify(op)} (known: stats, resize)`);
  } catch (err) {
    const code = err instanceof FlashpackError ? err.code : 'EINTERNAL';
    return { ok: false, code, message: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * Asks the server serving `image`, if any: its answer (for 'stats', the
 * stats; for 'resize', what its handler reports), or null when there is no pointer file or nobody answers within
 * ASK_TIMEOUT_MS. A pointer file of a dead pid is removed. A server that
 * answers with an error throws it (a FlashpackError with the server's code).
 */
export async function askServer(image: string, op: ControlOp, args: ResizeRequest = {}): Promise<unknown | null> {
  const dir = lockDirOf(image);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return null;
  }
  for (const name of names) {
    const m = POINTER_RE.exec(name);
    if (m === null) continue;
    const file = path.join(dir, name);
    const pointer = readPointer(file);
    if (pointer === null) continue;
    if (!pidAlive(pointer.pid)) {
      removeQuietly(file);
      continue;
    }
    const reply = await request(pointer.socket, { ...args, op }, op === 'resize' ? RESIZE_TIMEOUT_MS : ASK_TIMEOUT_MS);
    if (reply === null) continue;
    if (reply.ok === true) return reply[op] ?? null;
    const code = typeof reply.code === 'string' ? (reply.code as FlashpackErrorCode) : 'EINTERNAL';
    throw new FlashpackError(code, `server (pid ${pointer.pid}): ${typeof reply.message === 'string' ? reply.message : 'no message'}`);
  }
  return null;
}

function readPointer(file: string): Pointer | null {
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Pointer>;
    if (typeof j.pid !== 'number' || !Number.isSafeInteger(j.pid) || j.pid <= 0 || typeof j.socket !== 'string') return null;
    return { pid: j.pid, socket: j.socket, since: String(j.since ?? '') };
  } catch {
    return null; // being written, or gone
  }
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** One request on one connection; null on any failure or after `timeoutMs`. */
function request(socketPath: string, req: { op: ControlOp } & ResizeRequest, timeoutMs: number): Promise<Record<string, unknown> | null> {
  return new Promise((resolve) => {
    let got = '';
    let settled = false;
    const finish = (v: Record<string, unknown> | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const socket = net.createConnection(socketPath);
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(JSON.stringify(req) + '\n'));
    socket.on('error', () => finish(null));
    socket.on('data', (chunk: string) => {
      got += chunk;
      if (got.length > REPLY_BYTES_MAX) return finish(null);
      const nl = got.indexOf('\n');
      if (nl < 0) return;
      try {
        const reply = JSON.parse(got.slice(0, nl)) as unknown;
        finish(reply !== null && typeof reply === 'object' ? (reply as Record<string, unknown>) : null);
      } catch {
        finish(null);
      }
    });
    socket.on('end', () => finish(null));
  });
}

function removeQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // gone already
  }
}
