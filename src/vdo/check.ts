/**
 * Offline consistency check of a flashpack volume image (e2fsck -n, dm-vdo's
 * vdoaudit). Reads the file or block device O_RDONLY with node:fs, never
 * writes it and needs no engine or workers. It takes no lock: checking an
 * image a writer has open reports whatever is on the media at that moment,
 * so a caller that cares holds the volume closed (or open read-only).
 *
 * Checked, each problem with its location: both superblock copies and the
 * image's length; every journal sector, and the entries recovery would replay,
 * applied to the map as Volume.recover() applies them (an unclean image is
 * checked as it would open); the block map tree from its root (check-map.ts:
 * every page's sectors, every child named once and in the data region) and
 * every leaf entry; reference counts recomputed from that map (tree pages at
 * MAX_REFERENCES, never also referenced by a mapping), checked against dm-vdo's bound of 254,
 * against the reference count snapshot a clean open takes instead of a map
 * scan (count-snapshots.ts) and against the packed blocks: every referenced slot
 * must exist in its block's header, lie within the block and (option
 * `decode`) decode to a whole volume block.
 * Option `scrub` also reads every referenced data block and checks what each
 * mapping reads as against the data check its block map entry records (what
 * every read verifies), and that all the mappings of one stored block record
 * the same check. Not checked: the saved dedupe index (a damaged one is
 * ignored at open).
 */
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { badArgument, checkBoolean, checkFunction, checkOptions, fromOsError, hex32, invalid } from '../errors.js';
import {
  BLOCK_BYTES, CB_HEADER_BYTES, blockPbns, cbCapacity, CODECS, MAX_COMPRESSION_SLOTS, SECTOR_BYTES, STATE_COMPRESSED_BASE,
  STATE_UNCOMPRESSED, SUPERBLOCK_COPIES, SNAPSHOT_SLOTS, countBlocksFor, decodeSuperblock, encodePackedHeader, packedFragment, u32le, dataBlocksOf, type Superblock,
} from './encodings.js';
import { MAX_REFERENCES } from './slab-depot.js';
import { Image, Problems, type CheckProblem } from './check-image.js';
import { checkJournal, decodeSlot, type Replay } from './check-journal.js';
import { dataCheckOf, usableSnapshot } from './repair.js';
import { plainSectorOps, decodeCountBlocks, decodeSnapshotHeader, slotBlock, type SnapshotHeader } from './count-snapshots.js';
import { scanMap, walkTree, type Tree } from './check-map.js';

export type { CheckProblem } from './check-image.js';

export interface CheckReport {
  /** problems.length === 0. */
  ok: boolean;
  /** At most 1,000, then a final { where: 'check', what: 'N more problems not listed' }. */
  problems: CheckProblem[];
  /** Closed cleanly: the journal holds no entries to replay (and no bad sector where they would be). */
  clean: boolean;
  journalEntriesToReplay: number;
  /** The volume block in bytes (0: no valid superblock); the counts of blocks here are of these, as stats() counts them. */
  blockBytes: number;
  logicalBlocks: number;
  physicalBlocks: number;
  /** The data region's first PBN (4 KiB). */
  dataStart: number;
  /** Generation of the superblock copy in use (0: neither copy is valid). */
  generation: number;
  /** Mapped LBAs, zero-block mappings included (stats().logicalBlocksUsed). */
  logicalBlocksUsed: number;
  /** Distinct data PBNs referenced (stats().dataBlocksUsed). */
  dataBlocksUsed: number;
  /** Distinct PBNs referenced as packed (compressed) blocks. */
  packedBlocks: number;
  blocksRead: number;
}

export interface CheckOptions {
  /** Blocks read so far and the blocks the check expects to read (which grows as it learns what the map references); at most ~10 calls a second, and once at the end. */
  onProgress?(done: number, total: number): void;
  /** Decode every referenced packed slot (default true). */
  decode?: boolean;
  /** Read every referenced data block and verify each mapping's data check (default false; implies decode). */
  scrub?: boolean;
}

