// Many small distinct bundles for one app, as the controller benchmark and the build-idempotence test apply them:
// the fixture web build with one file that differs per bundle, a key Secret, an app with a `builtin` channel.
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  API_VERSION,
  APP_RESOURCE,
  CHANNEL_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../../src/api/v1alpha1/index.js';
import { generateSigningKey, packDirectory } from '../../src/bundle/index.js';
import type { KubeClient } from '../../src/kube/client.js';
import type { KubeObject } from '../../src/kube/types.js';
import { REPO } from '../../scripts/demo/stack.js';

export interface BurstZip {
  /** Path on the artifact server. */
  readonly path: string;
  readonly body: Buffer;
  readonly sha256: string;
}

/** Runs `fn` over 0..n-1 with at most `limit` calls in flight. */
export async function pool(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** The fixture web build with one file that differs per bundle, so every zip (and stored object) is distinct. */
export async function packZips(n: number, workDir: string, label = 'bench'): Promise<BurstZip[]> {
  const dir = join(workDir, 'web');
  await cp(join(REPO, 'test/fixtures/webapp'), dir, { recursive: true });
  const zips: BurstZip[] = [];
  for (let i = 0; i < n; i++) {
    await writeFile(join(dir, 'build.txt'), `${label} build ${i}\n`);
    const zipPath = join(workDir, 'web.zip');
    const result = await packDirectory(dir, zipPath);
    zips.push({ path: `/${label}/${i}/web.zip`, body: await readFile(zipPath), sha256: result.sha256 });
  }
  return zips;
}

export function bundleManifest(
  app: string,
  name: string,
  namespace: string,
  version: string,
  url: string,
  sha256: string,
): LiveUpdateBundle {
  return {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateBundle',
    metadata: { name, namespace },
    spec: { app, version, source: { http: { url } }, digest: `sha256:${sha256}` },
  };
}

/**
 * A key Secret, an encrypting LiveUpdateApp and a `production` channel serving `builtin` (an app needs a published
 * channel to become Ready; the bundles need the app's validated key).
 */
export async function createSigningApp(kube: KubeClient, namespace: string, app: string, appId: string) {
  const key = generateSigningKey();
  const secretName = `${app}-signing-key`;
  await kube.create(SECRET_RESOURCE, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: secretName, namespace },
    stringData: { 'private.pem': key.privateKeyPem },
  } as KubeObject & { stringData: Record<string, string> });
  await kube.create(APP_RESOURCE, {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateApp',
    metadata: { name: app, namespace },
    spec: { appId, signingKey: { secretName, key: 'private.pem' }, encryptByDefault: true },
  } as LiveUpdateApp);
  await kube.create(CHANNEL_RESOURCE, {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateChannel',
    metadata: { name: 'production', namespace },
    spec: { app, bundle: 'builtin' },
  } as LiveUpdateChannel);
  return key;
}
