/**
 * An I/O queue pair, host side, after SPDK's nvme_qpair.c and nvme_ns_cmd.c.
 *
 * - A submission queue and a completion queue of `ioQueueSize` entries in the
 *   shared memory; command IDs are tracker slot indices; completion entries
 *   carry a phase bit. At most entries − cap commands are outstanding, where
 *   cap (completions reaped per call) is entries / 4 clamped to 1..128, as SPDK.
 * - A request pool of `ioQueueRequests` requests, separate from the trackers.
 *   A split I/O takes one request for the parent and one per child.
 * - Submission never blocks: with no free tracker the request joins a software
 *   queue (FIFO, and everything after it waits behind it); with no free request
 *   the call throws ENOMEM; an I/O needing ≥ ioQueueRequests children can never
 *   fit, so it is EINVAL; a failed or removed controller is ENXIO.
 * - processCompletions(max) reaps, runs callbacks in completion order,
 *   resubmits queued requests, then checks timeouts oldest first.
 * - Every argument is checked at the call: EINVAL names a bad namespace,
 *   descriptor, LBA, count, flags or callback before anything is queued;
 *   ENXIO after freeIoQpair() or the controller's close().
 *
 * The hot path allocates nothing: requests and trackers are struct-of-arrays,
 * statuses are interned.
 */
import { FlashpackError, afterClose, badArgument, checkFunction, describe, invalid } from '../errors.js';
import type { SlabPool } from '../shm/slab.js';
import type { WasmMemory } from '../wasm/wasm-types.js';
import type { Controller, Namespace } from './controller.js';
import { childBlocks, childCount } from './split.js';
import {
  QP_SQ_TAIL, QP_CQ_SIGNAL, QP_HOST_WAITING, QP_TRACKERS, TRACKER_FREE, TRACKER_QUEUED, TRACKER_ABORTED, qpairLayout,
} from './layout.js';
import {
  OPC_FLUSH, OPC_WRITE, OPC_READ, OPC_WRITE_ZEROES, OPC_DATASET_MANAGEMENT, IO_FLAGS_FUA, DSM_ATTR_DEALLOCATE,
  DSM_MAX_RANGES, DSM_RANGE_BYTES, MAX_LBAS_PER_COMMAND, SQE_WORDS, SQE_CDW0, SQE_NSID, SQE_PRP1, SQE_CDW10,
  SQE_CDW11, SQE_CDW12, CQE_WORDS, CQE_DW3, CQE_PHASE_BIT, CQE_STATUS_SHIFT, STATUS_PATH_ERROR,
  STATUS_ABORTED_SQ_DELETION, Status,
} from './spec.js';

export type IoCallback = (status: Status, arg: unknown) => void;
export type TimeoutCallback = (qpair: IoQpair, cid: number) => void;

export interface IoQpairOptions {
  /** Submission/completion queue entries: a power of two, 4 .. the controller's maxQueueEntries (default 256). */
  ioQueueSize?: number;
  /** Requests in the pool (default 512). */
  ioQueueRequests?: number;
}

export interface DeallocateRange {
  lba: number;
  count: number;
}

const NO = -1;

