/**
 * An etcd v3 client over etcd's JSON gateway (`POST /v3/...`, etcd 3.4), using
 * only the global fetch, so it runs unchanged on Node ≥ 20, Deno 2 and Bun 1.
 *
 * Invariants: no request outlives its deadline (every attempt has its own
 * AbortController and timer); a request that cannot reach a member moves on to
 * the next endpoint, cycling; a txn with compares is repeated only when etcd
 * surely never saw it, since a replayed CAS would report failure for a write
 * that was applied. int64 fields arrive as decimal strings: revisions and
 * counts become safe integers (checked), lease ids stay strings.
 */
import { FlashpackError, afterClose, badArgument, checkBoolean, checkFunction, checkIndex, checkInteger, checkOptions } from '../errors.js';

const REQUEST_TIMEOUT_MS_DEFAULT = 5_000;
const REQUEST_TIMEOUT_MS_MAX = 3_600_000;
/** One attempt on one endpoint gets at least this long (and at most the time left). */
const ATTEMPT_TIMEOUT_MS_MIN = 500;
/** Pause after a full round of endpoints failed, so a dead cluster is not spun on. */
const RETRY_PAUSE_MS = 100;
/** Rounds of refused connections on every endpoint before a request gives up with ENXIO. */
const UNREACHABLE_ROUNDS = 3;
const ATTEMPTS_MAX = 10_000;
const ENDPOINTS_MAX = 64;
/** etcd's own ceiling on a lease TTL (MaxLeaseTTL). */
const LEASE_TTL_SECONDS_MAX = 9_000_000_000;
/** A keepalive that failed is retried after this long (or sooner, if the lease expires sooner). */
const KEEPALIVE_RETRY_MS = 250;
const WATCH_RETRY_PAUSE_MS = 200;
/** The longest watch response line accepted (etcd sends one revision's events in one line). */
const WATCH_LINE_CHARS_MAX = 64 << 20;
const BASE64_CHUNK_BYTES = 0x2000;

export interface KeyValue {
  key: string;
  value: Uint8Array;
  text: string; // value as UTF-8
  createRevision: number;
  modRevision: number;
  version: number;
  lease: string; // '0' if none
}
type CompareOp = '=' | '!=' | '<' | '>';
export type Compare =
  | { key: string; target: 'value'; op?: CompareOp; value: string | Uint8Array }
  | { key: string; target: 'version' | 'create' | 'mod'; op?: CompareOp; value: number };
export type TxnOp =
  | { put: { key: string; value: string | Uint8Array; lease?: string } }
  | { del: { key: string; prefix?: boolean } }
  | { get: { key: string; prefix?: boolean } };
export interface TxnResult {
  succeeded: boolean;
  revision: number;
  responses: (KeyValue[] | null)[]; // for get ops: the kvs; else null
}
export interface WatchEvent { type: 'put' | 'delete'; kv: KeyValue }

interface WireKv { key?: string; value?: string; create_revision?: string; mod_revision?: string; version?: string; lease?: string }
/** Every answer of the gateway, as far as it is read here (streams wrap each message in `result`). */
interface WireBody {
  header?: { revision?: string };
  kvs?: WireKv[]; deleted?: string; succeeded?: boolean; responses?: { response_range?: WireBody }[]; ID?: string; TTL?: string;
  created?: boolean; canceled?: boolean; compact_revision?: string; cancel_reason?: string; events?: { type?: string; kv?: WireKv }[];
  result?: WireBody; error?: string | { message?: string; grpc_code?: number }; message?: string; code?: number;
}
/** A failed attempt that another endpoint (or a later try) may fix. */
interface Failure { cause: Error; refused: boolean; unsent: boolean; timedOut: boolean }
/** How a request may be repeated after an attempt whose outcome is unknown. */
type Repeat = 'always' | 'if-unsent';

