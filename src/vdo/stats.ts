/**
 * The volume's counters as vdostats reports them (VolumeStats): what came in
 * (bios in), what went to the device (bios out), where the data went (zero
 * blocks, dedupe, packed fragments) and how much room it takes.
 */
import type { IoCounts } from './block-device.js';
import type { BlockMapStats } from './block-map.js';
import type { DataVioPool } from './data-vio.js';
import type { JournalStats } from './recovery-journal.js';
import type { SlabDepot } from './slab-depot.js';
import type { AdmissionCounters } from './admission.js';
import type { DedupeCounters } from './hash-lock.js';
import type { StoreCounters } from './store.js';
import { isThin } from './volume-options.js';
import { blockPbns, dataBlocksOf, type Superblock } from './encodings.js';

/** Every count of blocks here is of volume blocks (blockBytes each), as vdostats counts its 4 KiB blocks. */
export interface VolumeStats {
  /** The volume block in bytes. */
  blockBytes: number;
  logicalBlocks: number;
  /** The image's size in blocks (a partial block at its end not counted). */
  physicalBlocks: number;
  /** Physical blocks holding data. */
  dataBlocksUsed: number;
  /** Physical blocks of metadata (superblocks, journal, block map, reference counts, and any part of the image no data block can use). */
  overheadBlocksUsed: number;
  /** Logical blocks mapped (including those mapped to the zero block). */
  logicalBlocksUsed: number;
  /** (logical blocks used − data blocks used) / logical blocks used, in percent. */
  savingPercent: number;
  dedupeAdviceValid: number;
  dedupeAdviceStale: number;
  dedupeConcurrentShared: number;
  zeroBlocksWritten: number;
  compressedFragmentsWritten: number;
  compressedBlocksWritten: number;
  compressedFragmentsInPacker: number;
  journalEntriesWritten: number;
  journalBlocksWritten: number;
  blockMapCacheHits: number;
  blockMapCacheMisses: number;
  blockMapPagesWritten: number;
  /** Stored blocks that failed their data check (or did not decode) when read or scrubbed: each such read failed ECORRUPT, no wrong byte was returned. */
  checksumErrors: number;
  /** Writes in the pipeline now holding a slot (vdostats' current VDO IO requests in progress); writes parked in the packer, whose fragments wait in the arena, hold none. */
  currentViosInProgress: number;
  /** The most at once since open; never above maxInflight. */
  maxViosInProgress: number;
  biosIn: { read: number; write: number; discard: number; flush: number };
  biosOut: { read: number; write: number; flush: number };
  /** Blocks written to the device per logical block written. */
  writeAmplification: number;
  /** The data region is smaller than the logical size: the volume relies on zero elision, dedupe and compression, and can fill up before it is logically full. */
  thin: boolean;
  /** Opened read-only. */
  readOnly: boolean;
}

/** Every counter the stages keep, in one object the volume hands each of them. */
export interface VolumeCounters extends AdmissionCounters, DedupeCounters, StoreCounters {
  readIn: number;
  discardIn: number;
  flushIn: number;
}

/** What volumeStats() reads. */
export interface StatsSources {
  sb: Superblock;
  counters: VolumeCounters;
  depot: SlabDepot;
  io: IoCounts;
  logicalUsed: number;
  fragmentsWaiting: number;
  journal: JournalStats;
  map: BlockMapStats;
  vios: DataVioPool;
  readOnly: boolean;
  checkFailures: number;
}

export function volumeStats(p: StatsSources): VolumeStats {
  const c = p.counters;
  // Block map tree pages live in the data region but are overhead, as vdostats counts them.
  const dataUsed = p.depot.usedBlocks - p.depot.mapPages;
  const io = p.io;
  const k = blockPbns(p.sb);
  const physicalBlocks = Math.floor(p.sb.physicalBlocks / k);
  return {
    blockBytes: p.sb.blockBytes,
    logicalBlocks: p.sb.logicalBlocks,
    physicalBlocks,
    dataBlocksUsed: dataUsed,
    overheadBlocksUsed: physicalBlocks - dataBlocksOf(p.sb) + p.depot.mapPages,
    logicalBlocksUsed: p.logicalUsed,
    savingPercent: p.logicalUsed === 0 ? 0 : Math.round(((p.logicalUsed - dataUsed) / p.logicalUsed) * 1000) / 10,
    dedupeAdviceValid: c.adviceValid,
    dedupeAdviceStale: c.adviceStale,
    dedupeConcurrentShared: c.concurrentShared,
    zeroBlocksWritten: c.zeroBlocks,
    compressedFragmentsWritten: c.fragments,
    compressedBlocksWritten: c.packedBlocks,
    compressedFragmentsInPacker: p.fragmentsWaiting,
    journalEntriesWritten: p.journal.entriesWritten,
    journalBlocksWritten: p.journal.blocksWritten,
    blockMapCacheHits: p.map.cacheHits,
    blockMapCacheMisses: p.map.cacheMisses,
    blockMapPagesWritten: p.map.pagesWritten,
    checksumErrors: p.checkFailures,
    currentViosInProgress: p.vios.active,
    maxViosInProgress: p.vios.peak,
    biosIn: { read: c.readIn, write: c.writeIn, discard: c.discardIn, flush: c.flushIn },
    biosOut: { read: io.reads, write: io.writes, flush: io.flushes },
    // The device counts 4 KiB blocks written.
    writeAmplification: c.blocksWrittenIn === 0 ? 0 : Math.round((io.blocksWritten / (k * c.blocksWrittenIn)) * 1000) / 1000,
    thin: isThin(p.sb),
    readOnly: p.readOnly,
  };
}
