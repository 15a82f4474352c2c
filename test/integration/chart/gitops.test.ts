// The chart under GitOps (Argo CD renders it with `helm template` on every refresh and diffs the result): renders are
// byte-identical (no lookup, no random data); the Ingress takes hosts[]/tls[] lists; extraArgs, extraVolumes,
// extraVolumeMounts, commonLabels and commonAnnotations land where they should (lint and kubeconform of every value
// set: chart-render.test.ts and manifests-validate.test.ts). No cluster needed, except helm's environment.
import { jest } from '@jest/globals';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '../../env/process-utils.js';
import {
  chartPath,
  ciValues,
  findObject,
  helm,
  helmTemplate,
  KUBE_VERSION,
  parseManifests,
  VALUE_SETS,
  type K8sObject,
} from './chart-helpers.js';

// helm on 2 shared cores: seconds per call, not milliseconds.
jest.setTimeout(300_000);

/** Functions whose result changes from one render to the next, or depends on the cluster. */
const UNSTABLE_FUNCTIONS = [
  'lookup',
  'randAlphaNum',
  'randAlpha',
  'randNumeric',
  'randAscii',
  'randBytes',
  'randInt',
  'uuidv4',
  'now',
  'genCA',
  'genPrivateKey',
  'genSelfSignedCert',
  'genSignedCert',
];

type Container = { name: string; args: string[]; volumeMounts: { name: string; mountPath: string }[] };
type PodSpec = { containers: Container[]; volumes: { name: string }[] };
type Metadata = { labels?: Record<string, string>; annotations?: Record<string, string> };

/** `helm template` with one `--set`, for the cases that must fail: the result, not an exception. */
const renderWith = (set: string) => helm(['template', 'x', chartPath, ...KUBE_VERSION, '--set', set]);

const podSpec = (o: K8sObject): PodSpec => (o['spec'] as { template: { spec: PodSpec } }).template.spec;
const meta = (o: K8sObject): Metadata => o.metadata as Metadata;

