/**
 * The volume check's recovery journal: every sector of the ring validated,
 * then the entries recovery would replay found by RecoveryJournal.replay()'s
 * walk (highest head, then blocks in sequence while whole) and judged as
 * Volume.recover() judges them — an entry out of range makes open fail, and a
 * mapping applies only if the block or slot it names holds the data it
 * journaled. The result is a per-page list of changes for the map scan.
 */
import { dataCheckOf } from './repair.js';
import { decompressBlockInto } from '../codec/lz4.js';
import { decompressInto as inflateInto } from '../codec/deflate.js';
import {
  BLOCK_BYTES, ENTRY_DISCARD, ENTRY_MAP, JOURNAL_ENTRIES_PER_SECTOR, JOURNAL_MAGIC,
  MAP_ENTRIES_PER_PAGE, SECTORS_PER_BLOCK, SECTOR_CORRUPT, SECTOR_VALID, STATE_COMPRESSED_BASE, STATE_UNCOMPRESSED,
  STATE_UNMAPPED, ZERO_PBN, decodeJournalEntry, openSector, packedFragment, recordedCheck,
  blockPbns, dataRegionOf, isDataBlockOf, type Codec, type JournalEntry, type SectorHeader, type Superblock,
} from './encodings.js';
import { READ_RUN_BLOCKS_MAX, type Image, type Problems } from './check-image.js';

/** Highest mapping state (compressed slot 13). */
export const STATE_MAX = STATE_COMPRESSED_BASE + 13;
/**
 * A replayed change as the map scan applies it: `count` LBAs from `lba` set to
 * (pbn, state) — a discard's run unmapped, or one LBA mapped; count 0 when the
 * mapping's data check failed (the previous mapping stays).
 */
export interface Change {
  lba: number;
  count: number;
  pbn: number;
  state: number;
  /** The data check the block map records with the new mapping (0 for unmapped and the zero block). */
  check: number;
}

export interface Replay {
  /** Entries recovery would replay (journalEntriesToReplay), up to a bad sector in the replayed part. */
  entries: number;
  /** A sector in the replayed part fails its checksum: recovery, and so open, fails (ECORRUPT). */
  liveCorrupt: boolean;
  /** Changes that apply, in journal order, by block map page. */
  byPage: Map<number, Change[]>;
  /** The head recovery starts at (the tag of the reference count snapshot it takes). */
  head: number;
}


/**
 * Decodes `slot` of packed block `b` into `out` (a volume block) as
 * Volume.decodeSlot does (raw deflate for a deflate volume, else an LZ4
 * block): null, or why it does not decode to exactly out.length bytes.
 */
export function decodeSlot(b: Uint8Array, slot: number, codec: Codec, out: Uint8Array): string | null {
  const range = packedFragment(b, slot);
  if (typeof range === 'string') return range;
  const fragment = b.subarray(range[0], range[1]);
  let n: number;
  try {
    n = codec === 'deflate' ? inflateInto(fragment, out, { format: 'raw' }) : decompressBlockInto(fragment, out);
  } catch (err) {
    return (err as Error).message;
  }
  return n === out.length ? null : `fragment decodes to ${n} bytes, not ${out.length}`;
}

