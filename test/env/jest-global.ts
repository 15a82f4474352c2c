// One environment per integration run. Test files reach it through LIVEUPDATE_TEST_ENV (the path of the
// environment's JSON description): Jest workers inherit the environment variables set here.
import { join } from 'node:path';
import { startEnvironment, type TestEnvironment } from './environment.js';
import { ensureAllTools } from './testbin.js';

export const ENVIRONMENT_VARIABLE = 'LIVEUPDATE_TEST_ENV';

declare global {
  var liveupdateTestEnvironment: TestEnvironment | undefined;
}

const progress = (message: string) => process.stderr.write(`[test-env] ${message}\n`);

export async function setup(): Promise<void> {
  const started = Date.now();
  // All five tools, so that `npm test` on a fresh machine builds what the tests use (helm and kubeconform too).
  await ensureAllTools({ progress });
  const env = await startEnvironment({ progress });
  globalThis.liveupdateTestEnvironment = env;
  process.env[ENVIRONMENT_VARIABLE] = join(env.tmpDir, 'environment.json');
  // Anything that loads the default kubeconfig talks to the test apiserver, never to a real cluster.
  process.env['KUBECONFIG'] = env.kubeconfigPath;
  progress(
    `environment ready: servers in ${env.startupMs} ms, setup in ${Date.now() - started} ms (${env.tmpDir})`,
  );
}

export async function teardown(): Promise<void> {
  const env = globalThis.liveupdateTestEnvironment;
  globalThis.liveupdateTestEnvironment = undefined;
  await env?.stop();
}
