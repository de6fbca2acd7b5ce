/**
 * The volume's front end for one block in one engine trip, registered with the
 * engine as a job (engine/registered-jobs.ts): XXH3-128 (seed 0) of the block
 * into DESC_RESULT — the dedupe fingerprint, and the journal's data check —
 * then, unless the codec is none, its compressed form into the descriptor
 * DESC_LINK names. dm-vdo compresses only what does not deduplicate: when
 * DESC_AUX gives the known table's address (known-table.ts) and the
 * fingerprint is listed there, the block is not compressed (STATUS_KNOWN);
 * its caller expects to share a copy it stored before, and sends it again
 * without the table if that copy turns out to be gone.
 *
 * DESC_ARG is packed by prepareArg() and unpacked here only: codec in bits
 * 0–7, deflate level in bits 8–15, log2(buckets of the known table) in bits
 * 16–20. Statuses: STATUS_OK, STATUS_INCOMPRESSIBLE (store the block raw),
 * STATUS_KNOWN, STATUS_BAD_LINK.
 */
import { OP_REGISTERED_MIN, STATUS_REGISTERED_MIN, type JobDefinition, type JobHost, type JobRunner } from '../engine/registered-jobs.js';
import { STATUS_BAD_LINK, STATUS_INCOMPRESSIBLE, STATUS_OK } from '../engine/jobs.js';
import { compressRegion } from '../codec/deflate.js';
import { FlashpackError } from '../errors.js';
import { KNOWN_MAX_LOG2_BUCKETS, knownTableBytes, knownTableHas } from './known-table.js';

export const OP_PREPARE_BLOCK = OP_REGISTERED_MIN;
/** The fingerprint is in the known table, so the block was not compressed. */
export const STATUS_KNOWN = STATUS_REGISTERED_MIN;
export const PREPARE_CODEC_NONE = 0;
export const PREPARE_CODEC_LZ4 = 1;
export const PREPARE_CODEC_DEFLATE = 2;
/** This module's URL, for `Engine.start({ jobs: [PREPARE_JOB_MODULE] })`. */
export const PREPARE_JOB_MODULE = import.meta.url;

/** DESC_ARG for a prepare job: codec (PREPARE_CODEC_*), deflate level (0–12), log2 of the known table's buckets (0 without a table). */
export function prepareArg(codec: number, level: number, log2Buckets: number): number {
  if (codec < PREPARE_CODEC_NONE || codec > PREPARE_CODEC_DEFLATE || level < 0 || level > 12 || log2Buckets < 0 || log2Buckets > KNOWN_MAX_LOG2_BUCKETS) {
    throw new FlashpackError('EINTERNAL', `prepareArg: codec ${codec}, level ${level}, log2 buckets ${log2Buckets} out of range`);
  }
  return codec | (level << 8) | (log2Buckets << 16);
}

function bind(host: JobHost): JobRunner {
  const F = host.fields;
  const ex = host.exports;
  const ctx = host.ctx;
  const rt = { exports: ex };
  /** Whether the fingerprint in descriptor d's result is listed in the table at `at` (2^lb buckets). */
  const known = (d: number, at: number, lb: number): boolean => {
    if (at === 0 || lb > KNOWN_MAX_LOG2_BUCKETS || (at & 3) !== 0 || !host.covers(at + knownTableBytes(lb))) return false;
    const u32 = host.u32;
    return knownTableHas(host.u8, u32, at, lb, u32[d + F.result], u32[d + F.result + 1]);
  };
  return (idx, d) => {
    let u32 = host.u32;
    const buf = u32[d + F.buf];
    const len = u32[d + F.len];
    ex.xxh128(buf, len, 0, 0, (d + F.result) << 2, ctx);
    const arg = u32[d + F.arg];
    const codec = arg & 255;
    if (codec !== PREPARE_CODEC_LZ4 && codec !== PREPARE_CODEC_DEFLATE) return STATUS_OK;
    if (known(d, u32[d + F.aux], (arg >>> 16) & 31)) return STATUS_KNOWN;
    const o = host.linked(idx, d);
    if (o < 0) return STATUS_BAD_LINK;
    u32 = host.u32; // known() may have renewed the views
    const size = codec === PREPARE_CODEC_LZ4
      ? ex.lz4Compress(buf, len, u32[o + F.buf], u32[o + F.cap], ctx, 1)
      : compressRegion(rt, host.deflateScratch, buf, len, u32[o + F.buf], u32[o + F.cap], (arg >>> 8) & 255, 0);
    u32[o + F.len] = size;
    return size === 0 ? STATUS_INCOMPRESSIBLE : STATUS_OK;
  };
}

export const jobs: JobDefinition[] = [{ op: OP_PREPARE_BLOCK, name: 'prepare-block', bind }];
