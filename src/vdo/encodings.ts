/**
 * Every on-disk layout of a flashpack volume, in one place (dm-vdo keeps its
 * in encodings.c). Metadata blocks and PBNs are 4 KiB; the volume block (an
 * LBA's data) is chosen at format, 4 KiB to 64 KiB. Every metadata structure is made
 * of self-validating 512-byte sectors (magic, volume nonce, CRC-32C), because
 * a device may tear a 4 KiB write at any 512-byte boundary: a torn write leaves
 * each sector wholly old or wholly new, and each is still readable on its own.
 *
 *   VB 0, 1       superblock copies A and B (PureFlash's head page): geometry,
 *                 codec, generation, and where a clean close left the journal;
 *                 the valid copy with the higher generation wins
 *   journal       ring of `journalBlocks` blocks of 8 sectors × 15 entries
 *   block map     the root page of the block map tree (map-tree.ts); its other
 *                 pages come from the data region: 8 sectors × 53 nine-byte
 *                 leaf entries (PBN, mapping state, and the data check of the
 *                 block stored there) or 968 child PBNs
 *   index         the dedupe index a clean close saved (index-store.ts)
 *   refs          two reference count snapshots, written in turn by every
 *                 checkpoint (count-snapshots.ts)
 *   data          PBNs from dataStart; PBN 0 (a superblock's place) means "zero block"
 *
 * Growing the physical size (resize.ts) moves the refs region to the image's
 * new tail, past the data region, since it grows with the physical size: data
 * is then [dataStart, refsStart) (dataEndOf), and the region the refs held
 * before, between the index and dataStart, is left unused.
 *
 * Format zeroes the journal and block map, so an all-zero sector is "never
 * written" and any other sector that fails validation is corruption.
 *
 * Compressed (packed) data block: 36-byte header (magic, version, codec, count,
 * 14 × u16 fragment sizes), fragments back to back (dm-vdo's compressed block).
 */
import { crc32c } from '../codec/checksum.js';

/** The metadata block, and the unit of every PBN: data blocks are `blockBytes` (4 KiB to 64 KiB), blockPbns(g) aligned PBNs each. */
export const BLOCK_BYTES = 4096;
export const SECTOR_BYTES = 512;
/** The volume block sizes a format may choose (the default first). */
export const BLOCK_BYTES_CHOICES: readonly number[] = [4096, 8192, 16384, 32768, 65536];
export const SECTORS_PER_BLOCK = BLOCK_BYTES / SECTOR_BYTES;

// ---- superblock -------------------------------------------------------------
export const SUPERBLOCK_COPIES = 2;
const SB_MAGIC = 0x4f445046; // "FPDO"
/**
 * 2: a journal entry's data check is XXH3 bits of the logical block (for a
 * packed slot, of its decompressed data); the dedupe index is saved at close.
 * 3: every block map entry carries that data check too, and every read
 * verifies it (issue 17's checksum on every stored block).
 * 4: the block map is a tree of pages allocated on demand (map-tree.ts); the
 * map region holds its root only; the refs region holds two reference count
 * snapshots that every checkpoint writes in turn (count-snapshots.ts).
 * Within 4, the superblock gained cleanSeq at offset 88: a copy written
 * before reads 0 there (not closed cleanly), so it opens through the journal
 * as before, and the next close writes the mark. Also within 4, a volume
 * whose physical size grew has its refs region at its tail (refsStart past
 * dataStart); a build before that refuses it as an inconsistent geometry.
 */
export const SB_VERSION = 4;
/**
 * 5: as 4, with a volume block larger than 4 KiB (offset 96). A volume of
 * 4 KiB blocks is still written as 4, so builds before block sizes open it;
 * they refuse a 5 instead of misreading its blocks.
 */
export const SB_VERSION_BLOCK_BYTES = 5;
/** How to move a volume of an older format to this one (the message of the ENOTSUP that refuses it). */
export const OLDER_FORMAT_HOWTO =
  'copy its data out with the flashpack release that wrote it (`flashpack copy <volume> disk.raw`), ' +
  'then `flashpack create` a new volume and `flashpack copy disk.raw <new volume>` with this one';
