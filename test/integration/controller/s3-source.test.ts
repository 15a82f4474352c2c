// A bundle fetched from an S3 bucket (the real S3 server) with a credentials Secret; a missing key and wrong
// credentials stall with precise reasons. A second versitygw serving TLS with a certificate of a throwaway CA:
// spec.source.s3.caSecretRef makes it trusted; without it the bundle stalls naming that field.
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
import { S3ObjectStore } from '../../../src/storage/s3-store.js';
import { startS3Server, type S3Server } from '../../env/environment.js';
import { testCertificateAuthority } from '../../env/tls.js';
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
    // A missing key is retried on the bundle's schedule, not stalled (docs/adr/0032-recovery-without-kubectl.md).
    expect(findCondition(missing.status?.conditions, 'Stalled')).toBeUndefined();
    expect(findCondition(missing.status?.conditions, 'FetchFailed')).toMatchObject({
      reason: 'SourceNotFound',
    });
    const denied = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'wrong-creds' });
    expect(findCondition(denied.status?.conditions, 'Stalled')).toMatchObject({
      reason: 'SourceUnauthorized',
    });
    expect(JSON.stringify(denied.status)).not.toContain('not-the-secret');
  });
});

describe('LiveUpdateBundle with an s3 source over TLS signed by a private CA', () => {
  let server: S3Server | undefined;
  afterAll(() => server?.stop());

  it('is fetched with spec.source.s3.caSecretRef, refused naming that field without it, and the CA Secret passes the label gate', async () => {
    const ca = testCertificateAuthority();
    const issued = ca.issue('server');
    // A second versitygw of its own, serving https with a certificate of the throwaway CA.
    const tls = (server = await startS3Server('versitygw', {
      tls: { cert: issued.cert, key: issued.key, ca: ca.cert },
    }));
    const zip = await webZip();
    const builds = new S3ObjectStore({
      endpoint: tls.endpoint,
      bucket: 'tls-builds',
      region: tls.region,
      accessKeyId: tls.accessKey,
      secretAccessKey: tls.secretKey,
      ca: ca.cert,
    });
    await builds.ensureBucket(AbortSignal.timeout(10_000));
    await builds.put('app.zip', zip);
    builds.close();

    const label = { key: 'liveupdate.dev/bundle-source', value: 'true' };
    const namespace = await newNamespace('s3tls');
    const h = newHarness(await newBucket('s3tls-store'), undefined, { sourceSecretLabel: label });
    const secret = (name: string, stringData: Record<string, string>, labelled = true) =>
      h.user.create(SECRET_RESOURCE, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace, ...(labelled ? { labels: { [label.key]: label.value } } : {}) },
        stringData,
      } as never);
    await secret('tls-s3', { accessKeyID: tls.accessKey, secretAccessKey: tls.secretKey });
    await secret('tls-s3-ca', { 'ca.crt': ca.cert });
    await secret('other-ca', { 'ca.pem': ca.cert });
    await secret('unlabelled-ca', { 'ca.crt': ca.cert }, false);
    await h.user.create(APP_RESOURCE, manifests.app(namespace));
    const bundle = async (name: string, version: string, caSecretRef?: { name: string; key?: string }) =>
      h.user.create(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, name, {
          version,
          source: {
            s3: {
              endpoint: tls.endpoint,
              bucket: 'tls-builds',
              key: 'app.zip',
              region: testEnvironment().s3.region,
              secretRef: { name: 'tls-s3' },
              ...(caSecretRef ? { caSecretRef } : {}),
            },
          },
        }),
      );
    await bundle('with-ca', '1.0.0', { name: 'tls-s3-ca' });
    await bundle('with-ca-key', '1.0.1', { name: 'other-ca', key: 'ca.pem' });
    await bundle('without-ca', '1.0.2');
    await bundle('unlabelled-ca', '1.0.3', { name: 'unlabelled-ca' });
    await converge(h, namespace);

    const get = (name: string) => h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name });
    for (const name of ['with-ca', 'with-ca-key']) {
      const ok = await get(name);
      expect({ name, current: isCurrent(ok) }).toEqual({ name, current: true });
      expect(ok.status?.artifact?.sha256).toBe(createHash('sha256').update(zip).digest('hex'));
    }
    const refused = findCondition((await get('without-ca')).status?.conditions, 'Ready');
    expect(refused).toMatchObject({ status: 'False', reason: 'SourceCertificateInvalid' });
    expect(findCondition((await get('without-ca')).status?.conditions, 'Stalled')).toMatchObject({
      status: 'True',
    });
    expect(refused?.message).toContain('spec.source.s3.caSecretRef');
    expect(findCondition((await get('unlabelled-ca')).status?.conditions, 'Stalled')).toMatchObject({
      reason: 'SourceSecretNotAllowed',
    });
  });
});
