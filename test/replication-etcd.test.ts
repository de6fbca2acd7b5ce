import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd, type KeyValue } from '../src/replication/etcd.js';
import { FlashpackError } from '../src/errors.js';
import { findLeader, startEtcd, type EtcdCluster } from './helpers/etcd.js';

const TEST_TIMEOUT_MS = 15_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 20 ms until it is true; false if `ms` pass first. */
async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(20);
  }
  return check();
}

async function rejection(p: Promise<unknown>): Promise<FlashpackError> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(FlashpackError);
  return e as FlashpackError;
}

describe('etcd client against one etcd member', () => {
  let cluster: EtcdCluster;
  let etcd: Etcd;
  beforeAll(async () => {
    cluster = await startEtcd();
    etcd = new Etcd(cluster.endpoints.join(','));
  });
  afterAll(async () => {
    etcd?.close();
    await cluster?.stop();
  });

  it('put, get, getPrefix (sorted by key) and del round-trip text and binary values', async () => {
    const binary = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
    const r1 = await etcd.put('kv/b', 'béta');
    const r2 = await etcd.put('kv/a', binary);
    await etcd.put('kv/c', '');
    await etcd.put('kv0', 'outside the prefix');
    expect(r2).toBe(r1 + 1);
    const b = await etcd.get('kv/b');
    expect(b).toMatchObject({ key: 'kv/b', text: 'béta', createRevision: r1, modRevision: r1, version: 1, lease: '0' });
    expect((await etcd.get('kv/a'))!.value).toEqual(binary);
    expect(await etcd.get('kv/none')).toBeNull();
    expect((await etcd.getPrefix('kv/')).map((kv) => kv.key)).toEqual(['kv/a', 'kv/b', 'kv/c']);
    expect((await etcd.get('kv/c'))!.value).toHaveLength(0);
    const r3 = await etcd.put('kv/b', 'again');
    expect(await etcd.get('kv/b')).toMatchObject({ createRevision: r1, modRevision: r3, version: 2 });
    expect(await etcd.del('kv/a')).toBe(1);
    expect(await etcd.del('kv/a')).toBe(0);
    expect(await etcd.del('kv/', { prefix: true })).toBe(2);
    expect(await etcd.getPrefix('kv/')).toEqual([]);
    expect((await etcd.get('kv0'))!.text).toBe('outside the prefix');
  }, TEST_TIMEOUT_MS);

  it('txn compares on value, version, create and mod revision choose success or failure and return get responses', async () => {
    await etcd.put('txn/m', 'm');
    const created = await etcd.put('txn/k', 'one');
    const modified = await etcd.put('txn/k', 'two');
    const get = { get: { key: 'txn/k' } };
    const cases: [Parameters<Etcd['txn']>[0], boolean][] = [
      [[{ key: 'txn/k', target: 'value', value: 'two' }], true],
      [[{ key: 'txn/k', target: 'value', op: '!=', value: new TextEncoder().encode('two') }], false],
      [[{ key: 'txn/k', target: 'version', value: 2 }], true],
      [[{ key: 'txn/k', target: 'version', op: '>', value: 2 }], false],
      [[{ key: 'txn/k', target: 'create', value: created }], true],
      [[{ key: 'txn/k', target: 'create', op: '<', value: created }], false],
      [[{ key: 'txn/k', target: 'mod', value: modified }], true],
      [[{ key: 'txn/k', target: 'mod', value: created }], false],
      [[{ key: 'txn/absent', target: 'create', value: 0 }], true], // a missing key has revisions 0
      [[{ key: 'txn/absent', target: 'value', value: '' }], false], // etcd: a value compare on a missing key fails
    ];
    for (const [compare, expected] of cases) {
      const r = await etcd.txn(compare, [get], [get, get]);
      expect(r.succeeded, JSON.stringify(compare)).toBe(expected);
      expect(r.responses).toHaveLength(expected ? 1 : 2);
      expect(r.responses[0]![0]).toMatchObject({ text: 'two', modRevision: modified });
      expect(r.revision).toBe(modified);
    }
    const w = await etcd.txn(
      [{ key: 'txn/k', target: 'mod', value: modified }],
      [{ put: { key: 'txn/k', value: 'three' } }, { put: { key: 'txn/l', value: 'x' } }, { get: { key: 'txn/', prefix: true } }, { del: { key: 'txn/m' } }],
    );
    expect(w.succeeded).toBe(true);
    expect(w.revision).toBe(modified + 1); // one txn, one revision
    expect(w.responses[0]).toBeNull();
    expect(w.responses[2]!.map((kv) => kv.text)).toEqual(['three', 'x', 'm']);
    expect(w.responses[3]).toBeNull();
    expect((await etcd.getPrefix('txn/')).map((kv) => kv.key)).toEqual(['txn/k', 'txn/l']);
  }, TEST_TIMEOUT_MS);

  it('two writers incrementing one counter by compare-and-swap 50 times each end at exactly 100', async () => {
    const writers = [new Etcd(cluster.endpoints), new Etcd(cluster.endpoints)];
    const increment = async (c: Etcd): Promise<void> => {
      for (let tries = 0; tries < 1_000; tries++) {
        const kv = await c.get('cas/counter');
        const next = String(kv ? Number(kv.text) + 1 : 1);
        const guard = kv ? { key: 'cas/counter', target: 'mod' as const, value: kv.modRevision } : { key: 'cas/counter', target: 'create' as const, value: 0 };
        if ((await c.txn([guard], [{ put: { key: 'cas/counter', value: next } }])).succeeded) return;
      }
      throw new Error('no increment in 1000 tries');
    };
    await Promise.all(writers.map(async (c) => {
      for (let i = 0; i < 50; i++) await increment(c);
    }));
    writers.forEach((c) => c.close());
    const counter = await etcd.get('cas/counter');
    expect(counter!.text).toBe('100');
    expect(counter!.version).toBe(100);
  }, TEST_TIMEOUT_MS);

  it('a key on a 1 s lease vanishes after expiry when nothing keeps the lease alive', async () => {
    const id = await etcd.leaseGrant(1);
    expect(id).toMatch(/^[0-9]+$/);
    await etcd.put('lease/short', 'v', { lease: id });
    expect((await etcd.get('lease/short'))!.lease).toBe(id);
    const ttl = await etcd.leaseKeepAlive(id); // one renewal: expires 1 s from now
    expect(ttl).toBe(1);
    const start = Date.now();
    expect(await until(async () => (await etcd.get('lease/short')) === null, 4_000)).toBe(true);
    expect(Date.now() - start).toBeGreaterThan(500);
    expect(await etcd.leaseKeepAlive(id)).toBeLessThanOrEqual(0); // etcd answers an unknown lease with no TTL
    const e = await rejection(etcd.leaseRevoke(id));
    expect(e.code).toBe('EIO');
    expect(e.message).toContain('requested lease not found');
    const p = await rejection(etcd.put('lease/orphan', 'v', { lease: id }));
    expect(p.code).toBe('EIO');
  }, TEST_TIMEOUT_MS);

  it('keepLease keeps a 1 s lease past 3 TTLs, and stop() revokes it at once', async () => {
    const lost: FlashpackError[] = [];
    const lease = await etcd.keepLease(1, (err) => lost.push(err));
    await etcd.put('lease/kept', 'v', { lease: lease.id });
    await sleep(3_300);
    expect((await etcd.get('lease/kept'))?.lease).toBe(lease.id);
    expect(lost).toEqual([]);
    await lease.stop();
    expect(await etcd.get('lease/kept')).toBeNull();
    await lease.stop(); // a second stop finds the lease gone and is quiet
    expect(lost).toEqual([]);
  }, TEST_TIMEOUT_MS);

  it('keepLease calls onLost once with ENXIO when the lease is revoked behind its back', async () => {
    const lost: FlashpackError[] = [];
    const lease = await etcd.keepLease(1, (err) => lost.push(err));
    await etcd.leaseRevoke(lease.id);
    expect(await until(() => lost.length > 0, 2_000)).toBe(true);
    await sleep(500);
    expect(lost).toHaveLength(1);
    expect(lost[0].code).toBe('ENXIO');
    expect(lost[0].message).toContain(lease.id);
    await lease.stop();
  }, TEST_TIMEOUT_MS);

  it('watchPrefix sees puts and deletes in order (from a past revision too), and close() ends it', async () => {
    const seen: string[] = [];
    const first = await etcd.put('watch/a', '1');
    const w = etcd.watchPrefix('watch/', (e) => seen.push(`${e.type} ${e.kv.key} ${e.kv.text}`), { fromRevision: first });
    await etcd.put('watch/b', '2');
    await etcd.put('watchless', 'not in the prefix');
    await etcd.txn([], [{ put: { key: 'watch/a', value: '3' } }, { del: { key: 'watch/b' } }]);
    await etcd.del('watch/', { prefix: true });
    const expected = ['put watch/a 1', 'put watch/b 2', 'put watch/a 3', 'delete watch/b ', 'delete watch/a '];
    expect(await until(() => seen.length >= expected.length, 3_000)).toBe(true);
    expect(seen).toEqual(expected);
    w.close();
    await etcd.put('watch/c', 'after close');
    await sleep(200);
    expect(seen).toHaveLength(expected.length);
  }, TEST_TIMEOUT_MS);

  it('watchPrefix from a compacted revision ends, calling onError once with EIO naming the revisions', async () => {
    const first = await etcd.put('compacted/a', '1');
    const last = await etcd.put('compacted/a', '2');
    const res = await fetch(`${cluster.endpoints[0]}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision: String(last) }) });
    expect(res.status).toBe(200);
    const errors: FlashpackError[] = [];
    const seen: string[] = [];
    const w = etcd.watchPrefix('compacted/', (e) => seen.push(e.kv.text), { fromRevision: first, onError: (err) => errors.push(err) });
    expect(await until(() => errors.length > 0, 3_000)).toBe(true);
    await sleep(300);
    expect(errors).toHaveLength(1);
    expect(errors[0].code).toBe('EIO');
    expect(errors[0].message).toContain(`revision ${first} was compacted (oldest kept: ${last})`);
    expect(seen).toEqual([]);
    w.close();
  }, TEST_TIMEOUT_MS);

  it('etcd errors surface as EIO with etcd\'s message; bad arguments as EINVAL naming the value', async () => {
    const e = await rejection(etcd.put('k', 'v', { lease: '12345' }));
    expect(e.code).toBe('EIO');
    expect(e.message).toContain('etcdserver: requested lease not found');
    const bad: [() => unknown, string][] = [
      [() => etcd.get(''), 'the string ""'],
      [() => etcd.put('k', 5 as unknown as string), 'the number 5'],
      [() => etcd.leaseKeepAlive('abc'), 'the string "abc"'],
      [() => etcd.leaseGrant(0), 'the number 0'],
      [() => etcd.txn([{ key: 'k', target: 'size' as 'mod', value: 1 }], []), 'the string "size"'],
      [() => etcd.txn([{ key: 'k', target: 'mod', op: '>=' as '>', value: 1 }], []), 'the string ">="'],
      [() => etcd.txn([{ key: 'k', target: 'mod', value: -1 }], []), 'the number -1'],
      [() => etcd.txn([], [{ nop: {} } as unknown as { get: { key: string } }]), 'success[0]'],
      [() => etcd.watchPrefix('w/', null as unknown as () => void), 'null'],
    ];
    for (const [call, names] of bad) {
      const err = await rejection((async () => call())());
      expect(err.code).toBe('EINVAL');
      expect(err.message).toContain(names);
    }
  }, TEST_TIMEOUT_MS);

  it('close() ends watches and keepalives, and later calls fail with ENXIO', async () => {
    const c = new Etcd(cluster.endpoints);
    const seen: KeyValue[] = [];
    c.watchPrefix('closing/', (e) => seen.push(e.kv));
    const lost: FlashpackError[] = [];
    const lease = await c.keepLease(1, (err) => lost.push(err));
    await etcd.put('closing/x', '1');
    expect(await until(() => seen.length === 1, 2_000)).toBe(true);
    c.close();
    await etcd.put('closing/y', '2');
    await sleep(200);
    expect(seen).toHaveLength(1);
    expect(lost).toEqual([]);
    expect((await rejection(c.get('closing/x'))).code).toBe('ENXIO');
    expect((await rejection(lease.stop())).code).toBe('ENXIO');
    await etcd.leaseRevoke(lease.id);
  }, TEST_TIMEOUT_MS);
});

describe('etcd client failures without a working etcd', () => {
  it('an unreachable endpoint fails with ENXIO quickly, naming the endpoint and cause', async () => {
    const port = await closedPort();
    const c = new Etcd(`http://127.0.0.1:${port}`);
    const start = Date.now();
    const e = await rejection(c.get('k'));
    expect(e.code).toBe('ENXIO');
    expect(e.message).toContain(`http://127.0.0.1:${port}`);
    expect(e.message).toMatch(/ECONNREFUSED|refused/i);
    expect(Date.now() - start).toBeLessThan(1_500);
    c.close();
  }, TEST_TIMEOUT_MS);

  it('a member that accepts but never answers fails with ETIMEDOUT at the deadline', async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const c = new Etcd(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, { timeoutMs: 300 });
    const start = Date.now();
    const e = await rejection(c.put('k', 'v'));
    expect(e.code).toBe('ETIMEDOUT');
    expect(Date.now() - start).toBeLessThan(1_500);
    c.close();
    sockets.forEach((s) => s.destroy());
    await new Promise((r) => server.close(r));
  }, TEST_TIMEOUT_MS);

  it('keepLease calls onLost once with ETIMEDOUT when etcd stays unreachable past the TTL', async () => {
    const cluster = await startEtcd();
    const etcd = new Etcd(cluster.endpoints);
    try {
      const lost: FlashpackError[] = [];
      const lease = await etcd.keepLease(1, (err) => lost.push(err));
      const killedAt = Date.now();
      cluster.kill(0);
      expect(await until(() => lost.length > 0, 3_000)).toBe(true);
      expect(Date.now() - killedAt).toBeLessThan(2_000); // about the TTL (1 s) after the last renewal, not later
      await sleep(500);
      expect(lost).toHaveLength(1);
      expect(lost[0].code).toBe('ETIMEDOUT');
      expect(lost[0].message).toContain(lease.id);
    } finally {
      etcd.close();
      await cluster.stop();
    }
  }, TEST_TIMEOUT_MS);

  it('bad endpoint strings fail with EINVAL naming the bad value', () => {
    const bad: [unknown, string][] = [
      ['', 'the string ""'],
      ['localhost:2379', 'the string "localhost:2379"'],
      ['ftp://127.0.0.1:2379', 'the string "ftp://127.0.0.1:2379"'],
      ['http://127.0.0.1:2379/v3', 'the string "http://127.0.0.1:2379/v3"'],
      ['http://127.0.0.1:2379,,http://127.0.0.1:2380', 'endpoints[1]'],
      [[], 'an array of 0 elements'],
      [42, 'the number 42'],
    ];
    for (const [endpoints, names] of bad) {
      let err: unknown = null;
      try {
        new Etcd(endpoints as string);
      } catch (e) {
        err = e;
      }
      expect(err, String(endpoints)).toBeInstanceOf(FlashpackError);
      expect((err as FlashpackError).code).toBe('EINVAL');
      expect((err as FlashpackError).message).toContain(names);
    }
    expect(() => new Etcd('http://127.0.0.1:2379', { timeoutMs: 0 })).toThrow(/timeoutMs/);
    expect(new Etcd(' http://127.0.0.1:2379/ ,https://[::1]:2379').endpoints).toEqual(['http://127.0.0.1:2379', 'https://[::1]:2379']);
  });
});

