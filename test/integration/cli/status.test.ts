// `liveupdate status` and `liveupdate reconcile` against the real API server, through the kubeconfig as kubectl
// would use it. The output is checked for content (what is served, rollout, bars, problems), not layout.
import {
  API_VERSION,
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
} from '../../../src/api/v1alpha1/index.js';
import type { LiveUpdateApp } from '../../../src/api/v1alpha1/index.js';
import { runCli } from '../../../src/cli/main.js';
import type { CliIo } from '../../../src/cli/io.js';
import { KubeClient } from '../../../src/kube/client.js';
import { loadKubeConfig } from '../../../src/kube/config.js';
import type { ResourceType } from '../../../src/kube/types.js';
import { cleanupTestResources, newNamespace, testEnvironment } from '../../env/fixtures.js';
import { installCrds } from '../api/crds.js';

let namespace: string;
let client: KubeClient;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    stderrIsTTY: false,
    cwd: process.cwd(),
  };
  const code = await runCli([...args, '--kubeconfig', testEnvironment().kubeconfigPath, '-n', namespace], io);
  return { code, stdout, stderr };
}

const now = '2026-12-04T10:00:00Z';
const cond = (type: string, status: string, reason: string, message = '') => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: now,
  observedGeneration: 1,
});

async function put(type: ResourceType, name: string, spec: object, status: object): Promise<void> {
  const obj = { apiVersion: API_VERSION, kind: type.kind, metadata: { name, namespace }, spec };
  await client.apply(type, obj);
  await client.applyStatus(type, { ...obj, status });
}

beforeAll(async () => {
  await installCrds();
  namespace = await newNamespace('cli-status');
  client = new KubeClient(loadKubeConfig(testEnvironment().kubeconfigPath), {
    fieldManager: 'cli-status-test',
  });
  await put(
    APP_RESOURCE,
    'demo',
    { appId: 'com.example.demo' },
    {
      conditions: [cond('Ready', 'True', 'IndexPublished')],
      keyId: 'MIIBCgKCAQEA1234567',
      index: { revision: 7 },
    },
  );
  const source = { http: { url: 'https://artifacts.example/demo.zip' } };
  await put(
    BUNDLE_RESOURCE,
    'demo-1-4-0',
    { app: 'demo', version: '1.4.0', source },
    {
      conditions: [cond('Ready', 'True', 'ArtifactStored')],
    },
  );
  await put(
    BUNDLE_RESOURCE,
    'demo-1-5-0',
    { app: 'demo', version: '1.5.0', source },
    {
      conditions: [cond('Ready', 'True', 'ArtifactStored')],
    },
  );
  await put(
    BUNDLE_RESOURCE,
    'demo-1-6-0',
    { app: 'demo', version: '1.6.0', source },
    {
      conditions: [
        cond('Ready', 'False', 'DigestMismatch', 'the artifact has sha256:ab…, spec.digest says sha256:cd…'),
        cond('Stalled', 'True', 'DigestMismatch', 'the artifact has sha256:ab…, spec.digest says sha256:cd…'),
      ],
    },
  );
  await put(
    CHANNEL_RESOURCE,
    'production',
    { app: 'demo', bundle: 'demo-1-4-0', rollout: { bundle: 'demo-1-5-0', percentage: 25 } },
    {
      conditions: [
        cond('Ready', 'True', 'Succeeded'),
        cond('RolloutHalted', 'True', 'FailureThresholdExceeded', 'rollout failure rate 12% above 5%'),
      ],
      servingBundle: 'demo-1-4-0',
      servingVersion: '1.4.0',
      rollout: { bundle: 'demo-1-5-0', version: '1.5.0', percentage: 25, paused: true },
      stats: {
        stable: { version: '1.4.0', devices: 300, adoptionPercent: 75, failurePercent: 1 },
        rollout: { version: '1.5.0', devices: 100, adoptionPercent: 25, failurePercent: 12 },
      },
    },
  );
});

afterAll(async () => {
  await cleanupTestResources();
});

describe('liveupdate status', () => {
  it('shows apps, channels, what they serve, the rollout, adoption and failure bars, and what is not fine', async () => {
    const { code, stdout, stderr } = await cli('status');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('app demo (com.example.demo)  Ready  index revision 7');
    expect(stdout).toMatch(/channel production +Ready +serves 1\.4\.0 \(demo-1-4-0\)/);
    expect(stdout).toContain('rollout 1.5.0 (demo-1-5-0)  Paused  [#####...............]  25.0% of devices');
    expect(stdout).toMatch(
      /stable +1\.4\.0 +adoption \[###############\.\.\.\.\.\] {2}75\.0% +failures \[\.{20}\] {3}1\.0% +devices 300/,
    );
    expect(stdout).toMatch(
      /rollout 1\.5\.0 +adoption \[#####\.{15}\] {2}25\.0% +failures \[##\.{18}\] {2}12\.0% +devices 100/,
    );
    expect(stdout).toContain(
      '! RolloutHalted=True FailureThresholdExceeded: rollout failure rate 12% above 5%',
    );
    expect(stdout).toContain('bundles 2/3 Ready');
    expect(stdout).toContain('! demo-1-6-0: Ready=False DigestMismatch');
    expect(stdout).toContain('! demo-1-6-0: Stalled=True DigestMismatch');
  });

  it('--json prints the same report as one JSON object', async () => {
    const { code, stdout } = await cli('status', '--json');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as {
      apps: Array<{
        appId: string;
        channels: Array<{ name: string; rollout: { percentage: number; state: string } }>;
      }>;
      bundles: { total: number; ready: number };
    };
    expect(report.apps[0]?.appId).toBe('com.example.demo');
    expect(report.apps[0]?.channels[0]).toMatchObject({
      name: 'production',
      rollout: { percentage: 25, state: 'Paused' },
    });
    expect(report.bundles).toMatchObject({ total: 3, ready: 2 });
  });
});

describe('liveupdate reconcile', () => {
  it('sets the reconcile-requested annotation on the named object', async () => {
    const { code, stdout } = await cli('reconcile', 'app/demo', '--json');
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as { kind: string; requestedAt: string };
    expect(result.kind).toBe('LiveUpdateApp');
    const app = await client.get<LiveUpdateApp>(APP_RESOURCE, { namespace, name: 'demo' });
    expect(app.metadata.annotations?.['liveupdate.dev/reconcile-requested-at']).toBe(result.requestedAt);
  });

  it('refuses an unknown kind with a usage error, and a missing object with a failure naming it', async () => {
    const unknown = await cli('reconcile', 'deployment/demo');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('kind app, channel or bundle');
    const missing = await cli('reconcile', 'lub/nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('nope');
  });
});