/** Scans the journal ring, reports bad sectors, and returns what recovery would apply. */
export async function checkJournal(img: Image, sb: Superblock, problems: Problems): Promise<Replay> {
  const n = sb.journalBlocks;
  const seqs = new Float64Array(n).fill(-1);
  // Per sector: entries (0–15), -1 not part of its block (absent or another sequence), -2 corrupt.
  const counts = new Int8Array(n * SECTORS_PER_BLOCK);
  const kept = new Map<number, Uint8Array>();
  const h: SectorHeader = { index: 0, count: 0, key: 0, aux: 0 };
  const buf = new Uint8Array(READ_RUN_BLOCKS_MAX * BLOCK_BYTES);
  let maxSeq = 0;
  let maxHead = 0;
  for (let first = 0; first < n; first += READ_RUN_BLOCKS_MAX) {
    const blocks = Math.min(READ_RUN_BLOCKS_MAX, n - first);
    await img.read(sb.journalStart + first, blocks, buf);
    for (let i = first; i < first + blocks; i++) {
      const b = buf.subarray((i - first) * BLOCK_BYTES, (i - first + 1) * BLOCK_BYTES);
      let blockSeq = -1;
      for (let s = 0; s < SECTORS_PER_BLOCK; s++) {
        const r = openSector(b, s, JOURNAL_MAGIC, sb.nonce, h);
        let c = -1;
        if (r === SECTOR_CORRUPT) c = -2;
        else if (r === SECTOR_VALID) {
          if (blockSeq < 0) blockSeq = h.key;
          if (h.count > JOURNAL_ENTRIES_PER_SECTOR) {
            // replay() would decode entries past the sector (and past the block from sector 7).
            problems.add(`journal block ${i} (sequence ${h.key}) sector ${s}`, `claims ${h.count} entries; a sector holds ${JOURNAL_ENTRIES_PER_SECTOR}`);
          }
          if (h.key === blockSeq) c = Math.min(h.count, JOURNAL_ENTRIES_PER_SECTOR);
          if (h.key > maxSeq) maxSeq = h.key;
          if (h.aux > maxHead) maxHead = h.aux;
        }
        counts[i * SECTORS_PER_BLOCK + s] = c;
      }
      seqs[i] = blockSeq;
      if (blockSeq >= 0) kept.set(i, b.slice());
    }
  }
  // The walk of RecoveryJournal.replay(): from the highest head while blocks are in sequence and whole.
  const entries: { e: JournalEntry; seq: number; pos: number; sector: number; slot: number }[] = [];
  let liveCorrupt = -1;
  for (let seq = maxHead; maxSeq > 0 && seq <= maxSeq && liveCorrupt < 0; seq++) {
    const i = seq % n;
    if (seqs[i] !== seq) break;
    const b = kept.get(i)!;
    let complete = true;
    for (let s = 0; s < SECTORS_PER_BLOCK && complete; s++) {
      const c = counts[i * SECTORS_PER_BLOCK + s];
      if (c === -2) {
        liveCorrupt = i * SECTORS_PER_BLOCK + s;
        break;
      }
      for (let k = 0; k < c; k++) {
        const e: JournalEntry = { kind: 0, lba: 0, count: 0, newPbn: 0, newState: 0, oldPbn: 0, oldState: 0, dataCheck: 0 };
        decodeJournalEntry(b, s * JOURNAL_ENTRIES_PER_SECTOR + k, e);
        entries.push({ e, seq, pos: i, sector: s, slot: k });
      }
      complete = c === JOURNAL_ENTRIES_PER_SECTOR;
    }
    if (!complete) break;
  }
  for (let at = 0; at < counts.length; at++) {
    if (counts[at] !== -2) continue;
    const i = Math.floor(at / SECTORS_PER_BLOCK);
    const seq = seqs[i] >= 0 ? ` (sequence ${seqs[i]})` : '';
    const live = at === liveCorrupt ? '; it is in the part recovery replays, so the volume does not open (ECORRUPT)' : '';
    problems.add(`journal block ${i}${seq} sector ${at % SECTORS_PER_BLOCK}`, `fails its checksum${live}`);
  }
  const byPage = new Map<number, Change[]>();
  const toVerify = new Map<number, number[]>(); // PBN → mappings (pbn * 16 + state) to compute data checks for
  const pending: { change: Change; dataCheck: number }[] = [];
  for (const { e, seq, pos, sector, slot } of entries) {
    const where = `journal block ${pos} (sequence ${seq}) sector ${sector} entry ${slot}`;
    const change = checkEntry(e, sb, where, problems);
    if (change === null) continue;
    if (change.count === 1 && change.state !== STATE_UNMAPPED && change.pbn !== ZERO_PBN) {
      const m = change.pbn * 16 + change.state;
      const list = toVerify.get(change.pbn);
      if (list === undefined) toVerify.set(change.pbn, [m]);
      else if (!list.includes(m)) list.push(m);
      pending.push({ change, dataCheck: e.dataCheck });
    }
    addChange(byPage, change);
  }
  if (pending.length > 0) {
    const checks = await dataChecks(img, sb, toVerify);
    // The journal holds the data check of the logical block: a mismatch means the
    // data never reached the media, so the previous mapping stays (Volume.recover()).
    for (const p of pending) if (checks.get(p.change.pbn * 16 + p.change.state) !== p.dataCheck) p.change.count = 0;
  }
  if (sb.cleanSeq > 0 && (maxSeq !== sb.cleanSeq || maxHead !== sb.cleanSeq || entries.length > 0)) {
    // An open checks the head block and the one after it only (RecoveryJournal.closedCleanlyAt).
    problems.add('superblock', `says a clean close left the journal at block ${sb.cleanSeq}, but the journal's newest block is ${maxSeq} (head ${maxHead}, ${entries.length} entries to replay)`);
  }
  return { entries: entries.length, liveCorrupt: liveCorrupt >= 0, byPage, head: maxSeq > 0 ? maxHead : 0 };
}

