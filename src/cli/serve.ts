/**
 * `flashpack serve <path>`: the volume over NBD until SIGINT or SIGTERM,
 * then a clean close (every acknowledged write flushed, the superblock
 * marked clean). While it serves, the volume is locked for writing, and
 * `flashpack stats` and `flashpack resize` ask this process over its control
 * socket instead of opening the image. `--etcd --volume` serves a replicated
 * volume instead: its stores hold the data, so there is no image, lock or
 * control socket here, and the close flushes every written shard.
 */
import process from 'node:process';
import { Volume, type ResizeOptions } from '../vdo/volume.js';
import { NbdServer, isLoopback, type NbdServerOptions } from '../nbd/server.js';
import type { ExportTarget } from '../nbd/connection.js';
import { startControl } from '../nbd/control.js';
import { fail, failWith, parseCommand, runCommand, stringOption, warn } from './args.js';

export const serveUsage = `usage: flashpack serve <path> (--socket <path> | --listen <host:port>) [options]
       flashpack serve --etcd <endpoints> --volume <name> (--socket <path> | --listen <host:port>) [options]

Serves the volume at <path> over NBD until SIGINT or SIGTERM, then closes it
cleanly. With --etcd, serves the cluster's replicated volume <name> instead
(flashpack cluster create-volume makes one). Clients: qemu, qemu-img, nbdcopy,
nbdinfo, fio, nbd-client.

options:
  --etcd <endpoints>       etcd client URLs, comma-separated (http://127.0.0.1:2379):
                           serve a cluster volume (no <path> then)
  --volume <name>          with --etcd: the cluster volume to serve
  --socket <path>          listen on a unix socket (created mode 0600)
  --listen <host:port>     listen on TCP ([::1]:10809 for IPv6); off loopback,
                           TLS is required unless --insecure
  --read-only              open the volume read-only and export it so
  --export-name <name>     the export's name (default: the file's name, or the
                           cluster volume's name); with one export, the empty
                           name reaches it too
  --tls-psk <file>         TLS with pre-shared keys, nbdkit's --tls-psk format
                           (identity:hexkey lines; the file must be mode 0600)
  --tls-certificates <dir> TLS with x509: server-cert.pem, server-key.pem
                           in <dir> (client certificates are not requested)
  --tls <on|require>       with a key: require (default) refuses clients that do
                           not start TLS; on lets them choose
  --insecure               allow plain TCP on a non-loopback address
  --max-connections <n>    connections at once (default 64)
  --quiet                  do not log refused connections
  -h, --help               this help

example:
  flashpack serve disk.img --socket /tmp/disk.sock &
  qemu-img info 'nbd+unix:///?socket=/tmp/disk.sock'
  flashpack serve --etcd http://127.0.0.1:2379 --volume vm1 --listen 127.0.0.1:10809
`;

/** What is exported: a local image or a cluster volume, and how each is shut. */
interface Source {
  /** Names it in the log lines: the path, or "cluster volume <name>". */
  label: string;
  description: string;
  target: ExportTarget;
  /** Called once the server listens (a local image starts its control socket). */
  started(server: NbdServer): Promise<void>;
  /** Flushes and closes; after the server has closed. */
  close(): Promise<void>;
}

