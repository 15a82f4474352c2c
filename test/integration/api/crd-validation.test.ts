// The CRDs against the real apiserver: valid manifests are accepted and defaulted, every CEL rule rejects its
// violation with a message naming the field, immutable fields stay immutable, and kubectl prints the columns.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { API_VERSION, GROUP, VERSION } from '../../../src/api/v1alpha1/index.js';
import type { LiveUpdateApp, LiveUpdateBundle, LiveUpdateChannel } from '../../../src/api/v1alpha1/index.js';
import { cleanupTestResources, kubeConfig, newNamespace } from '../../env/fixtures.js';
import { installCrds, kubectl as kubectlIn } from './crds.js';

type Plural = 'liveupdateapps' | 'liveupdatechannels' | 'liveupdatebundles';
type AnyObject = Record<string, unknown> & { metadata?: Record<string, unknown> };

const api = () => kubeConfig().makeApiClient(CustomObjectsApi);
let namespace: string;
let counter = 0;

const digest = `sha256:${'ab'.repeat(32)}`;

function app(spec: Record<string, unknown> = {}): AnyObject {
  return {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateApp',
    metadata: { name: `app-${++counter}` },
    spec: { appId: 'com.example.app', ...spec },
  };
}
function bundle(spec: Record<string, unknown> = {}): AnyObject {
  return {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateBundle',
    metadata: { name: `bundle-${++counter}` },
    spec: {
      app: 'demo',
      version: '1.0.0',
      source: { http: { url: 'https://artifacts.example/app-1.0.0.zip' } },
      ...spec,
    },
  };
}
function channel(spec: Record<string, unknown> = {}): AnyObject {
  return {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateChannel',
    metadata: { name: `channel-${++counter}` },
    spec: { app: 'demo', bundle: 'demo-1-0-0', ...spec },
  };
}

async function create<T>(plural: Plural, body: AnyObject): Promise<T> {
  return (await api().createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural,
    body,
  })) as T;
}

/** The apiserver's refusal message, or a failure when the object was accepted. */
async function rejection(plural: Plural, body: AnyObject): Promise<string> {
  try {
    await create(plural, body);
  } catch (error) {
    const { code, body: status } = error as { code?: number; body?: unknown };
    expect(code).toBe(422);
    return (JSON.parse(String(status)) as { message: string }).message;
  }
  throw new Error(`${plural} was accepted: ${JSON.stringify(body)}`);
}

async function updateRejection(
  plural: Plural,
  created: AnyObject,
  mutate: (spec: Record<string, unknown>) => void,
): Promise<string> {
  const updated = structuredClone(created) as AnyObject & { spec: Record<string, unknown> };
  mutate(updated.spec);
  try {
    await api().replaceNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      name: String(created.metadata!['name']),
      body: updated,
    });
  } catch (error) {
    return (JSON.parse(String((error as { body?: unknown }).body)) as { message: string }).message;
  }
  throw new Error('update was accepted');
}

beforeAll(async () => {
  await installCrds();
  namespace = await newNamespace('api');
});
afterAll(cleanupTestResources);