const SB_OFF_MAGIC = 0;
const SB_OFF_VERSION = 4;
const SB_OFF_CRC = 8;
const SB_OFF_GENERATION = 12; // u32 × 2
const SB_OFF_NONCE = 20;
const SB_OFF_LOGICAL = 24; // u32 × 2
const SB_OFF_PHYSICAL = 32; // u32 × 2
const SB_OFF_JOURNAL_START = 40;
const SB_OFF_JOURNAL_BLOCKS = 44;
const SB_OFF_MAP_START = 48;
const SB_OFF_MAP_PAGES = 52;
const SB_OFF_DATA_START = 56;
const SB_OFF_CODEC = 60;
const SB_OFF_DEDUPE = 61;
const SB_OFF_POLICY = 62;
const SB_OFF_SLAB_BLOCKS = 64;
const SB_OFF_INDEX_START = 68;
const SB_OFF_INDEX_BLOCKS = 72;
const SB_OFF_INDEX_MEMORY = 76;
const SB_OFF_REFS_START = 80;
const SB_OFF_REFS_BLOCKS = 84;
const SB_OFF_CLEAN_SEQ = 88; // u32 × 2
/** Within 4: the volume block size; a superblock written before it reads 0 there, meaning 4 KiB. */
const SB_OFF_BLOCK_BYTES = 96;

/** Pages the block map region holds: the tree's root. */
export const MAP_ROOT_PAGES = 1;
/** The largest logical size, in blocks (1 PiB at 4 KiB: within what the block map tree can address, map-tree.ts). */
export const MAX_LOGICAL_BLOCKS = 2 ** 38;

export const CODECS = ['none', 'lz4', 'deflate'] as const;
export type Codec = (typeof CODECS)[number];
export type WritePolicy = 'sync' | 'async';

export interface Geometry {
  nonce: number;
  logicalBlocks: number;
  physicalBlocks: number;
  journalStart: number;
  journalBlocks: number;
  /** The block map's root (map-tree.ts); mapPages is MAP_ROOT_PAGES. */
  mapStart: number;
  mapPages: number;
  /** The saved dedupe index: a header block, then the index's arrays (0 blocks without dedupe). */
  indexStart: number;
  indexBlocks: number;
  /** indexMemory of the saved index (the size a volume opens with unless told otherwise). */
  indexMemory: number;
  /** The reference count snapshots: refsBlocksFor(physical) blocks. */
  refsStart: number;
  refsBlocks: number;
  dataStart: number;
  slabBlocks: number;
  codec: Codec;
  dedupe: boolean;
  writePolicy: WritePolicy;
  /**
   * The volume block (what an LBA, a map entry, a fingerprint, a compressed
   * form and a packed block cover): one of BLOCK_BYTES_CHOICES. logicalBlocks
   * counts these; physicalBlocks, every start and every PBN count 4 KiB
   * blocks, and a data block is blockPbns aligned PBNs from dataStart.
   */
  blockBytes: number;
}

export interface Superblock extends Geometry {
  generation: number;
  /**
   * The journal block a clean close left as its head, empty, with nothing
   * written after it (the tag of the count snapshot that close wrote): an open
   * starts there without reading the journal. 0 while the volume is open for
   * writing, after a crash, and on a volume never closed.
   */
  cleanSeq: number;
}

/** 4 KiB PBNs per volume block. */
export const blockPbns = (g: { blockBytes: number }): number => g.blockBytes / BLOCK_BYTES;

/** The end (exclusive) of the data region: the refs region once growth moved it to the tail, else the image's end. */
export const dataEndOf = (g: Geometry): number => (g.refsStart > g.dataStart ? g.refsStart : g.physicalBlocks);

/** Data blocks (volume blocks of blockPbns PBNs each) in [dataStart, dataEndOf); a partial one at the end is not used. */
export const dataBlocksOf = (g: Geometry): number => Math.floor((dataEndOf(g) - g.dataStart) / blockPbns(g));

/** Whether `pbn` is the first PBN of one of the data blocks: where a mapping or a tree page may point. */
export const isDataBlockOf = (g: Geometry, pbn: number): boolean =>
  pbn >= g.dataStart && (pbn - g.dataStart) % blockPbns(g) === 0 && (pbn - g.dataStart) / blockPbns(g) < dataBlocksOf(g);

