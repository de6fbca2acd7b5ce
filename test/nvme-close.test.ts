/**
 * Closing a controller whose device is gone, or that was closed with work
 * still queued: every command completes exactly once, close() resolves, and a
 * poll loop neither throws nor starves the event loop.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fp from '../dist/index.js';

const { nvme } = fp;
const BS = 4096;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const opened = new Set<fp.nvme.Controller>();
afterEach(async () => {
  const cs = [...opened];
  opened.clear();
  await Promise.all(cs.map((c) => c.close()));
});

describe('a removed device, then close()', () => {
  it('completions the device posted but nobody reaped are delivered, not failed twice (a 4-entry qpair reaps one per pass)', async () => {
    // Before the fix: close() reaped one entry (the pass cap of a 4-entry qpair),
    // then failed the other two commands as unanswered while their entries still
    // waited in the CQ, and the next pass threw "completion for command ID …,
    // which is not outstanding".
    for (let round = 0; round < 5; round++) {
      const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 64 * BS, blockSize: BS }));
      const c = await nvme.Controller.open(fault, { runtime: new fp.Runtime(), ioWorkers: 1 });
      opened.add(c);
      const qp = c.allocIoQpair({ ioQueueSize: 4 });
      expect(qp.maxCompletionsCap).toBe(1);
      const d = c.pool.alloc(BS);
      const statuses: fp.nvme.Status[][] = [[], [], []];
      for (let i = 0; i < 3; i++) qp.write(c.ns(1), d, i, 1, (st) => statuses[i].push(st));
      qp.processCompletions(0); // publishes the three commands
      // Wait until the device has answered all three (nothing reaps meanwhile).
      const until = Date.now() + 10_000;
      while (Date.now() < until && fault.unflushedWrites < 3) await sleep(1);
      await sleep(20);
      fault.remove();
      await c.close();
      opened.delete(c);
      // Each callback ran exactly once; the device answered all three before it went away.
      expect(statuses.map((s) => s.length)).toEqual([1, 1, 1]);
      expect(statuses.map((s) => s[0].isError)).toEqual([false, false, false]);
    }
  });
});

describe('closing or failed controllers and the event loop', () => {
  it('a poll loop with requests still queued does not starve close(), device present or removed (it waits, it does not spin on microtasks)', async () => {
    // Run in a child with a hard timeout: a microtask spin would starve this process's timers too.
    const { execFileSync } = await import('node:child_process');
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const script = `
      import { nvme, Runtime } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
      const fault = new nvme.FaultBackend(new nvme.MemoryBackend({ size: 1 << 20 }));
      fault.setLatency({ writeUs: 20_000 });
      const c = await nvme.Controller.open(fault, { runtime: new Runtime(), ioWorkers: 1 });
      const qp = c.allocIoQpair({ ioQueueSize: 4 }); // 3 trackers: 5 of the 8 writes wait in the software queue
      const d = c.pool.alloc(4096);
      let completed = 0;
      for (let i = 0; i < 8; i++) qp.write(c.ns(1), d, i, 1, () => completed++);
      const poll = (async () => {
        for (;;) {
          let n;
          try { n = qp.processCompletions(0); } catch { return; } // freed by close()
          if (qp.outstandingCount + qp.queuedCount === 0) return;
          if (n === 0) await qp.waitForCompletions(100);
        }
      })();
      if (process.argv[2] === 'remove') setTimeout(() => fault.remove(), 5);
      await new Promise((r) => setTimeout(r, 10));
      await Promise.all([poll, c.close()]);
      console.log('closed ' + completed);
    `;
    const dir = mkdtempSync(join(tmpdir(), 'flashpack-failed-'));
    try {
      writeFileSync(join(dir, 'failed.mjs'), script);
      // close() with requests in the software queue, on a live device and on a removed one.
      for (const how of ['close', 'remove']) {
        const out = execFileSync(process.execPath, [join(dir, 'failed.mjs'), how], { encoding: 'utf8', timeout: 30_000 });
        expect(out.trim()).toBe('closed 8');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
