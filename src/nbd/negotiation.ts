/**
 * Fixed newstyle negotiation, server side: the greeting, then options until
 * the client picks an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME), aborts, or
 * misbehaves. Every malformed option gets NBD_REP_ERR_INVALID and the
 * haggling goes on; only what leaves the stream unparseable (bad magic, an
 * option too large to skip, unknown client flags) ends the connection.
 */
import type { Channel } from './channel.js';
import type { TlsConfig } from './tls.js';
import {
  CLIENT_FLAG_FIXED_NEWSTYLE, CLIENT_FLAG_NO_ZEROES, IHAVEOPT, INFO_BLOCK_SIZE, INFO_DESCRIPTION, INFO_NAME, META_BASE_ALLOCATION,
  META_ID_BASE_ALLOCATION, OPTIONS_MAX, OPTION_BYTES_MAX, OPT_ABORT, OPT_EXPORT_NAME, OPT_GO, OPT_INFO, OPT_LIST, OPT_LIST_META_CONTEXT,
  OPT_SET_META_CONTEXT, OPT_STARTTLS, OPT_STRUCTURED_REPLY, OptionError, OptionReader, PAYLOAD_BYTES_MAX, QUERIES_MAX,
  REP_ACK, REP_ERR_INVALID, REP_ERR_POLICY, REP_ERR_SHUTDOWN, REP_ERR_TLS_REQD, REP_ERR_TOO_BIG, REP_ERR_UNKNOWN, REP_ERR_UNSUP,
  encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoString, encodeMetaContext, encodeOptionError,
  encodeOptionReply, encodeServerReply,
} from './protocol.js';

/** What negotiation needs to know of an export. */
export interface ExportInfo {
  readonly name: string;
  readonly description: string;
  size(): number;
  /** The preferred block size to advertise. */
  preferredBlock(): number;
  /** Transmission flags. */
  flags(): number;
}

export interface NegotiationContext<E extends ExportInfo> {
  exports: ReadonlyMap<string, E>;
  tls: TlsConfig | null;
  /** The server is closing: options get NBD_REP_ERR_SHUTDOWN. */
  closing(): boolean;
}

export interface Negotiated<E extends ExportInfo> {
  exp: E;
  structured: boolean;
  /** base:allocation was selected for this export (BLOCK_STATUS allowed). */
  blockStatus: boolean;
}

/** An option payload larger than OPTION_BYTES_MAX but at most this is read and dropped (NBD_REP_ERR_TOO_BIG); larger ends the connection. */
const OPTION_SKIP_BYTES_MAX = 1 << 20;

/** Thrown when the connection cannot go on; the caller closes it and logs the reason. */
export class ProtocolViolation extends Error {}

