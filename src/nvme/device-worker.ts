/**
 * A device worker: the controller's side of the queue pairs. It fetches
 * commands from every active submission queue (claiming each with a CAS on the
 * SQ head, so several workers run commands in parallel), runs them on its own
 * Device synchronously, and posts phase-tagged completion entries. It spins
 * briefly when idle, then parks in Atomics.wait on the controller doorbell.
 * Runs as a node:worker_threads worker on Node and a Web Worker on Deno and Bun.
 */
import { parentPort } from '../wasm/spawn.js';
import type { WasmMemory } from '../wasm/wasm-types.js';
import { openDevice } from './devices.js';
import { bufferSpanning } from '../shm/growth.js';
import { FlashpackError } from '../errors.js';
import type { BackendDescription, Device } from './backend.js';
import {
  CTRL_STATE, CTRL_DOORBELL, CTRL_SLEEPERS, CTRL_SPIN, CTRL_TABLE_GEN, CTRL_TABLE, CTRL_TABLE_ENTRY_BYTES, MAX_QPAIRS,
  CTRL_LIVE, CTRL_CLOSING, QP_SQ_TAIL, QP_SQ_HEAD, QP_CQ_TAIL, QP_CQ_SIGNAL, QP_HOST_WAITING, QP_TRACKERS,
  TRACKER_QUEUED, TRACKER_ACTIVE, TRACKER_ABORTED, qpairLayout, loadCapacity,
} from './layout.js';
import {
  OPC_FLUSH, OPC_WRITE, OPC_READ, OPC_WRITE_ZEROES, OPC_DATASET_MANAGEMENT, IO_FLAGS_FUA, DSM_ATTR_DEALLOCATE,
  SQE_WORDS, SQE_CDW0, SQE_NSID, SQE_PRP1, SQE_CDW10, SQE_CDW11, SQE_CDW12, CQE_WORDS, CQE_DW0, CQE_DW2, CQE_DW3,
  CQE_PHASE_BIT, CQE_STATUS_SHIFT, DSM_RANGE_BYTES, STATUS_ABORTED_BY_REQUEST, STATUS_INVALID_NAMESPACE,
  STATUS_INVALID_OPCODE, STATUS_LBA_OUT_OF_RANGE, STATUS_DATA_TRANSFER_ERROR, STATUS_INTERNAL_DEVICE_ERROR, STATUS_SUCCESS,
} from './spec.js';

export interface DeviceWorkerInit {
  memory: WasmMemory;
  ctrlAt: number;
  backend: BackendDescription;
}

export type DeviceWorkerReply = { ready: true } | { ready: false; error: string } | { closed: true };

/** A parked worker re-checks its queues at least this often. */
const PARK_TIMEOUT_MS = 1000;

interface Queue {
  qid: number;
  base: number; // byte address
  entries: number;
  mask: number;
  shift: number;
  sq: number; // Int32 index of SQ entry 0
  cq: number; // Int32 index of CQ entry 0
}

class DeviceLoop {
  private readonly memory: WasmMemory;
  private i32: Int32Array;
  private u8: Uint8Array;
  private readonly ctrl: number; // Int32 index of the controller block
  private readonly dev: Device;
  private readonly blockSize: number;
  /** The namespace's capacity as last read (inRange() reads it again before refusing a command). */
  private blocks: number;
  private queues: Queue[] = [];
  private tableGen = -1;

  constructor(init: DeviceWorkerInit, dev: Device) {
    this.memory = init.memory;
    this.i32 = new Int32Array(init.memory.buffer);
    this.u8 = new Uint8Array(init.memory.buffer);
    this.ctrl = init.ctrlAt >> 2;
    this.dev = dev;
    this.blockSize = init.backend.blockSize;
    this.blocks = init.backend.blocks;
  }

  /**
   * The host carved memory past our views (a queue pair, a buffer): renew them
   * once they span `end` bytes (bufferSpanning waits for the growth to reach
   * this thread). False if `end` lies outside the memory.
   */
  private spans(end: number): boolean {
    if (end <= this.u8.length) return true;
    const buf = bufferSpanning(this.memory, end);
    if (buf === null) return false;
    this.i32 = new Int32Array(buf);
    this.u8 = new Uint8Array(buf);
    return true;
  }

  private loadTable(gen: number): void {
    const i32 = this.i32; // the table lies in the controller block, inside the first views
    const qs: Queue[] = [];
    for (let q = 0; q < MAX_QPAIRS; q++) {
      const e = this.ctrl + ((CTRL_TABLE + q * CTRL_TABLE_ENTRY_BYTES) >> 2);
      if (Atomics.load(i32, e + 3) !== 1) continue;
      const base = i32[e];
      const entries = i32[e + 1];
      const L = qpairLayout(entries);
      qs.push({ qid: q + 1, base, entries, mask: entries - 1, shift: 31 - Math.clz32(entries), sq: (base + L.sq) >> 2, cq: (base + L.cq) >> 2 });
    }
    // The host grows the memory before it publishes an entry (e + 3): a queue
    // carved since our views were made lies past them until they are renewed.
    let end = 0;
    for (const q of qs) end = Math.max(end, q.base + qpairLayout(q.entries).bytes);
    if (!this.spans(end)) {
      throw new FlashpackError('EINTERNAL', `device worker: queue pair memory ends at ${end}, past the shared memory (${this.u8.length} bytes)`);
    }
    this.queues = qs;
    this.tableGen = gen;
  }