/** fetch errors meaning the request never left (Node: cause.code, Deno: message, Bun: code). */
const UNSENT_TRANSPORT = /ECONNREFUSED|Connection refused|ENOTFOUND|dns error|EHOSTUNREACH|ENETUNREACH|EADDRNOTAVAIL/;
/** etcd errors raised before a request is proposed to raft (rpctypes: ErrGRPCNoLeader and kin). */
const UNSENT_ETCD = /no leader|not leader|not capable|too many requests|unhealthy cluster/;
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_RESOURCE_EXHAUSTED = 8;
const GRPC_UNAVAILABLE = 14;
const COMPARE_OPS: Record<CompareOp, string> = { '=': 'EQUAL', '!=': 'NOT_EQUAL', '<': 'LESS', '>': 'GREATER' };
const COMPARE_TARGETS = { version: ['VERSION', 'version'], create: ['CREATE', 'create_revision'], mod: ['MOD', 'mod_revision'] } as const;
const JSON_HEADERS = { 'content-type': 'application/json' };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class Etcd {
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  private readonly attemptMs: number;
  /** The endpoint new requests start on: the last one that answered. */
  private preferred = 0;
  private closed = false;
  private readonly inflight = new Set<AbortController>();
  private readonly watches = new Set<{ close(): void }>();
  private readonly keepers = new Set<() => void>();

  constructor(endpoints: string | string[], opts?: { timeoutMs?: number }) {
    const o = checkOptions('new Etcd: opts', opts);
    this.timeoutMs = o.timeoutMs === undefined ? REQUEST_TIMEOUT_MS_DEFAULT : checkInteger('new Etcd: opts.timeoutMs', o.timeoutMs, 1, REQUEST_TIMEOUT_MS_MAX);
    this.endpoints = parseEndpoints(endpoints);
    this.attemptMs = Math.max(ATTEMPT_TIMEOUT_MS_MIN, Math.ceil(this.timeoutMs / this.endpoints.length));
  }

  async get(key: string): Promise<KeyValue | null> {
    const body = await this.call('/v3/kv/range', range('etcd.get: key', key, false), 'always');
    return body.kvs?.length ? toKeyValue(body.kvs[0]) : null;
  }

  /** Every key starting with `prefix`, sorted by key ('' means every key). */
  async getPrefix(prefix: string): Promise<KeyValue[]> {
    const body = await this.call('/v3/kv/range', range('etcd.getPrefix: prefix', prefix, true), 'always');
    return (body.kvs ?? []).map(toKeyValue);
  }

  /** Returns the revision of the put. */
  async put(key: string, value: string | Uint8Array, opts?: { lease?: string }): Promise<number> {
    const o = checkOptions('etcd.put: opts', opts);
    const body = await this.call('/v3/kv/put', wirePut('etcd.put', key, value, o.lease), 'always');
    return revisionOf(body);
  }

  /** Returns how many keys were deleted (a repeat after a lost answer counts 0). */
  async del(key: string, opts?: { prefix?: boolean }): Promise<number> {
    const o = checkOptions('etcd.del: opts', opts);
    const body = await this.call('/v3/kv/deleterange', range('etcd.del: key', key, checkBoolean('etcd.del: opts.prefix', o.prefix, false)), 'always');
    return int(body.deleted, 'deleted');
  }

  async txn(compare: Compare[], success: TxnOp[], failure: TxnOp[] = []): Promise<TxnResult> {
    for (const [what, v] of [['compare', compare], ['success', success], ['failure', failure]] as const) {
      if (!Array.isArray(v)) throw badArgument(`etcd.txn: ${what}`, 'an array', v);
    }
    const request = {
      compare: compare.map((c, i) => wireCompare(`etcd.txn: compare[${i}]`, c)),
      success: success.map((op, i) => wireOp(`etcd.txn: success[${i}]`, op)),
      failure: failure.map((op, i) => wireOp(`etcd.txn: failure[${i}]`, op)),
    };
    const body = await this.call('/v3/kv/txn', request, compare.length === 0 ? 'always' : 'if-unsent');
    return {
      succeeded: body.succeeded === true,
      revision: revisionOf(body),
      responses: (body.responses ?? []).map((r) => (r.response_range ? (r.response_range.kvs ?? []).map(toKeyValue) : null)),
    };
  }

  /** Returns the lease id as a decimal string (etcd may grant a longer TTL than asked: its minimum is 1.5 election timeouts). */
  async leaseGrant(ttlSeconds: number): Promise<string> {
    return (await this.grant('etcd.leaseGrant: ttlSeconds', ttlSeconds)).id;
  }

  /** Returns the TTL left in seconds; 0 or less means the lease expired or never existed. */
  async leaseKeepAlive(id: string): Promise<number> {
    return this.keepAliveOnce(checkLease('etcd.leaseKeepAlive: id', id), this.timeoutMs);
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: checkLease('etcd.leaseRevoke: id', id) }, 'always');
  }

  /**
   * Grants a lease and keeps it alive every ttl/3; onLost(err) once if it expires
   * (ENXIO) or etcd is unreachable longer than the TTL (ETIMEDOUT). stop() revokes it.
   */
  async keepLease(ttlSeconds: number, onLost: (err: FlashpackError) => void): Promise<{ id: string; stop(): Promise<void> }> {
    checkFunction('etcd.keepLease: onLost', onLost);
    const grantedAt = Date.now();
    const { id, ttl } = await this.grant('etcd.keepLease: ttlSeconds', ttlSeconds);
    const ttlMs = ttl * 1000;
    let expiresAt = grantedAt + ttlMs;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const halt = (): void => {
      stopped = true;
      clearTimeout(timer);
      this.keepers.delete(halt);
    };
    const lose = (err: FlashpackError): void => {
      if (stopped) return;
      halt();
      onLost(err);
    };
    const tick = async (): Promise<void> => {
      const sentAt = Date.now();
      try {
        const left = await this.keepAliveOnce(id, Math.max(1, expiresAt - sentAt));
        if (stopped) return;
        if (left <= 0) return lose(new FlashpackError('ENXIO', `etcd lease ${id} expired (TTL ${ttl} s)`));
        expiresAt = sentAt + left * 1000;
        timer = setTimeout(tick, ttlMs / 3);
      } catch (e) {
        if (stopped) return;
        const now = Date.now();
        if (now >= expiresAt) {
          return lose(new FlashpackError('ETIMEDOUT', `etcd lease ${id}: no keepalive answered within its TTL of ${ttl} s: ${causeText(e)}`, { cause: e }));
        }
        timer = setTimeout(tick, Math.min(KEEPALIVE_RETRY_MS, expiresAt - now));
      }
    };
    this.keepers.add(halt);
    timer = setTimeout(tick, ttlMs / 3);
    return {
      id,
      stop: async () => {
        halt();
        try {
          await this.leaseRevoke(id);
        } catch (e) {
          if (!(e instanceof FlashpackError && /lease not found/.test(e.message))) throw e; // already expired: gone either way
        }
      },
    };
  }

  /**
   * Watches a prefix from `fromRevision` (default: from now): calls onEvent for
   * each put/delete in order; reconnects on stream errors, resuming after the
   * last revision seen. If etcd compacted the history it must resume from, the
   * watch ends and opts.onError gets an EIO naming the revisions.
   */
  watchPrefix(
    prefix: string,
    onEvent: (e: WatchEvent) => void,
    opts?: { fromRevision?: number; onError?: (err: FlashpackError) => void },
  ): { close(): void } {
    const o = checkOptions('etcd.watchPrefix: opts', opts);
    const request = range('etcd.watchPrefix: prefix', prefix, true);
    checkFunction('etcd.watchPrefix: onEvent', onEvent);
    if (o.onError !== undefined) checkFunction('etcd.watchPrefix: opts.onError', o.onError);
    const from = o.fromRevision === undefined ? 0 : checkIndex('etcd.watchPrefix: opts.fromRevision', o.fromRevision);
    if (this.closed) throw afterClose('etcd.watchPrefix');
    const state = { closed: false, ctl: null as AbortController | null };
    const handle = {
      close: (): void => {
        state.closed = true;
        state.ctl?.abort();
      },
    };
    this.watches.add(handle);
    void this.watchLoop(request, prefix, from, onEvent, o.onError, state).finally(() => this.watches.delete(handle));
    return handle;
  }

  /** Ends watches and keepalives and aborts requests in flight; later calls fail with ENXIO. Leases are left to expire. */
  close(): void {
    this.closed = true;
    for (const w of [...this.watches]) w.close();
    for (const halt of [...this.keepers]) halt();
    for (const ctl of this.inflight) ctl.abort();
  }

  private async grant(what: string, ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    checkInteger(what, ttlSeconds, 1, LEASE_TTL_SECONDS_MAX);
    const body = await this.call('/v3/lease/grant', { TTL: String(ttlSeconds) }, 'always'); // a lost answer leaks a lease until its TTL
    if (body.ID === undefined || !/^[0-9]+$/.test(body.ID)) throw new FlashpackError('EIO', `etcd /v3/lease/grant answered lease id ${JSON.stringify(body.ID)}`);
    return { id: body.ID, ttl: int(body.TTL, 'TTL') };
  }

  private async keepAliveOnce(id: string, deadlineMs: number): Promise<number> {
    // A lease etcd does not know is answered with no TTL field (0), not an error.
    return int((await this.call('/v3/lease/keepalive', { ID: id }, 'always', deadlineMs)).TTL, 'TTL');
  }

  /** One request: tries endpoints in turn until one answers or the deadline passes. */
  private async call(path: string, request: object, repeat: Repeat, deadlineMs = this.timeoutMs): Promise<WireBody> {
    if (this.closed) throw afterClose(`etcd ${path}`);
    const json = JSON.stringify(request);
    const n = this.endpoints.length;
    const deadline = Date.now() + deadlineMs;
    const tried = new Set<string>();
    let last: Failure | null = null;
    let refusedInRow = 0;
    let i = this.preferred;
    for (let attempt = 1; attempt <= ATTEMPTS_MAX; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const endpoint = this.endpoints[i];
      tried.add(endpoint);
      const result = await this.attempt(endpoint, path, json, Math.min(left, this.attemptMs));
      if (!('cause' in result)) {
        this.preferred = i;
        return result;
      }
      last = result;
      if (!result.unsent && repeat === 'if-unsent') {
        const code = result.timedOut ? 'ETIMEDOUT' : 'EIO';
        throw new FlashpackError(code, `etcd ${path} at ${endpoint}: ${result.cause.message}; it may or may not have been applied`, { cause: result.cause });
      }
      refusedInRow = result.refused ? refusedInRow + 1 : 0;
      if (refusedInRow >= n * UNREACHABLE_ROUNDS) {
        throw new FlashpackError('ENXIO', `etcd ${path}: unreachable at ${[...tried].join(', ')}: ${result.cause.message}`, { cause: result.cause });
      }
      i = (i + 1) % n;
      if (attempt % n === 0) await sleep(Math.min(RETRY_PAUSE_MS, deadline - Date.now()));
      if (this.closed) throw afterClose(`etcd ${path}`);
    }
    const why = last ? `; last error: ${last.cause.message}` : '';
    throw new FlashpackError('ETIMEDOUT', `etcd ${path}: no answer within ${deadlineMs} ms from ${[...tried].join(', ')}${why}`, { cause: last?.cause });
  }

  /** One POST to one endpoint: the answer, a Failure worth retrying elsewhere, or a thrown FlashpackError. */
  private async attempt(endpoint: string, path: string, json: string, ms: number): Promise<WireBody | Failure> {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), ms);
    this.inflight.add(ctl);
    try {
      const res = await fetch(endpoint + path, { method: 'POST', headers: JSON_HEADERS, body: json, signal: ctl.signal });
      return answer(path, res.status, await res.text());
    } catch (e) {
      if (e instanceof FlashpackError) throw e;
      if (this.closed) throw afterClose(`etcd ${path}`);
      if (ctl.signal.aborted) return { cause: new Error(`no answer from ${endpoint} within ${ms} ms`), refused: false, unsent: false, timedOut: true };
      const cause = new Error(causeText(e), { cause: e });
      const unsent = UNSENT_TRANSPORT.test(cause.message + ' ' + String((e as { code?: unknown }).code));
      return { cause, refused: unsent, unsent, timedOut: false };
    } finally {
      clearTimeout(timer);
      this.inflight.delete(ctl);
    }
  }

  private async watchLoop(
    request: { key: string; range_end?: string },
    prefix: string,
    from: number,
    onEvent: (e: WatchEvent) => void,
    onError: ((err: FlashpackError) => void) | undefined,
    state: { closed: boolean; ctl: AbortController | null },
  ): Promise<void> {
    let next = from; // the revision to resume at; 0 until the first answer: "from now"
    let i = this.preferred;
    let failures = 0;
    while (!state.closed) {
      const ctl = new AbortController();
      state.ctl = ctl;
      const timer = setTimeout(() => ctl.abort(), this.attemptMs); // until etcd confirms the watch
      try {
        const body = JSON.stringify({ create_request: { ...request, start_revision: String(next) } });
        const res = await fetch(this.endpoints[i] + '/v3/watch', { method: 'POST', headers: JSON_HEADERS, body, signal: ctl.signal });
        if (!res.body) throw new Error(`HTTP ${res.status} without a body`);
        for await (const line of lines(res.body, prefix)) {
          const r = answer('/v3/watch', res.status, line);
          if ('cause' in r) throw r.cause;
          if (r.created) {
            clearTimeout(timer);
            failures = 0;
            if (next === 0) next = revisionOf(r) + 1;
          }
          if (r.canceled) {
            const compacted = int(r.compact_revision, 'compact_revision');
            if (compacted === 0) throw new Error(`etcd canceled the watch: ${r.cancel_reason ?? 'no reason given'}`);
            throw new FlashpackError('EIO', `etcd watch of ${JSON.stringify(prefix)}: revision ${next} was compacted (oldest kept: ${compacted})`);
          }
          for (const ev of r.events ?? []) {
            if (state.closed) return;
            const kv = toKeyValue(ev.kv ?? {});
            next = kv.modRevision + 1; // a revision's events come in one line: resuming here misses none
            deliver(onEvent, { type: ev.type === 'DELETE' ? 'delete' : 'put', kv });
          }
        }
        throw new Error('the watch stream ended');
      } catch (e) {
        if (state.closed || this.closed) return;
        if (e instanceof FlashpackError) {
          state.closed = true;
          onError?.(e);
          return;
        }
        failures++;
        i = (i + 1) % this.endpoints.length;
        if (failures % this.endpoints.length === 0) await sleep(WATCH_RETRY_PAUSE_MS);
      } finally {
        clearTimeout(timer);
        ctl.abort(); // releases the connection of an ended or failed stream
      }
    }
  }
}