const OPTION_NAMES = ['onProgress', 'decode', 'scrub'];
/** LBAs named in a problem about a block or slot they reference. */
const LBAS_NAMED_MAX = 4;
const KIND_UNCOMPRESSED = 1;
const KIND_PACKED = 2;
/** A block map tree page (its count is MAX_REFERENCES, as the depot keeps it). */
const KIND_MAP = 4;
const REFS_SATURATED = 0xffff;
const PACKED_HEADER = ((): Uint8Array => {
  const h = new Uint8Array(CB_HEADER_BYTES);
  encodePackedHeader(h, 'none', 0, () => 0);
  return h;
})();
const PACKED_MAGIC = u32le(PACKED_HEADER, 0);
const PACKED_VERSION = PACKED_HEADER[4];

/**
 * Checks the volume image at `path` and reports every problem found (see the
 * module comment). An image that is not a volume at all is a report naming
 * why each superblock copy is not one, not an error. Errors: EINVAL (a path
 * that is not a non-empty string, a directory, a bad option), ENOENT/EACCES
 * (the path; the OS error is the cause), EIO (a read failed).
 */
export async function checkVolume(path: string, options?: CheckOptions): Promise<CheckReport> {
  if (typeof path !== 'string' || path.length === 0) throw badArgument('checkVolume: path', 'a non-empty path string', path);
  const opts = checkOptions<CheckOptions>('checkVolume: options', options);
  for (const k of Object.keys(opts)) if (!OPTION_NAMES.includes(k)) throw invalid(`checkVolume: unknown option ${JSON.stringify(k)} (options: ${OPTION_NAMES.join(', ')})`);
  if (opts.onProgress !== undefined) checkFunction('checkVolume: options.onProgress', opts.onProgress);
  const scrub = checkBoolean('checkVolume: options.scrub', opts.scrub, false);
  const decode = checkBoolean('checkVolume: options.decode', opts.decode, true);
  if (scrub && !decode) throw invalid('checkVolume: options.scrub reads and decodes every stored block; it cannot go with decode: false');
  let fh: FileHandle;
  try {
    fh = await fsp.open(path, 'r');
  } catch (err) {
    throw fromOsError(err, `checkVolume: cannot open ${path}`);
  }
  try {
    let st: Stats;
    try {
      st = await fh.stat();
    } catch (err) {
      throw fromOsError(err, `checkVolume: cannot stat ${path}`);
    }
    if (st.isDirectory()) throw invalid(`checkVolume: ${path} is a directory, not a volume image`);
    return await check(new Image(fh, path, opts.onProgress), st, decode, scrub);
  } finally {
    await fh.close();
  }
}

/** A finding about a data block (slot −1) or one of its packed slots, named with its LBAs once they are known. */
interface Finding {
  pbn: number;
  slot: number;
  what: string;
}

/** Per data block: references (saturating), how it is referenced, and which packed slots. */
class References {
  readonly refs: Uint16Array;
  readonly kinds: Uint8Array;
  readonly slots: Uint16Array;
  readonly dataStart: number;
  /** PBNs per data block. */
  readonly span: number;

  constructor(sb: Superblock) {
    const n = dataBlocksOf(sb);
    this.dataStart = sb.dataStart;
    this.span = blockPbns(sb);
    this.refs = new Uint16Array(n);
    this.kinds = new Uint8Array(n);
    this.slots = new Uint16Array(n);
  }

  /** The index of data block `pbn`. */
  at(pbn: number): number {
    return (pbn - this.dataStart) / this.span;
  }

  addMapPage(pbn: number): void {
    const i = this.at(pbn);
    this.refs[i] = Math.min(REFS_SATURATED, this.refs[i] + MAX_REFERENCES);
    this.kinds[i] |= KIND_MAP;
  }

