// `helm install` into the real test apiserver, in a namespace that enforces the restricted Pod Security Standard;
// every Pod the chart would create passes admission; each ServiceAccount can do exactly what its component needs.
import { jest } from '@jest/globals';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cleanupTestResources, newNamespace, testEnvironment } from '../../env/fixtures.js';
import {
  chartPath,
  helm,
  helmTemplate,
  kubectl,
  kubectlOk,
  parseManifests,
  podSpecOf,
  type K8sObject,
} from './chart-helpers.js';

// helm, kubectl and the API server on 2 shared cores: seconds per call, not milliseconds.
jest.setTimeout(300_000);

const RELEASE = 'liveupdate-operator';

async function restrictedNamespace(prefix: string): Promise<string> {
  const namespace = await newNamespace(prefix);
  await kubectlOk([
    'label',
    'namespace',
    namespace,
    'pod-security.kubernetes.io/enforce=restricted',
    'pod-security.kubernetes.io/enforce-version=latest',
    'pod-security.kubernetes.io/warn=restricted',
  ]);
  return namespace;
}

/**
 * The Pods the workloads would create (the test environment runs no controller-manager, so Deployments make no Pods
 * and Pod Security only warns about templates): a StatefulSet's claim templates become claim volumes, as its
 * controller does it.
 */
function podsOf(objects: readonly K8sObject[], namespace: string): object[] {
  return objects.flatMap((object) => {
    const spec = podSpecOf(object);
    if (!spec) return [];
    const template = (object['spec'] as { template?: { metadata?: { labels?: object } } }).template;
    const podSpec = structuredClone(spec) as unknown as { volumes?: object[] };
    const claims = (object['spec'] as { volumeClaimTemplates?: { metadata: { name: string } }[] })
      .volumeClaimTemplates;
    for (const claim of claims ?? []) {
      podSpec.volumes = [
        ...(podSpec.volumes ?? []),
        {
          name: claim.metadata.name,
          persistentVolumeClaim: { claimName: `${claim.metadata.name}-${object.metadata.name}-0` },
        },
      ];
    }
    return [
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: `${object.metadata.name}-probe`.slice(0, 63),
          namespace,
          labels: template?.metadata?.labels ?? {},
        },
        spec: podSpec,
      },
    ];
  });
}

async function dryRunPods(
  objects: readonly K8sObject[],
  namespace: string,
): Promise<{ code: number | null; out: string }> {
  const file = join(testEnvironment().tmpDir, `pods-${namespace}-${Date.now()}.json`);
  await writeFile(
    file,
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: podsOf(objects, namespace) }),
  );
  const result = await kubectl(['create', '--dry-run=server', '-n', namespace, '-f', file]);
  return { code: result.code, out: result.stdout + result.stderr };
}

async function canI(
  namespace: string,
  serviceAccount: string,
  verb: string,
  resource: string,
  inNamespace?: string,
) {
  const args = ['auth', 'can-i', verb, resource, `--as=system:serviceaccount:${namespace}:${serviceAccount}`];
  args.push(inNamespace === undefined ? '--all-namespaces' : `--namespace=${inNamespace}`);
  const result = await kubectl(args);
  // can-i exits 0 for yes and 1 for no; anything else is an error of the check itself.
  if (result.code !== 0 && result.code !== 1) throw new Error(`kubectl auth can-i failed: ${result.stderr}`);
  return result.stdout.trim() === 'yes';
}

