// The chart renders what the process contract, the security model and the air-gapped story need; values are
// validated by values.schema.json; generated files (chart CRDs, README values reference, kustomize base, Argo CD
// snippet, image list) are in sync with their sources. No cluster needed, except helm's environment.
import { jest } from '@jest/globals';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import {
  chartDir,
  getPath,
  readChartValues,
  renderReadme,
  undocumentedLeaves,
} from '../../../scripts/chart-values.js';
import { crdDifferences } from '../../../scripts/sync-chart-crds.js';
import { renderBase, renderedPath } from '../../../scripts/render-kustomize-base.js';
import { argocdCmPath, healthScriptPath, renderArgocdCm } from '../../../scripts/generate-argocd-cm.js';
import { toolBinary } from '../../env/fixtures.js';
import { repoRoot } from '../../env/process-utils.js';
import {
  chartPath,
  ciValues,
  findObject,
  helm,
  helmTemplate,
  KUBE_VERSION,
  imagesOf,
  parseManifests,
  VALUE_SETS,
  type K8sObject,
} from './chart-helpers.js';

// helm, kubectl and the API server on 2 shared cores: seconds per call, not milliseconds.
jest.setTimeout(300_000);

type Env = { name: string; value?: string; valueFrom?: unknown };
type Container = {
  name: string;
  image: string;
  args?: string[];
  env?: Env[];
  securityContext?: Record<string, unknown>;
};
type PodSpec = {
  containers: Container[];
  automountServiceAccountToken?: boolean;
  serviceAccountName?: string;
  imagePullSecrets?: { name: string }[];
  securityContext?: Record<string, unknown>;
};

function podSpec(object: K8sObject): PodSpec {
  const spec = object['spec'] as { template?: { spec: PodSpec } } & PodSpec;
  return spec.template ? spec.template.spec : spec;
}

function envOf(object: K8sObject): Map<string, Env> {
  return new Map((podSpec(object).containers[0]?.env ?? []).map((e) => [e.name, e]));
}