  add(pbn: number, state: number): void {
    const i = this.at(pbn);
    if (this.refs[i] < REFS_SATURATED) this.refs[i]++;
    if (state === STATE_UNCOMPRESSED) this.kinds[i] |= KIND_UNCOMPRESSED;
    else {
      this.kinds[i] |= KIND_PACKED;
      this.slots[i] |= 1 << (state - STATE_COMPRESSED_BASE);
    }
  }
}

async function check(img: Image, st: Stats, decode: boolean, scrub: boolean): Promise<CheckReport> {
  const problems = new Problems();
  img.total = SUPERBLOCK_COPIES;
  const sb = await checkSuperblocks(img, problems);
  if (sb === null) {
    img.progress(true);
    return {
      ok: false, problems: problems.list(), clean: false, journalEntriesToReplay: 0, blockBytes: 0, logicalBlocks: 0, physicalBlocks: 0, dataStart: 0,
      generation: 0, logicalBlocksUsed: 0, dataBlocksUsed: 0, packedBlocks: 0, blocksRead: img.blocksRead,
    };
  }
  await checkLength(img, st, sb, problems);
  img.total += sb.journalBlocks;
  const replay = await checkJournal(img, sb, problems);
  const refs = new References(sb);
  const tree = await walkTree(img, sb, problems);
  for (const pbn of tree.pages) refs.addMapPage(pbn);
  const findings: Finding[] = [];
  // scrub: mapping (pbn × 16 + state) → the data check its entries record, and the first LBA recording it.
  const recorded = new Map<number, { check: number; lba: number }>();
  const beforeMap = problems.count;
  const logicalUsed = await scanMap(img, sb, tree, replay, problems, (lba, pbn, state, check) => {
    refs.add(pbn, state);
    if (!scrub) return;
    const m = pbn * 16 + state;
    const r = recorded.get(m);
    if (r === undefined) recorded.set(m, { check, lba });
    else if (r.check !== check && r.check !== -1) {
      findings.push({ pbn, slot: state === STATE_UNCOMPRESSED ? -1 : state - STATE_COMPRESSED_BASE, what: `LBA ${r.lba} records data check ${hex32(r.check)} and LBA ${lba} ${hex32(check)} for the same stored data` });
      r.check = -1; // reported once
    }
  });
  // Reference counts, as rebuildReferences() would make them.
  const packed: number[] = [];
  let dataUsed = 0;
  for (let i = 0; i < refs.refs.length; i++) {
    const n = refs.refs[i];
    if (n === 0) continue;
    const pbn = sb.dataStart + i * refs.span;
    if ((refs.kinds[i] & KIND_MAP) !== 0) {
      if (refs.kinds[i] !== KIND_MAP) findings.push({ pbn, slot: -1, what: 'is a block map tree page and is referenced by a mapping too' });
      continue;
    }
    dataUsed++;
    if ((refs.kinds[i] & KIND_PACKED) !== 0) packed.push(pbn);
    if (n > MAX_REFERENCES) {
      findings.push({ pbn, slot: -1, what: `has ${n === REFS_SATURATED ? `${n} or more` : n} references, more than ${MAX_REFERENCES} (an open that rebuilds the counts fails: ECORRUPT)` });
    }
    if (refs.kinds[i] === (KIND_UNCOMPRESSED | KIND_PACKED)) findings.push({ pbn, slot: -1, what: 'is referenced both as an uncompressed block and as a packed block' });
  }
  // Saved counts are compared with a whole map only: a damaged one's recount is short, and reported already.
  if (replay.entries === 0 && !replay.liveCorrupt && problems.count === beforeMap) await checkSnapshot(img, sb, replay, refs, logicalUsed, tree.pages.length, problems);
  await checkPacked(img, sb, refs, packed, decode, findings);
  if (scrub) await verifyData(img, sb, refs, recorded, findings);
  if (findings.length > 0) {
    const named = await referencesTo(img, sb, tree, replay, findings);
    for (const f of findings) {
      const by = named.get(f.slot < 0 ? -1 - f.pbn : f.pbn * 16 + STATE_COMPRESSED_BASE + f.slot);
      const lbas = by === undefined ? '' : `; referenced by LBA${by.n > 1 ? 's' : ''} ${by.lbas.join(', ')}${by.n > by.lbas.length ? ` and ${by.n - by.lbas.length} more` : ''}`;
      const where = f.slot < 0 ? `PBN ${f.pbn}` : `LBA ${by?.lbas[0] ?? '?'} → PBN ${f.pbn} slot ${f.slot}`;
      problems.add(where, f.what + lbas);
    }
  }
  img.progress(true);
  return {
    ok: problems.count === 0, problems: problems.list(), clean: replay.entries === 0 && !replay.liveCorrupt, journalEntriesToReplay: replay.entries,
    blockBytes: sb.blockBytes, logicalBlocks: sb.logicalBlocks, physicalBlocks: Math.floor(sb.physicalBlocks / refs.span), dataStart: sb.dataStart, generation: sb.generation,
    logicalBlocksUsed: logicalUsed, dataBlocksUsed: dataUsed, packedBlocks: packed.length, blocksRead: img.blocksRead,
  };
}