export async function negotiate<E extends ExportInfo>(ch: Channel, ctx: NegotiationContext<E>): Promise<Negotiated<E> | null> {
  ch.write(encodeGreeting());
  const clientFlags = view(await ch.read(4)).getUint32(0);
  if ((clientFlags & ~(CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES)) !== 0) throw new ProtocolViolation(`unknown client flags 0x${clientFlags.toString(16)}`);
  if ((clientFlags & CLIENT_FLAG_FIXED_NEWSTYLE) === 0) throw new ProtocolViolation('the client does not speak fixed newstyle negotiation');
  const noZeroes = (clientFlags & CLIENT_FLAG_NO_ZEROES) !== 0;
  let secure = false;
  let structured = false;
  /** Export whose base:allocation context was selected by SET_META_CONTEXT, or null. */
  let metaFor: string | null = null;
  const reply = (b: Uint8Array): void => void ch.write(b);

  for (let n = 0; n < OPTIONS_MAX; n++) {
    const head = view(await ch.read(16));
    if (head.getBigUint64(0) !== IHAVEOPT) throw new ProtocolViolation(`bad option magic 0x${head.getBigUint64(0).toString(16)}`);
    const option = head.getUint32(8);
    const length = head.getUint32(12);
    if (length > OPTION_BYTES_MAX) {
      if (length > OPTION_SKIP_BYTES_MAX || option === OPT_EXPORT_NAME) throw new ProtocolViolation(`option ${option} of ${length} bytes`);
      await skip(ch, length);
      reply(encodeOptionError(option, REP_ERR_TOO_BIG, `option of ${length} bytes (at most ${OPTION_BYTES_MAX})`));
      continue;
    }
    const data = length === 0 ? new Uint8Array(0) : new Uint8Array(await ch.read(length));
    if (ctx.closing()) {
      if (option === OPT_EXPORT_NAME) return null;
      reply(encodeOptionError(option, REP_ERR_SHUTDOWN, 'the server is shutting down'));
      continue;
    }
    const tlsFirst = ctx.tls !== null && ctx.tls.required && !secure;
    if (tlsFirst && option !== OPT_STARTTLS && option !== OPT_ABORT) {
      if (option === OPT_EXPORT_NAME) throw new ProtocolViolation('NBD_OPT_EXPORT_NAME before TLS on a TLS-only server');
      reply(encodeOptionError(option, REP_ERR_TLS_REQD, 'this server requires TLS: send NBD_OPT_STARTTLS first'));
      continue;
    }
    try {
      switch (option) {
        case OPT_EXPORT_NAME: {
          const exp = lookup(ctx, new TextDecoder().decode(data));
          if (exp === undefined) throw new ProtocolViolation(`NBD_OPT_EXPORT_NAME of an unknown export`);
          reply(encodeExportNameReply(exp.size(), exp.flags(), noZeroes));
          return { exp, structured, blockStatus: structured && metaFor === exp.name };
        }
        case OPT_ABORT:
          reply(encodeOptionReply(option, REP_ACK));
          return null;
        case OPT_LIST:
          if (length !== 0) throw new OptionError('NBD_OPT_LIST carries no data');
          for (const e of ctx.exports.values()) reply(encodeServerReply(e.name, e.description));
          reply(encodeOptionReply(option, REP_ACK));
          break;
        case OPT_STARTTLS: {
          if (length !== 0) throw new OptionError('NBD_OPT_STARTTLS carries no data');
          if (ctx.tls === null) {
            reply(encodeOptionError(option, REP_ERR_UNSUP, 'this server is not configured for TLS'));
            break;
          }
          if (secure) throw new OptionError('TLS is already on');
          if (ch.available !== 0) throw new ProtocolViolation('bytes after NBD_OPT_STARTTLS before the TLS handshake');
          reply(encodeOptionReply(option, REP_ACK));
          const raw = ch.detach();
          try {
            ch.replace(await ctx.tls.upgrade(raw));
          } catch (err) {
            throw new ProtocolViolation(`TLS: ${(err as Error).message.trim()}`);
          }
          secure = true;
          // What was negotiated in the clear does not carry over (the spec's downgrade rule).
          structured = false;
          metaFor = null;
          break;
        }
        case OPT_INFO:
        case OPT_GO: {
          const r = new OptionReader(data);
          const name = r.string('export name');
          const requests = r.u16();
          if (r.remaining !== requests * 2) throw new OptionError(`${requests} information requests in ${r.remaining} bytes`);
          const infos: number[] = [];
          for (let i = 0; i < requests; i++) infos.push(r.u16());
          const exp = lookup(ctx, name);
          if (exp === undefined) {
            reply(encodeOptionError(option, REP_ERR_UNKNOWN, `no export named '${name.slice(0, 256)}'`));
            break;
          }
          reply(encodeInfoExport(option, exp.size(), exp.flags()));
          // Any block size works (unaligned I/O is read-modify-write); the volume's block is best.
          reply(encodeInfoBlockSize(option, 1, exp.preferredBlock(), PAYLOAD_BYTES_MAX));
          if (infos.includes(INFO_NAME)) reply(encodeInfoString(option, INFO_NAME, exp.name));
          if (infos.includes(INFO_DESCRIPTION) && exp.description !== '') reply(encodeInfoString(option, INFO_DESCRIPTION, exp.description));
          void INFO_BLOCK_SIZE; // sent whether asked for or not
          reply(encodeOptionReply(option, REP_ACK));
          if (option === OPT_GO) return { exp, structured, blockStatus: structured && metaFor === exp.name };
          break;
        }
        case OPT_STRUCTURED_REPLY:
          if (length !== 0) throw new OptionError('NBD_OPT_STRUCTURED_REPLY carries no data');
          structured = true;
          reply(encodeOptionReply(option, REP_ACK));
          break;
        case OPT_LIST_META_CONTEXT:
        case OPT_SET_META_CONTEXT: {
          if (option === OPT_SET_META_CONTEXT && !structured) throw new OptionError('NBD_OPT_SET_META_CONTEXT before NBD_OPT_STRUCTURED_REPLY');
          const r = new OptionReader(data);
          const name = r.string('export name');
          const count = r.u32();
          if (count > QUERIES_MAX) throw new OptionError(`${count} meta context queries (at most ${QUERIES_MAX})`);
          const queries: string[] = [];
          for (let i = 0; i < count; i++) queries.push(r.string('meta context query'));
          if (r.remaining !== 0) throw new OptionError(`${r.remaining} bytes after the queries`);
          const exp = lookup(ctx, name);
          if (exp === undefined) {
            reply(encodeOptionError(option, REP_ERR_UNKNOWN, `no export named '${name.slice(0, 256)}'`));
            break;
          }
          const list = option === OPT_LIST_META_CONTEXT;
          const match = (list && count === 0) || queries.some((q) => q === META_BASE_ALLOCATION || (list && q === 'base:'));
          if (match) reply(encodeMetaContext(option, list ? 0 : META_ID_BASE_ALLOCATION, META_BASE_ALLOCATION));
          if (!list) metaFor = match ? exp.name : null;
          reply(encodeOptionReply(option, REP_ACK));
          break;
        }
        default:
          reply(encodeOptionError(option, REP_ERR_UNSUP, `option ${option} is not supported`));
      }
    } catch (err) {
      if (!(err instanceof OptionError)) throw err;
      reply(encodeOptionError(option, REP_ERR_INVALID, err.message));
    }
  }
  reply(encodeOptionError(0, REP_ERR_POLICY, `more than ${OPTIONS_MAX} options`));
  throw new ProtocolViolation(`more than ${OPTIONS_MAX} options`);
}

/** The export of that name; the empty name reaches the only export of a server with one. */
function lookup<E extends ExportInfo>(ctx: NegotiationContext<E>, name: string): E | undefined {
  const e = ctx.exports.get(name);
  if (e !== undefined || name !== '' || ctx.exports.size !== 1) return e;
  return ctx.exports.values().next().value;
}

/** A DataView of a private copy (socket chunks are Buffers, whose .buffer is a shared pool). */
function view(b: Uint8Array): DataView {
  return new DataView(new Uint8Array(b).buffer);
}

async function skip(ch: Channel, n: number): Promise<void> {
  while (n > 0) {
    const k = Math.min(n, 64 << 10);
    await ch.read(k);
    n -= k;
  }
}
