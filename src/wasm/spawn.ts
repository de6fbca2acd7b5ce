/**
 * Starting a module worker the same way on every runtime: node:worker_threads
 * on Node, Web Workers on Deno and Bun. Used by the offload engine and by the
 * NVMe device workers. A worker that throws, or exits without being asked to,
 * is reported once through onFailure.
 */
export interface WorkerHandle<In> {
  post(msg: In): void;
  terminate(): Promise<void>;
  ref(): void;
  unref(): void;
}

export const isWebWorkerRuntime = (): boolean => {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  return g.Deno !== undefined || g.Bun !== undefined;
};

/** Cores this process may use (navigator.hardwareConcurrency, else node:os). */
export async function availableCores(): Promise<number> {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  const cores = nav?.hardwareConcurrency;
  if (cores) return cores;
  return (await import('node:os')).availableParallelism();
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
    const w = new Worker(url);
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
  const w = new Worker(url, { type: 'module' }) as Worker & { ref?: () => void; unref?: () => void };
  w.onmessage = (e: MessageEvent) => onReply(e.data as Out);
  w.onerror = (e: ErrorEvent) => {
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
