/**
 * Another thread's growth of the shared memory, seen from this one.
 *
 * The host grows the one shared `WebAssembly.Memory` and then publishes what
 * it carved (a queue pair's table entry, a buffer address in a command). A
 * worker that reads the published value has not necessarily taken in the
 * growth yet: V8 hands it to other threads as an interrupt, and until the
 * thread handles one, `memory.buffer` there still has the old length — on
 * Node 24 and 26 about one grow in two thousand is read stale by a worker
 * spinning on the published word (Node 20 was not seen to do it). The memory
 * itself is there; only this thread's view of its length lags. So a worker
 * that finds an address past its views asks here, which spins (each loop turn
 * is a point where the thread handles pending interrupts) until the buffer
 * spans it, and gives up only after GROWTH_WAIT_MS and GROWTH_WAIT_TURNS
 * loop turns both: then the address really lies outside the memory. (Time
 * alone is not enough: on a loaded machine a thread descheduled for the whole
 * wait would give up after one turn, having handled no interrupt — seen once
 * in CI on Node 26, a device worker failing a volume's open.)
 */
import type { WasmMemory } from '../wasm/wasm-types.js';

/** How long a thread waits for another thread's growth to reach its view before an address counts as outside. */
export const GROWTH_WAIT_MS = 1000;
/** And how many times it looks, at least (each turn a point where V8 handles the pending growth). */
export const GROWTH_WAIT_TURNS = 1_000_000;

/**
 * `memory.buffer` once it spans `end` bytes, or null if it still does not
 * after GROWTH_WAIT_MS. Returns at once when the current buffer spans it.
 */
export function bufferSpanning(memory: WasmMemory, end: number): ArrayBuffer | null {
  let buf = memory.buffer;
  if (end <= buf.byteLength) return buf;
  const until = performance.now() + GROWTH_WAIT_MS;
  for (let turns = 1; ; turns++) {
    buf = memory.buffer;
    if (end <= buf.byteLength) return buf;
    if (turns >= GROWTH_WAIT_TURNS && performance.now() >= until) return null;
  }
}
