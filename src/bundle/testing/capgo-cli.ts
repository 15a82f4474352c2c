/**
 * Runs Capgo's own CLI (`@capgo/cli`, pinned) offline on the Node 24 binary, inside a throwaway Capacitor-like project
 * where `@capgo/capacitor-updater` resolves, so that the CLI signs and checks V3 checksums as current devices do
 * (CAPGO-PROTOCOL.md §6.5 "Running it from a test suite"). Shared by the interop tests and the end-to-end test.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const CAPGO = join(REPO, 'node_modules/@capgo/cli/dist/index.js');

export interface CapgoResult {
  readonly code: number;
  readonly output: string;
}

/** The environment the Capgo CLI runs in here: telemetry, update prompts and interactivity off. */
export const CAPGO_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  CAPGO_DISABLE_TELEMETRY: '1',
  CAPGO_DISABLE_POSTHOG: '1',
  CAPGO_SKIP_UPDATE_PROMPT: '1',
  CI: '1',
};

/** Runs `capgo <args>` in `project` with telemetry and prompts off and stdin closed; never rejects. */
export function capgo(project: string, args: readonly string[]): Promise<CapgoResult> {
  return new Promise((resolve) => {
    execFile(
      // npm scripts run Jest on the Node 24 binary of the `node` dev dependency.
      process.execPath,
      [CAPGO, ...args],
      {
        cwd: project,
        env: { ...CAPGO_ENV, NO_COLOR: '1' },
        timeout: 50_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) =>
        resolve({
          code: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
          output: `${stdout}${stderr}`,
        }),
    ).stdin?.end();
  });
}

/** A Capacitor-like project for `appId`, in `dir` or a new temp dir (the caller removes it). */
export async function capacitorProject(appId = 'com.example.app', existingDir?: string): Promise<string> {
  const dir = existingDir ?? (await mkdtemp(join(tmpdir(), 'liveupdate-capgo-')));
  await writeFile(
    join(dir, 'capacitor.config.json'),
    JSON.stringify({ appId, appName: 'Example', webDir: 'dist', plugins: { CapacitorUpdater: {} } }),
  );
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({
      name: 'capgo-interop',
      version: '1.0.0',
      private: true,
      dependencies: { '@capgo/capacitor-updater': '8.51.23' },
    }),
  );
  await mkdir(join(dir, 'node_modules/@capgo'), { recursive: true });
  await symlink(
    join(REPO, 'node_modules/@capgo/capacitor-updater'),
    join(dir, 'node_modules/@capgo/capacitor-updater'),
  );
  return dir;
}
