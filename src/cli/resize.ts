/**
 * `flashpack resize <path> [--size n] [--physical-size n]`: grows a volume's
 * logical and/or physical size (Volume.resize): a volume being served is
 * grown by its server (asked over its control socket), any other is opened,
 * grown and closed. The volume must not be open elsewhere (a
 * served volume is refused, EBUSY, naming who holds it); shrinking is refused.
 */
import { FlashpackError } from '../errors.js';
import { askServer } from '../nbd/control.js';
import { Volume, type ResizeOptions } from '../vdo/volume.js';
import { fail, formatBytes, parseCommand, parseSize, print, printJson, runCommand, stringOption } from './args.js';

export const resizeUsage = `usage: flashpack resize <path> [--size <n>] [--physical-size <n>] [options]

Grows the logical size of a volume (writes its superblocks, nothing else: the
block map grows on demand), its physical size (extends the image file, or
takes in a block device grown beforehand; moves the reference count region
to the new end), or both. A volume being served (flashpack serve) is grown
by its server while I/O goes on; NBD clients see the new size on their next
connection. Shrinking is refused.

options:
  --size <n>           the new logical size: 64M, 1G, 1.5T … (a multiple of
                       the block size, at least the current size, at most 1 PiB)
  --physical-size <n>  the new physical size (a multiple of 4096, at least the
                       current size, under 16 TiB)
  --json               print the result as JSON ("served": grown by its server)
  -h, --help           this help

At least one of --size and --physical-size is required.
`;

export async function resizeCommand(argv: string[]): Promise<number> {
  return runCommand('resize', async () => {
    const { values, positionals } = parseCommand(argv, {
      name: 'resize',
      usage: resizeUsage,
      options: { size: { type: 'string' }, 'physical-size': { type: 'string' }, json: { type: 'boolean' } },
      positionals: ['path'],
    });
    const [path] = positionals;
    const size = stringOption(values, 'size');
    const physical = stringOption(values, 'physical-size');
    if (size === undefined && physical === undefined) fail('--size or --physical-size is required');
    const logicalSize = size === undefined ? undefined : parseSize(size, '--size');
    const physicalSize = physical === undefined ? undefined : parseSize(physical, '--physical-size');
    const { from, to, served } = await grow(path, { logicalSize, physicalSize });
    if (values.json === true) printJson({ path, from: from.logicalSize, logicalSize: to.logicalSize, fromPhysical: from.physicalSize, physicalSize: to.physicalSize, served });
    else {
      const parts: string[] = [];
      if (logicalSize !== undefined) parts.push(`logical size ${formatBytes(from.logicalSize)} → ${formatBytes(to.logicalSize)} (${to.logicalSize} bytes)`);
      if (physicalSize !== undefined) parts.push(`physical size ${formatBytes(from.physicalSize)} → ${formatBytes(to.physicalSize)} (${to.physicalSize} bytes)`);
      print(`resized ${path}${served ? ' (served: new NBD connections see the new size)' : ''}: ${parts.join('; ')}`);
    }
    return 0;
  });
}

interface Sizes {
  logicalSize: number;
  physicalSize: number;
}

/** Grows the volume at `path`: through the process serving it, if one answers, else opened here. */
async function grow(path: string, sizes: ResizeOptions): Promise<{ from: Sizes; to: Sizes; served: boolean }> {
  const answer = await askServer(path, 'resize', sizes);
  if (answer !== null) {
    const a = answer as { from?: Partial<Sizes> } & Partial<Sizes>;
    const size = (x: unknown): number => (typeof x === 'number' && Number.isSafeInteger(x) ? x : NaN);
    const from = { logicalSize: size(a.from?.logicalSize), physicalSize: size(a.from?.physicalSize) };
    const to = { logicalSize: size(a.logicalSize), physicalSize: size(a.physicalSize) };
    if ([from.logicalSize, from.physicalSize, to.logicalSize, to.physicalSize].some(Number.isNaN)) {
      throw new FlashpackError('EINTERNAL', `flashpack resize: the server serving ${path} answered ${JSON.stringify(answer).slice(0, 200)}, not the sizes`);
    }
    return { from, to, served: true };
  }
  const v = await Volume.open(path, { workers: 1, ioWorkers: 1 });
  const from = { logicalSize: v.logicalSize, physicalSize: v.physicalSize };
  try {
    await v.resize(sizes);
  } finally {
    await v.close();
  }
  return { from, to: { logicalSize: v.logicalSize, physicalSize: v.physicalSize }, served: false };
}
