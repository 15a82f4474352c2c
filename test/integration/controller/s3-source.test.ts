// A bundle fetched from an S3 bucket (the real S3 server) with a credentials Secret; a missing key and wrong
// credentials stall with precise reasons.
import { createHash } from 'node:crypto';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateBundle,
} from '../../../src/api/v1alpha1/index.js';
import { findCondition } from '../../../src/controller/common/conditions.js';
import { webZip } from '../../../src/controller/common/testing/fixtures.js';
import {
  cleanupTestResources,
  newBucket,
  newNamespace,
  s3Client,
  testEnvironment,
} from '../../env/fixtures.js';
import { installCrds } from '../api/crds.js';
import { converge, isCurrent, manifests, newHarness } from './harness.js';

beforeAll(installCrds);
afterAll(cleanupTestResources);

describe('LiveUpdateBundle with an s3 source', () => {
  it('fetches with the Secret credentials, and stalls on a missing key or wrong credentials', async () => {
    const namespace = await newNamespace('s3src');
    const h = newHarness(await newBucket('s3src-store'));
    const sourceBucket = await newBucket('s3src-builds');
    const zip = await webZip();
    await s3Client().putObject(sourceBucket, 'builds/app-1.0.0.zip', zip);
    const { s3 } = testEnvironment();

    const secret = (name: string, accessKeyID: string, secretAccessKey: string) =>
      h.user.create(SECRET_RESOURCE, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace },
        stringData: { accessKeyID, secretAccessKey },
      } as never);
    await secret('builds-s3', s3.accessKey, s3.secretKey);
    await secret('wrong-s3', s3.accessKey, 'not-the-secret');
    await h.user.create(APP_RESOURCE, manifests.app(namespace));
    const source = (key: string, secretName: string) => ({
      s3: {
        endpoint: s3.endpoint,
        bucket: sourceBucket,
        key,
        region: s3.region,
        secretRef: { name: secretName },
      },
    });
    await h.user.create(
      BUNDLE_RESOURCE,
      manifests.bundle(namespace, 'from-s3', {
        version: '1.0.0',
        source: source('builds/app-1.0.0.zip', 'builds-s3'),
      }),
    );
    await h.user.create(
      BUNDLE_RESOURCE,
      manifests.bundle(namespace, 'missing-key', {
        version: '1.0.1',
        source: source('builds/nope.zip', 'builds-s3'),
      }),
    );
    await h.user.create(
      BUNDLE_RESOURCE,
      manifests.bundle(namespace, 'wrong-creds', {
        version: '1.0.2',
        source: source('builds/app-1.0.0.zip', 'wrong-s3'),
      }),
    );
    await converge(h, namespace);

    const ok = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'from-s3' });
    expect(isCurrent(ok)).toBe(true);
    expect(ok.status?.artifact).toMatchObject({
      encrypted: false,
      sha256: createHash('sha256').update(zip).digest('hex'),
    });
    expect((await h.store.getBuffer(ok.status!.artifact!.objectKey)).data.equals(zip)).toBe(true);

    const missing = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'missing-key' });
    expect(findCondition(missing.status?.conditions, 'Stalled')).toMatchObject({ reason: 'SourceNotFound' });
    const denied = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'wrong-creds' });
    expect(findCondition(denied.status?.conditions, 'Stalled')).toMatchObject({
      reason: 'SourceUnauthorized',
    });
    expect(JSON.stringify(denied.status)).not.toContain('not-the-secret');
  });
});
