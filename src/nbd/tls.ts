/**
 * TLS for NBD (NBD_OPT_STARTTLS): a pre-shared key file in nbdkit's
 * `--tls-psk` format (psktool's: one `identity:hexkey` per line), and/or an
 * x509 directory in nbdkit's `--tls-certificates` layout (server-cert.pem,
 * server-key.pem; clients are not asked for certificates, as nbdkit without
 * --tls-verify-peer). The PSK file must not be readable by others.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { FlashpackError, fromOsError } from '../errors.js';

export interface TlsOptions {
  /** A PSK file (`identity:hexkey` lines). */
  pskFile?: string;
  /** A directory holding server-cert.pem and server-key.pem (client certificates are not requested). */
  certDir?: string;
  /** TLS-only mode: no export is reachable without STARTTLS (nbdkit --tls=require). Default true. */
  required?: boolean;
}

/** Longest PSK file accepted (a key file, not a database). */
const PSK_FILE_BYTES_MAX = 1 << 20;
/** How long a client has to finish the TLS handshake. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** A ready TLS configuration: upgrade() turns a plain socket into an encrypted one. */
export class TlsConfig {
  readonly required: boolean;
  private readonly keys: Map<string, Buffer> | null;
  private readonly context: tls.SecureContext;

  private constructor(required: boolean, keys: Map<string, Buffer> | null, context: tls.SecureContext) {
    this.required = required;
    this.keys = keys;
    this.context = context;
  }

  /** Reads and checks the key material now, so a server with a bad key file never starts. EINVAL/ENOENT/EACCES. */
  static load(o: TlsOptions): TlsConfig {
    if (o.pskFile === undefined && o.certDir === undefined) {
      throw new FlashpackError('EINVAL', 'nbd tls: give a PSK file (pskFile) or a certificate directory (certDir)');
    }
    const lacking = runtimeWithoutPsk();
    if (o.pskFile !== undefined && lacking !== null) {
      throw new FlashpackError('ENOTSUP', `nbd tls: ${lacking}'s node:tls has no TLS-PSK (pskCallback); serve with x509 certificates (certDir), or under Node`);
    }
    const keys = o.pskFile === undefined ? null : readPskFile(o.pskFile);
    const ctx: tls.SecureContextOptions = { minVersion: 'TLSv1.2' };
    if (o.certDir !== undefined) {
      ctx.cert = readPem(o.certDir, 'server-cert.pem');
      ctx.key = readPem(o.certDir, 'server-key.pem');
    }
    if (keys !== null) {
      // GnuTLS clients (libnbd, qemu) offer PSK suites for TLS 1.2 and PSK key exchange for 1.3.
      ctx.ciphers = 'PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256:DHE-PSK-AES256-GCM-SHA384:ECDHE-PSK-CHACHA20-POLY1305:' + tls.DEFAULT_CIPHERS;
    }
    let context: tls.SecureContext;
    try {
      context = tls.createSecureContext(ctx);
    } catch (err) {
      throw new FlashpackError('EINVAL', `nbd tls: the certificate or key in ${o.certDir} is not usable: ${(err as Error).message}`, { cause: err });
    }
    return new TlsConfig(o.required !== false, keys, context);
  }

  /** Starts TLS on `socket` as the server; resolves when the handshake completes, rejects if it fails or times out. */
  upgrade(socket: Duplex): Promise<tls.TLSSocket> {
    const keys = this.keys;
    const secure = new tls.TLSSocket(socket as unknown as import('node:net').Socket, {
      isServer: true,
      secureContext: this.context,
      ...(keys !== null ? { pskCallback: (_s: tls.TLSSocket, identity: string) => keys.get(identity) ?? null } : {}),
    } as tls.TLSSocketOptions);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`TLS handshake took longer than ${HANDSHAKE_TIMEOUT_MS} ms`)), HANDSHAKE_TIMEOUT_MS);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        secure.destroy();
        reject(err);
      };
      secure.once('secure', () => {
        clearTimeout(timer);
        secure.off('error', fail);
        resolve(secure);
      });
      secure.once('error', fail);
      secure.once('close', () => fail(new Error('the client closed the connection during the TLS handshake')));
    });
  }
}

/** The name of a runtime whose node:tls lacks PSK (its handshakes fail: Deno has no PSK, Bun's BoringSSL asks for a certificate), or null. */
function runtimeWithoutPsk(): string | null {
  const g = globalThis as { Deno?: { version?: { deno?: string } }; Bun?: { version?: string } };
  if (g.Deno !== undefined) return `Deno ${g.Deno.version?.deno ?? ''}`.trim();
  if (g.Bun !== undefined) return `Bun ${g.Bun.version ?? ''}`.trim();
  return null;
}

/** identity → key. EINVAL naming the line for anything malformed; EACCES if others may read it. */
export function readPskFile(file: string): Map<string, Buffer> {
  let text: string;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new FlashpackError('EINVAL', `nbd tls: PSK file ${file} is not a regular file`);
    if (st.size > PSK_FILE_BYTES_MAX) throw new FlashpackError('EINVAL', `nbd tls: PSK file ${file} is ${st.size} bytes (at most ${PSK_FILE_BYTES_MAX})`);
    if ((st.mode & 0o077) !== 0) {
      throw new FlashpackError('EACCES', `nbd tls: PSK file ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof FlashpackError) throw err;
    throw fromOsError(err, `nbd tls: cannot read PSK file ${file}`);
  }
  const keys = new Map<string, Buffer>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.lastIndexOf(':');
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    if (colon <= 0 || !/^([0-9a-fA-F]{2})+$/.test(hex)) {
      throw new FlashpackError('EINVAL', `nbd tls: PSK file ${file} line ${i + 1} is not "identity:hexkey"`);
    }
    keys.set(identity, Buffer.from(hex, 'hex'));
  });
  if (keys.size === 0) throw new FlashpackError('EINVAL', `nbd tls: PSK file ${file} holds no key`);
  return keys;
}

function readPem(dir: string, name: string): Buffer {
  const file = path.join(dir, name);
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw fromOsError(err, `nbd tls: cannot read ${file}`);
  }
}
