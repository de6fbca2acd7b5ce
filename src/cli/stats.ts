/**
 * `flashpack stats <path>`: a volume's statistics in vdostats' format. A
 * served volume is asked through its control socket (live numbers from the
 * server, which holds the write lock); otherwise the image is opened
 * read-only, which never writes it. Numbers as vdostats computes them:
 * 1K-blocks = physical blocks × 4, Used = data + overhead blocks, Use%
 * rounded; Space saving% is the volume's savingPercent, rounded (N/A while
 * nothing is mapped, as vdostats prints it).
 */
import { Volume, type VolumeStats } from '../vdo/volume.js';
import { FlashpackError } from '../errors.js';
import { askServer } from '../nbd/control.js';
import { parseCommand, print, printJson, runCommand } from './args.js';

export const statsUsage = `usage: flashpack stats <path> [options]

Prints a volume's statistics as vdostats does. A volume being served
(flashpack serve) is asked through its server; otherwise the image is
opened read-only.

options:
  --human-readable   sizes in K, M, G, T instead of 1K-blocks
  --si               with --human-readable: units of 1000, not 1024
  --verbose          every statistic, one "name : value" line each
  --json             one JSON document: {device, source, stats, kBlocks, used,
                     available, usePercent, savingPercent}
  -h, --help         this help
`;

/** The volume block of stats `s` (a server of a build before block sizes sends none: 4 KiB). */
const blockBytesOf = (s: VolumeStats): number => s.blockBytes ?? 4096;

export interface DfNumbers {
  kBlocks: number;
  used: number;
  available: number;
  usePercent: number;
  savingPercent: number;
}

/** vdostats' getDFStats, in 1K-blocks. */
export function dfNumbers(s: VolumeStats): DfNumbers {
  const used = s.dataBlocksUsed + s.overheadBlocksUsed;
  const kb = blockBytesOf(s) / 1024;
  return {
    kBlocks: s.physicalBlocks * kb,
    used: used * kb,
    available: (s.physicalBlocks - used) * kb,
    usePercent: s.physicalBlocks === 0 ? 0 : Math.round((100 * used) / s.physicalBlocks),
    savingPercent: Math.round(s.savingPercent),
  };
}

/** vdostats' printSizeAsHumanReadable: one decimal and a unit letter. */
function human(bytes: number, si: boolean): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  const divisor = si ? 1000 : 1024;
  let v = bytes;
  let i = 0;
  while (v >= divisor && i < units.length - 1) {
    v /= divisor;
    i++;
  }
  return `${v.toFixed(1)}${units[i]}`;
}

/** The df-style table: a header and the device's line (vdostats' widths: name ≥ 6, then 9 9 9 4 13). */
export function dfTable(device: string, s: VolumeStats, opts: { humanReadable: boolean; si: boolean }): string {
  const d = dfNumbers(s);
  const w = Math.max(6, device.length);
  const header = `${'Device'.padEnd(w)} ${(opts.humanReadable ? 'Size' : '1K-blocks').padStart(9)} ${'Used'.padStart(9)} ${'Available'.padStart(9)} ${'Use%'.padStart(4)} ${'Space saving%'.padStart(13)}`;
  const cols = opts.humanReadable
    ? [d.kBlocks, d.used, d.available].map((k) => human(k * 1024, opts.si))
    : [d.kBlocks, d.used, d.available].map(String);
  const saving = s.logicalBlocksUsed === 0 ? 'N/A' : `${d.savingPercent}%`;
  const line = `${device.padEnd(w)} ${cols[0].padStart(9)} ${cols[1].padStart(9)} ${cols[2].padStart(9)} ${`${d.usePercent}%`.padStart(4)} ${saving.padStart(13)}`;
  return `${header}\n${line}`;
}

