/**
 * `flashpack resize <path> --size n`: grows a volume's logical size
 * (Volume.resize) and closes it. The volume must not be open elsewhere (a
 * served volume is refused, EBUSY, naming who holds it); shrinking is refused.
 */
import { Volume } from '../vdo/volume.js';
import { fail, formatBytes, parseCommand, parseSize, print, printJson, runCommand, stringOption } from './args.js';

export const resizeUsage = `usage: flashpack resize <path> --size <n> [options]

Grows the logical size of a volume (writes its superblocks, nothing else: the
block map grows on demand). Shrinking is refused, as is growing the physical
size (copy the volume to a larger one instead).

options:
  --size <n>    the new logical size: 64M, 1G, 1.5T … (a multiple of 4096, at
                least the current size, at most 1 PiB; required)
  --json        print the result as JSON
  -h, --help    this help
`;

export async function resizeCommand(argv: string[]): Promise<number> {
  return runCommand('resize', async () => {
    const { values, positionals } = parseCommand(argv, {
      name: 'resize',
      usage: resizeUsage,
      options: { size: { type: 'string' }, json: { type: 'boolean' } },
      positionals: ['path'],
    });
    const [path] = positionals;
    const size = stringOption(values, 'size');
    if (size === undefined) fail('--size is required');
    const logicalSize = parseSize(size, '--size');
    const v = await Volume.open(path, { workers: 1, ioWorkers: 1 });
    const from = v.logicalSize;
    try {
      await v.resize({ logicalSize });
    } finally {
      await v.close();
    }
    if (values.json === true) printJson({ path, from, logicalSize });
    else print(`resized ${path}: logical size ${formatBytes(from)} → ${formatBytes(logicalSize)} (${logicalSize} bytes)`);
    return 0;
  });
}
