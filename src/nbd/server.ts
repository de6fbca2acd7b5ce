/**
 * An NBD server exporting volumes (the way nbdkit and SPDK's nbd export block
 * devices), so qemu, qemu-img, nbdcopy, nbdinfo, fio and the kernel's client
 * use a flashpack volume unchanged. Listens on a unix socket (created mode
 * 0600) or TCP; a TCP listener off loopback needs TLS or `insecure`.
 *
 * Every connection to one export shares the export's volume object, so
 * connections are coherent with each other (CAN_MULTI_CONN): a FLUSH on one
 * makes durable every write any connection had completed.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import process from 'node:process';
import { FlashpackError, badArgument, checkInteger, fromOsError } from '../errors.js';
import { Channel } from './channel.js';
import { Connection, closeGently, type ExportTarget, type ServerCounters } from './connection.js';
import { negotiate, ProtocolViolation, type ExportInfo } from './negotiation.js';
import {
  TFLAG_CAN_MULTI_CONN, TFLAG_HAS_FLAGS, TFLAG_READ_ONLY, TFLAG_SEND_CACHE, TFLAG_SEND_FAST_ZERO, TFLAG_SEND_FLUSH, TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM, TFLAG_SEND_WRITE_ZEROES, PREFERRED_BLOCK_BYTES,
} from './protocol.js';
import { TlsConfig, type TlsOptions } from './tls.js';

export interface NbdExport {
  /** The export name clients ask for ('' is fine; with one export, '' reaches it whatever its name). */
  name: string;
  description?: string;
  target: ExportTarget;
  readOnly?: boolean;
}

export interface NbdServerOptions {
  exports: NbdExport[];
  /** A unix socket path (created mode 0600; an existing socket file there is replaced only if nothing listens on it). */
  socket?: string;
  /** TCP: host and port (port 0: any free port, see `address`). */
  host?: string;
  port?: number;
  tls?: TlsOptions;
  /** Allow TCP without TLS on an address other than loopback. */
  insecure?: boolean;
  /** Connections at once; more are closed at accept. Default 64. */
  maxConnections?: number;
  /** Where the server says why it closed a connection (default: nowhere). */
  log?: (line: string) => void;
}

/** How long a client may take to pick an export. */
const NEGOTIATION_TIMEOUT_MS = 30_000;
const CONNECTIONS_MAX_DEFAULT = 64;

interface Served extends ExportInfo {
  target: ExportTarget;
  readOnly: boolean;
}

export interface NbdServerStats extends ServerCounters {
  connections: number;
  connectionsTotal: number;
}

export class NbdServer {
  /** Where it listens: the unix socket path, or host and port. */
  readonly address: { socket: string } | { host: string; port: number };
  private readonly listener: net.Server;
  private readonly exports: Map<string, Served>;
  private readonly tls: TlsConfig | null;
  private readonly log: (line: string) => void;
  private readonly maxConnections: number;
  private readonly sockets = new Set<net.Socket>();
  /** Sockets still negotiating: closed at once by close() (they have nothing in flight). */
  private readonly negotiating = new Set<net.Socket>();
  private readonly connections = new Set<Connection>();
  private readonly counters: ServerCounters = {
    requests: 0, reads: 0, writes: 0, flushes: 0, trims: 0, writeZeroes: 0, caches: 0, blockStatus: 0, bytesRead: 0, bytesWritten: 0,
    errorReplies: 0, protocolViolations: 0,
  };
  private connectionsTotal = 0;
  private closing: Promise<void> | null = null;
  private readonly socketPath: string | null;

  private constructor(listener: net.Server, o: NbdServerOptions, exports: Map<string, Served>, tls: TlsConfig | null) {
    this.listener = listener;
    this.exports = exports;
    this.tls = tls;
    this.log = o.log ?? (() => {});
    this.maxConnections = o.maxConnections ?? CONNECTIONS_MAX_DEFAULT;
    this.socketPath = o.socket ?? null;
    const a = listener.address();
    this.address = o.socket !== undefined ? { socket: o.socket } : { host: (a as net.AddressInfo).address, port: (a as net.AddressInfo).port };
    listener.on('connection', (s) => this.accept(s));
  }

