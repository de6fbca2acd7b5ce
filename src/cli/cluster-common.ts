/** What every `flashpack cluster` subcommand shares: the --etcd option and a client closed on every path. */
import { Cluster } from '../replication/client.js';
import { fail, stringOption, type ParsedCommand } from './args.js';

export const ETCD_OPTION = '  --etcd <endpoints>   etcd client URLs, comma-separated (http://127.0.0.1:2379)';

/** --etcd, required by every subcommand; the etcd client checks each URL. */
export function etcdEndpoints(values: ParsedCommand['values']): string[] {
  return (stringOption(values, 'etcd') ?? fail('--etcd is required')).split(',');
}

/** Connects, runs fn, and closes the client however fn ends (it holds etcd and store sockets open). */
export async function withCluster<T>(etcd: string[], fn: (cluster: Cluster) => Promise<T>): Promise<T> {
  const cluster = await Cluster.connect({ etcd });
  try {
    return await fn(cluster);
  } finally {
    cluster.close();
  }
}

export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
