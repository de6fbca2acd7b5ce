/**
 * `flashpack cluster <subcommand>`: the operator's side of a replicated
 * cluster, through etcd (the metadata of record) and, for verify, the stores.
 * create-volume places a new volume's shards on the live stores; status
 * prints stores, volumes, shards and replica states as etcd has them; verify
 * reads every OK replica of every shard and compares them; drain and rm-store
 * move a store's replicas elsewhere (cluster-drain.ts). Each subcommand
 * connects, does its one thing, and closes the cluster client on every path.
 */
import process from 'node:process';
import { Cluster, type ClusterStatus } from '../replication/client.js';
import { verifyVolume, type VerifyReport } from '../replication/verify.js';
import { DEFAULT_SHARD_SIZE, type ShardInfo, type VolumeInfo } from '../replication/metadata.js';
import { fail, formatBytes, parseCommand, parseSize, print, printJson, runCommand, stringOption } from './args.js';
import { ETCD_OPTION, etcdEndpoints, plural, withCluster } from './cluster-common.js';
import { Progress } from './progress.js';
import { drainCommand, rmStoreCommand } from './cluster-drain.js';

/** A store's led shards are listed as at most this many ranges ("0-3,8,…"); the count says the rest. */
const RANGES_LISTED_MAX = 4;
const RESYNC_BAR_CELLS = 10;


export const createVolumeUsage = `usage: flashpack cluster create-volume <name> --etcd <endpoints> --size <n> [options]

Creates a replicated volume of <n> bytes, cut into shards, each placed on
--replicas distinct live stores (primaries rotate across them). Prints the
volume and which store leads which shards.

options:
${ETCD_OPTION}
  --size <n>           the volume's size: 4096, 64M, 4G, 1.5T (a multiple of 4 KiB)
  --replicas <n>       copies of each shard, on distinct stores (default 3)
  --shard-size <n>     bytes per shard, a multiple of 1 MiB (default ${formatBytes(DEFAULT_SHARD_SIZE)})
  --codec <name>       lz4 or deflate: how the stores compress the shards (default lz4)
  -h, --help           this help
`;

export const statusUsage = `usage: flashpack cluster status --etcd <endpoints> [--json]

Prints the live stores, then each volume and its shards: state (OK or
DEGRADED), epoch, primary, each replica's state, the shard's dirty regions
(what a returning replica copies) and each recovering replica's copy so far,
with a bar.

options:
${ETCD_OPTION}
  --json               one JSON document: {stores: [{id, address, capacity, free,
                       pid}], volumes: [{name, id, size, shardSize, replicas,
                       codec, state, shards: [{index, state, epoch, primary,
                       replicas: [{store, state, resync?: {copied,
                       total}}], dirtyRegions}]}]}
  -h, --help           this help
`;

export const verifyUsage = `usage: flashpack cluster verify <name> --etcd <endpoints> [--json]

Reads every OK replica of every shard of volume <name> through its store and
compares them, 1 MiB at a time. Run it with the volume quiet: a write in flight
between two reads shows as a difference. Exit 0 when every replica was read and
all agree; 1 when any differ or any replica was skipped (not OK).

options:
${ETCD_OPTION}
  --json               print the report as JSON: {volume, shards, bytesCompared,
                       replicasRead, skipped, differences}
  -h, --help           this help
`;

interface Subcommand {
  summary: string;
  run(argv: string[]): Promise<number>;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  'create-volume': { summary: 'create a replicated volume on the live stores', run: createVolumeCommand },
  status: { summary: 'stores, volumes, shards and replica states', run: statusCommand },
  verify: { summary: "compare every replica of a volume's shards", run: verifyCommand },
  drain: { summary: "move a store's replicas to other stores, online", run: (argv) => drainCommand(argv) },
  'rm-store': { summary: 'move a stopped store\'s replicas elsewhere and forget it', run: (argv) => rmStoreCommand(argv) },
};

export const clusterUsage = `usage: flashpack cluster <subcommand> [args]

Manages replicated volumes: their metadata lives in etcd, their data on the
stores (flashpack store); flashpack serve --etcd exports one over NBD.

subcommands:
${Object.entries(SUBCOMMANDS).map(([name, c]) => `  ${name.padEnd(13)}  ${c.summary}`).join('\n')}

'flashpack cluster <subcommand> --help' describes a subcommand.
`;

export async function clusterCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== undefined && Object.hasOwn(SUBCOMMANDS, sub)) return SUBCOMMANDS[sub].run(rest);
  return runCommand('cluster', async () => {
    const names = Object.keys(SUBCOMMANDS).join(', ');
    if (sub !== undefined && !sub.startsWith('-')) fail(`unknown subcommand '${sub}' (subcommands: ${names})`);
    // Answers --help, and names an unknown option as such.
    parseCommand(argv, { name: 'cluster', usage: clusterUsage, options: {}, positionals: ['subcommand'], optionalPositionals: 1 });
    fail(`missing <subcommand> (${names})`);
  });
}

// ---- create-volume -------------------------------------------------------------------------------

