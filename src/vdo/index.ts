/**
 * The VDO volume: dm-vdo's data reduction (zero elision, dedupe, compression,
 * packing) over the NVMe-style scheduler, crash-safe through a recovery journal.
 */
export { Volume } from './volume.js';
export type { VolumeOptions, OpenOptions, VolumeStats, VolumeExtent, ScrubOptions, ScrubReport, ResizeOptions, BadBlock } from './volume.js';
export { Packer, simulatePacking, DM_VDO_BINS, FLASHPACK_BINS } from './packer.js';
export type { PackerPolicy, PackingResult } from './packer.js';
export { MAX_REFERENCES } from './slab-depot.js';
export type { Codec, WritePolicy } from './encodings.js';
export { checkVolume } from './check.js';
export type { CheckReport, CheckProblem, CheckOptions } from './check.js';