describe('valid manifests', () => {
  it('accepts an app, a channel and a bundle and applies the defaults', async () => {
    const createdApp = await create<LiveUpdateApp>(
      'liveupdateapps',
      app({ signingKey: { secretName: 'demo-key' } }),
    );
    expect(createdApp.spec.signingKey).toEqual({ secretName: 'demo-key', key: 'private.pem' });
    expect(createdApp.spec).toMatchObject({
      defaultChannel: 'production',
      encryptByDefault: true,
      exposeBundleMetadata: false,
      suspend: false,
      statsRetention: '720h',
    });
    const perPlatform = await create<LiveUpdateApp>(
      'liveupdateapps',
      app({ defaultChannels: { android: 'production', ios: 'development' }, exposeBundleMetadata: true }),
    );
    expect(perPlatform.spec.defaultChannels).toEqual({ android: 'production', ios: 'development' });

    const createdBundle = await create<LiveUpdateBundle>(
      'liveupdatebundles',
      bundle({ digest, minNativeVersion: '1.2.0' }),
    );
    expect(createdBundle.spec).toMatchObject({
      deletionPolicy: 'Delete',
      delta: false,
      breaking: false,
      suspend: false,
    });
    expect(createdBundle.spec.source.timeout).toBe('5m');

    const s3Bundle = await create<LiveUpdateBundle>(
      'liveupdatebundles',
      bundle({
        version: '2.0.0-rc.1+build.5',
        source: {
          s3: {
            endpoint: 'http://minio.storage:9000',
            bucket: 'builds',
            key: 'app/2.0.0.tgz',
            secretRef: { name: 's3' },
          },
        },
      }),
    );
    expect(s3Bundle.spec.source.s3?.bucket).toBe('builds');

    const createdChannel = await create<LiveUpdateChannel>(
      'liveupdatechannels',
      channel({
        rollout: { bundle: 'demo-1-1-0', percentage: 12.5 },
        pinnedDevices: ['5c0e3a2e-8d43-4a63-9c52-1b1f0f2c9e11'],
      }),
    );
    expect(createdChannel.spec.policy).toEqual({
      disableAutoUpdate: 'none',
      disableAutoUpdateUnderNative: false,
      allowEmulator: true,
      allowDev: true,
      allowProd: true,
      allowDevice: true,
      allowDeviceSelfSet: false,
      platforms: ['ios', 'android'],
    });
    expect(createdChannel.spec.rollout).toEqual({
      bundle: 'demo-1-1-0',
      percentage: 12.5,
      sticky: true,
      paused: false,
    });
  });

  it('defaults status.observedGeneration to -1', async () => {
    const created = await create<LiveUpdateBundle>('liveupdatebundles', bundle());
    const withStatus = (await api().replaceNamespacedCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: 'liveupdatebundles',
      name: created.metadata.name,
      body: { ...created, status: { conditions: [] } },
    })) as LiveUpdateBundle;
    expect(withStatus.status?.observedGeneration).toBe(-1);
  });
});

