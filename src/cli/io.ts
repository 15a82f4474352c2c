/** What a command may touch of the outside world; tests pass a recording fake. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Progress is drawn only on a terminal, unless `--progress` asks for it. */
  readonly stderrIsTTY: boolean;
  readonly cwd: string;
}

/** Bad invocation: exit code 2 and a hint to `--help`. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface CommandContext {
  readonly io: CliIo;
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: string[];
  /** A progress callback when progress is wanted, else undefined. */
  readonly progress: (label: string) => ((bytes: number) => void) | undefined;
}

export type OptionSpec = Record<
  string,
  { type: 'string' | 'boolean'; short?: string; description: string; valueName?: string }
>;

/** One `liveupdate <group> <name>` command: its help, options and a handler returning the JSON result. */
export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly options: OptionSpec;
  /** Exact number of positional arguments, and their names for the help text. */
  readonly positionals: readonly string[];
  readonly run: (ctx: CommandContext) => Promise<Record<string, unknown>>;
  /** The text printed without --json (default: one `key: value` line per field). */
  readonly human?: (result: Record<string, unknown>) => string;
}

export function requireString(ctx: CommandContext, option: string): string {
  const value = ctx.values[option];
  if (typeof value !== 'string' || value.length === 0) throw new UsageError(`--${option} is required`);
  return value;
}

export function optionalString(ctx: CommandContext, option: string): string | undefined {
  const value = ctx.values[option];
  return typeof value === 'string' ? value : undefined;
}

export function positional(ctx: CommandContext, index: number): string {
  const value = ctx.positionals[index];
  if (value === undefined) throw new UsageError('missing argument');
  return value;
}
