/**
 * One connection to a store's data protocol: the client's to a shard's
 * primary, a primary's to its secondaries (REPLICATE_WRITE), a recovering
 * replica's to its primary (RECOVERY_READ), the operator's for `cluster
 * verify`. Requests carry a command id (a slot of the negotiated queue depth;
 * callers beyond it wait their turn) and are matched to replies by it.
 *
 * A request unanswered after ioTimeoutMs, a malformed reply, or a HEARTBEAT
 * (sent when the connection has been quiet for heartbeatMs) left unanswered
 * closes the connection: every request on it fails with ENXIO, and onClose
 * hears why once. Nothing is resent here; the caller decides (PureFlash
 * re-posts on another path, a primary marks the replica ERROR).
 */
import * as net from 'node:net';
import { FlashpackError } from '../errors.js';
import {
  FrameReader, HANDSHAKE_BYTES, OP_HEARTBEAT, PROTOCOL_VERSION, REPLY_BYTES, SNAP_SEQ_HEAD,
  decodeHandshake, encodeFrame, encodeHandshake, type Head, type Reply,
} from './wire.js';
import { WriteBatch } from './write-batch.js';

export type Role = 'client' | 'peer' | 'operator';
const ROLE_CODE: Record<Role, number> = { client: 0, peer: 1, operator: 2 };

export interface DataClientOptions {
  /** host:port of the store ([::1]:port for IPv6). */
  address: string;
  role: Role;
  /** Requests in flight at once (the store may grant fewer). Default 128. */
  queueDepth?: number;
  /** A request unanswered this long closes the connection. Default 10 s. */
  ioTimeoutMs?: number;
  /** A quiet connection sends a HEARTBEAT this often. Default 1 s; 0 never. */
  heartbeatMs?: number;
  /** Connecting and the handshake must finish within this. Default 3 s. */
  connectTimeoutMs?: number;
  /** Called once when the connection ends, with why. */
  onClose?: (reason: string) => void;
}

export interface Response {
  reply: Reply;
  data: Uint8Array | null;
}

/** What a request sets; the rest of the head is filled in. */
export type Request = Pick<Head, 'opcode' | 'shardId' | 'epoch' | 'offset' | 'length'> & Partial<Pick<Head, 'flags' | 'commandSeq'>>;

/** Bytes one caller's requests put on the wire and took off it (heads, replies and data). */
export interface WireTally {
  sent: number;
  received: number;
}

interface Pending {
  resolve(r: Response): void;
  reject(e: FlashpackError): void;
  sent: number;
  tally: WireTally | undefined;
}

/** host:port or [v6]:port; port 0 (any free port) only where `listening`. */
export function parseAddress(address: string, listening = false): { host: string; port: number } {
  const m = typeof address === 'string' ? /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address) : null;
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !(port >= (listening ? 0 : 1) && port <= 65535)) {
    throw new FlashpackError('EINVAL', `address ${JSON.stringify(address)} (${typeof address}) is not host:port (or [v6]:port)`);
  }
  return { host: m[1] ?? m[2], port };
}

export class DataClient {
  readonly address: string;
  readonly depth: number;
  private readonly socket: net.Socket;
  private readonly batch: WriteBatch;
  private readonly reader = new FrameReader({ kind: 'reply' as const });
  private readonly pending = new Map<number, Pending>();
  private readonly freeIds: number[] = [];
  private readonly waiters: (() => void)[] = [];
  private readonly ioTimeoutMs: number;
  private readonly onClose?: (reason: string) => void;
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastSent = Date.now();
  private seq = 0;
  private ended: string | null = null;
  /** Bytes this connection sent and received (heads, replies and data). */
  bytesSent = 0;
  bytesReceived = 0;

  private constructor(socket: net.Socket, o: DataClientOptions, depth: number) {
    this.address = o.address;
    this.socket = socket;
    this.batch = new WriteBatch(socket);
    this.depth = depth;
    this.ioTimeoutMs = o.ioTimeoutMs ?? 10_000;
    this.onClose = o.onClose;
    for (let id = depth - 1; id >= 0; id--) this.freeIds.push(id);
    socket.on('data', (chunk: Buffer) => this.received(chunk));
    socket.on('error', (err) => this.end(`socket error: ${err.message}`));
    socket.on('close', () => this.end('the store closed the connection'));
    const heartbeatMs = o.heartbeatMs ?? 1000;
    const tick = Math.min(heartbeatMs > 0 ? heartbeatMs : this.ioTimeoutMs, this.ioTimeoutMs, 1000);
    this.timer = setInterval(() => this.tick(heartbeatMs), Math.max(50, tick / 2));
    this.timer.unref?.();
  }

