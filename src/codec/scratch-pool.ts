/**
 * Fixed regions of the shared memory for codec streams. `Runtime.reserve` is
 * permanent, so a stream that ends gives its region back here and the next
 * stream of the same size reuses it: the memory a program's streams use is
 * bounded by how many are open at once, not by how many it ever opened. A
 * stream dropped without being finished is returned by a FinalizationRegistry.
 */
import type { Runtime } from '../wasm/runtime.js';

interface Held {
  rt: Runtime;
  bytes: number;
  ptr: number;
}

const pools = new WeakMap<Runtime, Map<number, number[]>>();

function freeList(rt: Runtime, bytes: number): number[] {
  let byBytes = pools.get(rt);
  if (!byBytes) pools.set(rt, (byBytes = new Map()));
  let list = byBytes.get(bytes);
  if (!list) byBytes.set(bytes, (list = []));
  return list;
}

const registry = new FinalizationRegistry<Held>((held) => freeList(held.rt, held.bytes).push(held.ptr));

/** A region of `bytes` owned by `owner` until released (or until owner is collected). */
export class ScratchRegion {
  readonly ptr: number;
  private held: Held | undefined;

  constructor(rt: Runtime, bytes: number, owner: object) {
    this.ptr = freeList(rt, bytes).pop() ?? rt.reserve(bytes, 64);
    this.held = { rt, bytes, ptr: this.ptr };
    registry.register(owner, this.held, this);
  }

  get released(): boolean {
    return this.held === undefined;
  }

  release(): void {
    if (!this.held) return;
    registry.unregister(this);
    freeList(this.held.rt, this.held.bytes).push(this.held.ptr);
    this.held = undefined;
  }
}
