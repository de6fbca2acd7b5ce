/**
 * `flashpack serve` over TCP on 127.0.0.1 with TLS-PSK (nbdkit's --tls-psk
 * key file), against libnbd (nbdinfo, nbdcopy) and qemu (tls-creds-psk), as
 * real processes: the right key connects encrypted, a wrong key or an
 * unknown identity fails the handshake, a plain client is refused unless
 * `--tls on`, data goes through TLS intact, and the refusals at start-up (a
 * key file others may read, a non-loopback address without TLS) exit 1 with
 * a one-line error. Runs bin/flashpack.mjs, so `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { prng, randomBytes } from './helpers/data.js';
import { type ServeProcess, explain, flashpack, freePort, hasTool, killAll, ok, removeTempDirs, run, serve, tempDir } from './helpers/nbd.js';

const MiB = 1 << 20;
const size = 16 * MiB;
const dir = tempDir('nbd-tls');
const at = (...parts: string[]): string => path.join(dir, ...parts);

/** A qemu-style PSK directory (`<dir>/keys.psk`, mode 0600) holding `identity:hexkey`. */
function keyDir(name: string, identity: string, key: Buffer, mode = 0o600): string {
  const d = at(name);
  fs.mkdirSync(d, { recursive: true });
  const file = path.join(d, 'keys.psk');
  fs.writeFileSync(file, `${identity}:${key.toString('hex')}\n`, { mode });
  fs.chmodSync(file, mode); // whatever the umask
  return d;
}

const aliceKey = cryptoRandomBytes(32);
const good = keyDir('psk', 'alice', aliceKey);
const wrongKey = keyDir('wrong', 'alice', cryptoRandomBytes(32));
const stranger = keyDir('stranger', 'carol', aliceKey);
const pskFile = path.join(good, 'keys.psk');

const nbds = (port: number, user: string, keys: string): string => `nbds://${user}@127.0.0.1:${port}/?tls-psk-file=${path.join(keys, 'keys.psk')}`;
const plain = (port: number): string => `nbd://127.0.0.1:${port}/`;

let img: string;
const servers = new Set<ServeProcess>();

beforeAll(async () => {
  for (const tool of ['qemu-img', 'nbdinfo', 'nbdcopy']) expect(hasTool(tool), `${tool} is not on the PATH`).toBe(true);
  img = at('tls.img');
  ok(await flashpack(['create', img, '--size', '16M']));
});

afterAll(() => {
  killAll();
  removeTempDirs();
});

async function startTcp(image: string, extra: string[], host = '127.0.0.1'): Promise<{ server: ServeProcess; port: number }> {
  const port = await freePort();
  const server = await serve(image, { host, port }, extra);
  servers.add(server);
  return { server, port };
}

async function stop(s: ServeProcess): Promise<string> {
  servers.delete(s);
  return s.stop();
}

describe('TLS required (--tls-psk)', () => {
  let server: ServeProcess;
  let port: number;

  beforeAll(async () => {
    ({ server, port } = await startTcp(img, ['--tls-psk', pskFile]));
  });

  afterAll(async () => {
    if (servers.has(server)) await stop(server);
  });

  it('nbdinfo with the PSK connects over TLS (text and JSON say so)', async () => {
    const text = ok(await run('nbdinfo', [nbds(port, 'alice', good)])).stdout;
    expect(text).toMatch(/protocol: newstyle-fixed with TLS/);
    expect(text).toMatch(/export-size: 16777216/);
    const json = JSON.parse(ok(await run('nbdinfo', ['--json', nbds(port, 'alice', good)])).stdout) as { TLS: boolean; exports: Record<string, unknown>[] };
    expect(json.TLS).toBe(true);
    expect(json.exports[0]['export-size']).toBe(size);
    expect(json.exports[0].is_read_only).toBe(false);
  });

  it('a wrong key, or an identity the server does not know, fails the handshake: nbdinfo exits non-zero', async () => {
    for (const [user, keys] of [['alice', wrongKey], ['carol', stranger]] as const) {
      const r = await run('nbdinfo', [nbds(port, user, keys)]);
      expect(r.timedOut).toBe(false);
      expect(r.code, `${user} with ${keys}: ${r.stdout}`).not.toBe(0);
      expect(r.stderr).toMatch(/gnutls_handshake|TLS/);
      expect(r.stdout).not.toMatch(/export-size/);
    }
    expect(server.running).toBe(true);
  });

  it('a plain nbd:// client is refused (TLS required): nbdinfo and qemu-img fail', async () => {
    const r = await run('nbdinfo', [plain(port)]);
    expect(r.code, r.stdout).not.toBe(0);
    expect(r.stdout).not.toMatch(/export-size/);
    const q = await run('qemu-img', ['info', `nbd://127.0.0.1:${port}`]);
    expect(q.code, q.stdout).not.toBe(0);
    expect(q.stderr).toMatch(/TLS negotiation required/);
  });

  it('qemu-img info with tls-creds-psk (<dir>/keys.psk, username alice) reads the export', async () => {
    const r = ok(await run('qemu-img', [
      'info', '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${good},username=alice`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},tls-creds=tls0`,
    ]));
    expect(r.stdout).toMatch(/virtual size: 16 MiB \(16777216 bytes\)/);
    const bad = await run('qemu-img', [
      'info', '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${wrongKey},username=alice`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},tls-creds=tls0`,
    ]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/TLS handshake failed/);
  });

  it('nbdcopy over TLS (four connections) writes a few MiB of random and zero regions and reads them back identical', async () => {
    const data = new Uint8Array(6 * MiB);
    data.set(randomBytes(2 * MiB, prng(3)), 0);
    data.set(randomBytes(MiB, prng(4)), 4 * MiB);
    fs.writeFileSync(at('in.bin'), data);
    ok(await run('nbdcopy', ['--flush', '--connections=4', at('in.bin'), nbds(port, 'alice', good)]));
    ok(await run('nbdcopy', ['--connections=4', nbds(port, 'alice', good), at('out.bin')]));
    const out = fs.readFileSync(at('out.bin'));
    expect(out.length).toBe(size);
    expect(Buffer.compare(out.subarray(0, data.length), data)).toBe(0);
    expect(out.subarray(data.length).every((b) => b === 0)).toBe(true);
    // The copy also holds over qemu's TLS stack.
    ok(await run('qemu-img', [
      'convert', '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${good},username=alice`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},tls-creds=tls0`, '-O', 'raw', at('qemu.bin'),
    ]));
    expect(Buffer.compare(fs.readFileSync(at('qemu.bin')), out)).toBe(0);
  });

  it('stops on SIGTERM with exit 0 after the refused connections', async () => {
    expect(await stop(server)).toMatch(/closed cleanly/);
  });
});