/** How a check names the data region (and its block boundaries, when a block is more than one PBN). */
export const dataRegionOf = (g: Geometry): string =>
  `the data region [${g.dataStart}, ${dataEndOf(g)})${blockPbns(g) > 1 ? ` (or not on one of its ${blockPbns(g)}-PBN block boundaries)` : ''}`;

const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
const put32 = (b: Uint8Array, at: number, x: number): void => {
  b[at] = x & 0xff;
  b[at + 1] = (x >>> 8) & 0xff;
  b[at + 2] = (x >>> 16) & 0xff;
  b[at + 3] = (x >>> 24) & 0xff;
};
/** The little-endian u32 at b[at]. */
export const u32le = (b: Uint8Array, at: number): number => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
export const getU64 = (v: DataView, at: number): number => v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
export const setU64 = (v: DataView, at: number, x: number): void => {
  v.setUint32(at, x >>> 0, true);
  v.setUint32(at + 4, Math.floor(x / 2 ** 32), true);
};

/** Writes a superblock into the first sector of `b` (4 KiB, rest zero). */
export function encodeSuperblock(sb: Superblock, b: Uint8Array): void {
  b.fill(0, 0, BLOCK_BYTES);
  const v = dv(b);
  v.setUint32(SB_OFF_MAGIC, SB_MAGIC, true);
  v.setUint32(SB_OFF_VERSION, sb.blockBytes === BLOCK_BYTES ? SB_VERSION : SB_VERSION_BLOCK_BYTES, true);
  setU64(v, SB_OFF_GENERATION, sb.generation);
  v.setUint32(SB_OFF_NONCE, sb.nonce, true);
  setU64(v, SB_OFF_LOGICAL, sb.logicalBlocks);
  setU64(v, SB_OFF_PHYSICAL, sb.physicalBlocks);
  v.setUint32(SB_OFF_JOURNAL_START, sb.journalStart, true);
  v.setUint32(SB_OFF_JOURNAL_BLOCKS, sb.journalBlocks, true);
  v.setUint32(SB_OFF_MAP_START, sb.mapStart, true);
  v.setUint32(SB_OFF_MAP_PAGES, sb.mapPages, true);
  v.setUint32(SB_OFF_DATA_START, sb.dataStart, true);
  v.setUint8(SB_OFF_CODEC, CODECS.indexOf(sb.codec));
  v.setUint8(SB_OFF_DEDUPE, sb.dedupe ? 1 : 0);
  v.setUint8(SB_OFF_POLICY, sb.writePolicy === 'sync' ? 1 : 0);
  v.setUint32(SB_OFF_SLAB_BLOCKS, sb.slabBlocks, true);
  v.setUint32(SB_OFF_INDEX_START, sb.indexStart, true);
  v.setUint32(SB_OFF_INDEX_BLOCKS, sb.indexBlocks, true);
  v.setUint32(SB_OFF_INDEX_MEMORY, sb.indexMemory, true);
  v.setUint32(SB_OFF_REFS_START, sb.refsStart, true);
  v.setUint32(SB_OFF_REFS_BLOCKS, sb.refsBlocks, true);
  setU64(v, SB_OFF_CLEAN_SEQ, sb.cleanSeq);
  v.setUint32(SB_OFF_BLOCK_BYTES, sb.blockBytes === BLOCK_BYTES ? 0 : sb.blockBytes, true);
  v.setUint32(SB_OFF_CRC, crc32c(b.subarray(0, SECTOR_BYTES)), true);
}

/** CRC-32C of a large private array, a MiB at a time (the checksum stages its input in WASM memory): saved index and counts. */
export function crc32cOfLarge(b: Uint8Array): number {
  let crc = 0;
  for (let at = 0; at < b.length; at += 1 << 20) crc = crc32c(b.subarray(at, Math.min(b.length, at + (1 << 20))), crc);
  return crc;
}

/** How decodeSuperblock's reason for a sound superblock of another format version begins. */
export const FORMAT_VERSION_REASON = 'format version';

