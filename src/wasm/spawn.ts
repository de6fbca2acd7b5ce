/**
 * Starting a module worker the same way on every runtime: node:worker_threads
 * on Node and Deno, Web Workers on Bun. Used by the offload engine and by the
 * NVMe device workers. A worker that throws, or exits without being asked to,
 * is reported once through onFailure. Idle workers are unref'd, so a program
 * that never closes its engine still ends (Deno's Web Workers cannot be
 * unref'd, its node:worker_threads can; Bun's Web Workers can).
 */
export interface WorkerHandle<In> {
  post(msg: In): void;
  terminate(): Promise<void>;
  ref(): void;
  unref(): void;
}

export const isWebWorkerRuntime = (): boolean => {
  const g = globalThis as { Bun?: unknown };
  return g.Bun !== undefined;
};

/** Cores this process may use (navigator.hardwareConcurrency, else node:os). */
export async function availableCores(): Promise<number> {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  const cores = nav?.hardwareConcurrency;
  if (cores) return cores;
  return (await import('node:os')).availableParallelism();
}

/**
 * Flags that belong to how the main script was given (`-e`, `-p`, standard
 * input, the test runner, watch mode), not to the process: a worker that
 * inherits them dies at start (`--input-type can only be used with string
 * input`). With the value each takes, if it takes one.
 */
const MAIN_ONLY_FLAGS: Record<string, boolean> = {
  '-e': true, '--eval': true, '-p': true, '--print': true, '--input-type': true, '--watch-path': true,
  '-i': false, '--interactive': false, '-c': false, '--check': false, '--test': false, '--watch': false, '--watch-preserve-output': false,
};

/** The parent's execArgv less the flags a worker cannot take (everything else: --import, --require, --conditions, V8 flags… stays). */
async function workerExecArgv(): Promise<string[]> {
  const { default: process } = await import('node:process');
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const takesValue = MAIN_ONLY_FLAGS[name];
    if (takesValue === undefined && !name.startsWith('--test-')) {
      out.push(a);
      continue;
    }
    if (takesValue === true && eq < 0) i++; // its value is the next argument
  }
  return out;
}

/** A Web Worker as Deno and Bun provide it: the part used here, typed without lib.dom (Bun adds ref/unref). */
interface WebWorker {
  onmessage: ((e: { data: unknown }) => void) | null;
  onerror: ((e: { message: string; preventDefault(): void }) => void) | null;
  postMessage(msg: unknown): void;
  terminate(): void;
  ref?(): void;
  unref?(): void;
}

export async function spawnWorker<In, Out>(
  url: URL,
  onReply: (r: Out) => void,
  onFailure: (err: Error) => void,
): Promise<WorkerHandle<In>> {
  let exiting = false;
  let failed = false;
  const fail = (err: Error): void => {
    if (exiting || failed) return;
    failed = true;
    onFailure(err);
  };
  if (!isWebWorkerRuntime()) {
    const { Worker } = await import('node:worker_threads');
    const w = new Worker(url, { execArgv: await workerExecArgv() });
    w.on('message', onReply);
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`worker exited with code ${code}`)));
    return {
      post: (m) => w.postMessage(m),
      terminate: async () => {
        exiting = true;
        await w.terminate();
      },
      ref: () => w.ref(),
      unref: () => w.unref(),
    };
  }
  const { Worker } = globalThis as unknown as { Worker: new (url: URL, options: { type: 'module' }) => WebWorker };
  const w = new Worker(url, { type: 'module' });
  w.onmessage = (e) => onReply(e.data as Out);
  w.onerror = (e) => {
    e.preventDefault();
    fail(new Error(e.message || 'worker error'));
  };
  return {
    post: (m) => w.postMessage(m),
    terminate: async () => {
      exiting = true;
      w.terminate();
    },
    ref: () => w.ref?.(),
    unref: () => w.unref?.(),
  };
}

/** The worker's side: messages to the host, and the one init message from it. */
export interface ParentPort<In, Out> {
  post(msg: Out): void;
  onInit(cb: (msg: In) => void): void;
}

/** Inside a worker started by spawnWorker: its channel to the host, on every runtime. */
export async function parentPort<In, Out>(): Promise<ParentPort<In, Out>> {
  const g = globalThis as unknown as { postMessage?: (m: unknown) => void; addEventListener?: (t: string, f: (e: MessageEvent) => void) => void };
  if (!isWebWorkerRuntime()) {
    const { parentPort: port } = await import('node:worker_threads');
    return { post: (m) => port!.postMessage(m), onInit: (cb) => port!.once('message', cb) };
  }
  return {
    post: (m) => g.postMessage!(m),
    onInit: (cb) => g.addEventListener!('message', (e: MessageEvent) => cb(e.data as In)),
  };
}