const copyName = (c: number): string => `superblock copy ${'AB'[c]} (block ${c})`;

/** Both copies; the valid one with the higher generation (copy A on a tie, as Volume.open), or null. */
async function checkSuperblocks(img: Image, problems: Problems): Promise<Superblock | null> {
  const b = new Uint8Array(SUPERBLOCK_COPIES * BLOCK_BYTES);
  const got = await img.read(0, SUPERBLOCK_COPIES, b);
  const valid: Superblock[] = [];
  for (let c = 0; c < SUPERBLOCK_COPIES; c++) {
    const r = got < c * BLOCK_BYTES + SECTOR_BYTES ? `missing: the image is ${got} bytes long`
      : decodeSuperblock(b.subarray(c * BLOCK_BYTES, (c + 1) * BLOCK_BYTES));
    if (typeof r === 'string') problems.add(copyName(c), r);
    else valid.push(r);
  }
  if (valid.length === 0) return null;
  if (valid.length === SUPERBLOCK_COPIES) {
    // Both copies describe one volume: only the generation and the clean-close mark may differ (open and close rewrite one copy).
    const [a, bb] = valid;
    for (const k of Object.keys(a) as (keyof Superblock)[]) {
      if (k !== 'generation' && k !== 'cleanSeq' && a[k] !== bb[k]) problems.add('superblock copies A and B', `disagree on ${k}: ${a[k]} in A, ${bb[k]} in B`);
    }
  }
  return valid.reduce((best, s) => (s.generation > best.generation ? s : best));
}

async function checkLength(img: Image, st: Stats, sb: Superblock, problems: Problems): Promise<void> {
  const want = sb.physicalBlocks * BLOCK_BYTES;
  if (st.isFile()) {
    if (st.size < want) problems.add('image', `is ${st.size} bytes; the superblock says ${sb.physicalBlocks} blocks (${want} bytes)`);
    return;
  }
  // A block device's size is not in its stat: read its last block.
  img.total++;
  const got = await img.read(sb.physicalBlocks - 1, 1, new Uint8Array(BLOCK_BYTES));
  if (got < BLOCK_BYTES) problems.add('image', `ends before block ${sb.physicalBlocks - 1}; the superblock says ${sb.physicalBlocks} blocks`);
}