/** A superblock copy, or a reason it is not one (bad magic, checksum, version, geometry). */
export function decodeSuperblock(b: Uint8Array): Superblock | string {
  const v = dv(b);
  if (v.getUint32(SB_OFF_MAGIC, true) !== SB_MAGIC) return `bad magic 0x${v.getUint32(SB_OFF_MAGIC, true).toString(16)}`;
  const crc = v.getUint32(SB_OFF_CRC, true);
  const copy = b.slice(0, SECTOR_BYTES);
  new DataView(copy.buffer).setUint32(SB_OFF_CRC, 0, true);
  const want = crc32c(copy);
  if (crc !== want) return `checksum 0x${crc.toString(16)} != 0x${want.toString(16)}`;
  const version = v.getUint32(SB_OFF_VERSION, true);
  if (version !== SB_VERSION && version !== SB_VERSION_BLOCK_BYTES) return `${FORMAT_VERSION_REASON} ${version} (this build reads ${SB_VERSION} and ${SB_VERSION_BLOCK_BYTES})`;
  const codec = CODECS[v.getUint8(SB_OFF_CODEC)];
  if (codec === undefined) return `codec ${v.getUint8(SB_OFF_CODEC)}`;
  const sb: Superblock = {
    generation: getU64(v, SB_OFF_GENERATION),
    cleanSeq: getU64(v, SB_OFF_CLEAN_SEQ),
    nonce: v.getUint32(SB_OFF_NONCE, true),
    logicalBlocks: getU64(v, SB_OFF_LOGICAL),
    physicalBlocks: getU64(v, SB_OFF_PHYSICAL),
    journalStart: v.getUint32(SB_OFF_JOURNAL_START, true),
    journalBlocks: v.getUint32(SB_OFF_JOURNAL_BLOCKS, true),
    mapStart: v.getUint32(SB_OFF_MAP_START, true),
    mapPages: v.getUint32(SB_OFF_MAP_PAGES, true),
    indexStart: v.getUint32(SB_OFF_INDEX_START, true),
    indexBlocks: v.getUint32(SB_OFF_INDEX_BLOCKS, true),
    indexMemory: v.getUint32(SB_OFF_INDEX_MEMORY, true),
    refsStart: v.getUint32(SB_OFF_REFS_START, true),
    refsBlocks: v.getUint32(SB_OFF_REFS_BLOCKS, true),
    dataStart: v.getUint32(SB_OFF_DATA_START, true),
    slabBlocks: v.getUint32(SB_OFF_SLAB_BLOCKS, true),
    codec,
    dedupe: v.getUint8(SB_OFF_DEDUPE) === 1,
    writePolicy: v.getUint8(SB_OFF_POLICY) === 1 ? 'sync' : 'async',
    blockBytes: v.getUint32(SB_OFF_BLOCK_BYTES, true) || BLOCK_BYTES,
  };
  if (!BLOCK_BYTES_CHOICES.includes(sb.blockBytes) || (version === SB_VERSION) !== (sb.blockBytes === BLOCK_BYTES)) return `block size ${sb.blockBytes} in format version ${version}`;
  const metaEnd = sb.indexStart + sb.indexBlocks;
  const refsOk =
    sb.refsBlocks === refsBlocksFor(sb.physicalBlocks, sb.blockBytes) &&
    // as formatted: the refs between the index and the data
    // (the data region starting at the next data block boundary)
    ((sb.refsStart === metaEnd && sb.dataStart === Math.ceil((sb.refsStart + sb.refsBlocks) / blockPbns(sb)) * blockPbns(sb) && sb.dataStart < sb.physicalBlocks) ||
      // grown: the refs at the tail, past the data
      (sb.dataStart > metaEnd && sb.refsStart > sb.dataStart && sb.refsStart + sb.refsBlocks === sb.physicalBlocks));
  const geometryOk =
    sb.journalStart === SUPERBLOCK_COPIES && sb.journalBlocks > 0 &&
    sb.mapStart === sb.journalStart + sb.journalBlocks &&
    sb.mapPages === MAP_ROOT_PAGES && sb.logicalBlocks > 0 && sb.logicalBlocks <= MAX_LOGICAL_BLOCKS &&
    sb.indexStart === sb.mapStart + sb.mapPages && refsOk && sb.slabBlocks > 0 &&
    sb.dataStart % blockPbns(sb) === 0 && dataBlocksOf(sb) > 0;
  return geometryOk ? sb : 'inconsistent geometry';
}

// ---- sector framing (journal and block map) -----------------------------------
// [magic u16][index u8][count u8][crc u32][nonce u32][key u32 × 2][aux u32 × 2] = 28 bytes
export const SECTOR_HEADER_BYTES = 28;
const S_MAGIC = 0;
const S_INDEX = 2;
const S_COUNT = 3;
const S_CRC = 4;
const S_NONCE = 8;
const S_KEY = 12;
const S_AUX = 20;

