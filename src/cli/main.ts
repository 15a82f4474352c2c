#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { BundleError } from '../bundle/index.js';
import {
  bundleEncrypt,
  bundleManifest,
  bundlePack,
  bundleValidate,
  bundleVerify,
} from './commands/bundle.js';
import { keysCreate, keysCreateSigner, keysImport } from './commands/keys.js';
import { reconcile, status } from './commands/cluster.js';
import { bundlePublish } from './commands/publish.js';
import { UsageError } from './io.js';
import { cliVersion } from './version.js';
import type { CliIo, Command, OptionSpec } from './io.js';

const GROUPS: Record<string, { summary: string; commands: Command[] }> = {
  keys: {
    summary: 'Capgo-compatible app keys and CI signing keys',
    commands: [keysCreate, keysImport, keysCreateSigner],
  },
  bundle: {
    summary: 'pack, encrypt, verify, describe and publish bundles',
    commands: [bundlePack, bundleEncrypt, bundleVerify, bundleManifest, bundleValidate, bundlePublish],
  },
};

/** Commands without a group: `liveupdate status`, `liveupdate reconcile <kind>/<name>`. */
const TOP_LEVEL: Record<string, Command> = { status, reconcile };

const COMMON_OPTIONS: OptionSpec = {
  json: { type: 'boolean', description: 'print exactly one JSON object on stdout' },
  progress: { type: 'boolean', description: 'show progress on stderr even when it is not a terminal' },
  help: { type: 'boolean', short: 'h', description: 'show this help' },
};

