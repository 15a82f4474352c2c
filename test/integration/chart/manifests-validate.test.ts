// Schema validation of everything we ship against the test apiserver's own OpenAPI (CRDs installed first):
// kubeconform -strict over the chart rendered with each value set and over the kustomize builds, then
// `kubectl apply --dry-run=server -k` of the base, the air-gapped overlay and the examples.
import { jest } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cleanupTestResources, newNamespace, testEnvironment, toolBinary } from '../../env/fixtures.js';
import { repoRoot } from '../../env/process-utils.js';
import {
  ciValues,
  helmTemplate,
  kubectl,
  kubectlOk,
  parseManifests,
  run,
  VALUE_SETS,
} from './chart-helpers.js';
import { schemaLocation, writeKubeconformSchemas, type OpenApiV2 } from './kubeconform-schemas.js';

// helm, kubectl and the API server on 2 shared cores: seconds per call, not milliseconds.
jest.setTimeout(300_000);

const deployDir = join(repoRoot(), 'deploy');
const BASE_NAMESPACE = 'liveupdate-system';

interface KubeconformResult {
  resources: { filename: string; kind: string; name: string; status: string; msg: string }[];
  summary: { valid: number; invalid: number; errors: number; skipped: number };
}

/** Prometheus Operator kinds: their CRDs are not in the test apiserver, so there is no schema to check them with. */
const MONITORING_KINDS = ['ServiceMonitor', 'PrometheusRule'];

async function kubeconform(schemaDir: string, manifests: string): Promise<KubeconformResult> {
  const result = await run(
    toolBinary('kubeconform'),
    [
      '-strict',
      '-summary',
      '-output',
      'json',
      '-skip',
      MONITORING_KINDS.join(','),
      '-schema-location',
      schemaLocation(schemaDir),
      '-',
    ],
    { input: manifests },
  );
  const parsed = JSON.parse(result.stdout) as KubeconformResult;
  if (result.code !== 0 || parsed.summary.invalid + parsed.summary.errors > 0) {
    const problems = parsed.resources.filter((r) => r.status !== 'statusValid');
    throw new Error(`kubeconform: ${JSON.stringify(problems, null, 2)}`);
  }
  return parsed;
}

/**
 * kubectl's stderr without the notice that objects created by other means (the test setup, other tests) get the
 * last-applied annotation: any other line (an error, a Pod Security or deprecation warning) is a finding.
 */
function unexpectedWarnings(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter(
      (line) => line.trim() !== '' && !line.includes('kubectl.kubernetes.io/last-applied-configuration'),
    );
}