/** ioFlags: a u32 (only IO_FLAGS_FUA means anything). */
function flagsArg(ioFlags: unknown, what: string): void {
  if (typeof ioFlags !== 'number' || (ioFlags >>> 0) !== ioFlags) throw badArgument(`${what}: ioFlags`, 'an integer from 0 to 2^32-1 (IO_FLAGS_FUA)', ioFlags);
}
/** How long waitForCompletions spins before it parks, in milliseconds. */
const WAIT_SPIN_MS = 0.02;
const KEEP_ALIVE_MARGIN_MS = 1000;
/** setTimeout's longest delay (larger values fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class IoQpair {
  readonly id: number;
  readonly ctrlr: Controller;
  readonly entries: number;
  readonly trackers: number;
  readonly requests: number;
  /** Completions one processCompletions call reaps at most. */
  readonly maxCompletionsCap: number;
  /** Byte address of the queue pair region in the shared memory. */
  readonly base: number;

  private readonly pool: SlabPool;
  private readonly memory: WasmMemory;
  private i32: Int32Array;
  private readonly sqAt: number; // byte address of SQ entry 0
  private readonly cqAt: number;
  private readonly shift: number;
  private sqTail = 0;
  private cqHead = 0;

  // Requests (struct of arrays).
  private readonly rCb: (IoCallback | null)[];
  private readonly rArg: unknown[];
  private readonly rOpc: Uint8Array;
  private readonly rLba: Float64Array;
  private readonly rBlocks: Int32Array;
  private readonly rPtr: Int32Array;
  private readonly rCdw10: Int32Array;
  private readonly rCdw11: Int32Array;
  private readonly rFlags: Int32Array;
  private readonly rParent: Int32Array;
  private readonly rPending: Int32Array;
  private readonly rStatus: Int32Array;
  private readonly rNext: Int32Array;
  private readonly rScratch: Int32Array; // a descriptor the request owns (DSM range list) or NO
  private readonly freeReqs: Int32Array;
  private freeReqCount: number;
  private queueHead = NO;
  private queueTail = NO;
  private queued = 0;

  // Trackers: command ID → request, submit time, and the outstanding list in submission order.
  private readonly tReq: Int32Array;
  private readonly tTime: Float64Array;
  private readonly tReported: Uint8Array;
  private readonly tPrev: Int32Array;
  private readonly tNext: Int32Array;
  private readonly freeTrackers: Int32Array;
  private freeTrackerCount: number;
  private oldest = NO;
  private newest = NO;
  private outstanding = 0;
  /** What freed the queue pair ('freeIoQpair()' or 'close()'), or null while it is live. */
  private freedBy: string | null = null;

  /** @internal Controller.allocIoQpair creates queue pairs. */
  constructor(ctrlr: Controller, id: number, base: number, entries: number, requests: number) {
    this.ctrlr = ctrlr;
    this.id = id;
    this.base = base;
    this.entries = entries;
    this.requests = requests;
    this.maxCompletionsCap = Math.min(128, Math.max(1, entries >> 2));
    this.trackers = entries - this.maxCompletionsCap;
    this.pool = ctrlr.pool;
    this.memory = ctrlr.runtime.memory;
    this.i32 = new Int32Array(this.memory.buffer);
    const L = qpairLayout(entries);
    this.sqAt = base + L.sq;
    this.cqAt = base + L.cq;
    this.shift = 31 - Math.clz32(entries);

    const R = requests;
    this.rCb = new Array<IoCallback | null>(R).fill(null);
    this.rArg = new Array<unknown>(R).fill(undefined);
    this.rOpc = new Uint8Array(R);
    this.rLba = new Float64Array(R);
    this.rBlocks = new Int32Array(R);
    this.rPtr = new Int32Array(R);
    this.rCdw10 = new Int32Array(R);
    this.rCdw11 = new Int32Array(R);
    this.rFlags = new Int32Array(R);
    this.rParent = new Int32Array(R).fill(NO);
    this.rPending = new Int32Array(R);
    this.rStatus = new Int32Array(R);
    this.rNext = new Int32Array(R).fill(NO);
    this.rScratch = new Int32Array(R).fill(NO);
    this.freeReqs = new Int32Array(R);
    for (let i = 0; i < R; i++) this.freeReqs[i] = R - 1 - i;
    this.freeReqCount = R;

    const T = this.trackers;
    this.tReq = new Int32Array(T).fill(NO);
    this.tTime = new Float64Array(T);
    this.tReported = new Uint8Array(T);
    this.tPrev = new Int32Array(T).fill(NO);
    this.tNext = new Int32Array(T).fill(NO);
    this.freeTrackers = new Int32Array(T);
    for (let i = 0; i < T; i++) this.freeTrackers[i] = T - 1 - i;
    this.freeTrackerCount = T;
  }

  /** Commands on the device (submitted, not yet reaped). */
  get outstandingCount(): number {
    return this.outstanding;
  }

  /** Requests waiting in the software queue for a free tracker. */
  get queuedCount(): number {
    return this.queued;
  }

  /** Requests left in the pool. */
  get freeRequests(): number {
    return this.freeReqCount;
  }

  // ---- commands (spdk_nvme_ns_cmd_*) ----

  // Errors of every command: ENXIO after freeIoQpair() or close(), or when the
  // controller failed or lost its device; EINVAL for a namespace not on this
  // controller, a bad LBA range, descriptor, ioFlags or a cb that is not a
  // function; ENOMEM when the request pool cannot hold the command.

  /** Reads lbaCount blocks at lba into the slab buffer of descriptor `desc`; cb(status, arg) on completion. */
  read(ns: Namespace, desc: number, lba: number, lbaCount: number, cb: IoCallback, arg?: unknown, ioFlags = 0): void {
    this.rw(OPC_READ, ns, desc, lba, lbaCount, cb, arg, ioFlags);
  }

  /** Writes lbaCount blocks at lba from the slab buffer of descriptor `desc` (ioFlags: IO_FLAGS_FUA); cb(status, arg) on completion. */
  write(ns: Namespace, desc: number, lba: number, lbaCount: number, cb: IoCallback, arg?: unknown, ioFlags = 0): void {
    this.rw(OPC_WRITE, ns, desc, lba, lbaCount, cb, arg, ioFlags);
  }

  /** Commits every write completed before it to non-volatile media; cb(status, arg) on completion. */
  flush(ns: Namespace, cb: IoCallback, arg?: unknown): void {
    this.checkNamespace(ns, 'qpair.flush');
    checkFunction('qpair.flush: cb', cb);
    this.ctrlr.checkLive('qpair.flush');
    const r = this.takeRequests(1, 'qpair.flush');
    this.setRequest(r, OPC_FLUSH, 0, 0, 0, 0, 0, 0, cb, arg, NO);
    this.submitLeaf(r);
  }

  /** Sets lbaCount blocks to zero (split into 65,536-block commands). */
  writeZeroes(ns: Namespace, lba: number, lbaCount: number, cb: IoCallback, arg?: unknown, ioFlags = 0): void {
    this.checkRange(ns, lba, lbaCount, 'qpair.writeZeroes');
    checkFunction('qpair.writeZeroes: cb', cb);
    flagsArg(ioFlags, 'qpair.writeZeroes');
    this.ctrlr.checkLive('qpair.writeZeroes');
    this.submitSplit(OPC_WRITE_ZEROES, ns, 0, lba, lbaCount, MAX_LBAS_PER_COMMAND, 0, ioFlags & IO_FLAGS_FUA, cb, arg, 'qpair.writeZeroes');
  }

  /** Dataset management with the deallocate attribute: up to 256 ranges; deallocated blocks read as zeroes. */
  deallocate(ns: Namespace, ranges: readonly DeallocateRange[], cb: IoCallback, arg?: unknown): void {
    this.checkNamespace(ns, 'qpair.deallocate');
    if (!Array.isArray(ranges)) throw badArgument('qpair.deallocate: ranges', 'an array of { lba, count }', ranges);
    if (ranges.length < 1 || ranges.length > DSM_MAX_RANGES) throw invalid(`qpair.deallocate: ${ranges.length} ranges (1 to ${DSM_MAX_RANGES})`);
    for (const r of ranges) {
      if (r === null || typeof r !== 'object') throw badArgument('qpair.deallocate: ranges[i]', 'a { lba, count } object', r);
      this.checkRange(ns, r.lba, r.count, 'qpair.deallocate');
      if (r.count > 0xffffffff) throw invalid(`qpair.deallocate: range of ${r.count} blocks exceeds 2^32 - 1`);
    }
    checkFunction('qpair.deallocate: cb', cb);
    this.ctrlr.checkLive('qpair.deallocate');
    const req = this.takeRequests(1, 'qpair.deallocate');
    const desc = this.pool.tryAlloc(ranges.length * DSM_RANGE_BYTES);
    if (desc < 0) {
      this.releaseRequest(req);
      throw new FlashpackError('ENOMEM', `qpair.deallocate: no free buffer for a ${ranges.length}-range list`);
    }
    const ptr = this.pool.bufferOf(desc);
    const i32 = this.view();
    for (let k = 0; k < ranges.length; k++) {
      const w = (ptr >> 2) + k * 4;
      i32[w] = 0;
      i32[w + 1] = ranges[k].count;
      i32[w + 2] = ranges[k].lba >>> 0;
      i32[w + 3] = Math.floor(ranges[k].lba / 2 ** 32);
    }
    this.setRequest(req, OPC_DATASET_MANAGEMENT, 0, 0, ptr, ranges.length - 1, DSM_ATTR_DEALLOCATE, 0, cb, arg, NO);
    this.rScratch[req] = desc;
    this.submitLeaf(req);
  }

  /**
   * Best-effort abort of command `cid` (spdk_nvme_ctrlr_cmd_abort). True when
   * the device had not started it: it completes with ABORTED_BY_REQUEST
   * (generic status 0x07). False when it already ran or is running. EINVAL
   * for a cid outside 0..trackers-1.
   */
  abort(cid: number): boolean {
    if (typeof cid !== 'number' || !Number.isInteger(cid) || cid < 0 || cid >= this.trackers) {
      throw badArgument('qpair.abort: cid', `a command ID from 0 to ${this.trackers - 1}`, cid);
    }
    if (this.tReq[cid] === NO) return false;
    const at = ((this.base + QP_TRACKERS) >> 2) + cid;
    return Atomics.compareExchange(this.view(), at, TRACKER_QUEUED, TRACKER_ABORTED) === TRACKER_QUEUED;
  }

  // ---- completions ----

  /**
   * Reaps up to `max` completions (0 = all available, capped at
   * maxCompletionsCap), calls their callbacks in completion order, resubmits
   * queued requests and reports timed-out commands. Returns completions reaped.
   * Errors: ENXIO after freeIoQpair() or close(); EINVAL for max that is not
   * an integer.
   */
  processCompletions(max = 0): number {
    if (this.freedBy !== null) throw afterClose('qpair.processCompletions', this.freedBy);
    if (typeof max !== 'number' || !Number.isInteger(max)) throw badArgument('qpair.processCompletions: max', 'an integer (0 or less: all available)', max);
    const cap = max <= 0 || max > this.maxCompletionsCap ? this.maxCompletionsCap : max;
    this.publish();
    let n = this.reap(cap);
    if (this.ctrlr.failed) n += this.failAll();
    // Closing: nothing queued can reach the device now; it completes after everything the device
    // holds has answered (a poll while a command is still running must not abort the queue first).
    else if (!this.ctrlr.live && this.oldest === NO && !this.ready()) this.abortQueued();
    this.resubmitQueued();
    this.checkTimeouts();
    return n;
  }

  /**
   * Resolves when a completion is waiting (or after timeoutMs). Spins ~20 µs,
   * then parks on the completion signal with Atomics.waitAsync, holding a
   * timer so the process stays alive while I/O is outstanding. EINVAL for
   * timeoutMs that is not a number ≥ 0.
   */
  async waitForCompletions(timeoutMs = 1000): Promise<void> {
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) throw badArgument('qpair.waitForCompletions: timeoutMs', 'a number of milliseconds ≥ 0', timeoutMs);
    this.publish();
    if (this.ready()) return;
    if (this.outstanding === 0) {
      // Nothing can complete; anything queued waits on the controller. Yield a timer
      // tick rather than return at once, so a caller's poll loop cannot spin on microtasks.
      if (this.queued > 0) await new Promise((r) => setTimeout(r, 1));
      return;
    }
    // A short spin catches a fast device without a wake-up, when spinning is on
    // (Controller.spinIterations: a busy caller turns it off for both sides).
    if (this.ctrlr.spinIterations > 0) {
      const until = performance.now() + WAIT_SPIN_MS;
      while (performance.now() < until) if (this.ready()) return;
    }
    const i32 = this.view();
    const waiting = (this.base + QP_HOST_WAITING) >> 2;
    const signal = (this.base + QP_CQ_SIGNAL) >> 2;
    const seen = Atomics.load(i32, signal);
    Atomics.store(i32, waiting, 1);
    // A pending Atomics.waitAsync does not keep a process alive: this timer does,
    // and outlasts the wait so the process cannot exit between the two firing.
    const keepAlive = setTimeout(() => {}, Math.min(timeoutMs + KEEP_ALIVE_MARGIN_MS, MAX_TIMER_MS));
    try {
      // A failed controller still gets its completions (device workers fail what they
      // hold with path errors, or failAll does once they are gone): wait for them like
      // any other. Returning at once here made callers' poll loops spin on microtasks
      // and starve the event loop that close() needs.
      if (this.ready()) return;
      const r = Atomics.waitAsync(i32, signal, seen, timeoutMs);
      if (r.async) await r.value;
    } finally {
      Atomics.store(i32, waiting, 0);
      clearTimeout(keepAlive);
    }
  }

  /** Retires up to `cap` posted completion entries, in CQ order; returns how many. */
  private reap(cap: number): number {
    const i32 = this.view();
    let n = 0;
    while (n < cap) {
      const e = (this.cqAt >> 2) + (this.cqHead & (this.entries - 1)) * CQE_WORDS;
      const dw3 = Atomics.load(i32, e + CQE_DW3);
      if (((dw3 >>> CQE_PHASE_BIT) & 1) !== (((this.cqHead >>> this.shift) & 1) ^ 1)) break;
      this.cqHead = (this.cqHead + 1) | 0;
      n++;
      this.retire(dw3 & 0xffff, dw3 >>> CQE_STATUS_SHIFT);
    }
    return n;
  }

  /** Whether the completion queue's next entry is posted. */
  private ready(): boolean {
    const e = (this.cqAt >> 2) + (this.cqHead & (this.entries - 1)) * CQE_WORDS;
    return ((Atomics.load(this.view(), e + CQE_DW3) >>> CQE_PHASE_BIT) & 1) === (((this.cqHead >>> this.shift) & 1) ^ 1);
  }

  // ---- internals ----

  private view(): Int32Array {
    if (this.i32.buffer.byteLength !== this.memory.buffer.byteLength) this.i32 = new Int32Array(this.memory.buffer);
    return this.i32;
  }

  private checkNamespace(ns: Namespace, what: string): void {
    if (this.freedBy !== null) throw afterClose(what, this.freedBy);
    if (ns === null || typeof ns !== 'object' || ns.ctrlr !== this.ctrlr) {
      throw invalid(`${what}: ns must be a namespace of this controller (ctrlr.ns(1)), got ${describe(ns)}${typeof (ns as Namespace | null)?.id === 'number' ? ` with id ${(ns as Namespace).id}` : ''}`);
    }
  }

  private checkRange(ns: Namespace, lba: number, count: number, what: string): void {
    this.checkNamespace(ns, what);
    if (typeof lba !== 'number' || !Number.isSafeInteger(lba) || lba < 0) throw badArgument(`${what}: lba`, 'a whole number', lba);
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1) throw badArgument(`${what}: lbaCount`, 'an integer ≥ 1', count);
    if (lba + count > ns.blocks) throw invalid(`${what}: LBAs ${lba}..${lba + count - 1} past the namespace's ${ns.blocks} blocks`);
  }

  private rw(opc: number, ns: Namespace, desc: number, lba: number, count: number, cb: IoCallback, arg: unknown, ioFlags: number): void {
    const what = opc === OPC_READ ? 'qpair.read' : 'qpair.write';
    this.checkRange(ns, lba, count, what);
    checkFunction(`${what}: cb`, cb);
    flagsArg(ioFlags, what);
    this.ctrlr.checkLive(what);
    this.pool.checkAllocated(desc, what);
    const cap = this.pool.capacityOf(desc);
    if (count * ns.blockSize > cap) throw invalid(`${what}: ${count} blocks of ${ns.blockSize} bytes exceed descriptor ${desc}'s ${cap}-byte buffer`);
    this.submitSplit(opc, ns, this.pool.bufferOf(desc), lba, count, ns.maxTransferBlocks, ns.boundaryBlocks, ioFlags & IO_FLAGS_FUA, cb, arg, what);
  }

  private submitSplit(
    opc: number, ns: Namespace, ptr: number, lba: number, count: number, maxBlocks: number, boundary: number,
    flags: number, cb: IoCallback, arg: unknown, what: string,
  ): void {
    const children = childCount(lba, count, maxBlocks, boundary);
    if (children === 1) {
      const r = this.takeRequests(1, what);
      this.setRequest(r, opc, lba, count, ptr, 0, 0, flags, cb, arg, NO);
      this.submitLeaf(r);
      return;
    }
    // SPDK (nvme_ns_map_failure_rc): an I/O whose children could never fit the request pool is EINVAL, not ENOMEM.
    if (children >= this.requests) {
      throw invalid(`${what}: ${count} blocks at LBA ${lba} split into ${children} commands; the qpair's pool holds ${this.requests} requests (ioQueueRequests)`);
    }
    const parent = this.takeRequests(children + 1, what);
    this.setRequest(parent, opc, lba, count, ptr, 0, 0, flags, cb, arg, NO);
    this.rPending[parent] = children;
    let at = lba;
    let left = count;
    let p = ptr;
    while (left > 0) {
      const n = childBlocks(at, left, maxBlocks, boundary);
      const c = this.takeRequests(1, what);
      this.setRequest(c, opc, at, n, p, 0, 0, flags, null, undefined, parent);
      this.submitLeaf(c);
      at += n;
      left -= n;
      if (ptr !== 0) p += n * ns.blockSize;
    }
  }

  /** Takes one request, after checking that `needed` are free (ENOMEM otherwise). */
  private takeRequests(needed: number, what: string): number {
    if (this.freeReqCount < needed) {
      throw new FlashpackError('ENOMEM', `${what}: needs ${needed} requests, ${this.freeReqCount} of ${this.requests} free on qpair ${this.id}`);
    }
    return this.freeReqs[--this.freeReqCount];
  }

  private releaseRequest(r: number): void {
    this.rCb[r] = null;
    this.rArg[r] = undefined;
    this.rParent[r] = NO;
    this.rNext[r] = NO;
    if (this.rScratch[r] !== NO) {
      this.pool.free(this.rScratch[r]);
      this.rScratch[r] = NO;
    }
    this.freeReqs[this.freeReqCount++] = r;
  }

  private setRequest(
    r: number, opc: number, lba: number, blocks: number, ptr: number, cdw10: number, cdw11: number, flags: number,
    cb: IoCallback | null, arg: unknown, parent: number,
  ): void {
    this.rOpc[r] = opc;
    this.rLba[r] = lba;
    this.rBlocks[r] = blocks;
    this.rPtr[r] = ptr;
    this.rCdw10[r] = cdw10;
    this.rCdw11[r] = cdw11;
    this.rFlags[r] = flags;
    this.rCb[r] = cb;
    this.rArg[r] = arg;
    this.rParent[r] = parent;
    this.rStatus[r] = 0;
  }

  /** Into the SQ if a tracker is free and nobody is queued ahead; else the software queue. */
  private submitLeaf(r: number): void {
    if (this.queued === 0 && this.freeTrackerCount > 0) this.toDevice(r);
    else this.enqueue(r);
  }

  private enqueue(r: number): void {
    this.rNext[r] = NO;
    if (this.queueTail === NO) this.queueHead = r;
    else this.rNext[this.queueTail] = r;
    this.queueTail = r;
    this.queued++;
  }

  private toDevice(r: number): void {
    const cid = this.freeTrackers[--this.freeTrackerCount];
    this.tReq[cid] = r;
    this.tTime[cid] = performance.now();
    this.tReported[cid] = 0;
    // Append to the outstanding list (submission order = oldest first).
    this.tPrev[cid] = this.newest;
    this.tNext[cid] = NO;
    if (this.newest === NO) this.oldest = cid;
    else this.tNext[this.newest] = cid;
    this.newest = cid;
    this.outstanding++;

    const i32 = this.view();
    const e = (this.sqAt >> 2) + (this.sqTail & (this.entries - 1)) * SQE_WORDS;
    const opc = this.rOpc[r];
    const lba = this.rLba[r];
    // Word stores, not fill(): TypedArray.fill on shared memory takes V8's slow path.
    for (let w = 0; w < SQE_WORDS; w++) i32[e + w] = 0;
    i32[e + SQE_CDW0] = opc | (cid << 16);
    i32[e + SQE_NSID] = 1;
    i32[e + SQE_PRP1] = this.rPtr[r];
    if (opc === OPC_DATASET_MANAGEMENT) {
      i32[e + SQE_CDW10] = this.rCdw10[r];
      i32[e + SQE_CDW11] = this.rCdw11[r];
    } else if (opc !== OPC_FLUSH) {
      i32[e + SQE_CDW10] = lba >>> 0;
      i32[e + SQE_CDW11] = Math.floor(lba / 2 ** 32);
      i32[e + SQE_CDW12] = ((this.rBlocks[r] - 1) & 0xffff) | this.rFlags[r];
    }
    Atomics.store(i32, ((this.base + QP_TRACKERS) >> 2) + cid, TRACKER_QUEUED);
    this.sqTail = (this.sqTail + 1) | 0;
    // The tail and the doorbell go out once per microtask wave (SPDK's delayed doorbell):
    // a burst of submissions costs one store and at most one wake-up of a parked worker.
    if (!this.publishQueued) {
      this.publishQueued = true;
      queueMicrotask(this.publishTask);
    }
  }

  /** Makes every command written to the SQ visible to the device and rings the doorbell. */
  private publish(): void {
    if (Atomics.load(this.view(), (this.base + QP_SQ_TAIL) >> 2) === this.sqTail) return;
    Atomics.store(this.view(), (this.base + QP_SQ_TAIL) >> 2, this.sqTail);
    this.ctrlr.ringDoorbell();
  }

  private publishQueued = false;
  private readonly publishTask = (): void => {
    this.publishQueued = false;
    this.publish();
  };

  /** A command completed: free its tracker and complete its request. */
  private retire(cid: number, status: number): void {
    if (cid >= this.trackers || this.tReq[cid] === NO) {
      throw new FlashpackError('EINTERNAL', `qpair ${this.id}: completion for command ID ${cid}, which is not outstanding`);
    }
    const r = this.tReq[cid];
    if (status === 0 && this.rOpc[r] === OPC_WRITE) this.ctrlr.wrote(this.rBlocks[r]);
    this.tReq[cid] = NO;
    const prev = this.tPrev[cid];
    const next = this.tNext[cid];
    if (prev === NO) this.oldest = next;
    else this.tNext[prev] = next;
    if (next === NO) this.newest = prev;
    else this.tPrev[next] = prev;
    Atomics.store(this.view(), ((this.base + QP_TRACKERS) >> 2) + cid, TRACKER_FREE);
    this.freeTrackers[this.freeTrackerCount++] = cid;
    this.outstanding--;
    this.completeRequest(r, status);
  }

  private completeRequest(r: number, status: number): void {
    const parent = this.rParent[r];
    if (parent === NO) {
      const cb = this.rCb[r];
      const arg = this.rArg[r];
      this.releaseRequest(r);
      cb!(Status.of(status), arg);
      return;
    }
    this.releaseRequest(r);
    if (status !== 0 && this.rStatus[parent] === 0) this.rStatus[parent] = status;
    if (--this.rPending[parent] === 0) this.completeRequest(parent, this.rStatus[parent]);
  }

  private resubmitQueued(): void {
    while (this.queued > 0 && this.freeTrackerCount > 0 && this.ctrlr.live) {
      const r = this.queueHead;
      this.queueHead = this.rNext[r];
      if (this.queueHead === NO) this.queueTail = NO;
      this.queued--;
      this.toDevice(r);
    }
  }

  /**
   * The controller failed or vanished: queued requests fail here; the device
   * side fails what it holds. Returns the completions it reaped from the CQ.
   */
  private failAll(): number {
    while (this.queued > 0) {
      const r = this.queueHead;
      this.queueHead = this.rNext[r];
      if (this.queueHead === NO) this.queueTail = NO;
      this.queued--;
      this.completeRequest(r, STATUS_PATH_ERROR);
    }
    if (!this.ctrlr.devicesGone) return 0;
    // No device worker is left, so the CQ is final. What they posted since the pass
    // above read it (or past its cap) is delivered first: failing those commands
    // unread would free their IDs while their entries still wait in the CQ, and the
    // next pass would find completions for commands that are not outstanding. Then
    // what they never answered fails, oldest first. (A worker stopped between
    // claiming a CQ slot and posting it leaves a hole that ends the reaping; the
    // commands past it fail here like the unanswered ones.)
    const n = this.reap(this.entries);
    while (this.oldest !== NO) this.retire(this.oldest, STATUS_PATH_ERROR);
    return n;
  }

  private checkTimeouts(): void {
    const timeoutMs = this.ctrlr.timeoutMs;
    const cb = this.ctrlr.timeoutCallback;
    if (timeoutMs <= 0 || cb === null || this.oldest === NO) return;
    const now = performance.now();
    for (let cid = this.oldest; cid !== NO; cid = this.tNext[cid]) {
      if (now - this.tTime[cid] < timeoutMs) break;
      if (this.tReported[cid] === 0) {
        this.tReported[cid] = 1;
        cb(this, cid);
      }
    }
  }

  /** Completes every request still in the software queue with ABORTED_SQ_DELETION. */
  private abortQueued(): void {
    while (this.queued > 0) {
      const r = this.queueHead;
      this.queueHead = this.rNext[r];
      if (this.queueHead === NO) this.queueTail = NO;
      this.queued--;
      this.completeRequest(r, STATUS_ABORTED_SQ_DELETION);
    }
  }

  /** @internal Controller.close, before the device workers stop: every command written reaches the SQ. */
  publishNow(): void {
    this.publish();
  }

  /**
   * @internal Controller.close, after the device workers stopped: delivers what
   * they completed, then aborts whatever is left (queued, or never answered).
   */
  drainOnClose(): void {
    while (this.processCompletions(0) > 0);
    this.abortQueued();
    while (this.oldest !== NO) this.retire(this.oldest, STATUS_ABORTED_SQ_DELETION);
    this.freedBy = 'close()';
  }

  /** @internal */
  markFreed(): void {
    this.freedBy = 'freeIoQpair()';
  }

  /** @internal The ready-made command IDs of outstanding commands, oldest first (tests). */
  outstandingCids(): number[] {
    const out: number[] = [];
    for (let cid = this.oldest; cid !== NO; cid = this.tNext[cid]) out.push(cid);
    return out;
  }
}

