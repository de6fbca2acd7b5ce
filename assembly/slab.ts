// Slab pools of fixed-size buffers described by 64-byte descriptors, the same
// layout and protocol as src/shm/slab.ts. Each size class's free list is an
// MPMC ring of descriptor indices, so any thread (JS or WASM) allocates and
// frees. A descriptor's state word makes a double free or a free of a foreign
// index an error instead of a corrupted free list.
import {
  POOL_NDESCS, POOL_DESCS, POOL_CLASS0, POOL_CLASS_BYTES, CLASS_RING,
  DESC_BYTES, DESC_STATE, DESC_CLASS, DESC_LEN, DESC_STATUS, DESC_FREE, DESC_ALLOCATED,
  SLAB_OK, SLAB_FOREIGN, SLAB_DOUBLE_FREE, RING_HEAD, RING_TAIL,
} from "./layout";
import { mpmcPush, mpmcPop } from "./ring";

/** Allocates a buffer of size class `cls`; returns its descriptor index, or -1 (exhausted). */
export function slabAlloc(pool: usize, cls: u32): i32 {
  const ring = <usize>load<u32>(pool + POOL_CLASS0 + <usize>cls * POOL_CLASS_BYTES + CLASS_RING);
  let got = mpmcPop(ring);
  // "Empty" while the ring counts values is transient (a producer claimed a slot
  // and has not published it): retry until the ring agrees it is empty.
  while (got < 0) {
    if (<i32>(atomic.load<u32>(ring + RING_HEAD) - atomic.load<u32>(ring + RING_TAIL)) <= 0) return -1;
    got = mpmcPop(ring);
  }
  const idx = <u32>got;
  const d = <usize>load<u32>(pool + POOL_DESCS) + <usize>idx * DESC_BYTES;
  // A free-list entry whose descriptor is not free means the list is corrupt.
  if (atomic.cmpxchg<u32>(d + DESC_STATE, DESC_FREE, DESC_ALLOCATED) != DESC_FREE) unreachable();
  store<u32>(d + DESC_LEN, 0);
  store<i32>(d + DESC_STATUS, 0);
  return <i32>idx;
}

/** Frees a descriptor: SLAB_OK, SLAB_FOREIGN (not one of this pool's), SLAB_DOUBLE_FREE. */
export function slabFree(pool: usize, idx: u32): i32 {
  if (idx >= load<u32>(pool + POOL_NDESCS)) return SLAB_FOREIGN;
  const d = <usize>load<u32>(pool + POOL_DESCS) + <usize>idx * DESC_BYTES;
  if (atomic.cmpxchg<u32>(d + DESC_STATE, DESC_ALLOCATED, DESC_FREE) != DESC_ALLOCATED) return SLAB_DOUBLE_FREE;
  const cls = <usize>load<u32>(d + DESC_CLASS);
  const ring = <usize>load<u32>(pool + POOL_CLASS0 + cls * POOL_CLASS_BYTES + CLASS_RING);
  // The ring has room for every index of its class, so "full" means a consumer
  // was preempted while releasing a slot: it will finish, so spin (this never
  // parks the thread; waiting on a futex in WASM is off limits).
  while (!mpmcPush(ring, idx)) {}
  return SLAB_OK;
}
