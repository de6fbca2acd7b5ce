/**
 * Recovery at open (dm-vdo's repair.c): the journal's mapping changes are
 * replayed into the block map, then every reference count is rebuilt from
 * the map (its tree pages counted as such), then the map pages replay made
 * are placed.
 *
 * Invariants:
 * - an entry is applied only when the block (or packed slot) it maps to reads
 *   back as the data whose check the entry recorded, so a write whose data
 *   never reached the media reverts to its previous mapping;
 * - a replayed entry or map entry that cannot belong to this volume (kind,
 *   LBA past the logical size, state, PBN outside the data region, more than
 *   254 references) is ECORRUPT and nothing is written;
 * - no tree page is allocated before the counts are whole: replay fills
 *   pages in the cache unplaced, and a writable open places them afterwards;
 * - the caller checkpoints afterwards (unless read-only), so a later replay
 *   never meets these entries again.
 */
import { FlashpackError } from '../errors.js';
import { fingerprint } from '../codec/fingerprint.js';
import type { SlabPool } from '../shm/slab.js';
import type { BlockDevice } from './block-device.js';
import { mappingOf, pbnOf, stateOf, type BlockMap } from './block-map.js';
import type { RecoveryJournal } from './recovery-journal.js';
import type { SlabDepot } from './slab-depot.js';
import { eraseReferences, loadReferences } from './refcount-store.js';
import {
  ENTRY_DISCARD, ENTRY_MAP, STATE_COMPRESSED_BASE, STATE_UNCOMPRESSED, STATE_UNMAPPED, ZERO_PBN, type Superblock,
} from './encodings.js';

/** The journal's data check of a logical block: bits 64–95 of its XXH3-128 (the engine's prepare job computes the same). */
export function dataCheckOf(block: Uint8Array): number {
  const fp = fingerprint(block);
  return (fp[8] | (fp[9] << 8) | (fp[10] << 16) | (fp[11] << 24)) >>> 0;
}

/** What replay needs of an opening volume. */
export interface RepairContext {
  sb: Superblock;
  readOnly: boolean;
  journal: RecoveryJournal;
  map: BlockMap;
  depot: SlabDepot;
  dev: BlockDevice;
  pool: SlabPool;
  /** Decodes `slot` of the packed block in buffer `buf` into buffer `into`: null, or why it cannot. */
  decodeSlot(buf: number, slot: number, into: number): string | null;
}

/**
 * An opening volume's metadata made whole: the journal replayed; the
 * reference counts the last clean close saved taken when nothing was
 * replayed, else rebuilt from the map (refcount-store.ts). A writable open
 * erases saved counts before anything is written. The caller checkpoints.
 */
export async function recoverMetadata(r: RepairContext): Promise<{ logicalUsed: number; referencesLoaded: boolean }> {
  const saved = await loadReferences(r.sb, r.dev, r.pool);
  if (!r.readOnly) await eraseReferences(r.sb, r.dev, r.pool);
  const replayed = await replayJournal(r);
  if (replayed === 0 && saved !== null && r.depot.loadCounts(saved.counts, saved.mapPages)) return { logicalUsed: saved.logicalUsed, referencesLoaded: true };
  const logicalUsed = await rebuildReferences(r.map, r.depot);
  if (!r.readOnly) await r.map.placeAll();
  return { logicalUsed, referencesLoaded: false };
}

/** Replays the journal into the block map (pages stay dirty in its cache until the caller's checkpoint); returns the entries replayed. */
export async function replayJournal(r: RepairContext): Promise<number> {
  const entries = await r.journal.replay();
  // mapping → data check of the logical block it holds now (−1: a slot that does not decode).
  const verified = new Map<number, number>();
  const pool = r.pool;
  const d = await pool.allocAsync(4096);
  const plain = await pool.allocAsync(4096);
  let inBuffer = -1;
  try {
    for (const e of entries) {
      if (e.kind === ENTRY_DISCARD) {
        if (e.lba + e.count > r.sb.logicalBlocks) throw new FlashpackError('ECORRUPT', `recovery journal: discard of ${e.count} blocks at LBA ${e.lba} past the logical size`);
        for (let lba = e.lba; lba < e.lba + e.count; lba++) await setMapping(r.map, lba, 0, 0);
        continue;
      }
      if (e.kind !== ENTRY_MAP || e.lba >= r.sb.logicalBlocks || e.newState > STATE_COMPRESSED_BASE + 13 || (e.newState === STATE_UNMAPPED && e.newPbn !== 0)) {
        throw new FlashpackError('ECORRUPT', `recovery journal: entry kind ${e.kind} for LBA ${e.lba} state ${e.newState} is not valid for this volume`);
      }
      const m = mappingOf(e.newPbn, e.newState);
      if (e.newState !== STATE_UNMAPPED && e.newPbn !== ZERO_PBN) {
        if (!r.depot.isData(e.newPbn)) throw new FlashpackError('ECORRUPT', `recovery journal: LBA ${e.lba} maps to PBN ${e.newPbn}, outside the data region`);
        let check = verified.get(m);
        if (check === undefined) {
          if (inBuffer !== e.newPbn) {
            await r.dev.read(e.newPbn, d);
            inBuffer = e.newPbn;
          }
          if (e.newState === STATE_UNCOMPRESSED) check = dataCheckOf(pool.bytes(d, true).subarray(0, 4096));
          else check = r.decodeSlot(d, e.newState - STATE_COMPRESSED_BASE, plain) === null ? dataCheckOf(pool.bytes(plain, true).subarray(0, 4096)) : -1;
          verified.set(m, check);
        }
        // A mismatch means the data never reached the media: the previous mapping stays.
        if (check !== e.dataCheck) continue;
      }
      await setMapping(r.map, e.lba, m, e.dataCheck);
    }
  } finally {
    pool.free(d);
    pool.free(plain);
  }
  return entries.length;
}

async function setMapping(map: BlockMap, lba: number, m: number, check: number): Promise<void> {
  const p = await map.page(lba);
  try {
    // A discard replayed over a leaf never placed, and not filled by this replay, changes nothing: no page is made for it.
    if (p.pbn === 0 && !p.dirty && m === 0) return;
    map.set(p, lba, m, check);
  } finally {
    map.unpin(p);
  }
}

/** Rebuilds every reference count from the block map, its tree pages included; returns the logical blocks mapped. */
export async function rebuildReferences(map: BlockMap, depot: SlabDepot): Promise<number> {
  depot.resetAll();
  let used = 0;
  await map.forEach((lba, m) => {
    used++;
    const pbn = pbnOf(m);
    const state = stateOf(m);
    if (state > STATE_COMPRESSED_BASE + 13) throw new FlashpackError('ECORRUPT', `block map: LBA ${lba} has mapping state ${state}`);
    if (pbn === ZERO_PBN) return;
    if (!depot.isData(pbn)) throw new FlashpackError('ECORRUPT', `block map: LBA ${lba} maps to PBN ${pbn}, outside the data region`);
    if (!depot.canShare(pbn)) throw new FlashpackError('ECORRUPT', `block map: PBN ${pbn} is referenced more than 254 times`);
    depot.increment(pbn);
  }, (pbn) => depot.claimMapPage(pbn));
  return used;
}
