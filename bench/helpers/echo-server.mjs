// The transport limit for bench/replication.mjs: a 64-byte head + 4 KiB
// payload sent over one loopback TCP connection to an echo server in a child
// process, answered by a 32-byte reply, requests pipelined.
//
// Run directly (`node bench/helpers/echo-server.mjs`), this file is the echo
// server: it prints its port on stdout and serves until its stdin closes.
// Imported, it offers startEchoServer(), which spawns it and connects.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const BLOCK_BYTES = 4096;
const HEAD_BYTES = 64; // wire.ts: HEAD_BYTES
const REPLY_BYTES = 32; // wire.ts: REPLY_BYTES
const HEAD_DATA_BYTES_AT = 48; // wire.ts: head @48 dataBytes u32
const START_MS = 10_000;
const SELF = fileURLToPath(import.meta.url);

if (process.argv[1] && fs.realpathSync(process.argv[1]) === SELF) serve();

/**
 * Reads frames (a 64-byte head, then the head's dataBytes) and answers each
 * with a 32-byte reply; replies to the frames completed by one chunk go out
 * in one write. Exits when its stdin closes (the bench ended, however).
 */
function serve() {
  const REPLIES_PER_WRITE_MAX = 1024;
  const replies = Buffer.alloc(REPLIES_PER_WRITE_MAX * REPLY_BYTES); // never changed: safe to queue slices of it
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    const head = Buffer.alloc(HEAD_BYTES);
    let headGot = 0;
    let dataLeft = 0;
    s.on('data', (chunk) => {
      let done = 0;
      for (let i = 0; i < chunk.length;) {
        if (dataLeft > 0) {
          const n = Math.min(dataLeft, chunk.length - i);
          dataLeft -= n;
          i += n;
          if (dataLeft === 0) done++;
          continue;
        }
        const n = Math.min(HEAD_BYTES - headGot, chunk.length - i);
        chunk.copy(head, headGot, i, i + n);
        headGot += n;
        i += n;
        if (headGot === HEAD_BYTES) {
          headGot = 0;
          dataLeft = head.readUInt32LE(HEAD_DATA_BYTES_AT);
          if (dataLeft === 0) done++;
        }
      }
      for (; done > 0; done -= REPLIES_PER_WRITE_MAX) s.write(replies.subarray(0, Math.min(done, REPLIES_PER_WRITE_MAX) * REPLY_BYTES));
    });
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

/**
 * Starts the echo server as a child process and connects to it.
 * `spawnChild(label, cmd, args)` spawns and tracks a child (cluster-procs.mjs:
 * spawnTracked); `onError(message)` hears connection errors. Resolves
 * { rec, socket, write }: `write()` sends one frame (64-byte head + 4 KiB) and
 * resolves when its reply arrives.
 */
export async function startEchoServer(spawnChild, onError) {
  const rec = spawnChild('echo server', process.execPath, [SELF]);
  const deadline = Date.now() + START_MS;
  while (!/^\d+\n/.test(rec.log)) {
    if (rec.exit || Date.now() > deadline) throw new Error(`echo server did not start: ${rec.log}`);
    await sleep(10);
  }
  const port = Number(rec.log.split('\n')[0]);
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  // One constant frame (random payload): safe to queue the same buffer many times.
  const frame = Buffer.alloc(HEAD_BYTES + BLOCK_BYTES);
  crypto.randomFillSync(frame, HEAD_BYTES);
  frame.writeUInt32LE(BLOCK_BYTES, HEAD_DATA_BYTES_AT);
  const waiting = []; // resolvers in send order; the server answers in order
  let got = 0;
  socket.on('data', (chunk) => {
    got += chunk.length;
    for (; got >= REPLY_BYTES; got -= REPLY_BYTES) waiting.shift()();
  });
  socket.on('error', (err) => onError(`echo connection: ${err.message}`));
  return {
    rec, socket,
    write: () => new Promise((resolve) => { waiting.push(resolve); socket.write(frame); }),
  };
}
