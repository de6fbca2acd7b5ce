/**
 * Jobs registered by module (engine/registered-jobs.ts): the workers run them
 * for their op, keep running them after a crash, and Engine.start refuses a
 * module that would break that. Imports the built package: workers load dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fp from '../dist/index.js';
import { prng, randomBytes } from './helpers/data.js';
import { runAll } from './helpers/engine.js';
import { OP_TALLY, STATUS_ALL_ZERO } from './helpers/job-modules/tally-job.mjs';

const { Engine, jobs } = fp;
const moduleUrl = (name: string): string => new URL(`./helpers/job-modules/${name}`, import.meta.url).href;
const TALLY = moduleUrl('tally-job.mjs');

describe('engine: registered jobs', () => {
  let engine: InstanceType<typeof Engine>;
  beforeAll(async () => {
    engine = await Engine.start({ workers: 2, runtime: new fp.Runtime(), jobs: [TALLY], classes: [{ size: 4096, count: 256 }] });
  });
  afterAll(async () => {
    await engine.close();
  });

  /** Runs the tally job over `inputs`, each on its own descriptor; the statuses and checksums. */
  async function tally(inputs: Uint8Array[], op = OP_TALLY): Promise<{ status: number; sum: number }[]> {
    const ds = inputs.map((b) => {
      const d = engine.pool.alloc(4096);
      engine.pool.write(d, b);
      engine.prepare(d, op);
      return d;
    });
    await runAll(engine, ds);
    const out = ds.map((d) => ({ status: engine.statusOf(d), sum: engine.checksumOf(d) }));
    for (const d of ds) engine.pool.free(d);
    return out;
  }

  it('runs a registered job for its op, with its own status, and STATUS_BAD_OP for an op nobody registered', async () => {
    const rand = prng(11);
    const inputs = [new Uint8Array(4096), ...Array.from({ length: 63 }, (_, i) => randomBytes(1 + ((i * 61) % 4096), rand))];
    const got = await tally(inputs);
    inputs.forEach((b, i) => {
      const sum = b.reduce((a, x) => a + x, 0);
      expect(got[i], `input ${i}`).toEqual({ status: sum === 0 ? STATUS_ALL_ZERO : jobs.STATUS_OK, sum });
    });
    expect((await tally([inputs[1]], OP_TALLY + 1))[0].status).toBe(jobs.STATUS_BAD_OP);
  });

  it('a worker that crashed is replaced with the registered jobs loaded again', async () => {
    const crashes = engine.crashes;
    const d = engine.pool.alloc(4096);
    engine.prepare(d, jobs.OP_TEST_CRASH);
    engine.submit([d]);
    while (engine.crashes === crashes) await new Promise((r) => setTimeout(r, 10));
    engine.pool.free(d);
    const b = randomBytes(4096, prng(12));
    // Enough jobs that both workers, the replacement included, run some.
    const got = await tally(Array.from({ length: 64 }, () => b));
    const sum = b.reduce((a, x) => a + x, 0);
    expect(got.every((g) => g.status === jobs.STATUS_OK && g.sum === sum)).toBe(true);
  });

  it('Engine.start refuses a module that does not load, exports no jobs, claims a built-in op, or an op twice', async () => {
    const start = (urls: unknown) => Engine.start({ workers: 1, runtime: new fp.Runtime(), jobs: urls as string[] });
    await expect(start([moduleUrl('throws-at-load.mjs')])).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/does not load \(this module does not load\)/) });
    await expect(start([moduleUrl('no-jobs.mjs')])).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/exports no jobs array/) });
    await expect(start([moduleUrl('builtin-op-job.mjs')])).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/too-low.*op.*from 64 to 254.*9/) });
    await expect(start([TALLY, TALLY])).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/op 100 registered twice \(tally and tally\)/) });
    await expect(start(TALLY)).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/options\.jobs.*array of module URLs/) });
    await expect(start([42])).rejects.toMatchObject({ code: 'EINVAL' });
  });
});