/** vdostats --verbose: "name : value" lines under the device, vdostats' names where it has the statistic. */
export function verboseLines(device: string, s: VolumeStats, extra: { writePolicy?: string; source: string }): string {
  const d = dfNumbers(s);
  const rows: [string, string | number][] = [
    ['data blocks used', s.dataBlocksUsed],
    ['overhead blocks used', s.overheadBlocksUsed],
    ['logical blocks used', s.logicalBlocksUsed],
    ['physical blocks', s.physicalBlocks],
    ['logical blocks', s.logicalBlocks],
    ['1K-blocks', d.kBlocks],
    ['1K-blocks used', d.used],
    ['1K-blocks available', d.available],
    ['used percent', d.usePercent],
    ['saving percent', s.logicalBlocksUsed === 0 ? 'N/A' : d.savingPercent],
    ['block size', blockBytesOf(s)],
    ...(extra.writePolicy !== undefined ? [['write policy', extra.writePolicy] as [string, string]] : []),
    ['thin', s.thin ? 'yes' : 'no'],
    ['source', extra.source],
    ['dedupe advice valid', s.dedupeAdviceValid],
    ['dedupe advice stale', s.dedupeAdviceStale],
    ['concurrent data matches', s.dedupeConcurrentShared],
    ['zero blocks written', s.zeroBlocksWritten],
    ['compressed fragments written', s.compressedFragmentsWritten],
    ['compressed blocks written', s.compressedBlocksWritten],
    ['compressed fragments in packer', s.compressedFragmentsInPacker],
    ['journal entries written', s.journalEntriesWritten],
    ['journal blocks written', s.journalBlocksWritten],
    ['block map cache hits', s.blockMapCacheHits],
    ['block map cache misses', s.blockMapCacheMisses],
    ['block map pages written', s.blockMapPagesWritten],
    ...(s.currentViosInProgress !== undefined ? [
      ['current VDO IO requests in progress', s.currentViosInProgress],
      ['maximum VDO IO requests in progress', s.maxViosInProgress],
    ] as [string, number][] : []),
    ['bios in read', s.biosIn.read],
    ['bios in write', s.biosIn.write],
    ['bios in discard', s.biosIn.discard],
    ['bios in flush', s.biosIn.flush],
    ['bios out read', s.biosOut.read],
    ['bios out write', s.biosOut.write],
    ['bios out flush', s.biosOut.flush],
    ['write amplification ratio', s.writeAmplification],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return [`${device} : `, ...rows.map(([k, v]) => `  ${k.padEnd(w)} : ${v}`)].join('\n');
}

/** Checks what a server sent is shaped like VolumeStats (a server of another version would not be). */
function asStats(v: unknown): VolumeStats {
  const s = v as Partial<VolumeStats> | null;
  const fields = ['physicalBlocks', 'logicalBlocks', 'dataBlocksUsed', 'overheadBlocksUsed', 'logicalBlocksUsed', 'savingPercent'] as const;
  if (s === null || typeof s !== 'object' || fields.some((f) => typeof s[f] !== 'number') || typeof s.biosIn !== 'object' || typeof s.biosOut !== 'object') {
    throw new FlashpackError('ECORRUPT', 'stats: the server answered with something that is not volume statistics');
  }
  return s as VolumeStats;
}

export async function statsCommand(argv: string[]): Promise<number> {
  return runCommand('stats', async () => {
    const { values, positionals } = parseCommand(argv, {
      name: 'stats',
      usage: statsUsage,
      options: { json: { type: 'boolean' }, verbose: { type: 'boolean' }, 'human-readable': { type: 'boolean' }, si: { type: 'boolean' } },
      positionals: ['path'],
    });
    const [device] = positionals;
    let stats: VolumeStats;
    let source: 'server' | 'offline';
    let writePolicy: string | undefined;
    const live = await askServer(device, 'stats');
    if (live !== null) {
      stats = asStats(live);
      source = 'server';
      writePolicy = typeof (live as { writePolicy?: unknown }).writePolicy === 'string' ? (live as { writePolicy: string }).writePolicy : undefined;
    } else {
      // Read-only never writes the image; EBUSY if a writer (not a serving flashpack) holds it.
      const v = await Volume.open(device, { readOnly: true, workers: 1, ioWorkers: 1, cachePages: 2 });
      try {
        stats = v.stats();
        writePolicy = v.sb.writePolicy;
      } finally {
        await v.close();
      }
      source = 'offline';
    }
    if (values.json === true) printJson({ device, source, stats, ...dfNumbers(stats) });
    else if (values.verbose === true) print(verboseLines(device, stats, { writePolicy, source }));
    else print(dfTable(device, stats, { humanReadable: values['human-readable'] === true || values.si === true, si: values.si === true }));
    return 0;
  });
}
