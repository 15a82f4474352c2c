// Placeholder until the command is implemented; replaced by its owner.
export function run(_argv: string[], _signal: AbortSignal): Promise<number> {
  return Promise.reject(new Error('not implemented yet'));
}
