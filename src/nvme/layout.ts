/**
 * Shared-memory layout of a controller and its I/O queue pairs, as the host
 * (qpair.ts, controller.ts) and the device workers (device-worker.ts) both see
 * it. Offsets are bytes from the block's base; counters that different threads
 * write sit on their own 128-byte lines.
 *
 * Controller block:
 *   CTRL_STATE      live / closing / failed (host writes)
 *   CTRL_DOORBELL   bumped by every submission; idle device workers park on it
 *   CTRL_SLEEPERS   device workers parked on the doorbell
 *   CTRL_SPIN       idle scans a device worker makes before parking (host writes, any time)
 *   CTRL_TABLE_GEN  bumped when the qpair table changes
 *   CTRL_CAPACITY   the namespace's blocks, low and high u32 (host writes before
 *                   any command addresses a block past the old capacity)
 *   CTRL_TABLE      MAX_QPAIRS entries of [base, entries, trackers, active]
 *
 * Queue pair region:
 *   QP_SQ_TAIL      host: commands written to the SQ (free-running)
 *   QP_SQ_HEAD      device: commands fetched (claimed by CAS, free-running)
 *   QP_CQ_TAIL      device: completion slots claimed (Atomics.add, free-running)
 *   QP_CQ_SIGNAL    device bumps it and notifies when QP_HOST_WAITING is set
 *   QP_TRACKERS     one state word per command ID (TRACKER_*)
 *   SQ              entries × 64-byte submission entries
 *   CQ              entries × 16-byte completion entries, phase-tagged
 */
import { SQE_BYTES, CQE_BYTES } from './spec.js';

export const LINE_BYTES = 128;
export const MAX_QPAIRS = 64;

export const CTRL_STATE = 0;
export const CTRL_DOORBELL = 128;
export const CTRL_SLEEPERS = 132;
export const CTRL_SPIN = 136;
export const CTRL_TABLE_GEN = 256;
export const CTRL_CAPACITY = 264;

/** Publishes the namespace's capacity (host; before any command addresses a block past the old one). */
export function storeCapacity(i32: Int32Array, ctrlAt: number, blocks: number): void {
  Atomics.store(i32, (ctrlAt + CTRL_CAPACITY + 4) >> 2, Math.floor(blocks / 2 ** 32));
  Atomics.store(i32, (ctrlAt + CTRL_CAPACITY) >> 2, blocks >>> 0);
}

/** The namespace's capacity as the host last published it (device workers). */
export function loadCapacity(i32: Int32Array, ctrlAt: number): number {
  return (Atomics.load(i32, (ctrlAt + CTRL_CAPACITY) >> 2) >>> 0) + Atomics.load(i32, (ctrlAt + CTRL_CAPACITY + 4) >> 2) * 2 ** 32;
}
export const CTRL_TABLE = 384;
export const CTRL_TABLE_ENTRY_BYTES = 16;
export const CTRL_BYTES = CTRL_TABLE + MAX_QPAIRS * CTRL_TABLE_ENTRY_BYTES;

export const CTRL_LIVE = 0;
export const CTRL_CLOSING = 1;
export const CTRL_FAILED = 2;

export const QP_SQ_TAIL = 0;
export const QP_SQ_HEAD = 128;
export const QP_CQ_TAIL = 256;
export const QP_CQ_SIGNAL = 384;
export const QP_HOST_WAITING = 388;
export const QP_TRACKERS = 512;

/** A command ID's state. The host owns FREE→QUEUED and back; the device QUEUED→ACTIVE; abort QUEUED→ABORTED. */
export const TRACKER_FREE = 0;
export const TRACKER_QUEUED = 1;
export const TRACKER_ACTIVE = 2;
export const TRACKER_ABORTED = 3;

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

export interface QpairLayout {
  sq: number;
  cq: number;
  bytes: number;
}

export function qpairLayout(entries: number): QpairLayout {
  const sq = alignUp(QP_TRACKERS + entries * 4, LINE_BYTES);
  const cq = sq + entries * SQE_BYTES;
  return { sq, cq, bytes: alignUp(cq + entries * CQE_BYTES, LINE_BYTES) };
}