/** The non-empty lines of a newline-delimited JSON stream. */
async function* lines(body: ReadableStream<Uint8Array>, prefix: string): AsyncGenerator<string> {
  const reader = body.getReader();
  const text = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffered += text.decode(value, { stream: true });
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim() !== '') yield line;
    }
    if (buffered.length > WATCH_LINE_CHARS_MAX) throw new FlashpackError('EIO', `etcd watch of ${JSON.stringify(prefix)}: a response line over ${WATCH_LINE_CHARS_MAX} chars`);
  }
}

/** A listener's exception is its own bug: thrown where it surfaces (uncaught), not swallowed or retried. */
function deliver(onEvent: (e: WatchEvent) => void, e: WatchEvent): void {
  try {
    onEvent(e);
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}

/** Parses a gateway answer (streams send one JSON object per line, wrapped in `result`). */
function answer(path: string, status: number, text: string): WireBody | Failure {
  let body: WireBody;
  try {
    body = JSON.parse(text.trim().split('\n', 1)[0]) as WireBody;
  } catch {
    throw new FlashpackError('EIO', `etcd ${path}: HTTP ${status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 120))}`);
  }
  if (body.result) body = body.result;
  if (body.error === undefined) {
    if (status !== 200) throw new FlashpackError('EIO', `etcd ${path}: HTTP ${status}: ${JSON.stringify(text.slice(0, 120))}`);
    return body;
  }
  const message = typeof body.error === 'string' ? body.message ?? body.error : body.error.message ?? 'no message';
  const code = typeof body.error === 'string' ? body.code : body.error.grpc_code;
  if (code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED || code === GRPC_RESOURCE_EXHAUSTED) {
    const unsent = UNSENT_ETCD.test(message);
    return { cause: new Error(message), refused: false, unsent, timedOut: false };
  }
  throw new FlashpackError('EIO', `etcd ${path}: ${message} (gRPC code ${code})`);
}

function parseEndpoints(v: unknown): string[] {
  const list: unknown[] = typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v : [];
  if (list.length === 0 || list.length > ENDPOINTS_MAX) {
    throw badArgument('new Etcd: endpoints', `'http://host:port' URLs, comma-separated or as an array of 1 to ${ENDPOINTS_MAX}`, v);
  }
  const urls = list.map((e, i) => {
    const what = `new Etcd: endpoints[${i}]`;
    let url: URL | null = null;
    try {
      if (typeof e === 'string' && /^https?:\/\//i.test(e.trim())) url = new URL(e.trim());
    } catch {
      // reported below
    }
    if (!url || !url.hostname || url.username || url.password || url.pathname !== '/' || url.search || url.hash) {
      throw badArgument(what, "an 'http://host:port' or 'https://host:port' URL with no path", e);
    }
    return url.origin;
  });
  return [...new Set(urls)];
}

function checkKey(what: string, key: unknown, isPrefix: boolean): Uint8Array {
  if (typeof key !== 'string' || (key === '' && !isPrefix)) throw badArgument(what, isPrefix ? 'a string' : 'a non-empty string', key);
  return encoder.encode(key);
}

function checkValue(what: string, value: unknown): Uint8Array {
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  throw badArgument(what, 'a string or a Uint8Array', value);
}

function checkLease(what: string, id: unknown): string {
  if (typeof id !== 'string' || !/^[0-9]{1,19}$/.test(id) || BigInt(id) > 0x7fffffffffffffffn) throw badArgument(what, 'a lease id (a decimal string)', id);
  return id;
}

/** A key, or with `isPrefix` every key starting with it (etcd's WithPrefix: the range end is the prefix plus one). */
function range(what: string, key: unknown, isPrefix: boolean): { key: string; range_end?: string } {
  const bytes = checkKey(what, key, isPrefix);
  if (!isPrefix) return { key: toBase64(bytes) };
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]++;
      return { key: toBase64(bytes), range_end: toBase64(end) };
    }
  }
  const zero = toBase64(new Uint8Array(1)); // '\0' to '\0': every key (an empty key is not allowed)
  return { key: bytes.length === 0 ? zero : toBase64(bytes), range_end: zero };
}

