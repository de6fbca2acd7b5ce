// Crash-consistency model and driver for the VDO volume, shared by
// test/vdo-crash.test.ts and scripts/crash-test.mjs (plain JS so both can load
// it; the library is passed in, so each caller imports dist/ itself).
//
// The contract checked after every power cut:
//   - every write/discard acknowledged before the start of the last flush()
//     that completed reads back, unless later operations touched those bytes;
//   - then the bytes equal one of the values the block took since (each later
//     operation, acknowledged or still in flight at the cut, is a candidate);
//   - nothing reads garbage, nothing fails to open or read;
//   - with syncDurable (sync write policy), a write counts as flushed once acknowledged.
// The model keeps, per 4 KiB block, the full-block contents after each
// operation that touched it, in issue order (operations that overlap are never
// in flight together, so issue order is the order the volume sees), and a
// floor: the index of the last entry a completed flush made durable. After a
// cut a block may hold any entry from its floor on, compared whole. What the
// reopened volume holds becomes the new base (it is durable: recovery
// checkpoints), so every cycle starts exact.

export const BLOCK = 4096;

/** Seeded PRNG (mulberry32). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const isZero = (b) => {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
};

const sameBytes = (a, b) => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};

const firstDiff = (a, b) => {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
};

/** Short fingerprint of a block for messages (FNV-1a, hex). */
export function tag(b) {
  if (b === null || isZero(b)) return 'zero';
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

// ---- data -----------------------------------------------------------------------

const WORDS = ['block', 'volume', 'journal', 'slab', 'packer', 'dedupe', 'flush', 'torn', 'sector', 'crash', 'recover', 'map',
  'the', 'of', 'and', 'a', 'to', 'in', 'is', 'zero', 'lz4', 'deflate', 'fragment', 'reference'];

/** Data for writes: fresh compressible text, runs, random bytes, zeros, or copies from a small pool (duplicates). */
export class DataSource {
  /** @param {number} bb the volume block: what one block() is */
  constructor(rand, bb = BLOCK) {
    this.rand = rand;
    this.bb = bb;
    this.pool = [];
    this.recent = [];
    for (let i = 0; i < 10; i++) this.pool.push(this.fresh(i % 3 === 0 ? 'random' : i % 3 === 1 ? 'text' : 'runs'));
  }

  fresh(kind, n = this.bb) {
    const r = this.rand;
    const b = new Uint8Array(n);
    if (kind === 'random') {
      for (let i = 0; i < n; i += 4) {
        const x = (r() * 4294967296) >>> 0;
        b[i] = x;
        if (i + 1 < n) b[i + 1] = x >>> 8;
        if (i + 2 < n) b[i + 2] = x >>> 16;
        if (i + 3 < n) b[i + 3] = x >>> 24;
      }
    } else if (kind === 'text') {
      let at = 0;
      while (at < n) {
        const w = r() < 0.1 ? String((r() * 1e6) | 0) : WORDS[(r() * WORDS.length) | 0];
        for (let i = 0; i < w.length && at < n; i++) b[at++] = w.charCodeAt(i);
        if (at < n) b[at++] = 32;
      }
    } else if (kind === 'runs') {
      let at = 0;
      while (at < n) {
        const len = 8 + ((r() * 600) | 0);
        b.fill((r() * 256) | 0, at, Math.min(n, at + len));
        at += len;
      }
    } // 'zero': left zero
    return b;
  }

  /** One 4 KiB block and its description. */
  block() {
    const x = this.rand();
    if (x < 0.25) {
      const i = (this.rand() * this.pool.length) | 0;
      return [this.pool[i], `dup${i}`];
    }
    if (x < 0.35 && this.recent.length > 0) {
      // A block written a little while ago (perhaps before the last cut), again.
      const i = (this.rand() * this.recent.length) | 0;
      return [this.recent[i][0], `again:${this.recent[i][1]}`];
    }
    if (x < 0.45) return [new Uint8Array(this.bb), 'zero'];
    const kind = x < 0.67 ? 'text' : x < 0.87 ? 'runs' : 'random';
    const b = this.fresh(kind);
    const name = `${kind}@${tag(b)}`;
    this.recent.push([b, name]);
    if (this.recent.length > 24) this.recent.shift();
    return [b, name];
  }

  /** `n` bytes made of blocks (the first one entered at `skew` bytes, so unaligned writes still repeat content). */
  bytes(n, skew = 0) {
    const out = new Uint8Array(n);
    const kinds = [];
    let at = -skew;
    while (at < n) {
      const [b, k] = this.block();
      const from = Math.max(0, at);
      out.set(b.subarray(from - at, Math.min(this.bb, n - at)), from);
      kinds.push(k);
      at += this.bb;
    }
    return [out, kinds.join('+')];
  }
}

// ---- model ------------------------------------------------------------------------

export class CrashModel {
  /**
   * @param {number} blocks logical blocks
   * @param {{ syncDurable?: boolean, blockBytes?: number }} opts syncDurable: a write acknowledged by a
   *   sync-policy volume is durable without a flush (checked like a flush of it); blockBytes: the volume block (4 KiB).
   */
  constructor(blocks, opts = {}) {
    this.blocks = blocks;
    /** The volume block: the model keeps whole ones. */
    this.bb = opts.blockBytes ?? BLOCK;
    this.syncDurable = opts.syncDurable ?? false;
    this.image = new Uint8Array(blocks * this.bb); // the base: what the volume held when the cycle began
    this.nextOp = 0;
    this.frozen = false;
    this.startCycle();
  }

  startCycle() {
    /** block → [{ d: Uint8Array (whole block), op }] — entry 0 is the base. */
    this.hist = new Map();
    /** block → index of the last entry a completed flush (or sync ack) made durable. */
    this.floor = new Map();
    /** block → index of the last entry whose operation has been acknowledged. */
    this.lastAcked = new Map();
    /** block → operations in flight touching it. */
    this.busyCount = new Map();
    this.ops = new Map();
    this.frozen = false;
  }

  baseOf(b) {
    return this.image.subarray(b * this.bb, (b + 1) * this.bb);
  }

  entries(b) {
    let h = this.hist.get(b);
    if (h === undefined) this.hist.set(b, (h = [{ d: this.baseOf(b), op: -1 }]));
    return h;
  }

  blocksOf(offset, length) {
    if (length === 0) return [];
    const out = [];
    for (let b = Math.floor(offset / this.bb); b <= Math.floor((offset + length - 1) / this.bb); b++) out.push(b);
    return out;
  }

  /** Any operation in flight on these bytes? */
  busy(offset, length) {
    return this.blocksOf(offset, length).some((b) => (this.busyCount.get(b) ?? 0) > 0);
  }

  /** Records an operation as issued: `data` for a write, null for a discard (zeroes). */
  begin(kind, offset, length, data, desc) {
    const op = { id: this.nextOp++, kind, offset, length, desc, state: 'inflight', touched: [] };
    for (const b of this.blocksOf(offset, length)) {
      const h = this.entries(b);
      const d = h[h.length - 1].d.slice();
      const from = Math.max(offset, b * this.bb);
      const to = Math.min(offset + length, (b + 1) * this.bb);
      if (data === null) d.fill(0, from - b * this.bb, to - b * this.bb);
      else d.set(data.subarray(from - offset, to - offset), from - b * this.bb);
      h.push({ d, op: op.id });
      op.touched.push([b, h.length - 1]);
      this.busyCount.set(b, (this.busyCount.get(b) ?? 0) + 1);
    }
    this.ops.set(op.id, op);
    return op;
  }

  settle(op, ok) {
    if (op.state !== 'inflight') return;
    op.state = this.frozen ? 'after-cut' : ok ? 'acked' : 'failed';
    for (const [b, i] of op.touched) {
      this.busyCount.set(b, this.busyCount.get(b) - 1);
      if (op.state !== 'acked') continue;
      if (i > (this.lastAcked.get(b) ?? 0)) this.lastAcked.set(b, i);
      if (this.syncDurable && op.kind === 'write' && i > (this.floor.get(b) ?? 0)) this.floor.set(b, i);
    }
  }

  /** A flush is called: what it must make durable. */
  flushBegin() {
    return new Map(this.lastAcked);
  }

  /** That flush completed (before the cut). */
  flushDone(snapshot) {
    if (this.frozen) return;
    for (const [b, i] of snapshot) if (i > (this.floor.get(b) ?? 0)) this.floor.set(b, i);
  }

  /** The power is cut: nothing that settles from now on counts. */
  freeze() {
    this.frozen = true;
  }

  /** What a read of block b must return now, or undefined while an operation on it is in flight. */
  latest(b) {
    if ((this.busyCount.get(b) ?? 0) > 0) return undefined;
    const h = this.hist.get(b);
    return h === undefined ? this.baseOf(b) : h[h.length - 1].d;
  }

  candidates(b) {
    const h = this.hist.get(b);
    if (h === undefined) return [{ d: this.baseOf(b), op: -1 }];
    return h.slice(this.floor.get(b) ?? 0);
  }

  /** Checks a whole-volume image read after recovery; a description of the first violation, or null. */
  verify(observed) {
    for (let b = 0; b < this.blocks; b++) {
      const got = observed.subarray(b * this.bb, (b + 1) * this.bb);
      const cands = this.candidates(b);
      if (cands.some((c) => sameBytes(c.d, got))) continue;
      const h = this.hist.get(b) ?? [{ d: this.baseOf(b), op: -1 }];
      const all = h.map((e, i) => {
        const op = e.op < 0 ? null : this.ops.get(e.op);
        const who = op === null ? 'base' : `op#${op.id} ${op.kind} ${op.state}`;
        return `    [${i}${i === (this.floor.get(b) ?? 0) ? ' floor' : ''}${i < (this.floor.get(b) ?? 0) ? ' (superseded by a flush)' : ''}] ${who}: ${tag(e.d)}${firstDiff(e.d, got) < 0 ? ' (what the block reads)' : `, differs from it first at byte ${firstDiff(e.d, got)} (${e.d[firstDiff(e.d, got)]} vs ${got[firstDiff(e.d, got)]})`}`;
      });
      return `block ${b} (bytes ${b * this.bb}..${(b + 1) * this.bb - 1}) reads ${tag(got)}, not one of its ${cands.length} candidate(s):\n${all.join('\n')}`;
    }
    return null;
  }

  /** Blocks whose newest value did not survive the cut: [block, that value], in the order they were written (non-zero values only). */
  lost(observed) {
    const out = [];
    for (const [b, h] of this.hist) {
      const e = h[h.length - 1];
      if (h.length > 1 && !isZero(e.d) && !sameBytes(e.d, observed.subarray(b * this.bb, (b + 1) * this.bb))) out.push([b, e.d, e.op]);
    }
    return out.sort((x, y) => x[2] - y[2]).map(([b, d]) => [b, d]);
  }

  /** The reopened volume's contents are the new base. */
  reset(observed) {
    this.image.set(observed);
    this.startCycle();
  }
}

// ---- driver ---------------------------------------------------------------------

export class CrashViolation extends Error {
  constructor(message, details) {
    super(message);
    this.name = 'CrashViolation';
    this.details = details;
  }
}

const MODES = (r) => {
  const x = r();
  return x < 0.7 ? 'tear' : x < 0.85 ? 'drop' : 'keep';
};

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const HANG_MS = 30_000;

/** `p`, or a CrashViolation-worthy rejection if it takes longer than HANG_MS (the volume hung). */
async function noHang(p, what) {
  let timer;
  const hang = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${HANG_MS} ms`)), HANG_MS);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Volume configurations the test and the script run. */
export const CONFIGS = {
  'lz4-dedupe-async': { logicalSize: 8 << 20, physicalSize: 10 << 20, codec: 'lz4', dedupe: true, writePolicy: 'async', journalBlocks: 8, cachePages: 4, maxOps: 16, burst: 0.06, flushUs: 1000 },
  'deflate-dedupe-sync': { logicalSize: 4 << 20, physicalSize: 6 << 20, codec: 'deflate', dedupe: true, writePolicy: 'sync', journalBlocks: 8, cachePages: 4, maxOps: 12, burst: 0.04 },
  'none-nodedupe-async': { logicalSize: 4 << 20, physicalSize: 6 << 20, codec: 'none', dedupe: false, writePolicy: 'async', journalBlocks: 4, cachePages: 4, maxOps: 16, burst: 0.1, flushUs: 500 },
  'lz4-nodedupe-async-tiny-cache': { logicalSize: 2 << 20, physicalSize: 4 << 20, codec: 'lz4', dedupe: false, writePolicy: 'async', journalBlocks: 4, cachePages: 2, maxOps: 12, burst: 0.05, flushUs: 300 },
  // A device whose atomic write unit is 4 KiB (a block write survives whole or not at all).
  'none-nodedupe-async-atomic4k': { logicalSize: 2 << 20, physicalSize: 4 << 20, codec: 'none', dedupe: false, writePolicy: 'async', journalBlocks: 8, cachePages: 4, maxOps: 12, burst: 0.05, flushUs: 500, sectorBytes: 4096 },
  'lz4-dedupe-sync-checkpoints': { logicalSize: 8 << 20, physicalSize: 10 << 20, codec: 'lz4', dedupe: true, writePolicy: 'sync', journalBlocks: 4, cachePages: 2, maxOps: 10, burst: 0.05 },
  // Volume blocks of 8 and 64 KiB (chosen at format): each block is fingerprinted, compressed and packed whole.
  'lz4-dedupe-async-8k': { logicalSize: 8 << 20, physicalSize: 10 << 20, blockBytes: 8192, codec: 'lz4', dedupe: true, writePolicy: 'async', journalBlocks: 8, cachePages: 4, maxOps: 16, burst: 0.06, flushUs: 1000 },
  'deflate-dedupe-sync-64k': { logicalSize: 8 << 20, physicalSize: 12 << 20, blockBytes: 65536, codec: 'deflate', dedupe: true, writePolicy: 'sync', journalBlocks: 8, cachePages: 4, maxOps: 12, burst: 0.04 },
  'lz4-nodedupe-async-64k': { logicalSize: 8 << 20, physicalSize: 12 << 20, blockBytes: 65536, codec: 'lz4', dedupe: false, writePolicy: 'async', journalBlocks: 4, cachePages: 2, maxOps: 12, burst: 0.05, flushUs: 500 },
};
for (const [name, c] of Object.entries(CONFIGS)) c.name = name;

/**
 * Runs `cuts` power cuts against one volume configuration.
 *
 * @param {object} lib the library (import * from dist/index.js)
 * @param {object} cfg { name, logicalSize, physicalSize, blockBytes (the volume block, default 4 KiB), codec, dedupe, writePolicy, journalBlocks, cachePages,
 *   maxOps (per cycle), burst (probability of a burst cycle), cut: 'random' | 'close' | 'reopen' | 'checkpoint', flushUs, sectorBytes,
 *   growTo (grow the logical size up to this many bytes with volume.resize() in the middle of the campaign),
 *   growPhysicalTo (with growTo: each resize grows the physical size too, to 2 MiB past the logical size, up to this
 *   many bytes; the backend holds that much from the start, the volume is created with physicalSize) }
 * @param {object} opts { seed, cuts, syncDurable, retryLost, edgeDiscardsInFlight, progress(cuts, stats), afterCut(fault, cfg) }
 *   (see crash-model.d.mts)
 */
export async function runCampaign(lib, cfg, opts) {
  const { Volume, nvme } = lib;
  const seed = opts.seed >>> 0;
  const rand = prng(seed);
  // The volume block: the model, the data and every aligned operation are in its units.
  const BLOCK = cfg.blockBytes ?? 4096;
  const data = new DataSource(prng(seed ^ 0x9e3779b9), BLOCK);
  // The logical size now (resize ops grow it up to cfg.growTo); the model covers the largest.
  let size = cfg.logicalSize;
  let blocks = size / BLOCK;
  const model = new CrashModel(Math.max(cfg.logicalSize, cfg.growTo ?? 0) / BLOCK, { syncDurable: opts.syncDurable ?? false, blockBytes: BLOCK });
  // The physical size now (resize ops grow it up to cfg.growPhysicalTo, within the backend).
  let physical = cfg.physicalSize;
  const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: cfg.growPhysicalTo ?? cfg.physicalSize }), { cacheBytes: 32 << 20, sectorBytes: cfg.sectorBytes ?? 512 });
  const openOpts = () => ({ workers: 1, cachePages: cfg.cachePages, maxInflight: cfg.maxInflight });
  const oplog = [];
  const note = (s) => {
    oplog.push(s);
    if (oplog.length > 400) oplog.splice(0, oplog.length - 200);
  };
  const stats = { resizes: 0, cuts: 0, modes: { tear: 0, drop: 0, keep: 0 }, inflightAtCut: 0, unflushedAtCut: 0, sectorsReverted: 0, ops: 0, flushes: 0, reads: 0, closeCuts: 0, closedBeforeCut: 0, cleanOpens: 0, checkpointCuts: 0, cutsWithUnflushed: 0, cutsDuringFlush: 0, cutsWithOpsInFlight: 0, retries: 0 };
  let cycle = -1;
  let retry = [];
  const fail = (what) => {
    const msg = `${cfg.name}: ${what}\n  seed ${seed}, cycle ${cycle} (cut #${stats.cuts}); last operations:\n    ${oplog.slice(-40).join('\n    ')}`;
    throw new CrashViolation(msg, { seed, cycle, config: cfg.name });
  };

  let v = await Volume.create(fault, {
    logicalSize: cfg.logicalSize, codec: cfg.codec, dedupe: cfg.dedupe, writePolicy: cfg.writePolicy, blockBytes: BLOCK,
    journalBlocks: cfg.journalBlocks, ...openOpts(), ...(cfg.growPhysicalTo === undefined ? {} : { physicalSize: cfg.physicalSize }),
  });
  if (cfg.flushUs) fault.setLatency({ flushUs: cfg.flushUs });

  try {
    for (cycle = 0; cycle < opts.cuts; cycle++) {
      try {
        await cycleOnce();
      } catch (err) {
        if (err instanceof CrashViolation) throw err;
        fail(`unexpected error: ${err.code ?? ''} ${err.stack ?? err.message}`);
      }
      opts.progress?.(stats.cuts, stats);
    }
  } finally {
    await v.close().catch(() => v.abandon());
  }
  return stats;

  /** One cycle: operations, the cut, recovery, the check. */
  async function cycleOnce() {
    note(`--- cycle ${cycle}`);
    const inflight = new Map(); // op id → settled promise
    const track = (op, p) => {
      const settled = p.then(() => model.settle(op, true), (err) => {
        model.settle(op, false);
        op.error = err;
      });
      inflight.set(op.id, settled);
      void settled.then(() => inflight.delete(op.id));
      return settled;
    };
    // Operations overlapping one in flight wait for it (the model orders them by issue).
    const waitFor = async (offset, length) => {
      while (model.busy(offset, length)) await noHang(Promise.race([...inflight.values()]), 'an operation before the cut');
    };
    const flushes = new Set();
    const startFlush = (kind = 'flush') => {
      const snap = model.flushBegin();
      const id = model.nextOp++;
      note(`#${id} ${kind}`);
      stats.flushes++;
      const p = (kind === 'close' ? v.close() : v.flush()).then(() => {
        model.flushDone(snap);
        note(`#${id} ${kind} done${model.frozen ? ' (after the cut: ignored)' : ''}`);
        return true;
      }, (err) => {
        note(`#${id} ${kind} failed: ${err.code ?? err.message}`);
        return false;
      });
      flushes.add(p);
      void p.then(() => flushes.delete(p));
      return p;
    };
    let closed = false;

    // An application whose writes were lost to the cut may write the same data again,
    // elsewhere or in place (identical bytes landing on the block the lost write had).
    let quickCut = false;
    if (opts.retryLost && retry.length > 0 && rand() < 0.4) {
      quickCut = rand() < 0.5;
      for (const [from, d] of retry) {
        const b = rand() < 0.75 ? (rand() * blocks) | 0 : from;
        if (model.busy(b * BLOCK, BLOCK)) continue;
        const op = model.begin('write', b * BLOCK, BLOCK, d, `retry of block ${from} (${tag(d)})`);
        note(`#${op.id} write ${b * BLOCK}+${BLOCK} (block ${b}) again: the value block ${from} lost (${tag(d)})`);
        await noHang(track(op, v.write(b * BLOCK, d)), 'a retried write');
        stats.ops++;
        stats.retries++;
      }
      if (rand() < 0.5) await sleep(rand() * 3);
    }
    retry = [];

    const burst = rand() < (cfg.burst ?? 0);
    const nOps = burst ? 120 + ((rand() * 200) | 0) : (rand() * ((cfg.maxOps ?? 16) + 1)) | 0;
    // A resize in flight: the size it grows to (operations use the old size until it resolves).
    let growing = 0;
    let growingPhysical = 0;
    let resizeFailure = null;
    const cutAt = quickCut ? 0 : cfg.cut === 'random' || cfg.cut === undefined ? (rand() * (nOps + 1)) | 0 : nOps;
    for (let i = 0; i < cutAt; i++) {
      const x = rand();
      let awaitIt = burst ? rand() < 0.2 : rand() < 0.6;
      let p = null;
      if (cfg.growTo !== undefined && growing === 0 && size < cfg.growTo && rand() < 0.06) {
        const target = Math.min(cfg.growTo, size + (1 + ((rand() * 4) | 0)) * (256 << 10));
        const targetPhysical = cfg.growPhysicalTo === undefined ? physical : Math.max(physical, Math.min(cfg.growPhysicalTo, target + (2 << 20)));
        growing = target;
        growingPhysical = targetPhysical;
        const id = model.nextOp++;
        note(`#${id} resize ${size} → ${target}${targetPhysical !== physical ? `, physical ${physical} → ${targetPhysical}` : ''}${awaitIt ? '' : ' [not awaited]'}`);
        stats.resizes++;
        const mine = cycle;
        p = v.resize({ logicalSize: target, physicalSize: targetPhysical }).then(() => {
          if (model.frozen || cycle !== mine) return;
          size = target;
          blocks = size / BLOCK;
          physical = targetPhysical;
          growing = 0;
          growingPhysical = 0;
          note(`#${id} resize done`);
        }, (err) => {
          note(`#${id} resize failed: ${err.code ?? err.message}`);
          if (!model.frozen && cycle === mine) resizeFailure ??= `resize to ${target} before any cut failed: ${err.code ?? ''} ${err.message}`;
        });
      } else if (x < 0.62 || burst) {
        // write: aligned (1–8 blocks) or unaligned (1 byte to ~3 blocks)
        let offset;
        let length;
        if (burst || rand() < 0.55) {
          const n = burst ? 1 + ((rand() * 2) | 0) : 1 + ((rand() * 8) | 0);
          offset = ((rand() * (blocks - n + 1)) | 0) * BLOCK;
          length = n * BLOCK;
        } else {
          length = 1 + ((rand() < 0.3 ? rand() * 600 : rand() * 3 * BLOCK) | 0);
          offset = (rand() * (size - length + 1)) | 0;
        }
        await waitFor(offset, length);
        const [bytes, kinds] = data.bytes(length, offset % BLOCK);
        const op = model.begin('write', offset, length, bytes, kinds);
        note(`#${op.id} write ${offset}+${length} (blocks ${Math.floor(offset / BLOCK)}..${Math.floor((offset + length - 1) / BLOCK)}) ${kinds}${awaitIt ? '' : ' [not awaited]'}`);
        p = track(op, v.write(offset, bytes));
        stats.ops++;
      } else if (x < 0.74) {
        let offset;
        let length;
        if (rand() < 0.6) {
          const n = 1 + ((rand() * (rand() < 0.2 ? 64 : 8)) | 0);
          offset = ((rand() * (blocks - n + 1)) | 0) * BLOCK;
          length = n * BLOCK;
        } else {
          length = 1 + ((rand() * 5 * BLOCK) | 0);
          offset = (rand() * (size - length + 1)) | 0;
        }
        await waitFor(offset, length);
        // edgeDiscardsInFlight: false keeps unaligned discards that also unmap whole blocks
        // from being in flight at a cut (a Volume.discard that failed there used to leave
        // its edge writes' rejections unhandled, which ends the process).
        const end = offset + length;
        const edgesAndWhole = Math.ceil(offset / BLOCK) < Math.floor(end / BLOCK) && (offset % BLOCK !== 0 || end % BLOCK !== 0);
        const mustAwait = edgesAndWhole && opts.edgeDiscardsInFlight === false;
        awaitIt ||= mustAwait;
        const op = model.begin('discard', offset, length, null, '');
        note(`#${op.id} discard ${offset}+${length} (blocks ${Math.floor(offset / BLOCK)}..${Math.floor((offset + length - 1) / BLOCK)})${awaitIt ? '' : ' [not awaited]'}`);
        p = track(op, v.discard(offset, length));
        stats.ops++;
      } else if (x < 0.86) {
        p = startFlush();
      } else {
        // read back what must be there now (blocks with nothing in flight)
        const n = 1 + ((rand() * 6) | 0);
        const first = (rand() * (blocks - n + 1)) | 0;
        const want = [];
        for (let b = first; b < first + n; b++) want.push(model.latest(b));
        if (want.some((w) => w === undefined)) continue;
        const within = (rand() * BLOCK) | 0;
        const offset = first * BLOCK + within;
        const length = Math.max(1, n * BLOCK - within - ((rand() * BLOCK) | 0));
        let got;
        try {
          got = await v.read(offset, length);
        } catch (err) {
          fail(`read ${offset}+${length} before any cut failed: ${err.message}`);
        }
        stats.reads++;
        const exp = new Uint8Array(n * BLOCK);
        want.forEach((w, k) => exp.set(w, k * BLOCK));
        const e = exp.subarray(within, within + length);
        if (!sameBytes(e, got)) {
          const at = firstDiff(e, got);
          fail(`read ${offset}+${length} (no cut involved) differs at byte ${offset + at}: got ${got[at]}, want ${e[at]}`);
        }
        continue;
      }
      if (awaitIt) await noHang(p, 'an operation before the cut');
    }

    if (resizeFailure !== null) fail(resizeFailure);
    // The cut, at a random moment.
    if (cfg.cut === 'close') {
      startFlush('close');
      closed = true;
      stats.closeCuts++;
    } else if (cfg.cut === 'reopen') {
      // A clean close, a clean open, and writes at once: they wait for the reference
      // counts loading behind the open, and the cut may come before they are in.
      if (await startFlush('close')) {
        v = await noHang(Volume.open(fault, openOpts()), 'Volume.open after a clean close');
        if (v.openedClean) stats.cleanOpens++;
        else fail('Volume.open after a clean close (no cut) did not find the volume closed cleanly');
        for (let i = (rand() * 6) | 0; i > 0; i--) {
          const n = 1 + ((rand() * 4) | 0);
          const offset = ((rand() * (blocks - n + 1)) | 0) * BLOCK;
          if (model.busy(offset, n * BLOCK)) continue;
          const [bytes, kinds] = data.bytes(n * BLOCK, 0);
          const op = model.begin('write', offset, n * BLOCK, bytes, kinds);
          note(`#${op.id} write ${offset}+${n * BLOCK} right after the clean open ${kinds} [not awaited]`);
          track(op, v.write(offset, bytes));
          stats.ops++;
        }
      }
    }
    const cutStyle = rand();
    let waited = '';
    if (cfg.cut === 'checkpoint') {
      // Wait until a checkpoint is writing block map pages, then cut at once or a little later.
      if (rand() < 0.5) startFlush();
      const before = v.stats().blockMapPagesWritten;
      const until = performance.now() + 300;
      let spins = 0;
      while (v.stats().blockMapPagesWritten === before && performance.now() < until) {
        spins++;
        await (spins < 50 ? Promise.resolve() : tick());
      }
      if (v.stats().blockMapPagesWritten !== before) stats.checkpointCuts++;
      const k = (rand() * 4) | 0;
      for (let i = 0; i < k; i++) await tick();
      waited = `in checkpoint after ${spins} spins + ${k} ticks`;
    } else if (cutStyle < 0.2) {
      waited = 'at once';
    } else if (cutStyle < 0.35) {
      const k = 1 + ((rand() * 40) | 0);
      for (let i = 0; i < k; i++) await Promise.resolve();
      waited = `after ${k} microtasks`;
    } else if (cutStyle < 0.55) {
      const k = 1 + ((rand() * 8) | 0);
      for (let i = 0; i < k; i++) await tick();
      waited = `after ${k} ticks`;
    } else if (cutStyle < 0.7) {
      const ms = rand() * 4;
      await sleep(ms);
      waited = `after ${ms.toFixed(2)} ms`;
    } else if (cutStyle < 0.85) {
      // During a flush: its journal write may be on the device, its device flush not yet.
      startFlush();
      const ms = rand() * (0.2 + (cfg.flushUs ?? 0) / 1000);
      await sleep(ms);
      waited = `${ms.toFixed(2)} ms into a flush`;
    } else {
      await noHang(Promise.all([...inflight.values(), ...flushes]), 'operations before the cut');
      const ms = rand() * 3;
      await sleep(ms);
      waited = `with everything settled, after ${ms.toFixed(2)} ms`;
    }
    const mode = MODES(rand);
    const cutSeed = (rand() * 2 ** 31) | 0;
    stats.inflightAtCut += inflight.size;
    const pending = inflight.size + flushes.size;
    if (closed && flushes.size === 0) stats.closedBeforeCut++;
    model.freeze();
    const rep = fault.powerCut({ mode, seed: cutSeed });
    stats.cuts++;
    stats.modes[mode]++;
    stats.unflushedAtCut += rep.unflushedWrites;
    if (rep.unflushedWrites > 0) stats.cutsWithUnflushed++;
    if (flushes.size > 0) stats.cutsDuringFlush++;
    if (inflight.size > 0) stats.cutsWithOpsInFlight++;
    stats.sectorsReverted += rep.sectorsReverted;
    note(`CUT ${mode} seed ${cutSeed} ${waited}: ${pending} operations in flight, ${rep.unflushedWrites} unflushed writes, ${rep.sectorsReverted}/${rep.sectors} sectors reverted`);
    // Whatever was in flight fails or finishes; nothing settling now counts.
    await noHang(v.abandon(), 'abandon()');
    fault.powerOn();
    opts.afterCut?.(fault, cfg);

    try {
      v = await noHang(Volume.open(fault, openOpts()), 'Volume.open');
    } catch (err) {
      fail(`Volume.open after the cut failed: ${err.code ?? ''} ${err.message}`);
    }
    // A close that finished before the cut left the mark a clean open takes (no journal read).
    if (v.openedClean) stats.cleanOpens++;
    // The size: what it was, or what a resize in flight at the cut grew it to.
    if (v.logicalSize !== size && !(growing !== 0 && v.logicalSize === growing)) {
      fail(`the logical size after recovery is ${v.logicalSize}; it was ${size}${growing !== 0 ? ` with a resize to ${growing} in flight` : ''}`);
    }
    size = v.logicalSize;
    blocks = size / BLOCK;
    if (v.physicalSize !== physical && !(growingPhysical !== 0 && v.physicalSize === growingPhysical)) {
      fail(`the physical size after recovery is ${v.physicalSize}; it was ${physical}${growingPhysical !== 0 ? ` with a resize to ${growingPhysical} in flight` : ''}`);
    }
    physical = v.physicalSize;
    let observed;
    try {
      // Past the size, the model holds nothing written: zeroes.
      observed = new Uint8Array(model.blocks * BLOCK);
      observed.set(await noHang(v.read(0, size), 'the read after recovery'));
    } catch (err) {
      fail(`reading the volume after recovery failed: ${err.code ?? ''} ${err.message}`);
    }
    const bad = model.verify(observed);
    if (bad !== null) fail(bad);
    retry = model.lost(observed).slice(0, 32);
    model.reset(observed);
  }
}