/** Reads every packed block the map references and checks its header and each referenced slot. */
async function checkPacked(img: Image, sb: Superblock, refs: References, packed: number[], decode: boolean, findings: Finding[]): Promise<void> {
  const codec = CODECS.indexOf(sb.codec);
  const plain = new Uint8Array(sb.blockBytes);
  const capacity = cbCapacity(sb.blockBytes);
  img.total += packed.length * refs.span;
  await img.readEach(packed, (pbn, b) => {
    const magic = u32le(b, 0);
    if (magic !== PACKED_MAGIC) {
      findings.push({ pbn, slot: -1, what: `is referenced as a packed block but is not one (magic ${hex32(magic)}, not ${hex32(PACKED_MAGIC)})` });
      return;
    }
    if (b[4] !== PACKED_VERSION) findings.push({ pbn, slot: -1, what: `packed block header version ${b[4]}, not ${PACKED_VERSION}` });
    if (b[5] !== codec) findings.push({ pbn, slot: -1, what: `packed with codec ${CODECS[b[5]] ?? b[5]}; the volume's codec is ${sb.codec}` });
    const count = b[6];
    if (count > MAX_COMPRESSION_SLOTS) findings.push({ pbn, slot: -1, what: `packed block header claims ${count} fragments; at most ${MAX_COMPRESSION_SLOTS}` });
    else {
      let bytes = 0;
      for (let i = 0; i < count; i++) bytes += b[8 + i * 2] | (b[9 + i * 2] << 8);
      if (bytes > capacity) findings.push({ pbn, slot: -1, what: `packed block fragments total ${bytes} bytes; a block holds ${capacity}` });
    }
    const slots = refs.slots[refs.at(pbn)];
    for (let slot = 0; slot < MAX_COMPRESSION_SLOTS; slot++) {
      if ((slots & (1 << slot)) === 0) continue;
      const range = packedFragment(b, slot);
      if (typeof range === 'string') findings.push({ pbn, slot, what: range });
      else if (decode) {
        const why = decodeSlot(b, slot, sb.codec, plain);
        if (why !== null) findings.push({ pbn, slot, what: `does not decode: ${why}` });
      }
    }
  }, refs.span);
}

/**
 * The reference count snapshot a clean open takes instead of a map scan
 * (count-snapshots.ts): the last one written, if tagged with the journal's head. Its
 * sectors must be whole (else an open rebuilds the counts from the map), and
 * each count, the logical blocks used and the tree pages must equal what the
 * map says (the first few differences are named).
 */
async function checkSnapshot(img: Image, sb: Superblock, replay: Replay, refs: References, logicalUsed: number, mapPages: number, problems: Problems): Promise<void> {
  const head = new Uint8Array(BLOCK_BYTES);
  const headers: SnapshotHeader[] = [];
  img.total += SNAPSHOT_SLOTS;
  for (let slot = 0; slot < SNAPSHOT_SLOTS; slot++) {
    await img.read(slotBlock(sb, slot, 0), 1, head);
    const h = decodeSnapshotHeader(head, sb, slot);
    if (h !== null) headers.push(h);
  }
  // As recoverMetadata() chooses (none: an open rebuilds the counts from the map).
  const h = usableSnapshot(headers, replay.head);
  if (h === null) return;
  const dataBlocks = dataBlocksOf(sb);
  const blocks = countBlocksFor(dataBlocks);
  const counts = new Uint8Array(dataBlocks);
  const where = `reference count snapshot in slot ${h.slot} (blocks ${slotBlock(sb, h.slot, 0)}–${slotBlock(sb, h.slot, blocks)}, tag ${h.tag})`;
  img.total += blocks;
  const buf = new Uint8Array(BLOCK_BYTES);
  for (let k = 0; k < blocks; k++) {
    await img.read(slotBlock(sb, h.slot, 1 + k), 1, buf);
    if (!decodeCountBlocks(buf, 0, 1, sb, h.slot, k, counts, plainSectorOps)) {
      problems.add(where, `count block ${k} (block ${slotBlock(sb, h.slot, 1 + k)}) fails its checksum or belongs elsewhere: an open rebuilds the counts from the block map`);
      return;
    }
  }
  const say = '(a clean open takes the snapshot)';
  if (h.logicalUsed !== logicalUsed) problems.add(where, `says ${h.logicalUsed} logical blocks used; the block map has ${logicalUsed} ${say}`);
  if (h.mapPages !== mapPages) problems.add(where, `says the block map has ${h.mapPages} tree pages; it has ${mapPages} ${say}`);
  if (h.usedBlocks !== null) {
    let used = 0;
    for (let i = 0; i < counts.length; i++) if (counts[i] !== 0) used++;
    if (h.usedBlocks !== used) problems.add(where, `says ${h.usedBlocks} data blocks are referenced; its counts reference ${used} (stats() of a clean open reports the former until the counts load)`);
  }
  let named = 0;
  let differ = 0;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] === Math.min(refs.refs[i], 255)) continue;
    differ++;
    if (named++ < LBAS_NAMED_MAX) problems.add(`PBN ${sb.dataStart + i * refs.span}`, `has a count of ${counts[i]} in the ${where}; the block map references it ${refs.refs[i]} times ${say}`);
  }
  if (differ > named) problems.add(where, `${differ - named} more blocks whose count differs from the block map's`);
}