  /** Connects and shakes hands. ENXIO when the store cannot be reached or refuses. */
  static async connect(o: DataClientOptions): Promise<DataClient> {
    const { host, port } = parseAddress(o.address);
    const wish = o.queueDepth ?? 128;
    const deadline = o.connectTimeoutMs ?? 3000;
    const socket = net.connect({ host, port });
    socket.setNoDelay(true);
    try {
      const answer = await new Promise<Uint8Array>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no handshake within ${deadline} ms`)), deadline);
        let got = Buffer.alloc(0);
        const onData = (chunk: Buffer): void => {
          got = Buffer.concat([got, chunk]);
          if (got.length < HANDSHAKE_BYTES) return;
          clearTimeout(timer);
          socket.off('data', onData);
          if (got.length > HANDSHAKE_BYTES) socket.unshift(got.subarray(HANDSHAKE_BYTES));
          resolve(got.subarray(0, HANDSHAKE_BYTES));
        };
        socket.on('data', onData);
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        socket.once('close', () => {
          clearTimeout(timer);
          reject(new Error('closed during the handshake'));
        });
        socket.once('connect', () => {
          socket.write(encodeHandshake({ version: PROTOCOL_VERSION, role: ROLE_CODE[o.role], queueDepth: wish, status: 0, ioTimeoutMs: o.ioTimeoutMs ?? 10_000, shardId: 0 }));
        });
      });
      const hs = decodeHandshake(answer);
      if (typeof hs === 'string') throw new Error(`bad handshake answer: ${hs}`);
      if (hs.status !== 0) throw new Error(`the store refused the connection (status 0x${hs.status.toString(16)})`);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      return new DataClient(socket, o, Math.max(1, Math.min(wish, hs.queueDepth)));
    } catch (err) {
      socket.destroy();
      throw new FlashpackError('ENXIO', `store ${o.address}: ${(err as Error).message}`, { cause: err });
    }
  }

  get closed(): boolean {
    return this.ended !== null;
  }

  /** Why the connection ended, or null. */
  get closeReason(): string | null {
    return this.ended;
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** Sends a request (and its data) and resolves to the reply. Rejects ENXIO if the connection ends first. */
  /** Sends one request; `tally`, if given, counts this request's bytes each way. */
  async send(req: Request, data?: Uint8Array, tally?: WireTally): Promise<Response> {
    while (this.ended === null && this.freeIds.length === 0) await new Promise<void>((r) => this.waiters.push(r));
    if (this.ended !== null) throw this.lost();
    const commandId = this.freeIds.pop()!;
    const head: Head = {
      opcode: req.opcode, flags: req.flags ?? 0, commandId, snapSeq: SNAP_SEQ_HEAD, shardId: req.shardId, epoch: req.epoch,
      offset: req.offset, length: req.length, commandSeq: req.commandSeq ?? (this.seq = (this.seq + 1) >>> 0), dataBytes: 0, dataCrc: 0,
    };
    return new Promise<Response>((resolve, reject) => {
      this.pending.set(commandId, { resolve, reject, sent: Date.now(), tally });
      const parts = encodeFrame(head, data);
      for (const part of parts) {
        this.bytesSent += part.length;
        if (tally !== undefined) tally.sent += part.length;
      }
      this.batch.write(parts);
      this.lastSent = Date.now();
    });
  }

  close(): void {
    this.end('closed by this side');
  }

  private lost(): FlashpackError {
    return new FlashpackError('ENXIO', `store ${this.address}: connection lost (${this.ended})`);
  }

  private received(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    this.reader.push(chunk);
    for (;;) {
      const f = this.reader.next();
      if (f === null) return;
      if (typeof f === 'string') {
        this.end(`malformed reply: ${f}`);
        return;
      }
      const reply = f.head;
      const p = this.pending.get(reply.commandId);
      if (p === undefined) {
        this.end(`a reply to command ${reply.commandId}, which is not in flight`);
        return;
      }
      this.pending.delete(reply.commandId);
      this.freeIds.push(reply.commandId);
      this.waiters.shift()?.();
      if (p.tally !== undefined) p.tally.received += REPLY_BYTES + (f.data?.length ?? 0);
      p.resolve({ reply, data: f.data });
    }
  }

  private tick(heartbeatMs: number): void {
    if (this.ended !== null) return;
    const now = Date.now();
    for (const p of this.pending.values()) {
      if (now - p.sent > this.ioTimeoutMs) {
        this.end(`a request unanswered for ${this.ioTimeoutMs} ms`);
        return;
      }
    }
    if (heartbeatMs > 0 && now - this.lastSent >= heartbeatMs && this.freeIds.length > 0) {
      this.send({ opcode: OP_HEARTBEAT, shardId: 0, epoch: 0, offset: 0, length: 0 }).catch(() => {});
    }
  }

  private end(reason: string): void {
    if (this.ended !== null) return;
    this.ended = reason;
    if (this.timer !== null) clearInterval(this.timer);
    this.socket.destroy();
    const err = this.lost();
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const w of this.waiters.splice(0)) w();
    this.onClose?.(reason);
  }
}
