#!/usr/bin/env node
/**
 * The single entrypoint of the image: `liveupdate-operator <command> [flags]`. Each command module parses its own
 * configuration (flags over environment), builds its dependencies and runs until SIGTERM/SIGINT.
 */
export interface CommandModule {
  /** Resolves with the process exit code once the command has shut down. */
  run(argv: string[], signal: AbortSignal): Promise<number>;
}

const COMMANDS: Record<string, { describe: string; load: () => Promise<CommandModule> }> = {
  controller: {
    describe: 'reconcile LiveUpdateApp, LiveUpdateChannel and LiveUpdateBundle resources (leader-elected)',
    load: () => import('./controller/command.js'),
  },
  'update-server': {
    describe:
      "serve Capgo's device protocol (updates, stats, channel_self, downloads) from the release index",
    load: () => import('./updateserver/command.js'),
  },
  's3-credentials': {
    describe: "create the in-cluster S3 store's credential Secrets that are missing (the chart's hook Job)",
    load: () => import('./provision/command.js'),
  },
  's3-provision': {
    describe:
      "create the in-cluster versitygw store's bucket and least-privilege users (the chart's sidecar)",
    load: () => import('./provision/s3-provision-command.js'),
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(15)} ${c.describe}`);
  return ['usage: liveupdate-operator <command> [flags]', '', 'commands:', ...lines, ''].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`liveupdate-operator: unknown command "${name}"\n${usage()}`);
    return 2;
  }
  const controller = new AbortController();
  const stop = (sig: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      process.stderr.write(`liveupdate-operator: second ${sig}, exiting now\n`);
      process.exit(1);
    }
    controller.abort(new Error(`received ${sig}`));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const mod = await command.load();
  return mod.run(rest, controller.signal);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // The command has shut down; a lingering keep-alive socket or timer must not hold the pod past its grace period.
    setTimeout(() => process.exit(code), 2_000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`liveupdate-operator: fatal: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