/** An entry as the change recovery makes, or null (a problem: recovery stops with ECORRUPT there). */
function checkEntry(e: JournalEntry, sb: Superblock, where: string, problems: Problems): Change | null {
  if (e.kind === ENTRY_DISCARD) {
    if (e.lba + e.count > sb.logicalBlocks) {
      problems.add(where, `discard of ${e.count} blocks at LBA ${e.lba} runs past the logical size (${sb.logicalBlocks} blocks); recovery fails here (ECORRUPT)`);
      return null;
    }
    return { lba: e.lba, count: e.count, pbn: 0, state: STATE_UNMAPPED, check: 0 };
  }
  if (e.kind !== ENTRY_MAP || e.lba >= sb.logicalBlocks || e.newState > STATE_MAX) {
    problems.add(where, `entry kind ${e.kind} for LBA ${e.lba} state ${e.newState} is not valid for this volume (${sb.logicalBlocks} logical blocks); recovery fails here (ECORRUPT)`);
    return null;
  }
  if (e.newState !== STATE_UNMAPPED && e.newPbn !== ZERO_PBN && !isDataBlockOf(sb, e.newPbn)) {
    problems.add(where, `LBA ${e.lba} maps to PBN ${e.newPbn}, outside ${dataRegionOf(sb)}; recovery fails here (ECORRUPT)`);
    return null;
  }
  return { lba: e.lba, count: 1, pbn: e.newPbn, state: e.newState, check: recordedCheck(e.newPbn, e.newState, e.dataCheck) };
}

/** Files a change under every block map page it touches (a discard may span pages). */
function addChange(byPage: Map<number, Change[]>, change: Change): void {
  if (change.count === 0) return;
  const last = Math.floor((change.lba + change.count - 1) / MAP_ENTRIES_PER_PAGE);
  for (let p = Math.floor(change.lba / MAP_ENTRIES_PER_PAGE); p <= last; p++) {
    const list = byPage.get(p);
    if (list === undefined) byPage.set(p, [change]);
    else list.push(change);
  }
}

/** mapping → data check of the block or slot it names (−1: a slot that does not decode), reading PBNs in order. */
async function dataChecks(img: Image, sb: Superblock, toVerify: Map<number, number[]>): Promise<Map<number, number>> {
  const codec = sb.codec;
  const pbns = Float64Array.from(toVerify.keys()).sort();
  const span = blockPbns(sb);
  img.total += pbns.length * span;
  const checks = new Map<number, number>();
  const plain = new Uint8Array(sb.blockBytes);
  await img.readEach(pbns, (pbn, block) => {
    for (const m of toVerify.get(pbn)!) {
      const state = m % 16;
      const check = state === STATE_UNCOMPRESSED ? dataCheckOf(block)
        : decodeSlot(block, state - STATE_COMPRESSED_BASE, codec, plain) === null ? dataCheckOf(plain) : -1;
      checks.set(m, check);
    }
  }, span);
  return checks;
}