  /**
   * Starts listening. Errors: EINVAL (options: no export, both or neither of
   * socket and host/port, TCP off loopback without TLS or insecure, a bad TLS
   * setup), EADDRINUSE-like OS errors as EBUSY, ENOENT/EACCES for the socket's
   * directory.
   */
  static async listen(o: NbdServerOptions): Promise<NbdServer> {
    if (typeof o !== 'object' || o === null) throw badArgument('NbdServer.listen: options', 'an object', o);
    if (!Array.isArray(o.exports) || o.exports.length === 0) throw badArgument('NbdServer.listen: exports', 'a non-empty array', o.exports);
    const tcp = o.host !== undefined || o.port !== undefined;
    if ((o.socket !== undefined) === tcp) throw new FlashpackError('EINVAL', 'NbdServer.listen: give either socket or host and port');
    if (o.maxConnections !== undefined) checkInteger('NbdServer.listen: maxConnections', o.maxConnections, 1, 65536);
    const exports = new Map<string, Served>();
    for (const e of o.exports) {
      if (typeof e?.name !== 'string') throw badArgument('NbdServer.listen: export name', 'a string', e?.name);
      if (exports.has(e.name)) throw new FlashpackError('EINVAL', `NbdServer.listen: two exports named '${e.name}'`);
      exports.set(e.name, served(e));
    }
    const tls = o.tls !== undefined ? TlsConfig.load(o.tls) : null;
    let host = '';
    let port = 0;
    if (tcp) {
      host = o.host ?? '127.0.0.1';
      port = checkInteger('NbdServer.listen: port', o.port ?? 10809, 0, 65535);
      if (tls === null && o.insecure !== true && !isLoopback(host)) {
        throw new FlashpackError('EINVAL', `NbdServer.listen: ${host} is not a loopback address; serve it with TLS, or say insecure: true`);
      }
    } else if (typeof o.socket !== 'string' || o.socket === '') throw badArgument('NbdServer.listen: socket', 'a path', o.socket);
    const listener = net.createServer({ pauseOnConnect: false, noDelay: true } as net.ServerOpts);
    if (o.socket !== undefined) await clearStaleSocket(o.socket);
    await new Promise<void>((resolve, reject) => {
      listener.once('error', (err) => reject(fromOsError(err, `nbd: cannot listen on ${o.socket ?? `${host}:${port}`}`)));
      // The socket is made private before it exists (umask), not chmod'ed after: no window where others may connect.
      const oldMask = o.socket !== undefined ? setUmask(0o177) : null;
      try {
        if (o.socket !== undefined) listener.listen(o.socket, resolve);
        else listener.listen(port, host, resolve);
      } finally {
        if (oldMask !== null) setUmask(oldMask);
      }
    });
    if (o.socket !== undefined) fs.chmodSync(o.socket, 0o600);
    return new NbdServer(listener, o, exports, tls);
  }

  stats(): NbdServerStats {
    return { ...this.counters, connections: this.sockets.size, connectionsTotal: this.connectionsTotal };
  }

  private accept(sock: net.Socket): void {
    if (this.closing !== null || this.sockets.size >= this.maxConnections) {
      this.log(`nbd: refusing a connection (${this.closing !== null ? 'shutting down' : `${this.maxConnections} connections open`})`);
      sock.destroy();
      return;
    }
    this.connectionsTotal++;
    this.sockets.add(sock);
    sock.setNoDelay?.(true);
    sock.on('error', () => {}); // reported through the channel; never an uncaught error
    sock.once('close', () => this.sockets.delete(sock));
    this.negotiating.add(sock);
    const ch = new Channel(sock);
    const timer = setTimeout(() => {
      this.log('nbd: closing a connection: negotiation took too long');
      sock.destroy();
    }, NEGOTIATION_TIMEOUT_MS);
    negotiate(ch, { exports: this.exports, tls: this.tls, closing: () => this.closing !== null })
      .then((n) => {
        clearTimeout(timer);
        this.negotiating.delete(sock);
        if (n === null || this.closing !== null) {
          closeGently(ch.socket);
          return;
        }
        ch.socket.on('error', () => {});
        const c: Connection = new Connection(ch, {
          target: n.exp.target,
          readOnly: n.exp.readOnly,
          structured: n.structured,
          blockStatus: n.blockStatus,
          counters: this.counters,
          log: this.log,
          onClose: () => this.connections.delete(c),
        });
        this.connections.add(c);
      })
      .catch((err: unknown) => {
        clearTimeout(timer);
        this.negotiating.delete(sock);
        if (err instanceof ProtocolViolation) {
          this.counters.protocolViolations++;
          this.log(`nbd: closing a connection during negotiation: ${err.message}`);
        }
        // A violation's last reply (REP_ERR_POLICY) still goes out; a TLS failure has nothing to send.
        if (err instanceof ProtocolViolation) closeGently(ch.socket);
        else ch.socket.destroy();
      });
  }

  /**
   * Stops accepting, lets every connection finish the requests it has in
   * flight (new ones are not read), then closes the sockets. The exports'
   * volumes are the caller's to flush and close.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((r) => this.listener.close(() => r()));
      for (const s of this.negotiating) s.destroy();
      for (const c of this.connections) c.shutdown();
      const deadline = Date.now() + 10_000;
      while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      for (const s of this.sockets) s.destroy();
      await stopped;
      if (this.socketPath !== null) fs.rmSync(this.socketPath, { force: true });
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** The old umask, or null where a runtime cannot set it (the chmod after listen still applies). */
function setUmask(mask: number): number | null {
  try {
    return process.umask(mask);
  } catch {
    return null;
  }
}

function served(e: NbdExport): Served {
  const readOnly = e.readOnly === true;
  return {
    name: e.name,
    description: e.description ?? '',
    target: e.target,
    readOnly,
    size: () => e.target.logicalSize,
    preferredBlock: () => e.target.blockBytes ?? PREFERRED_BLOCK_BYTES,
    flags: () =>
      TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_SEND_CACHE | TFLAG_CAN_MULTI_CONN |
      (readOnly ? TFLAG_READ_ONLY : TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_FAST_ZERO),
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::ffff:127.0.0.1';
}

/** A socket file left by a server that died is removed; one something listens on is EBUSY; anything else at the path is EEXIST. */
async function clearStaleSocket(p: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new FlashpackError('EEXIST', `nbd: ${p} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(p);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new FlashpackError('EBUSY', `nbd: a server is already listening on ${p}`);
  fs.rmSync(p, { force: true });
}