async function createVolumeCommand(argv: string[]): Promise<number> {
  return runCommand('cluster create-volume', async () => {
    const { values, positionals } = parseCommand(argv, {
      name: 'cluster create-volume',
      usage: createVolumeUsage,
      options: { etcd: { type: 'string' }, size: { type: 'string' }, replicas: { type: 'string' }, 'shard-size': { type: 'string' }, codec: { type: 'string' } },
      positionals: ['name'],
    });
    const [name] = positionals;
    const etcd = etcdEndpoints(values);
    const size = parseSize(stringOption(values, 'size') ?? fail('--size is required'), '--size');
    const shardText = stringOption(values, 'shard-size');
    const shardSize = shardText === undefined ? DEFAULT_SHARD_SIZE : parseSize(shardText, '--shard-size');
    const replicasText = stringOption(values, 'replicas');
    // The range (and the size rules) are createVolume's to judge: one place, one message.
    if (replicasText !== undefined && !/^\d+$/.test(replicasText)) fail(`--replicas must be a whole number, got '${replicasText}'`);
    const codec = stringOption(values, 'codec') ?? 'lz4';
    if (codec !== 'lz4' && codec !== 'deflate') fail(`--codec must be lz4 or deflate, got '${codec}'`);
    return withCluster(etcd, async (cluster) => {
      const info = await cluster.createVolume(name, {
        size, shardSize, codec, ...(replicasText !== undefined ? { replicas: Number(replicasText) } : {}),
      });
      const shards = (await cluster.meta.shards(name)).map((r) => r.info);
      print(`created ${volumeLine(info)}; ${primariesLine(shards)}`);
      return 0;
    });
  });
}

/** "volume vm1: 16.0 MiB (16777216 bytes), 4 shards of 4.0 MiB, 3 replicas, lz4" */
function volumeLine(v: Pick<VolumeInfo, 'name' | 'size' | 'shardSize' | 'replicas' | 'codec'> & { shards: number }): string {
  return `volume ${v.name}: ${formatBytes(v.size)} (${v.size} bytes), ${plural(v.shards, 'shard')} of ${formatBytes(v.shardSize)}, ${plural(v.replicas, 'replica')}, ${v.codec}`;
}

/** "primaries: s1 leads 2 shards (0,3), s2 leads 1 shard (1)": who leads what, stores in id order. */
function primariesLine(shards: ShardInfo[]): string {
  const led = new Map<string, number[]>();
  for (const s of shards) {
    const list = led.get(s.primary) ?? [];
    list.push(s.index);
    led.set(s.primary, list);
  }
  const stores = [...led.keys()].sort();
  return `primaries: ${stores.map((id) => `${id} leads ${plural(led.get(id)!.length, 'shard')} (${indexRanges(led.get(id)!)})`).join(', ')}`;
}

/** Ascending indexes as ranges, "0-3,8,10-12", at most RANGES_LISTED_MAX of them then "…". */
function indexRanges(sorted: number[]): string {
  const ranges: string[] = [];
  for (let i = 0; i < sorted.length && ranges.length <= RANGES_LISTED_MAX;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    ranges.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return ranges.length > RANGES_LISTED_MAX ? `${ranges.slice(0, RANGES_LISTED_MAX).join(',')},…` : ranges.join(',');
}

// ---- status --------------------------------------------------------------------------------------

async function statusCommand(argv: string[]): Promise<number> {
  return runCommand('cluster status', async () => {
    const { values } = parseCommand(argv, {
      name: 'cluster status',
      usage: statusUsage,
      options: { etcd: { type: 'string' }, json: { type: 'boolean' } },
      positionals: [],
    });
    const etcd = etcdEndpoints(values);
    return withCluster(etcd, async (cluster) => {
      const status = await cluster.status();
      if (values.json === true) printJson(statusDocument(status));
      else print(statusText(status));
      return 0;
    });
  });
}

/**
 * The --json document: the fields named in statusUsage, no more (a record's
 * other fields are etcd's internals and may change). ClusterStatus calls the
 * shard list shardList; the document calls it shards, as an operator would.
 */
export function statusDocument(s: ClusterStatus): unknown {
  return {
    stores: s.stores.map((st) => ({ id: st.id, address: st.address, capacity: st.capacity, free: st.free, pid: st.pid })),
    volumes: s.volumes.map((v) => ({
      name: v.name, id: v.id, size: v.size, shardSize: v.shardSize, replicas: v.replicas, codec: v.codec, state: v.state,
      shards: v.shardList.map((sh) => ({
        index: sh.index, state: sh.state, epoch: sh.epoch, primary: sh.primary,
        replicas: sh.replicas.map((r) => ({ store: r.store, state: r.state, ...(sh.resync[r.store] !== undefined ? { resync: sh.resync[r.store] } : {}) })),
        dirtyRegions: sh.dirtyRegions,
      })),
    })),
  };
}

function statusText(s: ClusterStatus): string {
  const out: string[] = [];
  if (s.stores.length === 0) out.push('stores: none registered');
  else {
    out.push('stores:');
    const rows = s.stores.map((st) => [st.id, st.address, `${formatBytes(st.free)} of ${formatBytes(st.capacity)}`]);
    out.push(...table([['ID', 'ADDRESS', 'FREE'], ...rows]));
  }
  if (s.volumes.length === 0) out.push('volumes: none');
  for (const v of s.volumes) {
    const degraded = v.shardList.filter((sh) => sh.state !== 'OK').length;
    out.push(`${volumeLine({ ...v, shards: v.shardList.length })}, ${v.state}${degraded > 0 ? `; ${degraded} DEGRADED` : ''}`);
    const rows = v.shardList.map((sh) => [
      String(sh.index), sh.state, String(sh.epoch), sh.primary, sh.replicas.map((r) => `${r.store}:${r.state}`).join(' '), String(sh.dirtyRegions),
      Object.entries(sh.resync).map(([id, p]) => `${id} ${bar(p.copied, p.total)} ${p.copied}/${p.total}`).join(' ') || '-',
    ]);
    out.push(...table([['SHARD', 'STATE', 'EPOCH', 'PRIMARY', 'REPLICAS', 'DIRTY', 'RESYNC'], ...rows]));
  }
  return out.join('\n');
}

/** A resync's progress as a ten-cell bar: "[######....]". */
function bar(done: number, total: number): string {
  const cells = total > 0 ? Math.round((Math.min(done, total) / total) * RESYNC_BAR_CELLS) : RESYNC_BAR_CELLS;
  return `[${'#'.repeat(cells)}${'.'.repeat(RESYNC_BAR_CELLS - cells)}]`;
}

/** Rows as indented, left-aligned columns two spaces apart (the last column is not padded). */
function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => `  ${r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ')}`);
}

