// From CI to a device with provenance: a simulated CI step (test/fixtures/ci/publish-bundle.sh) runs
// `liveupdate bundle publish`, which packs the web build, pushes it to a real registry (TLS + basic auth), signs it
// cosign-compatibly and applies the emitted LiveUpdateBundle. The real cosign verifies that signature; the controller
// process verifies it again before storing, and a device gets the bundle from the update service and decrypts it.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { BUNDLE_RESOURCE, SECRET_RESOURCE, type LiveUpdateBundle } from '../../../src/api/v1alpha1/index.js';
import {
  FIRST_VERSION,
  SECOND_VERSION,
  deviceIds,
  startProcessJourney,
  type Journey,
  type ProcessJourney,
} from '../../../scripts/demo/journey.js';
import { REPO, type Stack } from '../../../scripts/demo/stack.js';
import {
  INTEGRATION_TEST_TIMEOUT_MS,
  cleanupTestResources,
  newBucket,
  newNamespace,
  testEnvironment,
} from '../../env/fixtures.js';
import { startTestRegistry, type TestRegistry } from '../../env/oci-registry.js';

const device = deviceIds(1, 'ci-publish-device')[0]!;
const CLI = `${process.execPath} --import tsx ${join(REPO, 'src/cli/main.ts')}`;

let started: ProcessJourney | undefined;
let workDir: string;
let stack: Stack;
let registry: TestRegistry | undefined;
let journey: Journey;
let namespace: string;

