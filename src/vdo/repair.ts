/**
 * Recovery at open (dm-vdo's repair.c): the newest usable reference count
 * snapshot loaded (count-snapshots.ts), the journal's mapping changes
 * replayed into the block map — those after the snapshot's tag adjusting
 * the counts by what the map held before them — and, with no usable
 * snapshot, every count rebuilt from the map (its tree pages counted as
 * such); then the map pages replay made are placed.
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
import type { JournalReplay, RecoveryJournal } from './recovery-journal.js';
import type { SlabDepot } from './slab-depot.js';
import type { CountSnapshots, SnapshotHeader } from './count-snapshots.js';
import {
  BLOCK_BYTES, ENTRY_DISCARD, ENTRY_MAP, STATE_COMPRESSED_BASE, STATE_UNCOMPRESSED, STATE_UNMAPPED, ZERO_PBN, type Superblock,
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
  snapshots: CountSnapshots;
  dev: BlockDevice;
  pool: SlabPool;
  /** Decodes `slot` of the packed block in buffer `buf` into buffer `into`: null, or why it cannot. */
  decodeSlot(buf: number, slot: number, into: number): string | null;
}

/**
 * What recovery found: logical blocks mapped, whether the counts came from a
 * snapshot, the entries replayed, and whether the volume was closed cleanly
 * (the journal resumed where that close left it, unread).
 */
export interface Recovered {
  logicalUsed: number;
  referencesLoaded: boolean;
  replayed: number;
  clean: boolean;
  /**
   * After a clean close: the snapshot whose counts the caller loads behind
   * the open (loadDeferred), none read yet; the depot holds its usage only.
   */
  deferred: { snapshot: SnapshotHeader; headers: SnapshotHeader[] } | null;
}

/**
 * An opening volume's metadata made whole: the last snapshot written, if
 * its tag is the journal's head and its counts are whole, with the journal
 * replayed on it; else the journal replayed and the counts rebuilt from the
 * map. After a clean close (sb.cleanSeq) the journal is not read: it holds
 * nothing past the head that close recorded. The caller checkpoints, unless
 * the close was clean and its snapshot usable (nothing to make durable).
 */
export async function recoverMetadata(r: RepairContext): Promise<Recovered> {
  const clean = r.sb.cleanSeq > 0 && (await r.journal.closedCleanlyAt(r.sb.cleanSeq));
  const jr = clean ? r.journal.resumeAt(r.sb.cleanSeq) : await r.journal.replay();
  const headers = await r.snapshots.headers();
  const h = usableSnapshot(headers, jr.head);
  if (clean && h !== null && h.usedBlocks !== null) {
    // Nothing to replay: the counts are needed by the first write, not by reads.
    r.depot.presetUsage(h.usedBlocks, h.mapPages);
    return { logicalUsed: h.logicalUsed, referencesLoaded: true, replayed: 0, clean, deferred: { snapshot: h, headers } };
  }
  const counts = h === null ? null : await r.snapshots.read(h);
  if (h !== null && counts !== null && r.depot.loadCounts(counts, h.mapPages)) {
    // The snapshot's tag is the head: every entry replayed came after it, and moves the counts.
    const used = await replayJournal(r, jr, true);
    if (!r.readOnly) {
      await r.map.placeAll();
      r.snapshots.opened(h.slot, headers);
    }
    return { logicalUsed: h.logicalUsed + used, referencesLoaded: true, replayed: jr.entries.length, clean, deferred: null };
  }
  await replayJournal(r, jr, false);
  const logicalUsed = await rebuildReferences(r.map, r.depot);
  if (!r.readOnly) {
    await r.map.placeAll();
    r.snapshots.opened(-1, headers);
  }
  return { logicalUsed, referencesLoaded: false, replayed: jr.entries.length, clean, deferred: null };
}

/**
 * The counts of a clean open's snapshot, loaded behind it (writes wait for
 * them): the snapshot read, or — unreadable, torn or not this volume's — the
 * counts rebuilt from the map tree (reads go on meanwhile; nothing writes).
 * Then the slots are compared for the next checkpoint. True when the
 * snapshot's counts were taken; rejects (ECORRUPT, EIO) only if the rebuild
 * fails too.
 */
