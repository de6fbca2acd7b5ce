/**
 * Another thread's growth of the shared memory, seen from this one.
 *
 * The host grows the one shared `WebAssembly.Memory` and then publishes what
 * it carved (a queue pair's table entry, a buffer address in a command). A
 * worker that reads the published value has not necessarily taken in the
 * growth yet: V8 hands a grow to the other threads as an interrupt, and until
 * a thread handles it, `memory.buffer` there (and its WASM instances' bounds)
 * keep the old length. Worse, a thread still receiving the memory while the
 * host grows it can miss the interrupt altogether and keep the old length
 * until the next grow — on Node 26, about one worker in three hundred started
 * during a burst of grows (seen in CI as a device worker failing a volume's
 * open after waiting a full second). No amount of waiting mends that.
 *
 * `memory.grow(0)` does: a grow on this thread renews this thread's buffer
 * and instances from the memory's current length (the JS API's "refresh the
 * memory buffer"), and growing by nothing changes nothing for anyone else. So
 * a worker that finds an address past its views asks here, which grows by
 * zero and looks again. Should an engine not renew on grow(0), a pending
 * interrupt still would: bufferSpanning then spins a little (each loop turn a
 * point where the thread handles interrupts) and gives up after
 * GROWTH_WAIT_MS and GROWTH_WAIT_TURNS both — then the address lies outside
 * the memory. (Time alone is not enough: a thread descheduled for the whole
 * wait would give up after one turn.) The wait is short because every job
 * naming an address past the memory pays it: it was a second before grow(0),
 * and a test of 40 such jobs took 40 s.
 */
import type { WasmMemory } from '../wasm/wasm-types.js';

/** How long a thread waits for another thread's growth to reach its view before an address counts as outside. */
export const GROWTH_WAIT_MS = 50;
/** And how many times it looks, at least (each turn a point where V8 handles the pending growth). */
export const GROWTH_WAIT_TURNS = 100_000;

/**
 * `memory.buffer` once it spans `end` bytes, or null if it still does not
 * after a grow by zero pages and GROWTH_WAIT_MS. Returns at once when the
 * current buffer spans it.
 */
export function bufferSpanning(memory: WasmMemory, end: number): ArrayBuffer | null {
  let buf = memory.buffer;
  if (end <= buf.byteLength) return buf;
  memory.grow(0);
  buf = memory.buffer;
  if (end <= buf.byteLength) return buf;
  const until = performance.now() + GROWTH_WAIT_MS;
  for (let turns = 1; ; turns++) {
    buf = memory.buffer;
    if (end <= buf.byteLength) return buf;
    if (turns >= GROWTH_WAIT_TURNS && performance.now() >= until) return null;
  }
}
