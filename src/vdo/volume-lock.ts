/**
 * The volume lock: one writer, or any number of read-only openers, per image,
 * across threads, processes and runtimes (Node, Deno and Bun share no OS lock
 * call — node:fs has no flock — so the lock is made of files every runtime can
 * make).
 *
 * Beside the image `disk.img` is a directory `disk.img.lock/` holding one file
 * per holder, named `<mode>.<machine>.<boot>.<pid>.<start>.<nonce>` (mode `w`
 * or `r`; machine: /etc/machine-id and the pid namespace; boot: the kernel's boot id; start: the
 * process's start time in clock ticks from /proc, which tells a live process
 * from a later one that reuses its pid).
 * No holder file is ever contested or replaced:
 *
 *   take     create my file (O_EXCL, a unique name), then list the directory;
 *            if a live holder conflicts (a writer, or any holder when I write),
 *            remove my file and fail EBUSY naming the holder.
 *   release  remove my file (and the directory once it is empty).
 *   stale    a holder of this machine whose process is gone (no /proc entry,
 *            or another start time), or from an earlier boot, is dead: any
 *            opener removes its file. A crashed holder locks nothing.
 *
 * Two openers that race each create their file before they list, so at least
 * one sees the other (both may, and both fail EBUSY: never both succeed). A
 * holder on another machine (a shared file system) is taken to be alive.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import process from 'node:process';
import { FlashpackError, fromOsError } from '../errors.js';

export type LockMode = 'write' | 'read';

/** How often take() starts over when the lock directory vanishes under it (a releaser removed it). */
const TAKE_ATTEMPTS_MAX = 8;

interface Holder {
  mode: LockMode;
  machine: string;
  boot: string;
  pid: number;
  start: string;
  file: string;
}

interface Self {
  machine: string;
  boot: string;
  pid: number;
  start: string;
}

/** This process: machine, boot, pid and start time, read once. */
let self: Self | null = null;

function whoAmI(): Self {
  if (self === null) {
    self = {
      // The pid namespace is part of "machine": containers sharing a machine id and a
      // file system see different processes under the same pids.
      machine: idFrom(['/etc/machine-id', '/var/lib/dbus/machine-id']).slice(0, 6) + pidNamespace(),
      boot: idFrom(['/proc/sys/kernel/random/boot_id']),
      pid: process.pid,
      start: startTimeOf(process.pid) ?? '0',
    };
  }
  return self;
}

/** 12 alphanumerics of the first of `files` that reads, else zeroes (a system without them: every holder is "this machine, this boot"). */
function idFrom(files: string[]): string {
  for (const f of files) {
    try {
      const id = fs.readFileSync(f, 'utf8').replace(/[^0-9a-zA-Z]/g, '');
      if (id.length > 0) return id.slice(0, 12).padEnd(12, '0');
    } catch {
      // next
    }
  }
  return '0'.repeat(12);
}

