/**
 * Runs `fn` on the next turn of the event loop, after this turn's I/O
 * callbacks: setImmediate where the runtime has it (Node, Bun, Deno's node
 * globals), else a zero timeout.
 */
export const nextTurn: (fn: () => void) => void =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
    ? (fn) => void (globalThis as unknown as { setImmediate(f: () => void): void }).setImmediate(fn)
    : (fn) => void setTimeout(fn, 0);
