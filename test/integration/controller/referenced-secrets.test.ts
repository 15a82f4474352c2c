// The Secret poll (ADR 0032) and the Secret cache (ADR 0037) with the controller as a real process, polling every
// second: bundles naming a source-credentials Secret and their app's signing key are reconciled once each, not a
// second time when the poll first sees the Secret they already read (issue 17); a rotated signing key is still
// picked up without an annotation, by the app and by every bundle (rebuilt once each with the new key_id).
// No timing assertion: the observation windows only give the poll rounds time to run; a correct controller adds no
// reconcile in them however slow the machine is.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
} from '../../../src/api/v1alpha1/index.js';
import { generateSigningKey } from '../../../src/bundle/index.js';
import type { KubeObject } from '../../../src/kube/types.js';
import { isReady } from '../../../scripts/demo/journey.js';
import { Stack } from '../../../scripts/demo/stack.js';
import { bundleManifest, createSigningApp, packZips, pool } from '../../env/bundle-burst.js';
import { cleanupTestResources, newBucket, newNamespace, testEnvironment } from '../../env/fixtures.js';
import { waitFor } from '../kube/helpers.js';

const TEST_TIMEOUT_MS = 300_000;
const N = 6;
const APP = 'polled';
const TOKEN_SECRET = 'source-token';
/** Poll rounds given time to run in each observation window (the poll runs every second). */
const OBSERVE_MS = 6_000;

let stack: Stack | undefined;
let workDir = '';
let namespace = '';

afterAll(async () => {
  await stack?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  await cleanupTestResources();
}, TEST_TIMEOUT_MS);

/** controller_runtime_reconcile_total of one controller, all results. */
async function reconciles(controller: string): Promise<number> {
  const text = await (await fetch(`${stack!.controllerAdminUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter(
      (l) => l.startsWith('controller_runtime_reconcile_total{') && l.includes(`controller="${controller}"`),
    )
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

const bundles = () => stack!.kube.list<LiveUpdateBundle>(BUNDLE_RESOURCE, namespace);

test(
  'bundles are reconciled once per change with the Secret poll running, and a rotated signing key still reaches them',
  async () => {
    workDir = await mkdtemp(join(tmpdir(), 'liveupdate-secret-poll-'));
    namespace = await newNamespace('secret-poll');
    stack = new Stack({
      env: testEnvironment(),
      logDir: join(workDir, 'logs'),
      namespace,
      bucket: await newBucket('secret-poll'),
    });
    await stack.installCrds();
    await stack.artifacts.start();
    await stack.startController({ env: { LIVEUPDATE_SECRET_POLL_SECONDS: '1' } });
    const kube = stack.kube;
    await createSigningApp(kube, namespace, APP, `com.example.poll${Date.now().toString(36)}`);
    const app = () => kube.get<LiveUpdateApp>(APP_RESOURCE, { namespace, name: APP });
    await waitFor('the app Ready', async () => isReady(await app()), 120_000);
    await kube.create(SECRET_RESOURCE, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: TOKEN_SECRET, namespace },
      stringData: { token: 'not-checked-by-the-artifact-server' },
    } as KubeObject & { stringData: Record<string, string> });

    // The channel's `builtin` (no such bundle) was looked up once by the bundle controller: count from here.
    const before = await reconciles('liveupdatebundle');
    const zips = await packZips(N, workDir, 'poll');
    for (const z of zips) stack.artifacts.routes.set(z.path, z.body);
    await pool(N, N, async (i) => {
      const z = zips[i]!;
      const manifest = bundleManifest(
        APP,
        `b-${i}`,
        namespace,
        `1.0.${i + 1}`,
        stack!.artifacts.url(z.path),
        z.sha256,
      );
      manifest.spec.source.http!.secretRef = { name: TOKEN_SECRET };
      await kube.create(BUNDLE_RESOURCE, manifest);
    });
    await waitFor('every bundle Ready', async () => (await bundles()).filter(isReady).length === N, 180_000);
    await sleep(OBSERVE_MS);
    // One reconcile per bundle: the poll saw the very versions of the token and key Secrets they had read.
    expect((await reconciles('liveupdatebundle')) - before).toBe(N);

    const rotated = generateSigningKey();
    await kube.mergePatch(
      SECRET_RESOURCE,
      { namespace, name: `${APP}-signing-key` },
      { data: { 'private.pem': Buffer.from(rotated.privateKeyPem).toString('base64') } },
    );
    await waitFor(
      'the rotated key in the app and every bundle',
      async () =>
        (await app()).status?.keyId === rotated.keyId &&
        (await bundles()).every((b) => isReady(b) && b.status?.artifact?.keyId === rotated.keyId),
      180_000,
    );
    await sleep(OBSERVE_MS);
    // Each bundle rebuilt once with the new key, then left alone.
    expect((await reconciles('liveupdatebundle')) - before).toBe(2 * N);
  },
  TEST_TIMEOUT_MS,
);