/** 6 digits of this process's pid namespace inode (Linux), else zeroes. */
function pidNamespace(): string {
  try {
    return fs.readlinkSync('/proc/self/ns/pid').replace(/\D/g, '').slice(-6).padStart(6, '0');
  } catch {
    return '000000';
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or null where /proc is not there. */
function startTimeOf(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: fields 3.. follow the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function parseHolder(file: string): Holder | null {
  const m = /^([wr])\.([0-9a-zA-Z]{12})\.([0-9a-zA-Z]{12})\.(\d+)\.(\d+)\.[0-9a-f]+$/.exec(file);
  if (m === null) return null;
  return { mode: m[1] === 'w' ? 'write' : 'read', machine: m[2], boot: m[3], pid: Number(m[4]), start: m[5], file };
}

/** Whether a holder's process still runs (a holder of another machine is assumed to). */
function alive(h: Holder): boolean {
  const me = whoAmI();
  if (h.machine !== me.machine) return true; // another machine on a shared file system: cannot tell, so alive
  if (h.boot !== me.boot) return false; // this machine before a reboot: every process of that boot is gone
  if (h.pid === me.pid) return h.start === me.start;
  const start = startTimeOf(h.pid);
  if (start !== null) return start === h.start;
  if (fs.existsSync('/proc/self/stat')) return false; // /proc works, and has no such process
  try {
    process.kill(h.pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

function describeHolder(h: Holder, dir: string): string {
  let info = '';
  try {
    const j = JSON.parse(fs.readFileSync(path.join(dir, h.file), 'utf8')) as { runtime?: string; since?: string; argv?: string };
    info = `, ${j.runtime ?? 'unknown runtime'}${j.argv ? ` running ${j.argv}` : ''}, since ${j.since ?? '?'}`;
  } catch {
    // a holder still writing its file, or just gone: the name says enough
  }
  const me = whoAmI();
  const who = h.machine !== me.machine ? `process ${h.pid} on another machine (id ${h.machine})` : h.pid === me.pid ? `this process (pid ${h.pid})` : `process ${h.pid}`;
  return `${h.mode === 'write' ? 'open for writing' : 'open read-only'} by ${who}${info}`;
}

function runtimeName(): string {
  const g = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
  if (g.Deno) return `deno ${g.Deno.version.deno}`;
  if (g.Bun) return `bun ${g.Bun.version}`;
  return `node ${process.version}`;
}

/** The lock directory of an image path: beside the file its path resolves to. */
export function lockDirOf(image: string): string {
  const abs = path.resolve(image);
  let real: string;
  try {
    real = fs.realpathSync(abs);
  } catch {
    // Not there yet (create): resolve the directory, keep the name.
    try {
      real = path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
    } catch {
      real = abs;
    }
  }
  return `${real}.lock`;
}

/** A lock held on an image; release() is idempotent. */
export class VolumeLock {
  readonly dir: string;
  readonly mode: LockMode;
  private file: string | null;

  private constructor(dir: string, mode: LockMode, file: string) {
    this.dir = dir;
    this.mode = mode;
    this.file = file;
    held.add(this);
    hookExit();
  }

  /** Takes the lock on `image` for `mode`, or throws EBUSY naming the holder (EACCES, ENOENT: the directory). */
  static take(image: string, mode: LockMode): VolumeLock {
    const dir = lockDirOf(image);
    const me = whoAmI();
    for (let attempt = 0; attempt < TAKE_ATTEMPTS_MAX; attempt++) {
      const nonce = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, '0')).join('');
      const file = `${mode === 'write' ? 'w' : 'r'}.${me.machine}.${me.boot}.${me.pid}.${me.start}.${nonce}`;
      try {
        fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
        const fd = fs.openSync(path.join(dir, file), fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o644);
        try {
          const argv = process.argv.slice(1, 3).map((a) => path.basename(a)).join(' ');
          fs.writeSync(fd, JSON.stringify({ pid: me.pid, runtime: runtimeName(), argv, since: new Date().toISOString(), mode }) + '\n');
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT') continue; // the directory went away under us
        throw fromOsError(err, `volume lock: cannot create ${path.join(dir, file)} (the lock beside the image)`);
      }
      const conflicts: Holder[] = [];
      for (const name of listDir(dir)) {
        if (name === file) continue;
        const h = parseHolder(name);
        if (h === null) continue; // not ours to judge
        if (mode === 'read' && h.mode === 'read') continue;
        if (!alive(h)) {
          removeQuietly(path.join(dir, name));
          continue;
        }
        conflicts.push(h);
      }
      if (conflicts.length > 0) {
        removeQuietly(path.join(dir, file));
        removeDirIfEmpty(dir);
        const first = conflicts[0];
        const more = conflicts.length > 1 ? ` (and ${conflicts.length - 1} more holder${conflicts.length > 2 ? 's' : ''})` : '';
        throw new FlashpackError('EBUSY', `volume: ${image} is ${describeHolder(first, dir)}${more}; lock ${path.join(dir, first.file)}`);
      }
      return new VolumeLock(dir, mode, file);
    }
    throw new FlashpackError('EBUSY', `volume: ${image}: the lock directory ${dir} kept vanishing while taking the lock`);
  }

  release(): void {
    if (this.file === null) return;
    removeQuietly(path.join(this.dir, this.file));
    this.file = null;
    held.delete(this);
    removeDirIfEmpty(this.dir);
  }
}

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function removeQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // gone already (another opener cleaned a stale holder)
  }
}

function removeDirIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // not empty (another holder) or gone
  }
}

/** Locks this process holds: released at exit, so a clean exit leaves no holder file behind (a crash may, harmlessly). */
const held = new Set<VolumeLock>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const l of [...held]) l.release();
  });
}

/**
 * The lock of a Backend object (not a path): this process only, so two
 * Volumes never share one backend object. A backend shared between processes
 * (a SharedArrayBuffer) is the caller's to coordinate.
 */
const backendHolders = new WeakMap<object, { mode: LockMode; count: number }>();

export function takeBackend(backend: object, mode: LockMode): () => void {
  const h = backendHolders.get(backend);
  if (h !== undefined && (mode === 'write' || h.mode === 'write')) {
    throw new FlashpackError('EBUSY', `volume: this backend is already ${h.mode === 'write' ? 'open for writing' : 'open read-only'} by a Volume in this process`);
  }
  if (h === undefined) backendHolders.set(backend, { mode, count: 1 });
  else h.count++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const cur = backendHolders.get(backend)!;
    if (--cur.count === 0) backendHolders.delete(backend);
  };
}