export const JOURNAL_MAGIC = 0x4a52; // "RJ"
export const MAP_MAGIC = 0x4d42; // "BM"
/**
 * The saved dedupe index's header sector: key = the superblock generation of
 * the close that saved it, aux = CRC-32C of the payload (the blocks after it).
 */
export const INDEX_MAGIC = 0x4958; // "XI"
/** A reference count snapshot's header sector (count-snapshots.ts). */
export const REFS_MAGIC = 0x4652; // "RF"

export interface SectorHeader {
  index: number;
  count: number;
  key: number;
  aux: number;
}

/** Seals sector `s` of block `b`: header fields, then the CRC over the whole sector. */
export function sealSector(b: Uint8Array, s: number, magic: number, nonce: number, h: SectorHeader): void {
  const at = s * SECTOR_BYTES;
  const v = new DataView(b.buffer, b.byteOffset + at, SECTOR_BYTES);
  v.setUint16(S_MAGIC, magic, true);
  v.setUint8(S_INDEX, h.index);
  v.setUint8(S_COUNT, h.count);
  v.setUint32(S_CRC, 0, true);
  v.setUint32(S_NONCE, nonce, true);
  setU64(v, S_KEY, h.key);
  setU64(v, S_AUX, h.aux);
  v.setUint32(S_CRC, crc32c(b.subarray(at, at + SECTOR_BYTES)), true);
}

export const SECTOR_VALID = 0;
/** Never written since format (format zeroes the journal and block map regions). */
export const SECTOR_ABSENT = 1;
/** Anything else that fails its magic, nonce, index or CRC: corruption (a torn write never makes one). */
export const SECTOR_CORRUPT = 2;

/**
 * openSector's checks of the sector at byte `p` of `mem`, made in place with
 * no views: whether it is whole and holds `magic`, `nonce`, index `index`,
 * key `key` and aux `aux`. `crc` hashes the 512 bytes at `p` (whose CRC field
 * this zeroes and leaves zeroed: the bytes are the caller's scratch). For
 * a caller checking many sectors where they were read (count-snapshots.ts).
 */
export function sectorValidAt(mem: Uint8Array, p: number, magic: number, nonce: number, index: number, key: number, aux: number, crc: (p: number) => number): boolean {
  if ((mem[p + S_MAGIC] | (mem[p + S_MAGIC + 1] << 8)) !== magic || mem[p + S_INDEX] !== index || u32le(mem, p + S_NONCE) !== nonce) return false;
  if (u32le(mem, p + S_KEY) !== key % 2 ** 32 || u32le(mem, p + S_KEY + 4) !== Math.floor(key / 2 ** 32)) return false;
  if (u32le(mem, p + S_AUX) !== aux % 2 ** 32 || u32le(mem, p + S_AUX + 4) !== Math.floor(aux / 2 ** 32)) return false;
  const stored = u32le(mem, p + S_CRC);
  mem[p + S_CRC] = mem[p + S_CRC + 1] = mem[p + S_CRC + 2] = mem[p + S_CRC + 3] = 0; // not fill(): V8's slow path on shared memory
  return crc(p) >>> 0 === stored;
}

/** Checks sector `s` of `b`; fills `out` when valid. */
export function openSector(b: Uint8Array, s: number, magic: number, nonce: number, out: SectorHeader): number {
  const at = s * SECTOR_BYTES;
  const v = new DataView(b.buffer, b.byteOffset + at, SECTOR_BYTES);
  if (v.getUint16(S_MAGIC, true) !== magic || v.getUint32(S_NONCE, true) !== nonce) {
    for (let i = 0; i < SECTOR_BYTES; i += 4) if (v.getUint32(i, true) !== 0) return SECTOR_CORRUPT;
    return SECTOR_ABSENT;
  }
  const crc = v.getUint32(S_CRC, true);
  v.setUint32(S_CRC, 0, true);
  const want = crc32c(b.subarray(at, at + SECTOR_BYTES));
  v.setUint32(S_CRC, crc, true);
  if (crc !== want || v.getUint8(S_INDEX) !== s) return SECTOR_CORRUPT;
  out.index = s;
  out.count = v.getUint8(S_COUNT);
  out.key = getU64(v, S_KEY);
  out.aux = getU64(v, S_AUX);
  return SECTOR_VALID;
}

