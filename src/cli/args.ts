/**
 * What every `flashpack` subcommand shares: argument parsing (node:util
 * parseArgs, strict), sizes with unit suffixes, and the mapping of failures to
 * exit codes and one-line messages. A subcommand is
 * `async function xCommand(argv: string[]): Promise<number>` written as
 * `return runCommand('x', async () => { const { values, positionals } = parseCommand(argv, spec); …; return 0; })`.
 *
 *   parseCommand(argv, spec): ParsedCommand
 *       strict parse; `--help`/`-h` is added to every spec and answered with
 *       spec.usage on stdout (exit 0); an unknown option, a missing value, too
 *       few or too many positionals are usage errors (exit 2).
 *   parseSize(text, optionName): number
 *       "4096", "64K", "64M", "1G", "1.5T", "2P" (binary units; an optional
 *       "B"/"iB"); a whole number of bytes ≥ 0, else a usage error.
 *   fail(message): never
 *       a usage error: `flashpack <cmd>: usage: <message>` + a hint line, exit 2.
 *   failWith(code, message): never
 *       a FlashpackError: `flashpack <cmd>: <CODE>: <message>`, exit 1.
 *   runCommand(name, fn): Promise<number>
 *       runs fn and returns its exit code; maps help → 0, usage errors → 2,
 *       FlashpackError (and OS errors, through fromOsError) → 1 with one line
 *       on stderr; anything else is EINTERNAL (a bug), exit 1.
 *   stringOption(values, name): string | undefined    a string option's value
 *   print(text) / printJson(doc)    stdout, one line / one JSON document
 *   warn(text)                      stderr, one line
 *   formatBytes(n)                  "1.5 GiB" (binary units, one decimal)
 *   asFlashpackError(err), errorLine(command, err)    the mapping runCommand uses
 *
 * Exit codes: 0 ok, 1 failure, 2 usage.
 */
import { parseArgs } from 'node:util';
import process from 'node:process';
import { FlashpackError, fromOsError, type FlashpackErrorCode } from '../errors.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
}

export interface CommandSpec {
  /** The subcommand's name, as typed ('create'). */
  name: string;
  /** The help text: printed as is for --help. */
  usage: string;
  /** Options by long name (without dashes); --help/-h is added. */
  options: Record<string, OptionSpec>;
  /** Names of the positional arguments; exactly these many are required unless `optionalPositionals`. */
  positionals: string[];
  /** How many trailing positionals may be left out (default 0). */
  optionalPositionals?: number;
}

export interface ParsedCommand {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** A usage error: exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** --help was asked for: print `usage` on stdout, exit 0. */
class HelpRequested extends Error {
  readonly usage: string;
  constructor(usage: string) {
    super('help');
    this.usage = usage;
  }
}

export function fail(message: string): never {
  throw new UsageError(message);
}

export function failWith(code: FlashpackErrorCode, message: string): never {
  throw new FlashpackError(code, message);
}

export function parseCommand(argv: string[], spec: CommandSpec): ParsedCommand {
  const options: Record<string, OptionSpec> = { ...spec.options, help: { type: 'boolean', short: 'h' } };
  // --help anywhere wins over every other problem on the line (as GNU tools do).
  if (argv.some((a) => a === '--help' || a === '-h')) throw new HelpRequested(spec.usage);
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    fail(describeParseError(err));
  }
  const values: Record<string, string | boolean | undefined> = {};
  for (const [k, v] of Object.entries(parsed.values)) values[k] = Array.isArray(v) ? v[v.length - 1] : v;
  const { positionals } = parsed;
  const max = spec.positionals.length;
  const min = max - (spec.optionalPositionals ?? 0);
  if (positionals.length < min) fail(`missing <${spec.positionals[positionals.length]}>`);
  if (positionals.length > max) fail(`unexpected argument '${positionals[max]}'${max === 0 ? '' : ` (takes ${spec.positionals.map((p) => `<${p}>`).join(' ')})`}`);
  for (const p of positionals) if (p.length === 0) fail('an empty argument');
  return { values, positionals };
}

/** node:util's parse errors (Node, Deno and Bun word them differently) as one short line. */
function describeParseError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const unknown = /Unknown option '([^']+)'/i.exec(msg);
  if (unknown !== null) return `unknown option '${unknown[1]}'`;
  const value = /Option '([^']+)' argument missing/i.exec(msg);
  if (value !== null) return `option '${value[1].replace(/^-\w, /, '')}' needs a value`;
  const first = msg.split('\n')[0];
  return first.replace(/\. To specify a positional argument.*$/, '').replace(/^(.)/, (c) => c.toLowerCase());
}

const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

export function parseSize(text: string, optionName: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGTP]?)(?:i?B)?$/i.exec(text.trim());
  if (m === null || (m[2] === '' && /ib$/i.test(text.trim()))) {
    fail(`${optionName} must be a size such as 4096, 64K, 64M, 1G or 1.5T, got '${text}'`);
  }
  const bytes = Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()];
  if (!Number.isSafeInteger(bytes)) fail(`${optionName} '${text}' is not a whole number of bytes (or is too large)`);
  return bytes;
}

/** A string option's value, or undefined; a boolean given to it is a bug of the spec. */
export function stringOption(values: ParsedCommand['values'], name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function print(text: string): void {
  process.stdout.write(text + '\n');
}

export function printJson(doc: unknown): void {
  process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
}

export function warn(text: string): void {
  process.stderr.write(text + '\n');
}

export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

/** Any thrown value as a FlashpackError: OS errors through fromOsError, anything else EINTERNAL. */
export function asFlashpackError(err: unknown): FlashpackError {
  if (err instanceof FlashpackError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return fromOsError(err, (err as { syscall?: string }).syscall ?? 'system call');
  const message = err instanceof Error ? err.message : String(err);
  return new FlashpackError('EINTERNAL', `${message} (a bug in flashpack: please report it)`, { cause: err });
}

/** The library's advice in the command's words: "pass { overwrite: true }" is "--overwrite" here. */
function inCommandWords(message: string): string {
  return message.replace(/pass \{ overwrite: true \}/g, 'pass --overwrite');
}

/** The one stderr line of a failure. */
export function errorLine(command: string, err: FlashpackError): string {
  return `flashpack ${command}: ${err.code}: ${inCommandWords(err.message).replace(/\s*\n\s*/g, ' ')}`;
}

export async function runCommand(name: string, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.usage.endsWith('\n') ? err.usage : err.usage + '\n');
      return EXIT_OK;
    }
    if (err instanceof UsageError) {
      warn(`flashpack ${name}: usage: ${err.message}`);
      warn(`try 'flashpack ${name} --help'`);
      return EXIT_USAGE;
    }
    const e = asFlashpackError(err);
    warn(errorLine(name, e));
    if (e.code === 'EINTERNAL' && process.env.FLASHPACK_DEBUG && err instanceof Error) warn(err.stack ?? '');
    return EXIT_FAILURE;
  }
}
