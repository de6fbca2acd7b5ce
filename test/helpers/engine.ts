/** Engine test helpers. */
import type * as fp from '../../dist/index.js';

/** Submits prepared descriptors through the batch API until every one has completed. */
export async function runAll(engine: fp.Engine, ds: number[]): Promise<void> {
  let sent = 0;
  let got = 0;
  while (got < ds.length) {
    sent += engine.submit(ds.slice(sent));
    got += engine.poll().length;
    if (got < ds.length) await engine.waitForCompletions();
  }
}
