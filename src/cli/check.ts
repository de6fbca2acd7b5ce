/**
 * `flashpack check <path>`: an offline consistency check of a volume
 * (src/vdo/check.ts). It takes the image's read lock for the whole check, so
 * it refuses (EBUSY, naming the holder) while a writer has the volume open,
 * and no writer can open it meanwhile. Exit 1 when anything is wrong.
 */
import * as fs from 'node:fs';
import { FlashpackError } from '../errors.js';
import { VolumeLock } from '../vdo/volume-lock.js';
import { checkVolume, type CheckReport } from '../vdo/check.js';
import { fail, parseCommand, print, printJson, runCommand } from './args.js';
import { Progress } from './progress.js';

export const checkUsage = `usage: flashpack check <path> [options]

Checks a volume offline: superblocks, the recovery journal, every block-map
page, reference counts and (unless --no-decode) that every stored block
decodes. Exit 0 when it is consistent, 1 when a problem was found. A volume
open for writing (or being served) is refused (EBUSY).

options:
  --scrub       also read every stored block and verify the data check its
                block-map entry records (what every read verifies): each bad
                block is listed with its PBN and the LBAs that read it
  --no-decode   skip decoding stored data blocks (faster: metadata only)
  --json        print the report as JSON
  --quiet       no progress on stderr
  -h, --help    this help
`;

export function summaryLine(path: string, r: CheckReport): string {
  const problems = `${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`;
  if (r.generation === 0) return `${path}: not a flashpack volume (no valid superblock), ${problems}`;
  const state = r.clean ? 'clean' : `needs recovery (${r.journalEntriesToReplay} journal entries)`;
  return `${path}: ${state}, ${problems}; ${r.logicalBlocksUsed} logical blocks used, ${r.dataBlocksUsed} data blocks, ${r.packedBlocks} packed blocks`;
}

export async function checkCommand(argv: string[]): Promise<number> {
  return runCommand('check', async () => {
    const { values, positionals } = parseCommand(argv, {
      name: 'check',
      usage: checkUsage,
      options: { json: { type: 'boolean' }, 'no-decode': { type: 'boolean' }, scrub: { type: 'boolean' }, quiet: { type: 'boolean' } },
      positionals: ['path'],
    });
    const [path] = positionals;
    if (values.scrub === true && values['no-decode'] === true) fail('--scrub reads and decodes every stored block; it cannot go with --no-decode');
    // Before the lock: taking it would make a lock directory beside a path that is not there.
    if (!fs.existsSync(path)) throw new FlashpackError('ENOENT', `${path} does not exist`);
    const lock = VolumeLock.take(path, 'read');
    const progress = new Progress(0, { unit: 'blocks', label: 'check', quiet: values.quiet === true });
    let report: CheckReport;
    try {
      report = await checkVolume(path, { decode: values['no-decode'] !== true, scrub: values.scrub === true, onProgress: (done, total) => progress.update(done, total) });
    } finally {
      progress.finish();
      lock.release();
    }
    if (values.json === true) printJson(report);
    else {
      for (const p of report.problems) print(`${p.where}: ${p.what}`);
      print(summaryLine(path, report));
    }
    return report.ok && report.problems.length === 0 ? 0 : 1;
  });
}
