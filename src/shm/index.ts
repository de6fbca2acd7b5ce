/** Shared-memory structures: rings of descriptor indices and slab pools of buffers. */
export { Ring, RING_SPIN_ITERATIONS } from './ring.js';
export type { RingKind, WaitResult } from './ring.js';
export { SlabPool, DEFAULT_CLASSES } from './slab.js';
export type { SizeClass } from './slab.js';
export { readLayout } from './layout.js';
export type { Layout } from './layout.js';
