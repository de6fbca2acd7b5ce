/**
 * `flashpack create <path> --size n`: formats a volume (Volume.create) and
 * closes it. Every check of the options is Volume.create's own, so the
 * command refuses exactly what the library refuses (EEXIST over data unless
 * --overwrite, EINVAL for a size that is not a multiple of the block size, …).
 */
import * as fs from 'node:fs';
import { Volume } from '../vdo/volume.js';
import type { Codec, WritePolicy } from '../vdo/encodings.js';
import { fail, formatBytes, parseCommand, parseSize, print, printJson, runCommand, stringOption, type OptionSpec, type ParsedCommand } from './args.js';

export const createUsage = `usage: flashpack create <path> --size <n> [options]

Formats a flashpack volume at <path> (a new or empty file, or a block device).

options:
  --size <n>            logical size: 4096, 64M, 1G, 1.5T … (a multiple of the
                        block size; required)
  --block-size <n>      the volume block: 4K (default), 8K, 16K, 32K or 64K; each
                        block is deduplicated, compressed and packed whole
  --physical-size <n>   bytes of the image to use (default: the whole logical size
                        unreduced plus metadata; less makes a thin volume)
  --codec <c>           lz4 (default), deflate or none
  --no-dedupe           do not deduplicate
  --sync                write policy sync: a write is acknowledged when durable
                        (default async: durable at flush)
  --overwrite           format over whatever <path> holds
  --json                print the result as JSON
  -h, --help            this help
`;

/** The options create shares with copy (a new volume). */
export const CREATE_OPTIONS: Record<string, OptionSpec> = {
  size: { type: 'string' },
  'block-size': { type: 'string' },
  'physical-size': { type: 'string' },
  codec: { type: 'string' },
  'no-dedupe': { type: 'boolean' },
  sync: { type: 'boolean' },
};

const CODEC_NAMES: readonly Codec[] = ['lz4', 'deflate', 'none'];

export interface NewVolumeSettings {
  logicalSize?: number;
  /** The volume block (undefined: the library's default, 4 KiB). */
  blockBytes?: number;
  physicalSize?: number;
  codec: Codec;
  dedupe: boolean;
  writePolicy: WritePolicy;
}

/** The create flags of a parsed command line (sizes parsed; ranges are Volume.create's to check). */
export function newVolumeSettings(values: ParsedCommand['values']): NewVolumeSettings {
  const codec = stringOption(values, 'codec') ?? 'lz4';
  if (!CODEC_NAMES.includes(codec as Codec)) fail(`--codec must be one of ${CODEC_NAMES.join(', ')}, got '${codec}'`);
  const size = stringOption(values, 'size');
  const physical = stringOption(values, 'physical-size');
  const block = stringOption(values, 'block-size');
  return {
    logicalSize: size === undefined ? undefined : parseSize(size, '--size'),
    blockBytes: block === undefined ? undefined : parseSize(block, '--block-size'),
    physicalSize: physical === undefined ? undefined : parseSize(physical, '--physical-size'),
    codec: codec as Codec,
    dedupe: values['no-dedupe'] !== true,
    writePolicy: values.sync === true ? 'sync' : 'async',
  };
}

export async function createCommand(argv: string[]): Promise<number> {
  return runCommand('create', async () => {
    const { values, positionals } = parseCommand(argv, {
      name: 'create',
      usage: createUsage,
      options: { ...CREATE_OPTIONS, overwrite: { type: 'boolean' }, json: { type: 'boolean' } },
      positionals: ['path'],
    });
    const [path] = positionals;
    const s = newVolumeSettings(values);
    if (s.logicalSize === undefined) fail('--size is required');
    // One worker of each kind: formatting hashes and compresses nothing.
    const v = await Volume.create(path, {
      logicalSize: s.logicalSize,
      ...(s.blockBytes !== undefined ? { blockBytes: s.blockBytes } : {}),
      ...(s.physicalSize !== undefined ? { physicalSize: s.physicalSize } : {}),
      codec: s.codec,
      dedupe: s.dedupe,
      writePolicy: s.writePolicy,
      overwrite: values.overwrite === true,
      workers: 1,
      ioWorkers: 1,
    });
    const physicalSize = v.sb.physicalBlocks * 4096;
    const thin = v.thin;
    await v.close();
    const st = fs.statSync(path);
    const imageSize = st.isFile() ? st.size : physicalSize;
    const doc = { path, logicalSize: s.logicalSize, blockBytes: v.blockBytes, physicalSize, imageSize, codec: s.codec, dedupe: s.dedupe, writePolicy: s.writePolicy, thin };
    if (values.json === true) printJson(doc);
    else {
      print(
        `created ${path}: logical size ${formatBytes(doc.logicalSize)} (${doc.logicalSize} bytes), blocks of ${formatBytes(doc.blockBytes)}, image ${formatBytes(imageSize)}, ` +
          `codec ${doc.codec}, dedupe ${doc.dedupe ? 'on' : 'off'}, write policy ${doc.writePolicy}${thin ? ', thin' : ''}`,
      );
    }
    return 0;
  });
}
