// helm and kubectl work against the test apiserver through the generated kubeconfig (CA-verified TLS, token user).
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import {
  KUBECTL,
  cleanupTestResources,
  kubeConfig,
  newNamespace,
  testEnvironment,
  toolBinary,
  INTEGRATION_TEST_TIMEOUT_MS,
} from '../../env/fixtures.js';

const run = promisify(execFile);

let helmHome: string;

beforeAll(async () => {
  helmHome = await mkdtemp(join(tmpdir(), 'liveupdate-helm-'));
});

afterAll(async () => {
  await rm(helmHome, { recursive: true, force: true });
  await cleanupTestResources();
});

function helm(args: readonly string[]) {
  // Helm's cache, config and data stay in a temp dir instead of the user's home.
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_DATA_HOME: join(helmHome, 'data'),
  };
  return run(toolBinary('helm'), [...args, '--kubeconfig', testEnvironment().kubeconfigPath], {
    env,
    timeout: 60_000,
  });
}

test(
  'helm reports its pinned version and installs a chart whose kubeVersion constraint reads /version',
  async () => {
    const { stdout: version } = await helm(['version', '--template', '{{.Version}}']);
    expect(version.trim()).toBe('v3.21.4');

    const namespace = await newNamespace('helm');
    const chart = join(helmHome, 'chart');
    await mkdir(join(chart, 'templates'), { recursive: true });
    await writeFile(
      join(chart, 'Chart.yaml'),
      'apiVersion: v2\nname: proof\nversion: 0.1.0\nkubeVersion: ">=1.34.0-0 <1.35.0-0"\n',
    );
    await writeFile(
      join(chart, 'templates', 'configmap.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-proof\ndata:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n',
    );
    await helm(['install', 'proof', chart, '--namespace', namespace]);

    const configMap = await kubeConfig()
      .makeApiClient(CoreV1Api)
      .readNamespacedConfigMap({ name: 'proof-proof', namespace });
    expect(configMap.data?.['kube']).toMatch(/^v1\.34\.\d+$/);
    const { stdout: releases } = await helm(['list', '--namespace', namespace, '--output', 'json']);
    expect(JSON.parse(releases)).toEqual([expect.objectContaining({ name: 'proof', status: 'deployed' })]);
  },
  INTEGRATION_TEST_TIMEOUT_MS,
);

test(
  'kubectl 1.33 lists namespaces and reads the server version',
  async () => {
    const namespace = await newNamespace('kubectl');
    const kubeconfig = testEnvironment().kubeconfigPath;
    const { stdout: names } = await run(
      KUBECTL,
      ['--kubeconfig', kubeconfig, 'get', 'namespaces', '-o', 'jsonpath={.items[*].metadata.name}'],
      { timeout: 60_000 },
    );
    expect(names.split(' ')).toEqual(expect.arrayContaining(['default', 'kube-system', namespace]));

    const { stdout: version } = await run(KUBECTL, ['--kubeconfig', kubeconfig, 'version', '-o', 'json'], {
      timeout: 60_000,
    });
    const parsed = JSON.parse(version) as { serverVersion?: { gitVersion?: string } };
    expect(parsed.serverVersion?.gitVersion).toMatch(/^v1\.34\.\d+$/);
  },
  INTEGRATION_TEST_TIMEOUT_MS,
);