// ---- recovery journal -------------------------------------------------------------
// Sector: header (key = block sequence, aux = head sequence, count = entries), then
// 15 entries of 32 bytes: [kind u8][newState u8][oldState u8][0][lba u32 × 2]
// [newPbn u32][oldPbn u32][dataCheck u32][count u32][0 × 4]. dataCheck is bits 64–95 of
// the XXH3-128 of the logical block's bytes (for a compressed slot, of what the slot
// decompresses to): the engine computes it with the fingerprint.
export const JOURNAL_ENTRY_BYTES = 32;
export const JOURNAL_ENTRIES_PER_SECTOR = Math.floor((SECTOR_BYTES - SECTOR_HEADER_BYTES) / JOURNAL_ENTRY_BYTES);
export const JOURNAL_ENTRIES_PER_BLOCK = JOURNAL_ENTRIES_PER_SECTOR * SECTORS_PER_BLOCK;
/** One logical block's mapping changes. */
export const ENTRY_MAP = 1;
/** `count` logical blocks from `lba` become unmapped (one entry per discard range, not per block). */
export const ENTRY_DISCARD = 2;

export interface JournalEntry {
  kind: number;
  lba: number;
  count: number;
  newPbn: number;
  newState: number;
  oldPbn: number;
  oldState: number;
  dataCheck: number;
}

export function journalEntryAt(entry: number): number {
  const s = Math.floor(entry / JOURNAL_ENTRIES_PER_SECTOR);
  return s * SECTOR_BYTES + SECTOR_HEADER_BYTES + (entry % JOURNAL_ENTRIES_PER_SECTOR) * JOURNAL_ENTRY_BYTES;
}

/** Encodes entry number `entry` of the journal block at `b[base…]`. */
export function encodeJournalEntry(b: Uint8Array, entry: number, e: JournalEntry, base = 0): void {
  // Byte stores, not a DataView: this runs once per block written.
  const at = base + journalEntryAt(entry);
  b[at] = e.kind;
  b[at + 1] = e.newState;
  b[at + 2] = e.oldState;
  b[at + 3] = 0;
  put32(b, at + 4, e.lba >>> 0);
  put32(b, at + 8, Math.floor(e.lba / 2 ** 32));
  put32(b, at + 12, e.newPbn);
  put32(b, at + 16, e.oldPbn);
  put32(b, at + 20, e.dataCheck);
  put32(b, at + 24, e.count);
  put32(b, at + 28, 0);
}

export function decodeJournalEntry(b: Uint8Array, entry: number, out: JournalEntry): void {
  const v = dv(b);
  const at = journalEntryAt(entry);
  out.kind = v.getUint8(at);
  out.newState = v.getUint8(at + 1);
  out.oldState = v.getUint8(at + 2);
  out.lba = getU64(v, at + 4);
  out.newPbn = v.getUint32(at + 12, true);
  out.oldPbn = v.getUint32(at + 16, true);
  out.dataCheck = v.getUint32(at + 20, true);
  out.count = v.getUint32(at + 24, true);
}

// ---- block map ------------------------------------------------------------------------
// Leaf sector: header (key = page index, aux = 0: its level), then 53 entries of 9 bytes: PBN u32, state u8,
// data check u32 (the journal entry's dataCheck of the logical block stored there; 0
// when unmapped or the zero block). A read verifies the bytes it returns against it.
export const MAP_ENTRY_BYTES = 9;
export const MAP_ENTRIES_PER_SECTOR = Math.floor((SECTOR_BYTES - SECTOR_HEADER_BYTES) / MAP_ENTRY_BYTES);
export const MAP_ENTRIES_PER_PAGE = MAP_ENTRIES_PER_SECTOR * SECTORS_PER_BLOCK;

/** Mapping states (dm-vdo's): unmapped, uncompressed, or compressed in slot 0–13. */
export const STATE_UNMAPPED = 0;
export const STATE_UNCOMPRESSED = 1;
export const STATE_COMPRESSED_BASE = 2;
export const MAX_COMPRESSION_SLOTS = 14;
/** PBN 0 with STATE_UNCOMPRESSED: the shared zero block. */
export const ZERO_PBN = 0;

