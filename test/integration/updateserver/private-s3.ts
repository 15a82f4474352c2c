// A versitygw of the test's own (the cached binary, 127.0.0.1, random port, temp dirs) that the test may stop and
// start again on the same port and data: the shared environment's S3 must stay up for other test files.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, spawnOwned } from '../../env/process-utils.js';
import { TOOLS, toolPath } from '../../env/testbin.js';

export interface PrivateS3 {
  readonly endpoint: string;
  readonly port: number;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  readonly running: boolean;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and removes its data. */
  destroy(): Promise<void>;
}

export async function startPrivateS3(): Promise<PrivateS3> {
  const binary = toolPath(TOOLS.versitygw);
  if (!existsSync(binary)) throw new Error(`versitygw not built at ${binary}: run npm run testbin`);
  const dir = await mkdtemp(join(tmpdir(), 'lu-private-s3-'));
  const dirs = ['iam', 'versions', 'data', 'meta'].map((d) => join(dir, d)) as [
    string,
    string,
    string,
    string,
  ];
  await Promise.all(dirs.map((d) => mkdir(d, { recursive: true })));
  const port = await freePort();
  const accessKey = `test${randomBytes(6).toString('hex')}`;
  const secretKey = randomBytes(18).toString('base64url');
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  const args = [
    `--port=127.0.0.1:${port}`,
    `--iam-dir=${dirs[0]}`,
    '--region=us-east-1',
    'posix',
    `--versioning-dir=${dirs[1]}`,
    `--sidecar=${dirs[3]}`,
    dirs[2],
  ];

  const start = async (): Promise<void> => {
    child = spawnOwned(binary, args, {
      env: { ...process.env, ROOT_ACCESS_KEY: accessKey, ROOT_SECRET_KEY: secretKey },
      stdio: 'ignore',
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`versitygw exited with ${child.exitCode}`);
      try {
        await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(1000) });
        return;
      } catch {
        if (Date.now() > deadline) throw new Error('versitygw did not start within 30 s');
        await sleep(100);
      }
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((resolve) => c.once('exit', resolve));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };

  await start();
  return {
    endpoint,
    port,
    accessKey,
    secretKey,
    region: 'us-east-1',
    get running() {
      return child !== undefined && child.exitCode === null;
    },
    stop,
    start,
    destroy: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
