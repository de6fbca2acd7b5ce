/**
 * `flashpack cluster drain <store>` and `flashpack cluster rm-store <store>`:
 * move a store's replicas to other live stores, online (replication/drain.ts),
 * with a progress bar over the shards on a terminal and a line per shard
 * otherwise; rm-store does it for a stopped store and then forgets it.
 */
import process from 'node:process';
import { drainStore, removeStore, type DrainReport, type DrainStep } from '../replication/drain.js';
import { checkStoreId } from '../replication/metadata.js';
import { parseCommand, print, printJson, runCommand } from './args.js';
import { ETCD_OPTION, etcdEndpoints, plural, withCluster } from './cluster-common.js';
import { Progress } from './progress.js';

export const drainUsage = `usage: flashpack cluster drain <store> --etcd <endpoints> [--json]

Moves every replica on <store> to other live stores while the volumes stay
in use: for each shard, a replica on the live store with the most free space
outside the shard copies the whole shard from its primary; once it is OK, a
<store> that leads the shard hands it off, and <store>'s replica leaves (its
store deletes the file). A shard never has fewer copies than before.
Interrupted, run it again: it carries on.

options:
${ETCD_OPTION}
  --json               print {store, moved: [{volume, shard, to, bytes}]}
  -h, --help           this help
`;

export const rmStoreUsage = `usage: flashpack cluster rm-store <store> --etcd <endpoints> [--json]

Removes a stopped store from the cluster: its replicas are copied from their
other replicas to live stores (as drain does), then it is forgotten. Refused
(EBUSY) while the store is running: stop it first, or drain it while it runs.

options:
${ETCD_OPTION}
  --json               print {store, moved: [{volume, shard, to, bytes}]}
  -h, --help           this help
`;

export function drainCommand(argv: string[]): Promise<number> {
  return moveCommand(argv, 'drain', drainUsage);
}

export function rmStoreCommand(argv: string[]): Promise<number> {
  return moveCommand(argv, 'rm-store', rmStoreUsage);
}

async function moveCommand(argv: string[], sub: 'drain' | 'rm-store', usage: string): Promise<number> {
  return runCommand(`cluster ${sub}`, async () => {
    const { values, positionals } = parseCommand(argv, { name: `cluster ${sub}`, usage, options: { etcd: { type: 'string' }, json: { type: 'boolean' } }, positionals: ['store'] });
    const id = checkStoreId(positionals[0]);
    const etcd = etcdEndpoints(values);
    return withCluster(etcd, async (cluster) => {
      let progress: Progress | null = null;
      const onStep = (s: DrainStep): void => {
        if (process.stderr.isTTY === true) {
          progress ??= new Progress(s.total, { unit: 'blocks', label: `${sub} ${id}`, tty: true });
          progress.update(s.done + (s.step === 'moved' ? 0 : 0.5), s.total);
        } else if (s.step !== 'copying' && s.step !== 'removing') {
          process.stderr.write(`${sub} ${id}: shard ${s.shard} of ${s.volume}: ${s.step} ${s.step === 'moved' ? `to ${s.to}` : s.to} (${s.done} of ${s.total} moved)\n`);
        }
      };
      let report: DrainReport;
      try {
        report = sub === 'drain' ? await drainStore(cluster, id, { onStep }) : await removeStore(cluster, id, { onStep });
      } finally {
        (progress as Progress | null)?.finish();
      }
      if (values.json === true) printJson(report);
      else print(`${sub} ${id}: ${plural(report.moved.length, 'shard')} moved${report.moved.length > 0 ? ` (${report.moved.map((m) => `${m.volume}#${m.shard} → ${m.to}`).join(', ')})` : ''}; ${id} holds no replica now`);
      return 0;
    });
  });
}