function wirePut(what: string, key: unknown, value: unknown, lease: unknown): { key: string; value: string; lease?: string } {
  const put = { key: toBase64(checkKey(`${what}: key`, key, false)), value: toBase64(checkValue(`${what}: value`, value)) };
  return lease === undefined ? put : { ...put, lease: checkLease(`${what}: lease`, lease) };
}

function wireCompare(what: string, c: Compare): object {
  if (c === null || typeof c !== 'object') throw badArgument(what, 'a compare object', c);
  const key = toBase64(checkKey(`${what}.key`, c.key, false));
  const op = c.op ?? '=';
  if (!Object.hasOwn(COMPARE_OPS, op)) throw badArgument(`${what}.op`, "'=', '!=', '<' or '>'", op);
  const result = COMPARE_OPS[op];
  if (c.target === 'value') return { key, target: 'VALUE', result, value: toBase64(checkValue(`${what}.value`, c.value)) };
  if (!Object.hasOwn(COMPARE_TARGETS, c.target)) throw badArgument(`${what}.target`, "'value', 'version', 'create' or 'mod'", c.target);
  const [target, field] = COMPARE_TARGETS[c.target];
  return { key, target, result, [field]: String(checkIndex(`${what}.value`, c.value)) };
}

function wireOp(what: string, op: TxnOp): object {
  if (op !== null && typeof op === 'object') {
    if ('put' in op) return { request_put: wirePut(`${what}.put`, op.put?.key, op.put?.value, op.put?.lease) };
    if ('del' in op) return { request_delete_range: range(`${what}.del.key`, op.del?.key, checkBoolean(`${what}.del.prefix`, op.del?.prefix, false)) };
    if ('get' in op) return { request_range: range(`${what}.get.key`, op.get?.key, checkBoolean(`${what}.get.prefix`, op.get?.prefix, false)) };
  }
  throw badArgument(what, 'an object with one of put, del or get', op);
}