describe('CEL rules reject invalid manifests with a message naming the field', () => {
  const cases: Array<[string, Plural, () => AnyObject, string]> = [
    [
      'two source types',
      'liveupdatebundles',
      () =>
        bundle({
          source: {
            http: { url: 'https://a.example/x.zip' },
            s3: { endpoint: 'http://s3:9000', bucket: 'abc', key: 'k' },
          },
        }),
      'spec.source must set exactly one of http, s3 or oci',
    ],
    [
      'no source type',
      'liveupdatebundles',
      () => bundle({ source: {} }),
      'spec.source must set exactly one of http, s3 or oci',
    ],
    [
      'an oci url with a tag',
      'liveupdatebundles',
      () => bundle({ source: { oci: { url: 'oci://reg.internal/app:1.0.0', ref: { tag: '1.0.0' } } } }),
      'spec.source.oci.url must be oci://<host>/<lowercase repository path>',
    ],
    [
      'an oci ref without tag or digest',
      'liveupdatebundles',
      () => bundle({ source: { oci: { url: 'oci://reg.internal/app', ref: {} } } }),
      'spec.source.oci.ref must set tag, digest or both',
    ],
    [
      'an oci verify provider other than cosign',
      'liveupdatebundles',
      () =>
        bundle({
          source: {
            oci: {
              url: 'oci://reg.internal/app',
              ref: { tag: '1.0.0' },
              verify: { provider: 'notation', secretRef: { name: 'keys' } },
            },
          },
        }),
      'spec.source.oci.verify.provider',
    ],
    [
      'non-semver version',
      'liveupdatebundles',
      () => bundle({ version: '1.2' }),
      'spec.version must be a semantic version',
    ],
    [
      'the builtin version',
      'liveupdatebundles',
      () => bundle({ version: 'builtin' }),
      'spec.version must be a semantic version',
    ],
    [
      'a malformed digest',
      'liveupdatebundles',
      () => bundle({ digest: 'sha256:XYZ' }),
      'spec.digest must be sha256:<64 lowercase hex digits>',
    ],
    [
      'a non-http URL',
      'liveupdatebundles',
      () => bundle({ source: { http: { url: 'ftp://host/x.zip' } } }),
      'spec.source.http.url must be an http:// or https:// URL',
    ],
    [
      'an S3 endpoint with a path',
      'liveupdatebundles',
      () => bundle({ source: { s3: { endpoint: 'http://s3:9000/bucket', bucket: 'abc', key: 'k' } } }),
      'spec.source.s3.endpoint must be',
    ],
    [
      'a bad timeout',
      'liveupdatebundles',
      () => bundle({ source: { http: { url: 'https://a.example/x.zip' }, timeout: 'soon' } }),
      'spec.source.timeout must be a duration',
    ],
    [
      'a bad minNativeVersion',
      'liveupdatebundles',
      () => bundle({ minNativeVersion: 'v1' }),
      'spec.minNativeVersion must be a semantic version',
    ],
    [
      'an unknown deletionPolicy',
      'liveupdatebundles',
      () => bundle({ deletionPolicy: 'Keep' }),
      'spec.deletionPolicy',
    ],
    [
      'a non-reverse-domain appId',
      'liveupdateapps',
      () => app({ appId: 'myapp' }),
      'spec.appId must be a reverse-domain id',
    ],
    [
      'a prefix escaping upwards',
      'liveupdateapps',
      () => app({ storage: { prefix: 'a/../b' } }),
      'spec.storage.prefix must be a relative key prefix',
    ],
    [
      'a percentage above 100',
      'liveupdatechannels',
      () => channel({ rollout: { bundle: 'b2', percentage: 100.5 } }),
      'spec.rollout.percentage must be between 0 and 100',
    ],
    [
      'a negative percentage',
      'liveupdatechannels',
      () => channel({ rollout: { bundle: 'b2', percentage: -1 } }),
      'spec.rollout.percentage must be between 0 and 100',
    ],
    [
      'a rollout of the live bundle',
      'liveupdatechannels',
      () => channel({ bundle: 'b1', rollout: { bundle: 'b1', percentage: 10 } }),
      'spec.rollout.bundle must differ from spec.bundle',
    ],
    [
      'a failure limit above 100 %',
      'liveupdatechannels',
      () =>
        channel({
          rollout: {
            bundle: 'b2',
            percentage: 10,
            failureThresholds: { maxFailurePercent: 150 },
          },
        }),
      'spec.rollout.failureThresholds.maxFailurePercent must be between 0 and 100',
    ],
    [
      'an unknown onFailure action',
      'liveupdatechannels',
      () =>
        channel({
          rollout: {
            bundle: 'b2',
            percentage: 10,
            failureThresholds: { maxFailurePercent: 5, onFailure: 'Ignore' },
          },
        }),
      'spec.rollout.failureThresholds.onFailure',
    ],
    [
      'failure thresholds without a limit',
      'liveupdatechannels',
      () => channel({ rollout: { bundle: 'b2', percentage: 10, failureThresholds: { minSamples: 5 } } }),
      'spec.rollout.failureThresholds.maxFailurePercent',
    ],
    [
      'an unknown platform',
      'liveupdatechannels',
      () => channel({ policy: { platforms: ['windows'] } }),
      'spec.policy.platforms[0]',
    ],
    [
      'a device-visible channel name with a space',
      'liveupdatechannels',
      () => channel({ deviceName: 'Production EU' }),
      'spec.deviceName must start with a letter or digit',
    ],
    [
      'a device-visible channel name starting with a dot',
      'liveupdatechannels',
      () => channel({ deviceName: '.hidden' }),
      'spec.deviceName must start with a letter or digit',
    ],
    [
      'a bad bundle name',
      'liveupdatechannels',
      () => channel({ bundle: 'Not_A_Name' }),
      'spec.bundle must be a LiveUpdateBundle name or builtin',
    ],
  ];

  it.each(cases)('rejects %s', async (_name, plural, manifest, message) => {
    expect(await rejection(plural, manifest())).toContain(message);
  });

  it('accepts Capgo channel names that are not object names as deviceName', async () => {
    for (const deviceName of ['Production_EU', 'no_access', 'electron_only', 'v2.beta-1']) {
      const created = await create<LiveUpdateChannel>('liveupdatechannels', channel({ deviceName }));
      expect(created.spec.deviceName).toBe(deviceName);
    }
  });

  it('accepts builtin as the live bundle and boundary percentages', async () => {
    await create(
      'liveupdatechannels',
      channel({ bundle: 'builtin', rollout: { bundle: 'b2', percentage: 100 } }),
    );
    await create('liveupdatechannels', channel({ rollout: { bundle: 'b2', percentage: 0 } }));
  });
});

