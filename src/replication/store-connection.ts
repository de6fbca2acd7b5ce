/**
 * The store's side of one data connection: the handshake (the store grants
 * at most its queue depth), then frames in, handled concurrently up to that
 * depth, and replies out. Bounded: a peer that sends more than the granted
 * depth is cut off; one that stops reading stops being read from once its
 * replies back up (so its requests stop arriving); a malformed or hostile
 * frame closes the connection with a logged reason — never the store.
 */
import type * as net from 'node:net';
import {
  FrameReader, HANDSHAKE_BYTES, PROTOCOL_VERSION, ST_INVALID_FIELD, checkRequest, decodeHandshake, encodeHandshake, statusOf,
  encodeReplyFrame, type Frame, type Head,
} from './wire.js';
import { WriteBatch } from './write-batch.js';

/** What a handled request answers. */
export interface Answer {
  status: number;
  epoch: number;
  data?: Uint8Array | null;
  /** The data is compressed (FLAG_COMPRESSED in the reply). */
  compressed?: boolean;
}

export interface ConnectionHost {
  readonly queueDepth: number;
  handle(head: Head, data: Uint8Array | null, role: number): Promise<Answer>;
  log(line: string): void;
}

/** Replies waiting to be sent past this many bytes pause reading. */
const OUTPUT_HIGH_WATER = 8 << 20;
const HANDSHAKE_TIMEOUT_MS = 5000;

export class StoreConnection {
  private readonly reader = new FrameReader({ kind: 'request' });
  private role = -1;
  private depth = 0;
  private inflight = 0;
  private handshake = Buffer.alloc(0);
  private closed = false;
  /** Requests parsed while the replies were backed up: run as the output drains. */
  private readonly held: Frame[] = [];
  private readonly timer: ReturnType<typeof setTimeout>;
  private readonly batch: WriteBatch;

  constructor(private readonly socket: net.Socket, private readonly host: ConnectionHost, private readonly label: string, private readonly onEnd: () => void) {
    socket.setNoDelay(true);
    this.batch = new WriteBatch(socket);
    socket.on('data', (chunk: Buffer) => this.received(chunk));
    socket.on('drain', () => this.resumeIfRoom());
    socket.on('error', () => this.close(null));
    socket.on('close', () => this.close(null));
    this.timer = setTimeout(() => {
      if (this.role < 0) this.close('no handshake in time');
    }, HANDSHAKE_TIMEOUT_MS);
    this.timer.unref?.();
  }

  /** Ends the connection; `reason` (if any) is logged. */
  close(reason: string | null): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    if (reason !== null) this.host.log(`${this.label}: closing the connection: ${reason}`);
    this.socket.destroy();
    this.onEnd();
  }

  private received(chunk: Buffer): void {
    if (this.closed) return;
    if (this.role < 0) {
      this.handshake = Buffer.concat([this.handshake, chunk]);
      if (this.handshake.length < HANDSHAKE_BYTES) return;
      const hs = decodeHandshake(this.handshake.subarray(0, HANDSHAKE_BYTES));
      const rest = this.handshake.subarray(HANDSHAKE_BYTES);
      this.handshake = Buffer.alloc(0);
      if (typeof hs === 'string') {
        this.close(`bad handshake: ${hs}`);
        return;
      }
      if (hs.role > 2) {
        this.close(`bad handshake: role ${hs.role}`);
        return;
      }
      this.role = hs.role;
      this.depth = Math.max(1, Math.min(hs.queueDepth, this.host.queueDepth));
      clearTimeout(this.timer);
      this.socket.write(encodeHandshake({ ...hs, version: PROTOCOL_VERSION, queueDepth: this.depth, status: 0 }));
      if (rest.length === 0) return;
      chunk = rest;
    }
    this.reader.push(chunk);
    for (;;) {
      const f: Frame | string | null = this.reader.next();
      if (f === null) return;
      if (typeof f === 'string') {
        this.close(`malformed frame: ${f}`);
        return;
      }
      const why = checkRequest(f.head);
      if (why !== null) {
        // A well-framed request the store cannot take: answered, and the connection goes on.
        this.reply(f.head, { status: ST_INVALID_FIELD, epoch: 0 });
        this.host.log(`${this.label}: refused a request: ${why}`);
        continue;
      }
      if (++this.inflight > this.depth) {
        this.close(`more than the granted ${this.depth} requests in flight`);
        return;
      }
      // Replies backed up (the peer is not reading): the request waits, so no more replies are made.
      if (this.socket.writableLength > OUTPUT_HIGH_WATER || this.held.length > 0) {
        this.held.push(f);
        this.socket.pause();
        continue;
      }
      this.run(f);
    }
  }

  private run(f: Frame): void {
    this.host.handle(f.head, f.data, this.role).then(
      (a) => this.reply(f.head, a),
      (err: Error) => {
        this.host.log(`${this.label}: request failed: ${err.message}`);
        this.reply(f.head, { status: statusOf(err), epoch: 0 });
      },
    ).finally(() => {
      this.inflight--;
    });
  }

  private reply(head: Head, a: Answer): void {
    if (this.closed) return;
    const data = a.data ?? undefined;
    this.batch.write(encodeReplyFrame({
      status: a.status, epoch: a.epoch, commandId: head.commandId, commandSeq: head.commandSeq, dataBytes: 0, flags: a.compressed === true ? 1 : 0, dataCrc: 0,
    }, data));
    if (this.socket.writableLength > OUTPUT_HIGH_WATER && !this.socket.isPaused()) this.socket.pause();
  }

  private resumeIfRoom(): void {
    if (this.closed) return;
    while (this.held.length > 0 && this.socket.writableLength <= OUTPUT_HIGH_WATER) this.run(this.held.shift()!);
    if (this.held.length === 0 && this.socket.isPaused() && this.socket.writableLength <= OUTPUT_HIGH_WATER) this.socket.resume();
  }
}