  run(): void {
    const i32 = () => this.i32;
    const state = this.ctrl + (CTRL_STATE >> 2);
    const bell = this.ctrl + (CTRL_DOORBELL >> 2);
    const sleepers = this.ctrl + (CTRL_SLEEPERS >> 2);
    const spinWord = this.ctrl + (CTRL_SPIN >> 2);
    const genWord = this.ctrl + (CTRL_TABLE_GEN >> 2);
    let idle = 0;
    let turn = 0;
    for (;;) {
      const gen = Atomics.load(i32(), genWord);
      if (gen !== this.tableGen) this.loadTable(gen);
      let did = 0;
      const qs = this.queues;
      for (let k = 0; k < qs.length; k++) did += this.fetch(qs[(turn + k) % qs.length]);
      turn++;
      if (did > 0) {
        idle = 0;
        continue;
      }
      const st = Atomics.load(i32(), state);
      // Closing: a queue pair allocated after this pass loaded the table may hold
      // commands submitted before the close; load it and drain it too.
      if (st === CTRL_CLOSING && Atomics.load(i32(), genWord) !== this.tableGen) continue;
      if (st !== CTRL_LIVE) return; // closing (every SQ is drained) or failed
      if (++idle < Atomics.load(i32(), spinWord)) continue;
      // Park. The host rings the doorbell only when it sees a sleeper, so announce
      // first, then look at the queues once more (the host stores the SQ tail before
      // it reads the sleeper count: one of the two sees the other).
      Atomics.add(i32(), sleepers, 1);
      const before = Atomics.load(i32(), bell);
      let found = 0;
      for (let k = 0; k < this.queues.length; k++) found += this.pending(this.queues[k]);
      // A queue pair allocated since the table was loaded is not in this look: go round again instead of parking.
      const current = Atomics.load(i32(), genWord) === this.tableGen;
      if (found === 0 && current && Atomics.load(i32(), state) === CTRL_LIVE) Atomics.wait(i32(), bell, before, PARK_TIMEOUT_MS);
      Atomics.sub(i32(), sleepers, 1);
      idle = 0;
    }
  }

  /** Commands waiting in queue q's SQ. */
  private pending(q: Queue): number {
    return (Atomics.load(this.i32, (q.base + QP_SQ_TAIL) >> 2) - Atomics.load(this.i32, (q.base + QP_SQ_HEAD) >> 2)) | 0;
  }

  /**
   * Claims and runs one command of queue q; 0 if its SQ is empty. The entry is
   * read before the claim: until command h is fetched the host cannot reuse its
   * slot (outstanding commands < entries), but once it is fetched, commands
   * after it may complete on other workers and the host may refill the slot.
   */
  private fetch(q: Queue): number {
    const i32 = this.i32;
    const headAt = (q.base + QP_SQ_HEAD) >> 2;
    const h = Atomics.load(i32, headAt);
    if (h === Atomics.load(i32, (q.base + QP_SQ_TAIL) >> 2)) return 0;
    const e = q.sq + (h & q.mask) * SQE_WORDS;
    const cdw0 = i32[e + SQE_CDW0];
    const nsid = i32[e + SQE_NSID];
    const prp1 = i32[e + SQE_PRP1] >>> 0;
    const cdw10 = i32[e + SQE_CDW10];
    const cdw11 = i32[e + SQE_CDW11];
    const cdw12 = i32[e + SQE_CDW12];
    if (Atomics.compareExchange(i32, headAt, h, (h + 1) | 0) !== h) return 1; // another worker took it: look again
    const cid = cdw0 >>> 16;
    const tracker = ((q.base + QP_TRACKERS) >> 2) + cid;
    let status: number;
    if (cid >= q.entries) status = STATUS_INVALID_OPCODE;
    else if (Atomics.compareExchange(i32, tracker, TRACKER_QUEUED, TRACKER_ACTIVE) === TRACKER_ABORTED) status = STATUS_ABORTED_BY_REQUEST;
    else status = this.execute(cdw0 & 0xff, nsid, prp1, cdw10, cdw11, cdw12);
    this.complete(q, cid, (h + 1) & 0xffff, status);
    return 1;
  }