/** Run one CLI invocation; returns the exit code (0 success, 1 failure, 2 usage error). Never calls process.exit. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [groupName, commandName, ...rest] = argv;
  if (groupName === '--version' || groupName === '-V' || groupName === 'version') {
    io.stdout(
      argv.includes('--json')
        ? `${JSON.stringify({ version: cliVersion() })}\n`
        : `liveupdate ${cliVersion()}\n`,
    );
    return 0;
  }
  if (groupName === undefined || groupName === '--help' || groupName === '-h' || groupName === 'help') {
    io.stdout(topHelp());
    return groupName === undefined ? 2 : 0;
  }
  const topLevel = TOP_LEVEL[groupName];
  if (topLevel) return runCommand(io, '', topLevel, argv.slice(1));
  const group = GROUPS[groupName];
  if (!group) return usage(io, `unknown command "${groupName}"`);
  if (commandName === undefined || commandName === '--help' || commandName === '-h') {
    io.stdout(groupHelp(groupName));
    return commandName === undefined ? 2 : 0;
  }
  const command = group.commands.find((c) => c.name === commandName);
  if (!command) return usage(io, `unknown command "${groupName} ${commandName}"`);
  return runCommand(io, groupName, command, rest);
}

async function runCommand(
  io: CliIo,
  groupName: string,
  command: Command,
  rest: readonly string[],
): Promise<number> {
  const options = { ...COMMON_OPTIONS, ...command.options };
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    const parsed = parseArgs({
      args: [...rest],
      options: Object.fromEntries(
        Object.entries(options).map(([name, o]) => [
          name,
          o.short ? { type: o.type, short: o.short } : { type: o.type },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
    values = parsed.values;
    positionals = parsed.positionals;
  } catch (err) {
    return usage(io, err instanceof Error ? err.message : String(err), groupName, command);
  }
  if (values['help'] === true) {
    io.stdout(commandHelp(groupName, command));
    return 0;
  }
  if (positionals.length !== command.positionals.length) {
    return usage(
      io,
      `expected ${command.positionals.length} argument(s): ${command.positionals.map((p) => `<${p}>`).join(' ') || 'none'}`,
      groupName,
      command,
    );
  }

  const json = values['json'] === true;
  const showProgress = values['progress'] === true || io.stderrIsTTY;
  let progressOpen = false;
  const progress = (label: string): ((bytes: number) => void) | undefined => {
    if (!showProgress) return undefined;
    return (bytes: number) => {
      const text = `${label}: ${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
      if (io.stderrIsTTY) {
        io.stderr(`\r${text}`);
        progressOpen = true;
      } else {
        io.stderr(`${text}\n`);
      }
    };
  };
  const endProgress = (): void => {
    if (progressOpen) io.stderr('\n');
    progressOpen = false;
  };
  try {
    const result = await command.run({ io, values, positionals, progress });
    endProgress();
    io.stdout(json ? `${JSON.stringify(result)}\n` : (command.human ?? humanReadable)(result));
    return 0;
  } catch (err) {
    endProgress();
    if (err instanceof UsageError) return usage(io, err.message, groupName, command);
    io.stderr(`liveupdate: error: ${describe(err)}\n`);
    return 1;
  }
}

function describe(err: unknown): string {
  if (err instanceof BundleError) return `[${err.reason}] ${err.message}`;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

function usage(io: CliIo, message: string, groupName?: string, command?: Command): number {
  const hint = command
    ? `liveupdate ${groupName ? `${groupName} ` : ''}${command.name} --help`
    : 'liveupdate --help';
  io.stderr(`liveupdate: error: ${message} (see \`${hint}\`)\n`);
  return 2;
}

function humanReadable(result: Record<string, unknown>): string {
  return Object.entries(result)
    .map(([key, value]) => {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      return text.includes('\n') ? `${key}:\n${text.trimEnd()}` : `${key}: ${text}`;
    })
    .join('\n')
    .concat('\n');
}

function topHelp(): string {
  const lines = [
    'Usage: liveupdate <group> <command> [options]',
    '',
    'Live-update bundles for Capacitor apps, compatible with @capgo/capacitor-updater.',
    '`liveupdate --version` prints the version.',
    '',
  ];
  for (const [name, group] of Object.entries(GROUPS)) {
    lines.push(`${name}: ${group.summary}`);
    for (const command of group.commands)
      lines.push(`  ${name} ${command.name.padEnd(14)} ${command.summary}`);
  }
  lines.push('cluster: read and nudge the cluster of the current kubeconfig context');
  for (const command of Object.values(TOP_LEVEL))
    lines.push(`  ${command.name.padEnd(20)} ${command.summary}`);
  lines.push('', 'Run `liveupdate <group> <command> --help` for the options of a command.', '');
  return lines.join('\n');
}

function groupHelp(groupName: string): string {
  const group = GROUPS[groupName];
  const lines = [`Usage: liveupdate ${groupName} <command> [options]`, ''];
  for (const command of group?.commands ?? []) lines.push(`  ${command.name.padEnd(14)} ${command.summary}`);
  return `${lines.join('\n')}\n`;
}

function commandHelp(groupName: string, command: Command): string {
  const options = { ...command.options, ...COMMON_OPTIONS };
  const lines = [
    `Usage: ${command.usage}`,
    '',
    `${command.summary[0]?.toUpperCase() ?? ''}${command.summary.slice(1)}.`,
    '',
    'Options:',
  ];
  for (const [name, o] of Object.entries(options)) {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` <${o.valueName ?? 'value'}>` : ''}`;
    lines.push(`  ${flag.padEnd(30)} ${o.description}`);
  }
  lines.push('', 'Exit status: 0 on success, 1 on failure (one line on stderr), 2 on a usage error.', '');
  return lines.join('\n');
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

/** Runs the CLI with the process's arguments and streams; sets the exit code. Also the single executable's entry. */
export async function runMain(): Promise<void> {
  const io: CliIo = {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    stderrIsTTY: process.stderr.isTTY === true,
    cwd: process.cwd(),
  };
  process.exitCode = await runCli(process.argv.slice(2), io);
}

// No top-level await: the single executable bundles this module as CommonJS (scripts/build-sea.ts).
if (isMain()) void runMain();
