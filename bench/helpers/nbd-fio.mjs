// fio through its nbd engine, for bench/nbd.mjs: one job, JSON output, and
// every sign of a failed or incomplete verification turned into an error.
import { run } from './nbd-procs.mjs';

/**
 * Data options, the same for every server: fio's random buffers with half of
 * every 512-byte chunk compressible (LZ4 and zstd make ~51% of them), new
 * contents for every write (refill_buffers, randrepeat=0), no duplicates
 * (dedupe_percentage 0, and each 4 KiB carries a header with its offset and
 * a timestamp), and a crc32c verification header every 4 KiB, so a read with
 * any block size can check every byte, whichever job wrote it.
 */
export const DATA_OPTS = ['--buffer_compress_percentage=50', '--refill_buffers', '--dedupe_percentage=0', '--verify=crc32c', '--verify_interval=4096'];

/** Options every job gets. */
export function baseOpts(sock, size) {
  return [
    '--name=nbd', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${sock}`, `--size=${size}`,
    '--randrepeat=0', '--verify_state_save=0', '--output-format=json',
  ];
}

/** Lines of fio's output that report a verification failure. */
const VERIFY_RE = /verify|bad magic|bad header|crc32c|mismatch/i;

export class FioError extends Error {
  constructor(message, detail) {
    super(message);
    this.detail = detail;
  }
}

/**
 * Runs one fio job; returns its JSON job (jobs[0]). Throws FioError on a
 * non-zero exit, a job error, a verification message, or when `expectVerifiedBytes`
 * (bytes fio must have read back and checked) is not met.
 */
export async function fio(args, { expectVerifiedBytes } = {}) {
  const r = await run('fio', args);
  const lines = (r.stdout.slice(0, Math.max(0, r.stdout.indexOf('{'))) + '\n' + r.stderr)
    .split('\n').map((l) => l.trim()).filter(Boolean).filter((l) => l !== 'fio: connected to NBD server');
  let job = null;
  try {
    job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
  } catch { /* reported below */ }
  const verifyLines = lines.filter((l) => VERIFY_RE.test(l));
  const cmd = `fio ${args.filter((a) => !a.startsWith('--output-format')).join(' ')}`;
  if (verifyLines.length) throw new FioError(`VERIFY FAILED: ${verifyLines.slice(0, 8).join(' | ')}`, { cmd, lines });
  if (r.code !== 0 || job == null) throw new FioError(`fio exited ${r.code ?? r.signal}: ${lines.slice(-8).join(' | ')}`, { cmd, lines });
  if (job.error) throw new FioError(`fio job error ${job.error}: ${lines.slice(-8).join(' | ')}`, { cmd, lines });
  if (expectVerifiedBytes !== undefined && job.read.io_bytes < expectVerifiedBytes) {
    throw new FioError(`verification incomplete: read back ${job.read.io_bytes} of ${expectVerifiedBytes} bytes`, { cmd, lines });
  }
  return job;
}
