/**
 * `flashpack store`: the store daemon. Registers in etcd under a lease, hosts
 * shard replicas as volume files in its data directory, serves the data
 * protocol on --listen until SIGINT or SIGTERM, then closes every replica
 * cleanly and leaves etcd.
 */
import process from 'node:process';
import { Store } from '../replication/store.js';
import { fail, parseCommand, runCommand, stringOption, warn } from './args.js';

export const storeUsage = `usage: flashpack store --etcd <endpoints> --dir <data dir> --listen <host:port> [--id <name>]

Runs a store: it registers in etcd (alive while its lease lives), hosts shard
replicas as flashpack volumes in <data dir>/<volume>/<shard>.img, and serves
the replication data protocol on <host:port> until SIGINT or SIGTERM.

options:
  --etcd <endpoints>   etcd client URLs, comma-separated (http://127.0.0.1:2379)
  --dir <path>         the data directory (created if absent; it keeps the store's id)
  --listen <host:port> where to serve the data protocol (port 0: any free port)
  --id <name>          the store's id (default: the one saved in --dir, else a random one)
  --lease-ttl <s>      seconds the registration outlives the process (default 3)
  --io-timeout <ms>    a replica that does not answer within this is failed (default 5000)
  --quiet              log nothing but errors
  -h, --help           this help
`;

export async function storeCommand(argv: string[]): Promise<number> {
  return runCommand('store', async () => {
    const { values } = parseCommand(argv, {
      name: 'store',
      usage: storeUsage,
      options: {
        etcd: { type: 'string' }, dir: { type: 'string' }, listen: { type: 'string' }, id: { type: 'string' },
        'lease-ttl': { type: 'string' }, 'io-timeout': { type: 'string' }, quiet: { type: 'boolean' },
      },
      positionals: [],
    });
    const etcd = stringOption(values, 'etcd') ?? fail('--etcd is required');
    const dir = stringOption(values, 'dir') ?? fail('--dir is required');
    const listen = stringOption(values, 'listen') ?? fail('--listen is required');
    const number = (name: string, lo: number, hi: number): number | undefined => {
      const t = stringOption(values, name);
      if (t === undefined) return undefined;
      const n = Number(t);
      if (!Number.isInteger(n) || n < lo || n > hi) fail(`--${name} must be an integer from ${lo} to ${hi}, got '${t}'`);
      return n;
    };
    const leaseTtl = number('lease-ttl', 1, 3600);
    const ioTimeoutMs = number('io-timeout', 100, 600_000);
    const quiet = values.quiet === true;
    let stopping = false;
    let wake = (): void => {};
    const stopped = new Promise<void>((r) => (wake = r));
    const onSignal = (signal: string): void => {
      if (stopping) return warn(`flashpack store: ${signal}: already closing`);
      stopping = true;
      warn(`flashpack store: ${signal}: closing`);
      wake();
    };
    const onInt = (): void => onSignal('SIGINT');
    const onTerm = (): void => onSignal('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    try {
      const store = await Store.start({
        etcd: etcd.split(','), dir, listen, id: stringOption(values, 'id'),
        ...(leaseTtl !== undefined ? { leaseTtl } : {}), ...(ioTimeoutMs !== undefined ? { ioTimeoutMs } : {}),
        log: quiet ? () => {} : (line) => warn(line),
        // Undocumented: the ordering test's proof that it can fail (see StoreOptions.testOnly).
        testOnly: {
          fanoutJitterMs: Number(process.env.FLASHPACK_TEST_FANOUT_JITTER_MS ?? 0) || 0,
          unorderedFanout: process.env.FLASHPACK_TEST_UNORDERED_FANOUT === '1',
        },
      });
      warn(`flashpack store: ${store.id} serving ${store.address} from ${dir}`);
      await stopped;
      await store.close();
      warn(`flashpack store: ${store.id} closed cleanly`);
      return 0;
    } finally {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
    }
  });
}
