/** The offload engine: worker threads fed by rings of descriptors in the shared memory. */
export { Engine } from './engine.js';
export type { EngineOptions, CloseOptions } from './engine.js';
export * as jobs from './jobs.js';