function run(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      [...args],
      { cwd: REPO, env: { ...process.env, ...env }, timeout: 180_000, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${command} ${args.join(' ')}: ${error.message}\n${stderr}\n${stdout}`));
        else resolve({ stdout, stderr });
      },
    );
  });
}

/** Runs a step; a failure carries the end of the component logs that explain it. */
const withLogs = <T>(fn: () => Promise<T>): Promise<T> => started!.withLogs(fn);

beforeAll(async () => {
  namespace = await newNamespace('ci-publish');
  registry = await startTestRegistry();
  started = await startProcessJourney('ci', {
    env: testEnvironment(),
    namespace,
    bucket: await newBucket('ci-publish'),
  });
  ({ stack, journey, workDir } = started);
  await journey.createResources(FIRST_VERSION);
}, INTEGRATION_TEST_TIMEOUT_MS);

afterAll(async () => {
  await started?.stop();
  await registry?.stop();
  await cleanupTestResources();
}, INTEGRATION_TEST_TIMEOUT_MS);

describe('liveupdate bundle publish in a CI step → registry → controller → device', () => {
  it(
    'publishes a signed OCI artifact that cosign verifies, the controller verifies and stores, and a device installs',
    () =>
      withLogs(async () => {
        const r = registry!;
        const ci = join(workDir, 'ci');
        // The signing key CI keeps in its secret store; the cluster gets only the public half.
        const created = JSON.parse(
          (
            await run(process.execPath, [
              '--import',
              'tsx',
              'src/cli/main.ts',
              'keys',
              'create-signer',
              '--dir',
              ci,
              '--json',
            ])
          ).stdout,
        ) as { privateKeyPath: string; publicKeyPath: string; keyId: string };
        const signerPub = await readFile(created.publicKeyPath, 'utf8');
        const secret = (name: string, data: Record<string, string>, type?: string) =>
          stack.kube.create(SECRET_RESOURCE, {
            apiVersion: 'v1',
            kind: 'Secret',
            metadata: { name, namespace },
            ...(type ? { type } : {}),
            stringData: data,
          } as never);
        await secret(
          'registry-pull',
          { '.dockerconfigjson': r.dockerConfigJson },
          'kubernetes.io/dockerconfigjson',
        );
        await secret('registry-ca', { 'ca.crt': r.ca! });
        await secret('ci-signer', { 'cosign.pub': signerPub });
        const caFile = join(workDir, 'registry-ca.crt');
        await writeFile(caFile, r.ca!);

        const out = join(workDir, 'gitops');
        const repository = `mobile/${journey.appName}`;
        await run(join(REPO, 'test/fixtures/ci/publish-bundle.sh'), [], {
          LIVEUPDATE: CLI,
          BUILD_DIR: join(workDir, `web-${SECOND_VERSION}`),
          APP: journey.appName,
          VERSION: SECOND_VERSION,
          REGISTRY: r.host,
          REPOSITORY: repository,
          NAMESPACE: namespace,
          SIGN_KEY: created.privateKeyPath,
          REGISTRY_CA: caFile,
          OUT_DIR: out,
          LIVEUPDATE_REGISTRY_USERNAME: r.username,
          LIVEUPDATE_REGISTRY_PASSWORD: r.password,
          KUBECONFIG: testEnvironment().kubeconfigPath,
        });
        const published = JSON.parse(await readFile(join(out, 'publish.json'), 'utf8')) as Record<
          string,
          unknown
        >;
        const manifestDigest = String(published['manifestDigest']);
        expect(published).toMatchObject({
          version: SECOND_VERSION,
          sha256: journey.build(SECOND_VERSION).sha256,
          signatureKeyId: created.keyId,
          applied: { namespace, name: journey.build(SECOND_VERSION).bundleName },
        });

        // The manifest committed to Git pins tag and digest and names the Secrets.
        const manifest = parseYaml(
          await readFile(join(out, `${journey.appName}-${SECOND_VERSION}.yaml`), 'utf8'),
        ) as LiveUpdateBundle;
        expect(manifest.spec).toMatchObject({
          app: journey.appName,
          version: SECOND_VERSION,
          digest: `sha256:${journey.build(SECOND_VERSION).sha256}`,
          source: {
            oci: {
              url: `oci://${r.host}/${repository}`,
              ref: { tag: SECOND_VERSION, digest: manifestDigest },
              secretRef: { name: 'registry-pull' },
              caSecretRef: { name: 'registry-ca' },
              verify: { provider: 'cosign', secretRef: { name: 'ci-signer' } },
            },
          },
        });

        // Interop: the real cosign accepts the signature our CLI made (keyed, no transparency log).
        await writeFile(join(r.dir, 'signer.pub'), signerPub);
        const verified = await r.run('cosign', [
          'verify',
          '--key',
          'signer.pub',
          '--insecure-ignore-tlog=true',
          `${r.host}/${repository}@${manifestDigest}`,
        ]);
        expect(verified).toContain(`"docker-manifest-digest":"${manifestDigest}"`);

        // The controller process verified and stored it; the provenance chain is in status and the index.
        const bundleName = journey.build(SECOND_VERSION).bundleName;
        await journey.waitReady([{ type: BUNDLE_RESOURCE, name: bundleName }]);
        const bundle = await stack.kube.get<LiveUpdateBundle>(BUNDLE_RESOURCE, {
          namespace,
          name: bundleName,
        });
        expect(bundle.status?.artifact?.provenance).toMatchObject({
          ociManifestDigest: manifestDigest,
          signatureProvider: 'cosign',
          signatureKeyId: created.keyId,
        });

        // Promote it; a device gets it and verifies the download as the plugin does.
        await journey.setChannelBundle(SECOND_VERSION);
        await journey.waitChannelReady();
        await journey.waitUntilServed(
          [device],
          'builtin',
          (o) => o[0] === SECOND_VERSION,
          'the published bundle',
        );
        const answer = await journey.checkUpdate(device, 'builtin');
        expect(answer.body).toMatchObject({ version: SECOND_VERSION });
        const result = await journey.downloadAndVerify(answer, 'ci');
        expect(result.sha256).toBe(journey.build(SECOND_VERSION).sha256);
        expect(
          (await readFile(result.decrypted)).equals(await readFile(journey.build(SECOND_VERSION).zipPath)),
        ).toBe(true);
      }),
    INTEGRATION_TEST_TIMEOUT_MS * 2,
  );
});