export async function serveCommand(argv: string[]): Promise<number> {
  return runCommand('serve', async () => {
    const { values, positionals } = parseCommand(argv, {
      name: 'serve',
      usage: serveUsage,
      options: {
        socket: { type: 'string' },
        listen: { type: 'string' },
        etcd: { type: 'string' },
        volume: { type: 'string' },
        'read-only': { type: 'boolean' },
        'export-name': { type: 'string' },
        'tls-psk': { type: 'string' },
        'tls-certificates': { type: 'string' },
        tls: { type: 'string' },
        insecure: { type: 'boolean' },
        'max-connections': { type: 'string' },
        quiet: { type: 'boolean' },
      },
      // <path> is required unless --etcd names the volume instead: checked below.
      positionals: ['path'],
      optionalPositionals: 1,
    });
    const [path] = positionals;
    const etcd = stringOption(values, 'etcd');
    const volumeName = stringOption(values, 'volume');
    if (etcd !== undefined && path !== undefined) fail(`<path> '${path}' and --etcd exclude each other: --etcd serves the cluster volume named by --volume`);
    if (etcd === undefined && volumeName !== undefined) fail('--volume needs --etcd (the cluster that holds it)');
    if (etcd !== undefined && volumeName === undefined) fail('--etcd needs --volume <name> (the cluster volume to serve)');
    if (etcd === undefined && path === undefined) fail('missing <path>');
    const socket = stringOption(values, 'socket');
    const listen = stringOption(values, 'listen');
    if ((socket === undefined) === (listen === undefined)) fail('give exactly one of --socket and --listen');
    const where: Pick<NbdServerOptions, 'socket' | 'host' | 'port'> = socket !== undefined ? { socket } : parseListen(listen!);
    const pskFile = stringOption(values, 'tls-psk');
    const certDir = stringOption(values, 'tls-certificates');
    const tlsMode = stringOption(values, 'tls') ?? 'require';
    if (tlsMode !== 'on' && tlsMode !== 'require') fail(`--tls must be on or require, got '${tlsMode}'`);
    if (stringOption(values, 'tls') !== undefined && pskFile === undefined && certDir === undefined) fail('--tls needs --tls-psk or --tls-certificates');
    const maxText = stringOption(values, 'max-connections');
    const maxConnections = maxText === undefined ? undefined : Number(maxText);
    if (maxConnections !== undefined && (!Number.isInteger(maxConnections) || maxConnections < 1)) fail(`--max-connections must be a positive integer, got '${maxText}'`);
    if ('host' in where && pskFile === undefined && certDir === undefined && values.insecure !== true && !isLoopback(where.host!)) {
      failWith('EINVAL', `--listen ${listen}: ${where.host} is not a loopback address; serve it with --tls-psk or --tls-certificates, or say --insecure`);
    }
    const readOnly = values['read-only'] === true;
    const name = stringOption(values, 'export-name') ?? (path !== undefined ? basename(path) : volumeName!);
    const quiet = values.quiet === true;

    // Installed before anything opens (a signal during start-up closes what is open),
    // and kept for the whole close: a second signal (a supervisor, a
    // process group's SIGTERM) must not kill the process while it flushes.
    let stopping = false;
    let onSignal = (_signal: string): void => {};
    const stopped = new Promise<void>((resolve) => {
      onSignal = (signal) => {
        if (stopping) return warn(`flashpack serve: ${signal}: already closing, flushing the volume`);
        stopping = true;
        warn(`flashpack serve: ${signal}: closing`);
        resolve();
      };
    });
    const onInt = (): void => onSignal('SIGINT');
    const onTerm = (): void => onSignal('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    const unhook = (): void => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
    };
    let source: Source;
    try {
      source = path !== undefined ? await openImage(path, readOnly) : await openClusterVolume(etcd!, volumeName!);
    } catch (err) {
      unhook();
      throw err;
    }
    let server: NbdServer;
    try {
      server = await NbdServer.listen({
        ...where,
        exports: [{ name, description: source.description, target: source.target, readOnly }],
        ...(pskFile !== undefined || certDir !== undefined ? { tls: { pskFile, certDir, required: tlsMode === 'require' } } : {}),
        insecure: values.insecure === true,
        ...(maxConnections !== undefined ? { maxConnections } : {}),
        log: quiet ? () => {} : (line) => warn(line),
      });
    } catch (err) {
      unhook();
      await source.close();
      throw err;
    }
    try {
      await source.started(server);
    } catch (err) {
      await server.close().catch(() => {});
      await source.close().catch(() => {});
      unhook();
      throw err;
    }
    warn(`flashpack serve: ${source.label} (${source.target.logicalSize} bytes${readOnly ? ', read-only' : ''}) at ${uriOf(server, name, pskFile !== undefined || certDir !== undefined)}`);

    await stopped;
    try {
      await server.close();
    } finally {
      try {
        await source.close();
      } finally {
        unhook();
      }
    }
    warn(`flashpack serve: ${source.label} closed cleanly`);
    return 0;
  });
}

/** A local image: locked for writing while open, with a control socket for `flashpack stats`. */
async function openImage(path: string, readOnly: boolean): Promise<Source> {
  const volume = await Volume.open(path, { readOnly });
  let control: { close(): Promise<void> } | undefined;
  return {
    label: path,
    description: `flashpack volume ${path}`,
    target: volume,
    async started(server) {
      control = await startControl(path, {
        stats: () => ({ ...volume.stats(), nbd: server.stats() }),
        // `flashpack resize` of this image: new connections see the new size (NBD has no resize notice).
        resize: async (sizes) => {
          const from = { logicalSize: volume.logicalSize, physicalSize: volume.physicalSize };
          await volume.resize(sizes as ResizeOptions);
          return { from, logicalSize: volume.logicalSize, physicalSize: volume.physicalSize };
        },
      });
    },
    async close() {
      await control?.close().catch(() => {});
      await volume.close();
    },
  };
}

/**
 * A cluster volume. The replication modules are loaded only here, so serving
 * a local image pays nothing for them. Its close flushes every shard written
 * through it; the etcd client and store connections go even if that fails.
 */
async function openClusterVolume(etcd: string, name: string): Promise<Source> {
  const { Cluster } = await import('../replication/client.js');
  const cluster = await Cluster.connect({ etcd: etcd.split(',') });
  const opened = await cluster.openVolume(name).catch((err: unknown) => {
    cluster.close();
    throw err;
  });
  return {
    label: `cluster volume ${name}`,
    description: `flashpack cluster volume ${name} (${opened.info.shards} shards, ${opened.info.replicas} replicas)`,
    target: opened,
    async started() {},
    async close() {
      try {
        await opened.close();
      } finally {
        cluster.close();
      }
    },
  };
}

/** host:port, [v6]:port, or a bare port (loopback). */
function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text);
  if (m === null) fail(`--listen must be host:port or [v6-address]:port, got '${text}'`);
  const port = Number(m[3]);
  if (port > 65535) fail(`--listen port ${port} is more than 65535`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

function basename(p: string): string {
  return p.replace(/\/+$/, '').split('/').pop() ?? p;
}

function uriOf(server: NbdServer, name: string, tls: boolean): string {
  const a = server.address;
  const scheme = tls ? 'nbds' : 'nbd';
  if ('socket' in a) return `${scheme}+unix:///${encodeURIComponent(name)}?socket=${a.socket}`;
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  return `${scheme}://${host}:${a.port}/${encodeURIComponent(name)}`;
}