// ---- verify --------------------------------------------------------------------------------------

async function verifyCommand(argv: string[]): Promise<number> {
  return runCommand('cluster verify', async () => {
    const { values, positionals } = parseCommand(argv, {
      name: 'cluster verify',
      usage: verifyUsage,
      options: { etcd: { type: 'string' }, json: { type: 'boolean' } },
      positionals: ['name'],
    });
    const [name] = positionals;
    const etcd = etcdEndpoints(values);
    return withCluster(etcd, async (cluster) => {
      const report = await verifyWithProgress(cluster, name);
      if (values.json === true) printJson(report);
      else print(verifyText(report));
      return report.differences.length === 0 && report.skipped.length === 0 && report.corrupt.length === 0 ? 0 : 1;
    });
  });
}

/** verifyVolume, with a progress bar over the volume's bytes when stderr is a terminal (a log gets none). */
async function verifyWithProgress(cluster: Cluster, name: string): Promise<VerifyReport> {
  if (process.stderr.isTTY !== true) return verifyVolume(cluster, name);
  // Only for the bar's sizes: a missing volume is verifyVolume's to report (ENOENT).
  const info = await cluster.meta.volume(name);
  const progress = new Progress(info?.size ?? 0, { unit: 'bytes', label: `verify ${name}`, tty: true });
  try {
    // Called as each shard starts: the shards before it are done.
    return await verifyVolume(cluster, name, (shard) => progress.update(Math.min(info?.size ?? 0, shard * (info?.shardSize ?? 0))));
  } finally {
    progress.finish();
  }
}

function verifyText(r: VerifyReport): string {
  const out: string[] = [];
  for (const d of r.differences) {
    const [reference, ...differing] = d.stores;
    out.push(`shard ${d.shard}: bytes [${d.offset}, ${d.offset + d.length}) of the shard, [${d.volumeOffset}, ${d.volumeOffset + d.length}) of the volume: ${differing.join(', ')} differ${differing.length === 1 ? 's' : ''} from ${reference}`);
  }
  for (const s of r.skipped) out.push(`shard ${s.shard}: replica on ${s.store} skipped (${s.state}, not OK)`);
  for (const c of r.corrupt) out.push(`shard ${c.shard}: bytes [${c.offset}, ${c.offset + c.length}) of the shard, [${c.volumeOffset}, ${c.volumeOffset + c.length}) of the volume: ${c.store} holds blocks that fail their data checks`);
  const counts = `${r.bytesCompared} bytes compared (${formatBytes(r.bytesCompared)}), ${plural(r.replicasRead, 'replica')} read, ${r.skipped.length} skipped`;
  let verdict = 'every replica agrees';
  if (r.differences.length > 0) verdict = `${plural(r.differences.length, 'region')} ${r.differences.length === 1 ? 'differs' : 'differ'}`;
  else if (r.corrupt.length > 0) verdict = `${plural(r.corrupt.length, 'region')} on a replica ${r.corrupt.length === 1 ? 'fails' : 'fail'} its data checks`;
  else if (r.skipped.length > 0) verdict = `the replicas read agree, but ${plural(r.skipped.length, 'replica')} could not be verified`;
  out.push(`volume ${r.volume}: ${plural(r.shards, 'shard')}, ${counts}; ${verdict}`);
  return out.join('\n');
}