describe('etcd client against a three-member cluster', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcd({ members: 3 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('200 puts with all endpoints lose none while the leader is SIGKILLed', async () => {
    const leader = await findLeader(cluster.endpoints);
    // The leader first, so requests are on it when it dies.
    const order = [leader, ...[0, 1, 2].filter((i) => i !== leader)];
    const etcd = new Etcd(order.map((i) => cluster.endpoints[i]));
    let failed = 0;
    let longestMs = 0;
    for (let i = 0; i < 200; i++) {
      if (i === 50) cluster.kill(leader);
      const start = Date.now();
      try {
        await etcd.put(`ha/${String(i).padStart(3, '0')}`, String(i));
      } catch {
        failed++;
      }
      longestMs = Math.max(longestMs, Date.now() - start);
    }
    expect(failed).toBe(0);
    expect(longestMs).toBeLessThan(5_000);
    const kvs = await etcd.getPrefix('ha/');
    expect(kvs.map((kv) => kv.text)).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
    expect(await findLeader(cluster.endpoints)).not.toBe(leader);
    etcd.close();
    await cluster.restart(leader);
  }, TEST_TIMEOUT_MS);

  it('watchPrefix resumes on another member after the one it streams from dies, missing nothing', async () => {
    const etcd = new Etcd(cluster.endpoints); // the watch streams from endpoints[0]
    const seen: string[] = [];
    const w = etcd.watchPrefix('hw/', (e) => seen.push(e.kv.text));
    await sleep(200);
    const writer = new Etcd(cluster.endpoints.slice(1));
    for (let i = 0; i < 10; i++) await writer.put(`hw/${i}`, String(i));
    cluster.kill(0);
    for (let i = 10; i < 20; i++) await writer.put(`hw/${i}`, String(i));
    expect(await until(() => seen.length >= 20, 5_000)).toBe(true);
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    w.close();
    etcd.close();
    writer.close();
  }, TEST_TIMEOUT_MS);
});

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
