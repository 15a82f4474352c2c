/** The CLI's version: injected when bundled into the single executable, else read from the package's package.json. */
import { readFileSync } from 'node:fs';

declare const __LIVEUPDATE_VERSION__: string | undefined;

export function cliVersion(): string {
  if (typeof __LIVEUPDATE_VERSION__ === 'string') return __LIVEUPDATE_VERSION__;
  // src/cli/version.ts and dist/cli/version.js both sit two levels below the package root.
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version?: string;
  };
  return manifest.version ?? 'unknown';
}