describe('chart rendering', () => {
  let defaults: K8sObject[];

  beforeAll(async () => {
    defaults = parseManifests(await helmTemplate());
  });

  test('helm lint passes for every value set (strict: warnings fail too)', async () => {
    for (const set of VALUE_SETS) {
      const result = await helm(['lint', chartPath, '--strict', '--values', ciValues(set)]);
      expect({ set, code: result.code, out: result.stdout + result.stderr }).toMatchObject({ set, code: 0 });
    }
  });

  test('values.schema.json rejects a misspelt key, at the top and nested', async () => {
    for (const typo of ['controler.replicas=3', 'controller.replica=3', 'updateServer.ingress.hostname=x']) {
      const result = await helm(['template', 'x', chartPath, ...KUBE_VERSION, '--set', typo]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/additional properties .* not allowed|additionalProperties/i);
    }
    const wrongType = await helm(['template', 'x', chartPath, ...KUBE_VERSION, '--set', 's3.mode=local']);
    expect(wrongType.code).not.toBe(0);
  });

  test('values.yaml and values.schema.json describe the same keys, and the defaults are valid', async () => {
    const { values } = await readChartValues();
    const schema = JSON.parse(await readFile(join(chartDir, 'values.schema.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    const ajv = new Ajv({ allErrors: true, strict: false });
    const validate = ajv.compile(schema);
    expect(validate(values) ? [] : validate.errors).toEqual([]);

    const definitions = schema['definitions'] as Record<string, Record<string, unknown>>;
    const resolve = (node: Record<string, unknown>): Record<string, unknown> => {
      const ref = node['$ref'];
      return typeof ref === 'string' ? resolve(definitions[ref.replace('#/definitions/', '')]!) : node;
    };
    const mismatches: string[] = [];
    const walk = (node: Record<string, unknown>, value: unknown, path: string[]): void => {
      const schemaNode = resolve(node);
      const properties = schemaNode['properties'] as Record<string, Record<string, unknown>> | undefined;
      if (!properties || value === null || typeof value !== 'object' || Array.isArray(value)) return;
      // Every node is closed (typos fail), except `global`, which a parent chart shares with all its subcharts.
      expect(schemaNode['additionalProperties']).toBe(path.join('.') !== 'global' ? false : true);
      const valueKeys = Object.keys(value);
      for (const key of Object.keys(properties)) {
        // `enabled` is the switch a parent chart sets for its subchart; this chart's own values never carry it.
        const parentSwitch = path.length === 0 && key === 'enabled';
        if (!valueKeys.includes(key) && !parentSwitch)
          mismatches.push(`schema only: ${[...path, key].join('.')}`);
      }
      for (const key of valueKeys) {
        const child = properties[key];
        if (!child) mismatches.push(`values.yaml only: ${[...path, key].join('.')}`);
        else walk(child, (value as Record<string, unknown>)[key], [...path, key]);
      }
    };
    walk(schema, values, []);
    expect(mismatches).toEqual([]);
  });

  test('the README values reference documents every value and is up to date', async () => {
    const chart = await readChartValues();
    expect(undocumentedLeaves(chart)).toEqual([]);
    const readme = await readFile(join(chartDir, 'README.md'), 'utf8');
    expect(renderReadme(readme, chart)).toBe(readme);
    // A key that exists in the values must appear in the table (the check above would also catch a stale table).
    expect(readme).toContain('| `controller.watchNamespaces` |');
    expect(getPath(chart.values, ['controller', 'replicas'])).toBe(2);
  });

  test('the chart CRDs are an exact copy of crds/ and are rendered with labels and the keep policy', async () => {
    expect(await crdDifferences()).toEqual([]);
    const crds = defaults
      .filter((o) => o.kind === 'CustomResourceDefinition')
      .map((o) => o.metadata.name)
      .sort();
    expect(crds).toEqual([
      'liveupdateapps.liveupdate.dev',
      'liveupdatebundles.liveupdate.dev',
      'liveupdatechannels.liveupdate.dev',
    ]);
    for (const crd of defaults.filter((o) => o.kind === 'CustomResourceDefinition')) {
      expect(crd.metadata['annotations']).toMatchObject({ 'helm.sh/resource-policy': 'keep' });
      expect(crd.metadata['labels']).toMatchObject({ 'app.kubernetes.io/part-of': 'liveupdate-operator' });
    }
    // Templating (fromYaml/toYaml) must not change anything but labels and annotations.
    for (const file of await readdir(join(repoRoot(), 'crds'))) {
      const source = parseManifests(await readFile(join(repoRoot(), 'crds', file), 'utf8'))[0]!;
      const rendered = findObject(defaults, 'CustomResourceDefinition', source.metadata.name);
      expect(rendered['spec']).toEqual(source['spec']);
    }
    const notKept = parseManifests(await helmTemplate([], ['crds.keep=false']));
    const crd = notKept.find((o) => o.kind === 'CustomResourceDefinition');
    expect(crd?.metadata['annotations'] ?? {}).not.toHaveProperty('helm.sh/resource-policy');
    const without = parseManifests(await helmTemplate([], ['crds.enabled=false']));
    expect(without.filter((o) => o.kind === 'CustomResourceDefinition')).toEqual([]);
  });

  test('controller: 2 replicas, leader election, the env contract, token only in its Pods', () => {
    const deployment = findObject(defaults, 'Deployment', 'liveupdate-operator-controller');
    expect((deployment['spec'] as { replicas: number }).replicas).toBe(2);
    const spec = podSpec(deployment);
    expect(spec.containers[0]?.args).toEqual(['controller']);
    expect(spec.automountServiceAccountToken).toBe(true);
    expect(spec.serviceAccountName).toBe('liveupdate-operator-controller');
    const env = envOf(deployment);
    expect(env.get('LIVEUPDATE_LEADER_ELECT')?.value).toBe('true');
    expect(env.get('LIVEUPDATE_LEASE_NAME')?.value).toBe('liveupdate-operator-controller');
    expect(env.get('LIVEUPDATE_LEASE_NAMESPACE')?.valueFrom).toEqual({
      fieldRef: { fieldPath: 'metadata.namespace' },
    });
    expect(env.get('LIVEUPDATE_WATCH_NAMESPACE')?.value).toBe('');
    expect(env.get('LIVEUPDATE_SOURCE_SECRET_LABEL')?.value).toBe('liveupdate.dev/bundle-source=true');
    expect(env.get('LIVEUPDATE_ARTIFACT_MAX_BYTES')?.value).toBe('268435456');
    for (const name of [
      'LIVEUPDATE_LOG_LEVEL',
      'LIVEUPDATE_ADMIN_ADDR',
      'POD_NAME',
      'POD_NAMESPACE',
      'LIVEUPDATE_S3_ENDPOINT',
      'LIVEUPDATE_S3_REGION',
      'LIVEUPDATE_S3_BUCKET',
      'LIVEUPDATE_S3_PREFIX',
      'LIVEUPDATE_S3_ACCESS_KEY_ID',
      'LIVEUPDATE_S3_SECRET_ACCESS_KEY',
      'LIVEUPDATE_S3_PATH_STYLE',
      'LIVEUPDATE_MAX_CONCURRENT_RECONCILES',
      'LIVEUPDATE_FETCH_TIMEOUT_SECONDS',
      'LIVEUPDATE_SHUTDOWN_GRACE_SECONDS',
    ]) {
      expect(env.has(name)).toBe(true);
    }
    expect(env.get('LIVEUPDATE_S3_ENDPOINT')?.value).toBe('http://liveupdate-operator-s3:9000');
  });

  test('update server: no Kubernetes API access, the env contract, HPA, PDB, Service', () => {
    const deployment = findObject(defaults, 'Deployment', 'liveupdate-operator-update-server');
    const spec = podSpec(deployment);
    expect(spec.containers[0]?.args).toEqual(['update-server']);
    expect(spec.automountServiceAccountToken).toBe(false);
    const sa = findObject(defaults, 'ServiceAccount', 'liveupdate-operator-update-server');
    expect(sa['automountServiceAccountToken']).toBe(false);
    const env = envOf(deployment);
    expect(env.get('LIVEUPDATE_LISTEN_ADDR')?.value).toBe('0.0.0.0:8080');
    expect(env.get('LIVEUPDATE_REPLICA_NAME')?.valueFrom).toEqual({
      fieldRef: { fieldPath: 'metadata.name' },
    });
    for (const name of [
      'LIVEUPDATE_PUBLIC_URL',
      'LIVEUPDATE_INDEX_POLL_SECONDS',
      'LIVEUPDATE_PRESIGN_DOWNLOADS',
    ]) {
      expect(env.has(name)).toBe(true);
    }
    expect(env.has('LIVEUPDATE_STATS_FLUSH_SECONDS')).toBe(true);
    // With the HPA the Deployment leaves replicas to the autoscaler.
    expect(deployment['spec']).not.toHaveProperty('replicas');
    findObject(defaults, 'HorizontalPodAutoscaler', 'liveupdate-operator-update-server');
    findObject(defaults, 'PodDisruptionBudget', 'liveupdate-operator-update-server');
    findObject(defaults, 'Service', 'liveupdate-operator-update-server');
    // No RBAC object binds the update server's ServiceAccount.
    const bindings = defaults.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding');
    expect(bindings.length).toBeGreaterThan(0);
    for (const binding of bindings) {
      expect(JSON.stringify(binding['subjects'])).not.toContain('update-server');
    }
  });

  test('every Pod is restricted: non-root 65532, read-only root, no capabilities, RuntimeDefault seccomp', async () => {
    const all = parseManifests(await helmTemplate()).concat(
      parseManifests(await helmTemplate([ciValues('external-s3')])),
    );
    const pods = all.filter((o) => ['Deployment', 'StatefulSet', 'Pod'].includes(o.kind));
    expect(pods.map((p) => `${p.kind}/${p.metadata.name}`).sort()).toContain(
      'Pod/liveupdate-operator-test-healthz',
    );
    for (const pod of pods) {
      const spec = podSpec(pod);
      expect(spec.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      for (const container of spec.containers) {
        expect(container.securityContext).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
      }
    }
  });

  test('images: global registry, digests and pull secrets reach every Pod; images.txt lists the defaults', async () => {
    const airgapped = parseManifests(await helmTemplate([ciValues('airgapped')]));
    expect(imagesOf(airgapped)).toEqual([
      'registry.internal/mirror/liveupdate-dev/liveupdate-operator:0.1.0@sha256:' + '1'.repeat(64),
      'registry.internal/mirror/versity/versitygw:v1.7.0@sha256:' + '2'.repeat(64),
    ]);
    for (const workload of airgapped.filter((o) => ['Deployment', 'StatefulSet', 'Pod'].includes(o.kind))) {
      expect(podSpec(workload).imagePullSecrets).toEqual([{ name: 'registry-credentials' }]);
    }
    const listed = (await readFile(join(repoRoot(), 'deploy', 'images.txt'), 'utf8'))
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
      .sort();
    expect(listed).toEqual(imagesOf(defaults));
  });

  test('RBAC: cluster-wide by default, per watched namespace when scoped; leases in the release namespace only', async () => {
    expect(
      findObject(defaults, 'ClusterRoleBinding', 'liveupdate-operator-controller-liveupdate-system'),
    ).toBeDefined();
    const role = findObject(defaults, 'Role', 'liveupdate-operator-controller-leader-election');
    expect(role.metadata.namespace).toBe('liveupdate-system');
    const scoped = parseManifests(await helmTemplate([ciValues('external-s3')]));
    expect(scoped.filter((o) => o.kind === 'ClusterRoleBinding')).toEqual([]);
    const bindings = scoped.filter(
      (o) => o.kind === 'RoleBinding' && o.metadata.name === 'liveupdate-operator-controller',
    );
    expect(bindings.map((b) => b.metadata.namespace)).toEqual(['team-a', 'team-b']);
    const controller = findObject(scoped, 'Deployment', 'liveupdate-operator-controller');
    expect(envOf(controller).get('LIVEUPDATE_WATCH_NAMESPACE')?.value).toBe('team-a,team-b');
    // Secrets by name only, never enumerated.
    const clusterRole = findObject(
      defaults,
      'ClusterRole',
      'liveupdate-operator-controller-liveupdate-system',
    );
    const rules = (clusterRole['rules'] as { resources: string[]; verbs: string[] }[]).filter((r) =>
      r.resources.includes('secrets'),
    );
    expect(rules).toEqual([expect.objectContaining({ resources: ['secrets'], verbs: ['get'] })]);
  });

  test('in-cluster S3: one user per component, the root user for the store only, least-privilege policies', async () => {
    const secretOf = (deployment: string) =>
      JSON.stringify(
        envOf(findObject(defaults, 'Deployment', deployment)).get('LIVEUPDATE_S3_ACCESS_KEY_ID'),
      );
    expect(secretOf('liveupdate-operator-controller')).toContain('liveupdate-operator-s3-controller');
    expect(secretOf('liveupdate-operator-update-server')).toContain('liveupdate-operator-s3-update-server');
    // The Secrets are created at run time by the hook Job (gitops.test.ts, s3-credentials-hook.test.ts).
    expect(defaults.filter((o) => o.kind === 'Secret')).toEqual([]);
    expect(
      envOf(findObject(defaults, 'Job', 'liveupdate-operator-s3-keygen')).get(
        'LIVEUPDATE_S3_CREDENTIAL_SECRETS',
      )?.value,
    ).toBe(
      ['credentials=root', 'controller=controller', 'update-server=update-server']
        .map((s) => `liveupdate-operator-s3-${s}`)
        .join(','),
    );
    const store = findObject(defaults, 'StatefulSet', 'liveupdate-operator-s3');
    const provision = podSpec(store).containers.find((c) => c.name === 'provision');
    expect(JSON.stringify(provision)).toContain('liveupdate-operator-s3-update-server');
    const policies = findObject(
      parseManifests(await helmTemplate([], ['s3.prefix=ota'])),
      'ConfigMap',
      'liveupdate-operator-s3-policies',
    )['data'] as Record<string, string>;
    const updateServer = JSON.parse(policies['update-server.json']!) as {
      Statement: { Action: string[]; Resource: string[] }[];
    };
    expect(updateServer.Statement.map((s) => [s.Action, s.Resource])).toEqual([
      [['s3:ListBucket', 's3:GetBucketLocation'], ['arn:aws:s3:::liveupdate']],
      [['s3:GetObject'], ['arn:aws:s3:::liveupdate/ota/*']],
      [
        ['s3:PutObject'],
        ['arn:aws:s3:::liveupdate/ota/*/*/stats/*', 'arn:aws:s3:::liveupdate/ota/*/*/overrides/*'],
      ],
    ]);
    expect(JSON.parse(policies['controller.json']!)).toMatchObject({ Version: '2012-10-17' });
  });

  test('external S3: endpoint, CA file, per-component credentials, strict NetworkPolicy destinations', async () => {
    const objects = parseManifests(await helmTemplate([ciValues('external-s3')]));
    expect(objects.filter((o) => o.kind === 'StatefulSet')).toEqual([]);
    const controllerEnv = envOf(findObject(objects, 'Deployment', 'liveupdate-operator-controller'));
    expect(controllerEnv.get('LIVEUPDATE_S3_ENDPOINT')?.value).toBe('https://rgw.storage.internal:8443');
    expect(controllerEnv.get('LIVEUPDATE_S3_CA_FILE')?.value).toBe('/etc/liveupdate/s3-ca/ca.crt');
    expect(JSON.stringify(controllerEnv.get('LIVEUPDATE_S3_ACCESS_KEY_ID'))).toContain(
      'liveupdate-s3-controller',
    );
    const serverEnv = envOf(findObject(objects, 'Deployment', 'liveupdate-operator-update-server'));
    expect(JSON.stringify(serverEnv.get('LIVEUPDATE_S3_SECRET_ACCESS_KEY'))).toContain(
      'liveupdate-s3-update-server',
    );
    expect(serverEnv.get('LIVEUPDATE_PUBLIC_URL')?.value).toBe('https://updates.example.com');
    const policy = findObject(objects, 'NetworkPolicy', 'liveupdate-operator-update-server');
    expect((policy['spec'] as { egress: unknown[] }).egress).toEqual([
      { ports: [{ protocol: 'TCP', port: 8443 }], to: [{ ipBlock: { cidr: '10.20.0.0/24' } }] },
      {
        ports: [
          { protocol: 'UDP', port: 53 },
          { protocol: 'TCP', port: 53 },
        ],
        to: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
            podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
          },
        ],
      },
    ]);
    findObject(objects, 'Ingress', 'liveupdate-operator-update-server');
    const external = await helm(['template', 'x', chartPath, ...KUBE_VERSION, '--set', 's3.mode=external']);
    expect(external.code).not.toBe(0);
    expect(external.stderr).toContain('s3.external.endpoint');
  });

  test('in-cluster S3 store: StatefulSet with a claim, credentials from the hook, NetworkPolicy without egress', () => {
    const statefulSet = findObject(defaults, 'StatefulSet', 'liveupdate-operator-s3');
    const claims = (statefulSet['spec'] as { volumeClaimTemplates: { spec: unknown }[] })
      .volumeClaimTemplates;
    expect(claims[0]?.spec).toMatchObject({ resources: { requests: { storage: '20Gi' } } });
    const job = findObject(defaults, 'Job', 'liveupdate-operator-s3-keygen');
    expect(envOf(job).get('LIVEUPDATE_S3_ACCESS_KEY_ID_KEY')?.value).toBe('accessKeyId');
    expect(envOf(job).get('LIVEUPDATE_S3_SECRET_ACCESS_KEY_KEY')?.value).toBe('secretAccessKey');
    const policy = findObject(defaults, 'NetworkPolicy', 'liveupdate-operator-s3');
    expect(policy['spec']).toMatchObject({ policyTypes: ['Ingress', 'Egress'], egress: [] });
  });

  test('optional ServiceMonitors for both components', async () => {
    const objects = parseManifests(await helmTemplate([], ['serviceMonitor.enabled=true']));
    const monitors = objects.filter((o) => o.kind === 'ServiceMonitor').map((o) => o.metadata.name);
    expect(monitors.sort()).toEqual(['liveupdate-operator-controller', 'liveupdate-operator-update-server']);
  });

  test('NOTES.txt tells the device URLs', async () => {
    const result = await helm([
      'install',
      'liveupdate-operator',
      chartPath,
      // Server dry run: the offline one assumes Kubernetes 1.20, below the chart's kubeVersion.
      '--dry-run=server',
      '--namespace',
      'default',
      '--set',
      'updateServer.publicUrl=https://updates.example.com',
      // Other tests may have installed the CRDs already; the notes do not depend on them.
      '--set',
      'crds.enabled=false',
    ]);
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    expect(result.stdout).toContain('updateUrl:  https://updates.example.com/updates');
    expect(result.stdout).toContain('statsUrl:   https://updates.example.com/stats');
    expect(result.stdout).toContain('channelUrl: https://updates.example.com/channel_self');
  });

  test('the kustomize base and the Argo CD snippet are up to date with their sources', async () => {
    expect(await renderBase(toolBinary('helm'))).toBe(await readFile(renderedPath, 'utf8'));
    expect(renderArgocdCm(await readFile(healthScriptPath, 'utf8'))).toBe(
      await readFile(argocdCmPath, 'utf8'),
    );
  });
});