function toKeyValue(w: WireKv): KeyValue {
  const value = fromBase64(w.value ?? '');
  return {
    key: decoder.decode(fromBase64(w.key ?? '')),
    value,
    text: decoder.decode(value),
    createRevision: int(w.create_revision, 'create_revision'),
    modRevision: int(w.mod_revision, 'mod_revision'),
    version: int(w.version, 'version'),
    lease: w.lease ?? '0',
  };
}

function revisionOf(body: WireBody): number {
  return int(body.header?.revision, 'header.revision');
}

/** An int64 field (a decimal string; absent means 0, protobuf's default). */
function int(v: string | undefined, field: string): number {
  if (v === undefined) return 0;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new FlashpackError('EIO', `etcd answered ${field} ${JSON.stringify(v)}, not a safe integer`);
  return n;
}

function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += BASE64_CHUNK_BYTES) s += String.fromCharCode(...bytes.subarray(i, i + BASE64_CHUNK_BYTES));
  return btoa(s);
}

function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** A fetch error with its cause (Node hides the OS error there: "fetch failed: connect ECONNREFUSED …"). */
function causeText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const inner = e.cause instanceof Error ? e.cause.message : '';
  return inner && !e.message.includes(inner) ? `${e.message}: ${inner}` : e.message;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