describe('the chart under GitOps', () => {
  test.each(VALUE_SETS)('two renders with %s values are byte-identical', async (set) => {
    const first = await helmTemplate([ciValues(set)]);
    const second = await helmTemplate([ciValues(set)]);
    expect(second).toBe(first);
  });

  test('no template calls lookup or a random function (comments aside)', async () => {
    const dir = join(chartPath, 'templates');
    const files = (await readdir(dir, { recursive: true })).filter((f) => /\.(yaml|tpl|txt)$/.test(f));
    expect(files.length).toBeGreaterThan(20);
    const offenders: string[] = [];
    for (const file of files) {
      const code = (await readFile(join(dir, file), 'utf8')).replace(
        /\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g,
        '',
      );
      for (const fn of UNSTABLE_FUNCTIONS) {
        if (new RegExp(`\\{\\{[^}]*\\b${fn}\\b`).test(code)) offenders.push(`${file}: ${fn}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  test('the credentials hook ensures only the Secrets the chart would otherwise lack', async () => {
    const hookOf = async (sets: string[]) => {
      const objects = parseManifests(await helmTemplate([], sets));
      return objects.filter((o) => o.metadata.name === 'liveupdate-operator-s3-keygen');
    };
    const own = await hookOf([
      'controller.s3CredentialsSecret=ctl-s3',
      'updateServer.s3CredentialsSecret=us-s3',
    ]);
    const job = findObject(own, 'Job', 'liveupdate-operator-s3-keygen');
    const env = (podSpec(job).containers[0] as unknown as { env: { name: string; value?: string }[] }).env;
    expect(env.find((e) => e.name === 'LIVEUPDATE_S3_CREDENTIAL_SECRETS')?.value).toBe(
      'liveupdate-operator-s3-credentials=root',
    );
    expect(findObject(own, 'Role', 'liveupdate-operator-s3-keygen')['rules']).toContainEqual({
      apiGroups: [''],
      resources: ['secrets'],
      resourceNames: ['liveupdate-operator-s3-credentials'],
      verbs: ['get'],
    });
    expect((await hookOf(['s3.existingSecret=my-s3'])).map((o) => o.kind)).toEqual([]);
    expect((await hookOf(['networkPolicy.enabled=false'])).map((o) => o.kind).sort()).toEqual([
      'Job',
      'Role',
      'RoleBinding',
      'ServiceAccount',
    ]);
  });

  test('Ingress: every host with its paths, TLS entries as listed, publicUrl from the first host', async () => {
    const objects = parseManifests(await helmTemplate([ciValues('external-s3')]));
    const ingress = findObject(objects, 'Ingress', 'liveupdate-operator-update-server');
    const backend = { service: { name: 'liveupdate-operator-update-server', port: { name: 'http' } } };
    expect(ingress['spec']).toEqual({
      ingressClassName: 'nginx',
      tls: [{ hosts: ['updates.example.com', 'updates.factory.internal'], secretName: 'updates-tls' }],
      rules: [
        { host: 'updates.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend }] } },
        {
          host: 'updates.factory.internal',
          http: { paths: [{ path: '/api', pathType: 'Prefix', backend }] },
        },
      ],
    });
    const env = (
      podSpec(findObject(objects, 'Deployment', 'liveupdate-operator-update-server'))
        .containers[0] as unknown as {
        env: { name: string; value?: string }[];
      }
    ).env;
    expect(env.find((e) => e.name === 'LIVEUPDATE_PUBLIC_URL')?.value).toBe('https://updates.example.com');

    // Without a TLS entry for the first host the derived URL is http, and its first path is kept.
    const plain = parseManifests(
      await helmTemplate(
        [],
        [
          'updateServer.ingress.enabled=true',
          'updateServer.ingress.hosts[0].host=a.example.com',
          'updateServer.ingress.hosts[0].paths[0].path=/ota/',
          'updateServer.ingress.hosts[0].paths[0].pathType=Exact',
        ],
      ),
    );
    const plainIngress = findObject(plain, 'Ingress', 'liveupdate-operator-update-server');
    expect((plainIngress['spec'] as { tls?: unknown }).tls).toBeUndefined();
    expect(JSON.stringify(plainIngress['spec'])).toContain('"path":"/ota/","pathType":"Exact"');
    const plainEnv = JSON.stringify(
      podSpec(findObject(plain, 'Deployment', 'liveupdate-operator-update-server')).containers[0],
    );
    expect(plainEnv).toContain('"name":"LIVEUPDATE_PUBLIC_URL","value":"http://a.example.com/ota"');

    const noHost = await renderWith('updateServer.ingress.enabled=true');
    expect(noHost.code).not.toBe(0);
    expect(noHost.stderr).toContain('updateServer.ingress.hosts');
    const oldKey = await renderWith('updateServer.ingress.host=a.example.com');
    expect(oldKey.code).not.toBe(0);
  });

  test('extraArgs, extraVolumes and extraVolumeMounts reach their own component only', async () => {
    const sets: string[] = [];
    for (const [component, flag, volume] of [
      ['controller', '--log-level=debug', 'source-ca'],
      ['updateServer', '--log-level=warn', 'geo'],
    ] as const) {
      sets.push(
        `${component}.extraArgs[0]=${flag}`,
        `${component}.extraVolumes[0].name=${volume}`,
        `${component}.extraVolumes[0].configMap.name=${volume}`,
        `${component}.extraVolumeMounts[0].name=${volume}`,
        `${component}.extraVolumeMounts[0].mountPath=/etc/${volume}`,
        `${component}.extraVolumeMounts[0].readOnly=true`,
      );
    }
    const objects = parseManifests(await helmTemplate([], sets));
    for (const [name, command, flag, volume, other] of [
      ['liveupdate-operator-controller', 'controller', '--log-level=debug', 'source-ca', 'geo'],
      ['liveupdate-operator-update-server', 'update-server', '--log-level=warn', 'geo', 'source-ca'],
    ] as const) {
      const spec = podSpec(findObject(objects, 'Deployment', name));
      const container = spec.containers[0]!;
      expect(container.args).toEqual([command, flag]);
      expect(spec.volumes).toContainEqual({ name: volume, configMap: { name: volume } });
      expect(spec.volumes.map((v) => v.name)).not.toContain(other);
      // The chart's own volumes stay, the extra ones come after them.
      expect(spec.volumes[0]?.name).toBe('tmp');
      expect(container.volumeMounts).toContainEqual({
        name: volume,
        mountPath: `/etc/${volume}`,
        readOnly: true,
      });
      expect(container.volumeMounts.map((m) => m.name)).not.toContain(other);
    }
    const badMount = await renderWith('controller.extraVolumeMounts[0].name=x');
    expect(badMount.code).not.toBe(0);
    expect(badMount.stderr).toMatch(/mountPath/);
  });

  test('commonLabels and commonAnnotations land on every object; own annotations win', async () => {
    const objects = parseManifests(
      await helmTemplate(
        [ciValues('monitoring')],
        [
          'commonLabels.team=platform',
          'global.commonLabels.cost-center=cc42',
          'commonAnnotations.owner=platform@example.com',
          'updateServer.ingress.enabled=true',
          'updateServer.ingress.hosts[0].host=a.example.com',
        ],
        [
          '--set-string',
          'commonAnnotations.argocd\\.argoproj\\.io/sync-wave=1',
          '--set-string',
          'updateServer.service.annotations.argocd\\.argoproj\\.io/sync-wave=2',
        ],
      ),
    );
    expect(objects.length).toBeGreaterThan(25);
    const missing = objects
      .filter(
        (o) =>
          meta(o).labels?.['team'] !== 'platform' ||
          meta(o).labels?.['cost-center'] !== 'cc42' ||
          meta(o).annotations?.['owner'] !== 'platform@example.com',
      )
      .map((o) => `${o.kind}/${o.metadata.name}`);
    expect(missing).toEqual([]);
    const service = findObject(objects, 'Service', 'liveupdate-operator-update-server');
    expect(meta(service).annotations?.['argocd.argoproj.io/sync-wave']).toBe('2');
    const deployment = findObject(objects, 'Deployment', 'liveupdate-operator-controller');
    expect(meta(deployment).annotations?.['argocd.argoproj.io/sync-wave']).toBe('1');
    // Hooks keep their hook annotations next to the common ones.
    const job = findObject(objects, 'Job', 'liveupdate-operator-s3-keygen');
    expect(meta(job).annotations).toMatchObject({
      'helm.sh/hook': 'pre-install,pre-upgrade',
      owner: 'platform@example.com',
    });
    // The Secrets the hook creates get the common labels and annotations, never the release's instance label.
    const env = (podSpec(job).containers[0] as unknown as { env: { name: string; value?: string }[] }).env;
    const labels = JSON.parse(env.find((e) => e.name === 'LIVEUPDATE_SECRET_LABELS')!.value!) as object;
    expect(labels).toMatchObject({ team: 'platform', 'cost-center': 'cc42' });
    expect(labels).not.toHaveProperty('app.kubernetes.io/instance');
    expect(JSON.parse(env.find((e) => e.name === 'LIVEUPDATE_SECRET_ANNOTATIONS')!.value!)).toMatchObject({
      owner: 'platform@example.com',
    });
  });

  test('the example Argo CD Applications: the chart path, valid values that render, the operator synced first', async () => {
    const file = join(repoRoot(), 'deploy', 'argocd', 'application.yaml');
    const apps = parseAllDocuments(await readFile(file, 'utf8')).map(
      (d) =>
        d.toJS() as {
          kind: string;
          metadata: { name: string; annotations: Record<string, string> };
          spec: { source: { path: string; helm?: { valuesObject: object } } };
        },
    );
    expect(apps.map((a) => a.kind)).toEqual(['Application', 'Application']);
    const [operator, team] = apps as [(typeof apps)[0], (typeof apps)[0]];
    expect(join(repoRoot(), operator.spec.source.path)).toBe(chartPath);
    const wave = (a: (typeof apps)[0]) => Number(a.metadata.annotations['argocd.argoproj.io/sync-wave']);
    expect(wave(operator)).toBeLessThan(wave(team));
    const dir = await mkdtemp(join(tmpdir(), 'argocd-app-'));
    try {
      const values = join(dir, 'values.json');
      await writeFile(values, JSON.stringify(operator.spec.source.helm!.valuesObject));
      const objects = parseManifests(await helmTemplate([values]));
      const ingress = findObject(objects, 'Ingress', 'liveupdate-operator-update-server');
      expect(JSON.stringify(ingress['spec'])).toContain('updates.factory.internal');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
