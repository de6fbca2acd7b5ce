// Runs prepared descriptors through an engine's batch API to completion:
// submits what the rings take, polls, and waits for completions in between.
export async function runBatch(engine, list) {
  let sent = 0;
  let done = 0;
  while (done < list.length) {
    if (sent < list.length) sent += engine.submit(sent === 0 ? list : list.slice(sent));
    done += engine.poll().length;
    if (done < list.length) await engine.waitForCompletions();
  }
}