  private execute(opc: number, nsid: number, ptr: number, cdw10: number, cdw11: number, cdw12: number): number {
    if (nsid !== 1) return STATUS_INVALID_NAMESPACE;
    try {
      switch (opc) {
        case OPC_READ:
        case OPC_WRITE: {
          const lba = (cdw10 >>> 0) + (cdw11 >>> 0) * 2 ** 32;
          const nlb = (cdw12 & 0xffff) + 1;
          if (!this.inRange(lba + nlb)) return STATUS_LBA_OUT_OF_RANGE;
          if (!this.mapped(ptr, nlb * this.blockSize)) return STATUS_DATA_TRANSFER_ERROR;
          return opc === OPC_READ
            ? this.dev.read(lba, nlb, this.u8, ptr)
            : this.dev.write(lba, nlb, this.u8, ptr, (cdw12 & IO_FLAGS_FUA) !== 0);
        }
        case OPC_FLUSH:
          return this.dev.flush();
        case OPC_WRITE_ZEROES: {
          const lba = (cdw10 >>> 0) + (cdw11 >>> 0) * 2 ** 32;
          const nlb = (cdw12 & 0xffff) + 1;
          if (!this.inRange(lba + nlb)) return STATUS_LBA_OUT_OF_RANGE;
          return this.dev.writeZeroes(lba, nlb, (cdw12 & IO_FLAGS_FUA) !== 0);
        }
        case OPC_DATASET_MANAGEMENT: {
          const ranges = (cdw10 & 0xff) + 1;
          if ((cdw11 & DSM_ATTR_DEALLOCATE) === 0) return STATUS_SUCCESS; // attributes alone are hints
          if (!this.mapped(ptr, ranges * DSM_RANGE_BYTES)) return STATUS_DATA_TRANSFER_ERROR;
          const w = ptr >> 2;
          for (let r = 0; r < ranges; r++) {
            const len = this.i32[w + r * 4 + 1] >>> 0;
            const lba = (this.i32[w + r * 4 + 2] >>> 0) + (this.i32[w + r * 4 + 3] >>> 0) * 2 ** 32;
            if (!this.inRange(lba + len)) return STATUS_LBA_OUT_OF_RANGE;
          }
          for (let r = 0; r < ranges; r++) {
            const len = this.i32[w + r * 4 + 1] >>> 0;
            const lba = (this.i32[w + r * 4 + 2] >>> 0) + (this.i32[w + r * 4 + 3] >>> 0) * 2 ** 32;
            if (len === 0) continue;
            const st = this.dev.deallocate(lba, len);
            if (st !== STATUS_SUCCESS) return st;
          }
          return STATUS_SUCCESS;
        }
        default:
          return STATUS_INVALID_OPCODE;
      }
    } catch {
      return STATUS_INTERNAL_DEVICE_ERROR;
    }
  }

  /**
   * Whether blocks up to `end` (exclusive) are in the namespace. The host
   * publishes a grown capacity before it submits a command past the old one,
   * and we read the command after its SQ tail (both atomics), so a command
   * past the bound we last read makes us read the bound again.
   */
  private inRange(end: number): boolean {
    if (end <= this.blocks) return true;
    this.blocks = loadCapacity(this.i32, this.ctrl * 4);
    return end <= this.blocks;
  }

  /** Whether [ptr, ptr + len) lies inside the shared memory (4-byte aligned for range lists). */
  private mapped(ptr: number, len: number): boolean {
    return ptr % 4 === 0 && this.spans(ptr + len);
  }

  private complete(q: Queue, cid: number, sqHead: number, status: number): void {
    const i32 = this.i32;
    const c = Atomics.add(i32, (q.base + QP_CQ_TAIL) >> 2, 1);
    const e = q.cq + (c & q.mask) * CQE_WORDS;
    const phase = ((c >>> q.shift) & 1) ^ 1;
    i32[e + CQE_DW0] = 0;
    i32[e + CQE_DW2] = sqHead | (q.qid << 16);
    Atomics.store(i32, e + CQE_DW3, cid | (phase << CQE_PHASE_BIT) | (status << CQE_STATUS_SHIFT));
    if (Atomics.load(i32, (q.base + QP_HOST_WAITING) >> 2) !== 0) {
      Atomics.add(i32, (q.base + QP_CQ_SIGNAL) >> 2, 1);
      Atomics.notify(i32, (q.base + QP_CQ_SIGNAL) >> 2);
    }
  }
}

const p = await parentPort<DeviceWorkerInit, DeviceWorkerReply>();
p.onInit((init) => {
  let dev: Device;
  try {
    dev = openDevice(init.backend);
  } catch (err) {
    p.post({ ready: false, error: (err as Error).message });
    return;
  }
  p.post({ ready: true });
  // Let the ready message leave before the loop takes the thread.
  setTimeout(() => {
    try {
      new DeviceLoop(init, dev).run();
    } finally {
      dev.close();
    }
    p.post({ closed: true });
  }, 0);
});