describe('immutable fields', () => {
  it('refuses changes of a bundle version, source and app', async () => {
    const created = await create<AnyObject>('liveupdatebundles', bundle());
    expect(await updateRejection('liveupdatebundles', created, (s) => (s['version'] = '1.0.1'))).toContain(
      'spec.version is immutable',
    );
    expect(
      await updateRejection(
        'liveupdatebundles',
        created,
        (s) => (s['source'] = { http: { url: 'https://other.example/x.zip' } }),
      ),
    ).toContain('spec.source is immutable');
    expect(await updateRejection('liveupdatebundles', created, (s) => (s['app'] = 'other'))).toContain(
      'spec.app is immutable',
    );
  });

  it('refuses changes of an appId and of a channel app, but allows other edits', async () => {
    const createdApp = await create<AnyObject>('liveupdateapps', app());
    expect(
      await updateRejection('liveupdateapps', createdApp, (s) => (s['appId'] = 'com.example.other')),
    ).toContain('spec.appId is immutable');
    const createdChannel = await create<AnyObject>('liveupdatechannels', channel());
    expect(
      await updateRejection('liveupdatechannels', createdChannel, (s) => (s['app'] = 'other')),
    ).toContain('spec.app is immutable');

    const edited = structuredClone(createdChannel) as AnyObject & { spec: Record<string, unknown> };
    edited.spec['bundle'] = 'demo-2-0-0';
    const updated = (await api().replaceNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: 'liveupdatechannels',
      name: String(createdChannel.metadata!['name']),
      body: edited,
    })) as LiveUpdateChannel;
    expect(updated.spec.bundle).toBe('demo-2-0-0');
  });
});

describe('kubectl', () => {
  const kubectl = (...args: string[]) => kubectlIn('-n', namespace, ...args);

  it('prints the columns, knows the short names and the liveupdate category', async () => {
    await create('liveupdatebundles', { ...bundle(), metadata: { name: 'printed' } });
    const header = (await kubectl('get', 'lub', 'printed')).split('\n')[0] ?? '';
    expect(header.split(/\s{2,}/)).toEqual(['NAME', 'APP', 'VERSION', 'READY', 'STATUS', 'AGE']);
    expect(await kubectl('get', 'lub', 'printed', '-o', 'wide')).toMatch(/ENCRYPTED\s+SIZE/);
    expect((await kubectl('get', 'lua')).split('\n')[0]).toMatch(
      /^NAME\s+APP ID\s+KEY ID\s+REVISION\s+READY\s+STATUS\s+AGE/,
    );
    expect((await kubectl('get', 'luc')).split('\n')[0]).toMatch(
      /^NAME\s+APP\s+BUNDLE\s+VERSION\s+ROLLOUT\s+PERCENT\s+ADOPTION\s+FAILURES\s+READY\s+STATUS\s+AGE/,
    );
    const all = await kubectl('get', 'liveupdate', '-o', 'name');
    expect(all).toContain('liveupdatebundle.liveupdate.dev/printed');
    expect(all).toMatch(/liveupdateapp\.liveupdate\.dev\//);
    expect(all).toMatch(/liveupdatechannel\.liveupdate\.dev\//);
  });

  it('explains fields from the schema descriptions', async () => {
    const explained = await kubectl('explain', 'liveupdatebundle.spec.source.http.url');
    expect(explained).toContain('http:// or https:// URL of a zip');
  });
});