/** The data check a map entry records for (pbn, state): a block's, or 0 for unmapped and the zero block (nothing is read for them). */
export function recordedCheck(pbn: number, state: number, dataCheck: number): number {
  return state === STATE_UNMAPPED || pbn === ZERO_PBN ? 0 : dataCheck >>> 0;
}

export function mapEntryAt(index: number): number {
  const s = Math.floor(index / MAP_ENTRIES_PER_SECTOR);
  return s * SECTOR_BYTES + SECTOR_HEADER_BYTES + (index % MAP_ENTRIES_PER_SECTOR) * MAP_ENTRY_BYTES;
}

// ---- compressed block --------------------------------------------------------------------
const CB_MAGIC = 0x42435046; // "FPCB"
export const CB_HEADER_BYTES = 36;
/** Bytes of fragments one packed block of `blockBytes` holds (a fragment's u16 size always fits: blockBytes ≤ 64 KiB). */
export const cbCapacity = (blockBytes: number): number => blockBytes - CB_HEADER_BYTES;

/** Writes a packed block's header at `b[at…]`: `count` fragments, fragment i being sizeOf(i) bytes. */
export function encodePackedHeader(b: Uint8Array, codec: Codec, count: number, sizeOf: (i: number) => number, at = 0): void {
  put32(b, at, CB_MAGIC);
  b[at + 4] = 1;
  b[at + 5] = CODECS.indexOf(codec);
  b[at + 6] = count;
  b[at + 7] = 0;
  for (let i = 0; i < MAX_COMPRESSION_SLOTS; i++) {
    const size = i < count ? sizeOf(i) : 0;
    b[at + 8 + i * 2] = size & 0xff;
    b[at + 9 + i * 2] = size >>> 8;
  }
}

/** Byte range [from, to) of `slot`'s fragment in the packed block `b` (the whole volume block), or a reason it has none. */
export function packedFragment(b: Uint8Array, slot: number): [number, number] | string {
  const v = dv(b);
  if (v.getUint32(0, true) !== CB_MAGIC) return 'not a packed block (bad magic)';
  const count = v.getUint8(6);
  if (count > MAX_COMPRESSION_SLOTS || slot >= count) return `slot ${slot} of a packed block with ${count} fragments`;
  let at = CB_HEADER_BYTES;
  for (let i = 0; i < slot; i++) at += v.getUint16(8 + i * 2, true);
  const size = v.getUint16(8 + slot * 2, true);
  if (size === 0 || at + size > b.length) return `fragment ${slot} of ${size} bytes at ${at} overruns the block`;
  return [at, at + size];
}

// ---- reference count snapshots (count-snapshots.ts) ------------------------------
// The refs region: SNAPSHOT_SLOTS slots of slotBlocksFor(physical) blocks — a header block
// (sector 0 sealed with REFS_MAGIC, key = tag, aux = slot; logical blocks used, tree pages
// and data blocks as u64s after the sector header), then a byte per data block,
// COUNTS_PER_SECTOR to a sector sealed with COUNTS_MAGIC (key = the sector's number in the
// slot, aux = slot).
export const SNAPSHOT_SLOTS = 2;
export const COUNTS_MAGIC = 0x4e43; // "CN"
export const COUNTS_PER_SECTOR = SECTOR_BYTES - SECTOR_HEADER_BYTES;
export const COUNTS_PER_BLOCK = COUNTS_PER_SECTOR * SECTORS_PER_BLOCK;
/** Blocks of counts a slot holds for up to `dataBlocks` data blocks. */
export const countBlocksFor = (dataBlocks: number): number => Math.ceil(dataBlocks / COUNTS_PER_BLOCK);
/** Blocks of one slot for a volume of `physicalBlocks` 4 KiB blocks (an upper bound on its data blocks): a header and the counts. */
export const slotBlocksFor = (physicalBlocks: number, blockBytes: number): number => 1 + countBlocksFor(Math.ceil(physicalBlocks / (blockBytes / BLOCK_BYTES)));
/** The refs region. */
export const refsBlocksFor = (physicalBlocks: number, blockBytes: number): number => SNAPSHOT_SLOTS * slotBlocksFor(physicalBlocks, blockBytes);