describe('helm install into a restricted namespace', () => {
  let namespace: string;
  let installOutput: string;

  beforeAll(async () => {
    namespace = await restrictedNamespace('chart-install');
    // --take-ownership: the shared test apiserver may already hold the CRDs (applied by other tests from crds/).
    // --no-hooks: without a controller-manager the credentials hook Job never runs (s3-credentials-hook.test.ts runs
    // its command with the hook's ServiceAccount instead).
    const result = await helm(
      [
        'install',
        RELEASE,
        chartPath,
        '--namespace',
        namespace,
        '--take-ownership',
        '--no-hooks',
        '--timeout',
        '2m',
      ],
      { timeoutMs: 180_000 },
    );
    installOutput = result.stdout + result.stderr;
    if (result.code !== 0) throw new Error(`helm install failed:\n${installOutput}`);
  });

  afterAll(async () => {
    await helm(['uninstall', RELEASE, '--namespace', namespace]);
    await cleanupTestResources();
  });

  test('the release is deployed and every rendered object exists in the API server', async () => {
    const status = JSON.parse((await helm(['status', RELEASE, '-n', namespace, '-o', 'json'])).stdout) as {
      info: { status: string };
      manifest: string;
    };
    expect(status.info.status).toBe('deployed');
    const objects = parseManifests(status.manifest);
    expect(objects.length).toBeGreaterThan(20);
    for (const object of objects) {
      const ns = object.metadata.namespace;
      const args = [
        'get',
        `${object.kind}.${object.apiVersion.split('/')[0]}`,
        object.metadata.name,
        '-o',
        'name',
      ];
      if (object.apiVersion === 'v1' || !object.apiVersion.includes('/')) args[1] = object.kind;
      if (ns) args.push('-n', ns);
      const result = await kubectl(args);
      expect({ object: `${object.kind}/${object.metadata.name}`, code: result.code }).toEqual({
        object: `${object.kind}/${object.metadata.name}`,
        code: 0,
      });
    }
    expect(installOutput).not.toMatch(/would violate PodSecurity/);
    expect(installOutput).toContain('updateUrl:');
  });

  test('every Pod of the chart (operator, S3 store, credentials hook, chart test) is admitted under restricted enforcement', async () => {
    const rendered = parseManifests(await helmTemplate([], [], ['--namespace', namespace]));
    const result = await dryRunPods(rendered, namespace);
    expect(result.out).not.toMatch(/forbidden|violate/i);
    expect(result.code).toBe(0);
    expect(result.out.match(/created \(server dry run\)/g)?.length).toBe(5);
  });

  test('the restricted enforcement is real: a Pod allowing privilege escalation is refused', async () => {
    const rendered = parseManifests(
      await helmTemplate(
        [],
        ['containerSecurityContext.allowPrivilegeEscalation=true'],
        ['--namespace', namespace],
      ),
    );
    const result = await dryRunPods(rendered, namespace);
    expect(result.code).not.toBe(0);
    expect(result.out).toMatch(/violates PodSecurity "restricted:latest": allowPrivilegeEscalation/);
  });

  test('controller ServiceAccount: exactly what the controller needs', async () => {
    const sa = 'liveupdate-operator-controller';
    const other = 'some-app-namespace';
    const allowed: [string, string, string | undefined][] = [
      ['get', 'liveupdateapps.liveupdate.dev', other],
      ['list', 'liveupdatebundles.liveupdate.dev', undefined],
      ['watch', 'liveupdatechannels.liveupdate.dev', undefined],
      ['patch', 'liveupdatebundles.liveupdate.dev', other],
      ['update', 'liveupdateapps.liveupdate.dev', other],
      ['patch', 'liveupdatebundles.liveupdate.dev/status', other],
      ['update', 'liveupdatechannels.liveupdate.dev/status', other],
      ['update', 'liveupdateapps.liveupdate.dev/finalizers', other],
      ['get', 'secrets', other],
      ['create', 'events', other],
      ['patch', 'events.events.k8s.io', other],
      ['create', 'leases.coordination.k8s.io', namespace],
      ['get', 'leases.coordination.k8s.io/liveupdate-operator-controller', namespace],
      ['update', 'leases.coordination.k8s.io/liveupdate-operator-controller', namespace],
    ];
    const denied: [string, string, string | undefined][] = [
      // Secrets by name only: no enumerating them, cluster-wide or in a namespace.
      ['list', 'secrets', undefined],
      ['list', 'secrets', other],
      ['watch', 'secrets', other],
      ['delete', 'secrets', other],
      ['create', 'secrets', other],
      ['update', 'secrets', other],
      ['create', 'pods', namespace],
      ['get', 'pods', namespace],
      ['get', 'configmaps', namespace],
      ['create', 'liveupdatebundles.liveupdate.dev', other],
      ['delete', 'liveupdateapps.liveupdate.dev', other],
      ['delete', 'events', other],
      ['create', 'leases.coordination.k8s.io', other],
      ['get', 'leases.coordination.k8s.io/kube-controller-manager', namespace],
      ['update', 'leases.coordination.k8s.io/another-lease', namespace],
      ['delete', 'leases.coordination.k8s.io/liveupdate-operator-controller', namespace],
      ['create', 'deployments.apps', namespace],
      ['get', 'nodes', undefined],
      ['create', 'clusterrolebindings.rbac.authorization.k8s.io', undefined],
      ['impersonate', 'serviceaccounts', namespace],
      ['*', '*', undefined],
    ];
    const wrong: string[] = [];
    for (const [verb, resource, ns] of allowed) {
      if (!(await canI(namespace, sa, verb, resource, ns)))
        wrong.push(`cannot ${verb} ${resource} in ${ns ?? '*'}`);
    }
    for (const [verb, resource, ns] of denied) {
      if (await canI(namespace, sa, verb, resource, ns))
        wrong.push(`can ${verb} ${resource} in ${ns ?? '*'}`);
    }
    expect(wrong).toEqual([]);
  });

  test('controller ServiceAccount: its rules in the release namespace are exactly the contract', async () => {
    const out = await kubectlOk([
      'auth',
      'can-i',
      '--list',
      `--as=system:serviceaccount:${namespace}:liveupdate-operator-controller`,
      `--namespace=${namespace}`,
    ]);
    // Rows: resource, non-resource URLs, resource names, verbs. Non-resource rows start with their URL list, and
    // self reviews are what every authenticated user may do.
    const granted = new Map<string, Set<string>>();
    for (const line of out.split('\n').slice(1)) {
      const resource = line.trim().split(/\s+/)[0] ?? '';
      const verbs = /\[([^\]]*)\]\s*$/.exec(line)?.[1];
      if (
        resource === '' ||
        resource.startsWith('[') ||
        resource.startsWith('selfsubject') ||
        verbs === undefined
      ) {
        continue;
      }
      const set = granted.get(resource) ?? new Set<string>();
      for (const verb of verbs.split(' ').filter(Boolean)) set.add(verb);
      granted.set(resource, set);
    }
    const actual: Record<string, string[]> = {};
    for (const resource of [...granted.keys()].sort()) actual[resource] = [...granted.get(resource)!].sort();
    const kinds = ['liveupdateapps', 'liveupdatebundles', 'liveupdatechannels'].map(
      (p) => `${p}.liveupdate.dev`,
    );
    const expected: Record<string, string[]> = {
      events: ['create', 'patch'],
      'events.events.k8s.io': ['create', 'patch'],
      'leases.coordination.k8s.io': ['create', 'get', 'update'],
      secrets: ['get'],
    };
    for (const kind of kinds) {
      expected[kind] = ['get', 'list', 'patch', 'update', 'watch'];
      expected[`${kind}/finalizers`] = ['update'];
      expected[`${kind}/status`] = ['patch', 'update'];
    }
    expect(actual).toEqual(Object.fromEntries(Object.entries(expected).sort()));
  });

  test('update server ServiceAccount: nothing at all', async () => {
    const sa = 'liveupdate-operator-update-server';
    const checks: [string, string, string | undefined][] = [
      ['get', 'secrets', namespace],
      ['list', 'liveupdateapps.liveupdate.dev', namespace],
      ['get', 'configmaps', namespace],
      ['create', 'events', namespace],
      ['get', 'leases.coordination.k8s.io', namespace],
      ['list', 'pods', namespace],
      ['get', 'liveupdatebundles.liveupdate.dev', undefined],
    ];
    const granted: string[] = [];
    for (const [verb, resource, ns] of checks) {
      if (await canI(namespace, sa, verb, resource, ns)) granted.push(`${verb} ${resource}`);
    }
    expect(granted).toEqual([]);
  });

  test('the S3 credential Secrets are not part of the release: an upgrade leaves them alone', async () => {
    // What the hook Job creates at install time (s3-credentials-hook.test.ts runs it for real).
    await kubectlOk([
      'create',
      'secret',
      'generic',
      'liveupdate-operator-s3-credentials',
      '-n',
      namespace,
      '--from-literal=accessKeyId=liveupdate-root-abc',
      '--from-literal=secretAccessKey=kept-across-upgrades',
    ]);
    const read = async () =>
      kubectlOk([
        'get',
        'secret',
        'liveupdate-operator-s3-credentials',
        '-n',
        namespace,
        '-o',
        'jsonpath={.data}',
      ]);
    const before = await read();
    const upgrade = await helm(
      [
        'upgrade',
        RELEASE,
        chartPath,
        '--namespace',
        namespace,
        '--take-ownership',
        '--no-hooks',
        '--set',
        'logLevel=debug',
      ],
      { timeoutMs: 180_000 },
    );
    expect({ code: upgrade.code, stderr: upgrade.stderr }).toMatchObject({ code: 0 });
    expect(await read()).toBe(before);
    const manifest = (await helm(['get', 'manifest', RELEASE, '-n', namespace])).stdout;
    expect(parseManifests(manifest).filter((o) => o.kind === 'Secret')).toEqual([]);
  });

  test('uninstall keeps the CRDs (crds.keep) and removes the workloads', async () => {
    const uninstall = await helm(['uninstall', RELEASE, '--namespace', namespace]);
    expect(uninstall.code).toBe(0);
    expect(uninstall.stdout + uninstall.stderr).toMatch(/kept due to the resource policy/);
    await kubectlOk(['get', 'crd', 'liveupdatebundles.liveupdate.dev']);
    const deployment = await kubectl([
      'get',
      'deployment',
      'liveupdate-operator-controller',
      '-n',
      namespace,
    ]);
    expect(deployment.code).not.toBe(0);
  });
});
