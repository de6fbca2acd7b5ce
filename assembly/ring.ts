// Bounded lock-free rings in shared memory, the same layout and protocol as
// src/shm/ring.ts, so a WASM instance and JS (Atomics) can be producer or
// consumer of the same ring, in either direction.
//
// SPSC: no CAS; the producer owns RING_HEAD, the consumer RING_TAIL; slot writes
// are plain and the index store publishes them (seq-cst). MPMC: Vyukov's bounded
// queue, one CAS per burst: a slot at position p is free for the producer when
// its seq == p and full for the consumer when its seq == p + 1.
// Nothing here blocks: waiting is the caller's (Atomics.wait in JS), because
// Node 20's V8 miscompiles code after memory.atomic.wait32. Rings are carved and
// initialized by the host (Ring.init in src/shm/ring.ts) before threads use them.
import {
  RING_HEAD, RING_PROD_TAIL_CACHE, RING_TAIL, RING_CONS_HEAD_CACHE, RING_CAPACITY, RING_SLOTS,
} from "./layout";

/** SPSC burst enqueue of up to n values from src (u32s); returns how many. */
export function spscEnqueue(r: usize, src: usize, n: u32): u32 {
  const cap = load<u32>(r + RING_CAPACITY);
  const mask = cap - 1;
  const head = load<u32>(r + RING_HEAD); // only the producer writes it
  let tail = load<u32>(r + RING_PROD_TAIL_CACHE);
  if (cap - (head - tail) < n) {
    tail = atomic.load<u32>(r + RING_TAIL);
    store<u32>(r + RING_PROD_TAIL_CACHE, tail);
  }
  const free = cap - (head - tail);
  if (n > free) n = free;
  const slots = r + RING_SLOTS;
  for (let k: u32 = 0; k < n; k++) store<u32>(slots + (<usize>((head + k) & mask) << 2), load<u32>(src + (<usize>k << 2)));
  if (n > 0) atomic.store<u32>(r + RING_HEAD, head + n);
  return n;
}

/** SPSC burst dequeue of up to max values into dst; returns how many. */
export function spscDequeue(r: usize, dst: usize, max: u32): u32 {
  const mask = load<u32>(r + RING_CAPACITY) - 1;
  const tail = load<u32>(r + RING_TAIL); // only the consumer writes it
  let head = load<u32>(r + RING_CONS_HEAD_CACHE);
  if (head - tail < max) {
    head = atomic.load<u32>(r + RING_HEAD);
    store<u32>(r + RING_CONS_HEAD_CACHE, head);
  }
  let n = head - tail;
  if (n > max) n = max;
  const slots = r + RING_SLOTS;
  for (let k: u32 = 0; k < n; k++) store<u32>(dst + (<usize>k << 2), load<u32>(slots + (<usize>((tail + k) & mask) << 2)));
  if (n > 0) atomic.store<u32>(r + RING_TAIL, tail + n);
  return n;
}

/** MPMC burst enqueue: claims up to n consecutive free slots with one CAS. */
export function mpmcEnqueue(r: usize, src: usize, n: u32): u32 {
  const mask = load<u32>(r + RING_CAPACITY) - 1;
  const slots = r + RING_SLOTS;
  while (true) {
    const pos = atomic.load<u32>(r + RING_HEAD);
    let k: u32 = 0;
    while (k < n && atomic.load<u32>(slots + (<usize>((pos + k) & mask) << 3)) == pos + k) k++;
    if (k == 0) {
      // Full, or another producer moved on: full only if the head did not move.
      if (atomic.load<u32>(r + RING_HEAD) == pos) return 0;
      continue;
    }
    if (atomic.cmpxchg<u32>(r + RING_HEAD, pos, pos + k) != pos) continue;
    for (let i: u32 = 0; i < k; i++) {
      const slot = slots + (<usize>((pos + i) & mask) << 3);
      store<u32>(slot + 4, load<u32>(src + (<usize>i << 2)));
      atomic.store<u32>(slot, pos + i + 1);
    }
    return k;
  }
  return 0; // unreachable
}

/** MPMC burst dequeue: claims up to max consecutive full slots with one CAS. */
export function mpmcDequeue(r: usize, dst: usize, max: u32): u32 {
  const cap = load<u32>(r + RING_CAPACITY);
  const mask = cap - 1;
  const slots = r + RING_SLOTS;
  while (true) {
    const pos = atomic.load<u32>(r + RING_TAIL);
    let k: u32 = 0;
    while (k < max && atomic.load<u32>(slots + (<usize>((pos + k) & mask) << 3)) == pos + k + 1) k++;
    if (k == 0) {
      if (atomic.load<u32>(r + RING_TAIL) == pos) return 0;
      continue;
    }
    if (atomic.cmpxchg<u32>(r + RING_TAIL, pos, pos + k) != pos) continue;
    for (let i: u32 = 0; i < k; i++) {
      const slot = slots + (<usize>((pos + i) & mask) << 3);
      store<u32>(dst + (<usize>i << 2), load<u32>(slot + 4));
      atomic.store<u32>(slot, pos + i + cap);
    }
    return k;
  }
  return 0; // unreachable
}

/** MPMC enqueue of one value; false when full. */
export function mpmcPush(r: usize, value: u32): bool {
  const mask = load<u32>(r + RING_CAPACITY) - 1;
  const slots = r + RING_SLOTS;
  while (true) {
    const pos = atomic.load<u32>(r + RING_HEAD);
    const slot = slots + (<usize>(pos & mask) << 3);
    const seq = atomic.load<u32>(slot);
    if (seq == pos) {
      if (atomic.cmpxchg<u32>(r + RING_HEAD, pos, pos + 1) == pos) {
        store<u32>(slot + 4, value);
        atomic.store<u32>(slot, pos + 1);
        return true;
      }
    } else if (<i32>(seq - pos) < 0) {
      return false;
    }
  }
  return false; // unreachable
}

/** MPMC dequeue of one value; -1 when empty. */
export function mpmcPop(r: usize): i64 {
  const cap = load<u32>(r + RING_CAPACITY);
  const mask = cap - 1;
  const slots = r + RING_SLOTS;
  while (true) {
    const pos = atomic.load<u32>(r + RING_TAIL);
    const slot = slots + (<usize>(pos & mask) << 3);
    const seq = atomic.load<u32>(slot);
    if (seq == pos + 1) {
      if (atomic.cmpxchg<u32>(r + RING_TAIL, pos, pos + 1) == pos) {
        const value = load<u32>(slot + 4);
        atomic.store<u32>(slot, pos + cap);
        return <i64>value;
      }
    } else if (<i32>(seq - (pos + 1)) < 0) {
      return -1;
    }
  }
  return -1; // unreachable
}