/**
 * scrub: reads every referenced data block and compares the data check of
 * what each of its mappings reads as with the check the map records (a slot
 * that does not decode is checkPacked's finding already).
 */
async function verifyData(img: Image, sb: Superblock, refs: References, recorded: Map<number, { check: number; lba: number }>, findings: Finding[]): Promise<void> {
  const pbns: number[] = [];
  for (let i = 0; i < refs.refs.length; i++) if (refs.refs[i] > 0) pbns.push(sb.dataStart + i * refs.span);
  const plain = new Uint8Array(sb.blockBytes);
  img.total += pbns.length * refs.span;
  const compare = (pbn: number, state: number, data: Uint8Array): void => {
    const want = recorded.get(pbn * 16 + state);
    if (want === undefined || want.check === -1) return;
    const got = dataCheckOf(data);
    if (got !== want.check) {
      findings.push({ pbn, slot: state === STATE_UNCOMPRESSED ? -1 : state - STATE_COMPRESSED_BASE, what: `holds data whose check ${hex32(got)} does not match the block map's ${hex32(want.check)} (reads of it are ECORRUPT)` });
    }
  };
  await img.readEach(pbns, (pbn, b) => {
    const i = refs.at(pbn);
    if ((refs.kinds[i] & KIND_UNCOMPRESSED) !== 0) compare(pbn, STATE_UNCOMPRESSED, b);
    if ((refs.kinds[i] & KIND_PACKED) === 0) return;
    for (let slot = 0; slot < MAX_COMPRESSION_SLOTS; slot++) {
      if ((refs.slots[i] & (1 << slot)) !== 0 && decodeSlot(b, slot, sb.codec, plain) === null) compare(pbn, STATE_COMPRESSED_BASE + slot, plain);
    }
  }, refs.span);
}

/**
 * The LBAs referencing the blocks and slots of `findings` (a second pass over
 * the map, made only when something is wrong): keyed −1 − pbn for a block,
 * pbn × 16 + state for a slot.
 */
async function referencesTo(img: Image, sb: Superblock, tree: Tree, replay: Replay, findings: Finding[]): Promise<Map<number, { lbas: number[]; n: number }>> {
  const wanted = new Set(findings.map((f) => f.pbn));
  const named = new Map<number, { lbas: number[]; n: number }>();
  const note = (key: number, lba: number): void => {
    let r = named.get(key);
    if (r === undefined) named.set(key, (r = { lbas: [], n: 0 }));
    if (r.lbas.length < LBAS_NAMED_MAX) r.lbas.push(lba);
    r.n++;
  };
  img.total += tree.leaves.size;
  await scanMap(img, sb, tree, replay, null, (lba, pbn, state) => {
    if (!wanted.has(pbn)) return;
    note(-1 - pbn, lba);
    note(pbn * 16 + state, lba);
  });
  return named;
}