describe('TLS optional (--tls on)', () => {
  it('a plain client and a TLS client both connect; the data written over TLS reads back in the clear', async () => {
    const { server, port } = await startTcp(img, ['--tls-psk', pskFile, '--tls', 'on']);
    try {
      const clear = ok(await run('nbdinfo', [plain(port)])).stdout;
      expect(clear).toMatch(/protocol: newstyle-fixed without TLS/);
      const secure = ok(await run('nbdinfo', [nbds(port, 'alice', good)])).stdout;
      expect(secure).toMatch(/protocol: newstyle-fixed with TLS/);
      ok(await run('nbdcopy', [plain(port), at('clear.bin')]));
      expect(Buffer.compare(fs.readFileSync(at('clear.bin')), fs.readFileSync(at('out.bin')))).toBe(0);
    } finally {
      await stop(server);
    }
  });
});

describe('TLS with x509 certificates (--tls-certificates)', () => {
  it('nbdinfo verifying the server against its CA connects over TLS; a client trusting another CA is refused', async () => {
    if (!hasTool('openssl')) return expect.fail('openssl is not on the PATH');
    const pki = at('pki');
    const other = at('other-ca');
    fs.mkdirSync(pki, { recursive: true });
    fs.mkdirSync(other, { recursive: true });
    const ssl = async (args: string[], cwd: string): Promise<void> => void ok(await run('openssl', args, { cwd }));
    await ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem', '-days', '2', '-subj', '/CN=flashpack test CA'], pki);
    await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server-key.pem', '-out', 'server.csr', '-subj', '/CN=localhost'], pki);
    fs.writeFileSync(path.join(pki, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
    await ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca-cert.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'server-cert.pem', '-days', '2', '-extfile', 'ext.cnf'], pki);
    await ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem', '-days', '2', '-subj', '/CN=another CA'], other);
    const trusting = at('client-trusts');
    fs.mkdirSync(trusting, { recursive: true });
    fs.copyFileSync(path.join(pki, 'ca-cert.pem'), path.join(trusting, 'ca-cert.pem'));
    const { server, port } = await startTcp(img, ['--tls-certificates', pki]);
    const good = await run('nbdinfo', [`nbds://127.0.0.1:${port}/?tls-certificates=${trusting}`]);
    expect(good.code, explain(good)).toBe(0);
    expect(good.stdout).toMatch(/with TLS/);
    const bad = await run('nbdinfo', [`nbds://127.0.0.1:${port}/?tls-certificates=${other}`]);
    expect(bad.code).not.toBe(0);
    const clear = await run('nbdinfo', [plain(port)]);
    expect(clear.code).not.toBe(0);
    await server.stop();
    servers.delete(server);
  });
});

describe('refusals at start-up', () => {
  let other: string;

  beforeAll(async () => {
    other = at('other.img');
    ok(await flashpack(['create', other, '--size', '4M']));
  });

  it('a PSK file others may read (mode 0644): serve exits 1 with one EACCES line naming the file', async () => {
    const open = keyDir('open', 'alice', aliceKey, 0o644);
    const r = await flashpack(['serve', other, '--listen', `127.0.0.1:${await freePort()}`, '--tls-psk', path.join(open, 'keys.psk')], { timeoutMs: 30_000 });
    expect(r.timedOut).toBe(false);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^flashpack serve: EACCES: .*keys\.psk.*644/);
  });

  it('0.0.0.0 without TLS: exit 1 with EINVAL; with --insecure it serves and stops cleanly', async () => {
    const port = await freePort();
    const r = await flashpack(['serve', other, '--listen', `0.0.0.0:${port}`], { timeoutMs: 30_000 });
    expect(r.timedOut).toBe(false);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^flashpack serve: EINVAL: .*0\.0\.0\.0/);
    // The address is on every interface for the moment this runs; nothing here connects from outside.
    const s = await serve(other, { host: '0.0.0.0', port }, ['--insecure']);
    servers.add(s);
    expect(await stop(s)).toMatch(/closed cleanly/);
  });

  it('the refused starts left no lock behind: both images pass flashpack check', async () => {
    for (const s of [...servers]) await stop(s);
    for (const image of [img, other]) expect(ok(await flashpack(['check', image, '--quiet'])).stdout).toMatch(/clean, 0 problems/);
  });
});