describe('manifests validate against the test API server', () => {
  let schemaDir: string;

  beforeAll(async () => {
    // The CRDs must be served before /openapi/v2 can describe our kinds (same files as the chart's copy).
    await kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', join(repoRoot(), 'crds')]);
    await kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', '-f', join(repoRoot(), 'crds')]);
    schemaDir = await mkdtemp(join(testEnvironment().tmpDir, 'kubeconform-'));
    // Published CRD schemas reach /openapi/v2 asynchronously: wait until our kinds are in it.
    let openapi: OpenApiV2 | undefined;
    for (let attempt = 0; attempt < 60; attempt++) {
      const candidate = JSON.parse(
        await kubectlOk(['get', '--raw', '/openapi/v2'], { timeoutMs: 60_000 }),
      ) as OpenApiV2;
      const names = Object.keys(candidate.definitions);
      if (
        ['LiveUpdateApp', 'LiveUpdateChannel', 'LiveUpdateBundle'].every((k) =>
          names.some((n) => n.endsWith(`.${k}`)),
        )
      ) {
        openapi = candidate;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    if (!openapi) throw new Error('the CRDs never appeared in /openapi/v2');
    const written = await writeKubeconformSchemas(openapi, schemaDir);
    expect(written).toBeGreaterThan(50);
    await kubectl(['create', 'namespace', BASE_NAMESPACE]);
    await kubectlOk([
      'label',
      'namespace',
      BASE_NAMESPACE,
      '--overwrite',
      'pod-security.kubernetes.io/enforce=restricted',
    ]);
  });

  afterAll(async () => {
    await rm(schemaDir, { recursive: true, force: true });
    await cleanupTestResources();
  });

  test.each(VALUE_SETS)('helm template with %s values passes kubeconform -strict', async (set) => {
    const manifests = await helmTemplate([ciValues(set)]);
    const result = await kubeconform(schemaDir, manifests);
    const objects = parseManifests(manifests);
    const monitoring = objects.filter((o) => MONITORING_KINDS.includes(o.kind)).length;
    expect(result.summary.valid).toBe(objects.length - monitoring);
    expect(result.summary.skipped).toBe(monitoring);
    if (set === 'monitoring') expect(monitoring).toBe(3);
  });

  test('the generated schemas are strict: an unknown field and a wrong type are rejected', async () => {
    const bad = [
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i, securityContxt: {}}]\n',
      'apiVersion: liveupdate.dev/v1alpha1\nkind: LiveUpdateChannel\nmetadata: {name: x}\nspec: {app: a, bundle: b, policy: {disableAutoUpdate: true}}\n',
    ];
    for (const manifest of bad)
      await expect(kubeconform(schemaDir, manifest)).rejects.toThrow(/statusInvalid/);
  });

  test.each([
    ['base', join(deployDir, 'base')],
    ['air-gapped overlay', join(deployDir, 'overlays', 'airgapped')],
    ['examples', join(deployDir, 'examples')],
  ])('kustomize build of the %s passes kubeconform -strict', async (_name, dir) => {
    const manifests = await kubectlOk(['kustomize', dir]);
    const result = await kubeconform(schemaDir, manifests);
    expect(result.summary.valid).toBeGreaterThan(0);
  });

  test('the air-gapped overlay pulls every image from the mirror by digest with a pull secret', async () => {
    const objects = parseManifests(await kubectlOk(['kustomize', join(deployDir, 'overlays', 'airgapped')]));
    const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
    expect(workloads.length).toBe(3);
    for (const workload of workloads) {
      const spec = (
        workload['spec'] as {
          template: { spec: { containers: { image: string }[]; imagePullSecrets: unknown } };
        }
      ).template.spec;
      for (const container of spec.containers) {
        expect(container.image).toMatch(/^registry\.internal\/mirror\/[^@]+@sha256:[a-f0-9]{64}$/);
      }
      expect(spec.imagePullSecrets).toEqual([{ name: 'registry-credentials' }]);
    }
  });

  test.each([
    ['base', join(deployDir, 'base')],
    ['air-gapped overlay', join(deployDir, 'overlays', 'airgapped')],
  ])('kubectl apply --dry-run=server -k of the %s is accepted', async (_name, dir) => {
    const result = await kubectl(['apply', '--dry-run=server', '-k', dir]);
    expect(unexpectedWarnings(result.stderr)).toEqual([]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(
      /deployment\.apps\/liveupdate-operator-controller (created|configured) \(server dry run\)/,
    );
  });

  test('the examples are accepted by the API server (CEL rules included) in an app namespace', async () => {
    const namespace = await newNamespace('chart-examples');
    const kustomized = await kubectl([
      'apply',
      '--dry-run=server',
      '-n',
      namespace,
      '-k',
      join(deployDir, 'examples'),
    ]);
    expect(unexpectedWarnings(kustomized.stderr)).toEqual([]);
    expect(kustomized.stdout).toMatch(
      /liveupdatebundle\.liveupdate\.dev\/my-app-1\.4\.2 created \(server dry run\)/,
    );
    expect(kustomized.stdout).toMatch(/liveupdatechannel\.liveupdate\.dev\/production created/);
    expect(kustomized.stdout).toMatch(/liveupdateapp\.liveupdate\.dev\/my-app created/);
    const secret = await kubectl([
      'apply',
      '--dry-run=server',
      '-n',
      namespace,
      '-f',
      join(deployDir, 'examples', 'signing-key-secret.yaml'),
    ]);
    expect(secret.code).toBe(0);
    // The examples carry no namespace, so they can be applied anywhere.
    for (const file of [
      'liveupdateapp.yaml',
      'liveupdatebundle.yaml',
      'liveupdatechannel.yaml',
      'signing-key-secret.yaml',
    ]) {
      const text = await readFile(join(deployDir, 'examples', file), 'utf8');
      expect(parseManifests(text)[0]?.metadata.namespace).toBeUndefined();
    }
  });
});
