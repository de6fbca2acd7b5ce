/**
 * Helpers of the queue-pair tests (nvme-qpair*.test.ts): controllers opened on
 * a fresh runtime and closed after each test, polling with a deadline instead
 * of hanging, waiting on a shared word the device touches, error codes, data.
 *
 * A few tests read words of the shared queue-pair region to wait for the device
 * deterministically instead of sleeping; the offsets are layout.ts's
 * QP_CQ_TAIL (256) and QP_TRACKERS (512) and the tracker state TRACKER_ACTIVE (2).
 */
import { afterEach, expect } from 'vitest';
import { nvme, FlashpackError, Runtime } from '../../dist/index.js';
import { prng, randomBytes } from './data.js';

export type Controller = nvme.Controller;
export type IoQpair = nvme.IoQpair;
export type Status = nvme.Status;

export const QP_CQ_TAIL = 256;
export const QP_TRACKERS = 512;
export const TRACKER_ACTIVE = 2;
export const KiB = 1024;
export const MiB = 1024 * 1024;

const opened: Controller[] = [];

export async function open(backend: nvme.Backend, opts: nvme.ControllerOptions = {}): Promise<Controller> {
  const c = await nvme.Controller.open(backend, { runtime: new Runtime(), ioWorkers: 1, ...opts });
  opened.push(c);
  return c;
}

/** Call at the top of a test file: every controller is closed after each test (close is idempotent), so a failed test never leaves device workers behind. */
export function closeControllersAfterEach(): void {
  afterEach(async () => {
    while (opened.length > 0) await opened.pop()!.close();
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `qps` until `cond` holds; fails (instead of hanging) after `ms`. */
export async function pollUntil(qps: IoQpair | IoQpair[], cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const list = Array.isArray(qps) ? qps : [qps];
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    let reaped = 0;
    for (const qp of list) reaped += qp.processCompletions(0);
    if (reaped > 0 || cond()) continue;
    if (list.some((qp) => qp.outstandingCount > 0)) await list.find((qp) => qp.outstandingCount > 0)!.waitForCompletions(20);
    else await sleep(1);
  }
}

/** Waits (without reaping) until the device has touched a shared word as `cond` wants. */
export async function waitForWord(c: Controller, byteAt: number, cond: (v: number) => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond(Atomics.load(new Int32Array(c.runtime.memory.buffer), byteAt >> 2))) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(1);
  }
}

export const trackerWord = (qp: IoQpair, cid: number): number => qp.base + QP_TRACKERS + cid * 4;

export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FlashpackError);
    return (err as FlashpackError).code;
  }
  return 'no error';
}

export async function rejectionCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FlashpackError);
    return (err as FlashpackError).code;
  }
  return 'no error';
}

/** A block whose every byte says which block (and which write) it is. */
export function blockPattern(n: number, blockSize: number, seed: number): Uint8Array {
  return randomBytes(n * blockSize, prng(seed));
}

export function fillDesc(c: Controller, desc: number, data: Uint8Array): void {
  const view = c.pool.bytes(desc, true);
  view.fill(0);
  view.set(data);
}

export const isZero = (b: Uint8Array): boolean => b.every((x) => x === 0);

/** Runs one command to completion; returns the status its callback got (and checks it fired exactly once). */
export async function run(qp: IoQpair, submit: (cb: (s: Status, arg: unknown) => void) => void): Promise<Status> {
  const got: Status[] = [];
  submit((s) => got.push(s));
  await pollUntil(qp, () => got.length > 0, 'one completion');
  for (let i = 0; i < 3; i++) qp.processCompletions(0);
  expect(got.length).toBe(1);
  return got[0];
}

// ---- 1. splitting ----
