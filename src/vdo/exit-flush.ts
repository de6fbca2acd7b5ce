/**
 * A clean exit never loses an acknowledged write. An async write is
 * acknowledged once the volume has taken it; it becomes durable at the next
 * flush. A script that writes and simply ends (no flush, no close) is not a
 * crash, so when the event loop runs dry — `beforeExit`, which Node, Deno and
 * Bun all emit — every open volume with unflushed writes is flushed, which
 * keeps the process alive until the data and its journal are on the backend
 * (a file write stream keeps its process alive the same way).
 *
 * process.exit(), a signal, a crash or a power cut skip this, as they skip a
 * write stream's buffered data: that is the async write policy's contract.
 * A flush that fails here is reported on stderr and sets a non-zero exit code.
 */
import process from 'node:process';

export interface ExitFlushable {
  /** Whether writes were acknowledged since the last completed flush. */
  readonly unflushed: boolean;
  /** What to call it in a report: the image path or "a volume". */
  readonly name: string;
  flush(): Promise<void>;
}

const open = new Set<ExitFlushable>();
let hooked = false;

function onBeforeExit(): void {
  for (const v of open) {
    if (!v.unflushed) continue;
    v.flush().catch((err: unknown) => {
      open.delete(v); // report once; the loop ends after this
      process.exitCode = 1;
      console.error(`flashpack: ${v.name}: the flush at exit failed; writes since the last flush may be lost: ${(err as Error).message ?? err}`);
    });
  }
}

/** Flush `v` before a clean exit while it is registered (from open until close). */
export function flushAtExit(v: ExitFlushable): void {
  open.add(v);
  if (hooked) return;
  hooked = true;
  process.on('beforeExit', onBeforeExit);
}

export function forgetAtExit(v: ExitFlushable): void {
  open.delete(v);
}
