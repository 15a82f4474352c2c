// The in-cluster S3 store's credentials are created at run time by the chart's hook Job, not rendered: its command
// (`liveupdate-operator s3-credentials`) runs here with the environment the chart gives the Job and the token of the
// hook's own ServiceAccount, bound to the Role the chart renders (not admin), against the real test apiserver.
// It creates the missing Secrets, keeps existing ones byte for byte, refuses an incomplete one, and its
// ServiceAccount can do nothing else.
import { jest } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanupTestResources, newNamespace } from '../../env/fixtures.js';
import { repoRoot } from '../../env/process-utils.js';
import {
  findObject,
  helmTemplate,
  kubectl,
  kubectlOk,
  parseManifests,
  run,
  serviceAccountKubeconfig,
  type K8sObject,
  type RunResult,
} from './chart-helpers.js';

// kubectl, tsx and the API server on 2 shared cores: seconds per call, not milliseconds.
jest.setTimeout(300_000);

const RELEASE = 'liveupdate-operator';
const HOOK = `${RELEASE}-s3-keygen`;
const SECRETS = ['credentials', 'controller', 'update-server'].map((s) => `${RELEASE}-s3-${s}`);

type EnvVar = { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } };
type SecretData = Record<string, string>;

describe('the S3 credentials hook, with its own ServiceAccount', () => {
  let namespace: string;
  let workDir: string;
  let rendered: K8sObject[];
  let kubeconfig: string;

  /** The hook Job's environment as the kubelet would resolve it in `namespace`. */
  function jobEnv(): NodeJS.ProcessEnv {
    const job = findObject(rendered, 'Job', HOOK);
    const container = (
      job['spec'] as { template: { spec: { containers: { args: string[]; env: EnvVar[] }[] } } }
    ).template.spec.containers[0]!;
    expect(container.args).toEqual(['s3-credentials']);
    const env: NodeJS.ProcessEnv = {};
    for (const variable of container.env) {
      if (variable.value !== undefined) env[variable.name] = variable.value;
      else if (variable.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace')
        env[variable.name] = namespace;
      else throw new Error(`unsupported env source for ${variable.name}`);
    }
    return env;
  }

  function runHook(): Promise<RunResult> {
    const { KUBECONFIG: _admin, ...inherited } = process.env;
    return run(process.execPath, ['--import', 'tsx', join(repoRoot(), 'src', 'main.ts'), 's3-credentials'], {
      env: { ...inherited, ...jobEnv(), KUBECONFIG: kubeconfig },
      timeoutMs: 120_000,
    });
  }

  async function secretData(name: string): Promise<SecretData> {
    const out = await kubectlOk(['get', 'secret', name, '-n', namespace, '-o', 'json']);
    return (JSON.parse(out) as { data: SecretData }).data;
  }

  beforeAll(async () => {
    namespace = await newNamespace('keygen');
    workDir = await mkdtemp(join(tmpdir(), 's3-keygen-'));
    rendered = parseManifests(await helmTemplate([], [], ['--namespace', namespace]));
    // What Helm (or Argo CD) creates before the Job: the hook's ServiceAccount, Role and RoleBinding.
    const rbac = rendered.filter(
      (o) => ['ServiceAccount', 'Role', 'RoleBinding'].includes(o.kind) && o.metadata.name === HOOK,
    );
    expect(rbac.map((o) => o.kind).sort()).toEqual(['Role', 'RoleBinding', 'ServiceAccount']);
    const file = join(workDir, 'hook-rbac.json');
    await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }));
    await kubectlOk(['apply', '-n', namespace, '-f', file]);
    kubeconfig = await serviceAccountKubeconfig(HOOK, namespace, workDir);
  });

  afterAll(async () => {
    await rm(workDir, { recursive: true, force: true });
    await cleanupTestResources();
  });

  test('the first run creates the three Secrets with fresh credentials and runtime labels', async () => {
    const result = await runHook();
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    expect(result.stdout.match(/credentials secret created/g)?.length).toBe(3);
    const values = new Set<string>();
    for (const [i, name] of SECRETS.entries()) {
      const data = await secretData(name);
      expect(Object.keys(data).sort()).toEqual(['accessKeyId', 'secretAccessKey']);
      const accessKeyId = Buffer.from(data['accessKeyId']!, 'base64').toString();
      expect(accessKeyId).toMatch(
        new RegExp(`^liveupdate-${['root', 'controller', 'update-server'][i]}-[a-z0-9]{12}$`),
      );
      values.add(Buffer.from(data['secretAccessKey']!, 'base64').toString());
      const labels = JSON.parse(
        await kubectlOk(['get', 'secret', name, '-n', namespace, '-o', 'jsonpath={.metadata.labels}']),
      ) as Record<string, string>;
      // No instance/managed-by label: neither Helm nor Argo CD's label tracking may take it for a release object.
      expect(labels).toEqual({
        'app.kubernetes.io/name': 'liveupdate-operator',
        'app.kubernetes.io/component': 's3',
        'app.kubernetes.io/part-of': 'liveupdate-operator',
      });
    }
    expect(values.size).toBe(3);
  });

  test('a second run (an upgrade, an Argo CD re-sync) keeps every Secret byte for byte', async () => {
    const before = await Promise.all(SECRETS.map(secretData));
    const result = await runHook();
    expect(result.code).toBe(0);
    expect(result.stdout.match(/credentials secret kept/g)?.length).toBe(3);
    expect(await Promise.all(SECRETS.map(secretData))).toEqual(before);
  });

  test('an incomplete Secret fails the hook with its name and the missing key, and is not rewritten', async () => {
    await kubectlOk(['delete', 'secret', SECRETS[1]!, '-n', namespace]);
    await kubectlOk([
      'create',
      'secret',
      'generic',
      SECRETS[1]!,
      '-n',
      namespace,
      '--from-literal=accessKeyId=hand-made',
    ]);
    const result = await runHook();
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).toContain(
      `Secret ${namespace}/${SECRETS[1]} exists but has no secretAccessKey`,
    );
    expect(await secretData(SECRETS[1]!)).toEqual({
      accessKeyId: Buffer.from('hand-made').toString('base64'),
    });
  });

  test("the hook's ServiceAccount may create Secrets and read only the three it ensures", async () => {
    const can = async (verb: string, resource: string): Promise<boolean> => {
      const result = await kubectl([
        'auth',
        'can-i',
        verb,
        resource,
        '-n',
        namespace,
        `--as=system:serviceaccount:${namespace}:${HOOK}`,
      ]);
      if (result.code !== 0 && result.code !== 1)
        throw new Error(`kubectl auth can-i failed: ${result.stderr}`);
      return result.stdout.trim() === 'yes';
    };
    expect(await can('create', 'secrets')).toBe(true);
    for (const name of SECRETS) expect(await can('get', `secrets/${name}`)).toBe(true);
    const denied: string[] = [];
    for (const [verb, resource] of [
      ['get', 'secrets/some-other-secret'],
      ['list', 'secrets'],
      ['watch', 'secrets'],
      ['update', `secrets/${SECRETS[0]}`],
      ['patch', `secrets/${SECRETS[0]}`],
      ['delete', `secrets/${SECRETS[0]}`],
      ['get', 'configmaps'],
      ['create', 'pods'],
    ] as const) {
      if (!(await can(verb, resource))) denied.push(`${verb} ${resource}`);
    }
    expect(denied).toHaveLength(8);
  });
});
