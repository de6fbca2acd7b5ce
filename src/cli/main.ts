/**
 * The `flashpack` command: `flashpack <command> [args]`. Each subcommand is
 * its own module, loaded only when run (a command pays for no other's
 * imports). Exit codes: 0 ok, 1 failure, 2 usage (args.ts).
 */
import * as fs from 'node:fs';
import process from 'node:process';
import { EXIT_OK, EXIT_USAGE, asFlashpackError, errorLine, warn } from './args.js';

interface Command {
  summary: string;
  load(): Promise<{ run(argv: string[]): Promise<number> }>;
}

/** The dispatch table: name → what it does and how to load it. */
const COMMANDS: Record<string, Command> = {
  create: { summary: 'format a new volume', load: async () => ({ run: (await import('./create.js')).createCommand }) },
  serve: { summary: 'export a volume over NBD', load: async () => ({ run: (await import('./serve.js')).serveCommand }) },
  stats: { summary: "a volume's statistics, as vdostats prints them", load: async () => ({ run: (await import('./stats.js')).statsCommand }) },
  copy: { summary: 'copy a file or device into a volume, a volume out, or volume to volume', load: async () => ({ run: (await import('./copy.js')).copyCommand }) },
  check: { summary: "check a volume's metadata offline", load: async () => ({ run: (await import('./check.js')).checkCommand }) },
  resize: { summary: "grow a volume's logical size", load: async () => ({ run: (await import('./resize.js')).resizeCommand }) },
  store: { summary: 'run a store daemon: replicas of cluster volumes, over etcd', load: async () => ({ run: (await import('./store.js')).storeCommand }) },
  cluster: { summary: 'replicated volumes: create-volume, status, verify', load: async () => ({ run: (await import('./cluster.js')).clusterCommand }) },
};

export function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return [
    'usage: flashpack <command> [args]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(w)}  ${c.summary}`),
    '',
    "'flashpack <command> --help' describes a command; 'flashpack --version' prints the version.",
    '',
  ].join('\n');
}

export function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Runs the command line `argv` (without the runtime and script); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(usage());
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) {
    process.stdout.write(usage());
    return EXIT_OK;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`flashpack ${version()}\n`);
    return EXIT_OK;
  }
  if (name === 'help') return main([rest[0], '--help']);
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    warn(`flashpack: usage: ${name.startsWith('-') ? `unknown option '${name}'` : `unknown command '${name}'`} (commands: ${Object.keys(COMMANDS).join(', ')})`);
    warn("try 'flashpack --help'");
    return EXIT_USAGE;
  }
  try {
    const { run } = await command.load();
    return await run(rest);
  } catch (err) {
    // A command maps its own failures (runCommand); this is a module that did not load.
    warn(errorLine(name, asFlashpackError(err)));
    return 1;
  }
}
