// `liveupdate bundle publish --to s3://…` uploads the packed build to a real S3 server and emits a manifest that
// the controller turns into a Ready bundle with the same digest.
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateBundle,
} from '../../../src/api/v1alpha1/index.js';
import { runCli } from '../../../src/cli/main.js';
import {
  cleanupTestResources,
  newBucket,
  newNamespace,
  s3Client,
  testEnvironment,
} from '../../env/fixtures.js';
import { installCrds } from '../api/crds.js';
import { converge, isCurrent, manifests, newHarness } from '../controller/harness.js';

const WEBAPP = fileURLToPath(new URL('../../fixtures/webapp', import.meta.url));

beforeAll(installCrds);
afterAll(cleanupTestResources);

describe('liveupdate bundle publish to S3', () => {
  it('uploads the zip and emits a manifest the controller stores with the same digest', async () => {
    const { s3 } = testEnvironment();
    const builds = await newBucket('publish-builds');
    const namespace = await newNamespace('publish-s3');
    const saved = { id: process.env['AWS_ACCESS_KEY_ID'], secret: process.env['AWS_SECRET_ACCESS_KEY'] };
    process.env['AWS_ACCESS_KEY_ID'] = s3.accessKey;
    process.env['AWS_SECRET_ACCESS_KEY'] = s3.secretKey;
    let stdout = '';
    let stderr = '';
    try {
      const code = await runCli(
        [
          'bundle',
          'publish',
          WEBAPP,
          '--app',
          'demo',
          '--version',
          '5.0.0',
          '--namespace',
          namespace,
          '--to',
          `s3://${builds}/demo/`,
          '--s3-endpoint',
          s3.endpoint,
          '--s3-region',
          s3.region,
          '--pull-secret',
          'builds-s3',
          '--json',
        ],
        {
          stdout: (t) => (stdout += t),
          stderr: (t) => (stderr += t),
          stderrIsTTY: false,
          cwd: process.cwd(),
        },
      );
      expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    } finally {
      if (saved.id === undefined) delete process.env['AWS_ACCESS_KEY_ID'];
      else process.env['AWS_ACCESS_KEY_ID'] = saved.id;
      if (saved.secret === undefined) delete process.env['AWS_SECRET_ACCESS_KEY'];
      else process.env['AWS_SECRET_ACCESS_KEY'] = saved.secret;
    }
    const result = JSON.parse(stdout) as { reference: string; sha256: string; manifest: string };
    expect(result.reference).toBe(`s3://${builds}/demo/demo-5.0.0.zip`);
    const stat = await s3Client().statObject(builds, 'demo/demo-5.0.0.zip');
    expect(stat.size).toBeGreaterThan(0);
    const bundle = parseYaml(result.manifest) as LiveUpdateBundle;
    expect(bundle.spec).toMatchObject({
      digest: `sha256:${result.sha256}`,
      source: { s3: { bucket: builds, key: 'demo/demo-5.0.0.zip', secretRef: { name: 'builds-s3' } } },
    });

    const h = newHarness(await newBucket('publish-store'));
    await h.user.create(SECRET_RESOURCE, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'builds-s3', namespace },
      stringData: { accessKeyID: s3.accessKey, secretAccessKey: s3.secretKey },
    } as never);
    await h.user.create(APP_RESOURCE, manifests.app(namespace));
    await h.user.create(BUNDLE_RESOURCE, bundle);
    await converge(h, namespace);
    const stored = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, {
      namespace,
      name: bundle.metadata.name,
    });
    expect({ current: isCurrent(stored), conditions: stored.status?.conditions }).toMatchObject({
      current: true,
    });
    expect(stored.status?.artifact?.sha256).toBe(result.sha256);
  });
});