export async function loadDeferred(r: RepairContext, h: SnapshotHeader, headers: SnapshotHeader[]): Promise<boolean> {
  const counts = await r.snapshots.read(h).catch(() => null);
  if (counts !== null && r.depot.loadCounts(counts, h.mapPages)) {
    r.snapshots.opened(h.slot, headers);
    return true;
  }
  await rebuildReferences(r.map, r.depot);
  r.snapshots.opened(-1, headers);
  return false;
}

/** The snapshot an open takes (count-snapshots.ts): the last one written, if its tag is the journal's head; else null. */
export function usableSnapshot(headers: SnapshotHeader[], head: number): SnapshotHeader | null {
  let newest: SnapshotHeader | null = null;
  for (const h of headers) if (newest === null || h.generation > newest.generation) newest = h;
  return newest !== null && newest.tag === head ? newest : null;
}

/**
 * Replays the journal into the block map (pages stay dirty in its cache until
 * the caller's checkpoint). `counted`: each entry also moves the depot's
 * counts from what the map held to what it maps (the counts are a snapshot
 * tagged with the journal head); returns the change in logical blocks mapped.
 */
export async function replayJournal(r: RepairContext, jr: JournalReplay, counted: boolean): Promise<number> {
  const entries = jr.entries;
  let used = 0;
  // mapping → data check of the logical block it holds now (−1: a slot that does not decode).
  const verified = new Map<number, number>();
  const pool = r.pool;
  const bb = r.sb.blockBytes;
  const d = await pool.allocAsync(bb);
  const plain = await pool.allocAsync(bb);
  let inBuffer = -1;
  try {
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      if (e.kind === ENTRY_DISCARD) {
        if (e.lba + e.count > r.sb.logicalBlocks) throw new FlashpackError('ECORRUPT', `recovery journal: discard of ${e.count} blocks at LBA ${e.lba} past the logical size`);
        for (let lba = e.lba; lba < e.lba + e.count; lba++) used += await setMapping(r, lba, 0, 0, counted);
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
            await r.dev.read(e.newPbn, d, bb / BLOCK_BYTES);
            inBuffer = e.newPbn;
          }
          if (e.newState === STATE_UNCOMPRESSED) check = dataCheckOf(pool.bytes(d, true).subarray(0, bb));
          else check = r.decodeSlot(d, e.newState - STATE_COMPRESSED_BASE, plain) === null ? dataCheckOf(pool.bytes(plain, true).subarray(0, bb)) : -1;
          verified.set(m, check);
        }
        // A mismatch means the data never reached the media: the previous mapping stays.
        if (check !== e.dataCheck) continue;
      }
      used += await setMapping(r, e.lba, m, e.dataCheck, counted);
    }
  } finally {
    pool.free(d);
    pool.free(plain);
  }
  return used;
}

/** Sets one mapping; `counted`: the depot's counts follow (the old block loses the LBA, the new one gains it). Returns the change in LBAs mapped. */
async function setMapping(r: RepairContext, lba: number, m: number, check: number, counted: boolean): Promise<number> {
  const { map, depot } = r;
  const p = await map.page(lba);
  try {
    // A discard replayed over a leaf never placed, and not filled by this replay, changes nothing: no page is made for it.
    if (p.pbn === 0 && !p.dirty && m === 0) return 0;
    const old = map.get(p, lba);
    map.set(p, lba, m, check);
    if (!counted || old === m) return 0;
    if (pbnOf(old) !== ZERO_PBN) {
      if (depot.mappedCounts()[(pbnOf(old) - depot.dataStart) / depot.unit] === 0 || depot.references(pbnOf(old)) === 0) {
        throw new FlashpackError('ECORRUPT', `reference count snapshot: LBA ${lba} maps to PBN ${pbnOf(old)}, which the snapshot counts unreferenced`);
      }
      depot.mapRef(pbnOf(old), -1);
      depot.decrement(pbnOf(old));
    }
    if (stateOf(m) !== STATE_UNMAPPED && pbnOf(m) !== ZERO_PBN) {
      if (!depot.canShare(pbnOf(m))) throw new FlashpackError('ECORRUPT', `recovery journal: PBN ${pbnOf(m)} would be referenced more than 254 times`);
      depot.increment(pbnOf(m));
      depot.mapRef(pbnOf(m), 1);
    }
    return (stateOf(m) === STATE_UNMAPPED ? 0 : 1) - (stateOf(old) === STATE_UNMAPPED ? 0 : 1);
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
  depot.syncMapped();
  return used;
}
