import { RELEASE_SCHEMA_VERSION, type ReleaseIndex } from './release-index.js';
import {
  ReleaseIndexValidationError,
  UnsupportedSchemaVersionError,
  validateReleaseIndex,
  validateReleaseRoot,
} from './release-index-schema.js';

const sha = 'a'.repeat(64);

function validIndex(): ReleaseIndex {
  return {
    apiVersion: 'liveupdate.dev/index/v1',
    kind: 'ReleaseIndex',
    revision: 3,
    generatedAt: '2026-11-29T10:00:00.000Z',
    app: {
      namespace: 'team-a',
      name: 'demo',
      appId: 'com.example.app',
      keyId: 'MIIBCgKCAQEAzvBQkpU7',
      defaultChannel: 'production',
    },
    bundles: {
      'demo-1-0-0': {
        name: 'demo-1-0-0',
        version: '1.0.0',
        objectKey: `team-a/demo/bundles/${sha}.zip`,
        size: 1234,
        sha256: sha,
        encrypted: true,
        checksum: 'ff'.repeat(256),
        checksumV2: 'c2lnbmF0dXJl',
        sessionKey: 'aXY=:a2V5',
        keyId: 'MIIBCgKCAQEAzvBQkpU7',
      },
    },
    channels: [
      {
        name: 'production',
        id: 42,
        bundle: 'demo-1-0-0',
        policy: {
          disableAutoUpdate: 'major',
          disableAutoUpdateUnderNative: true,
          allowEmulator: false,
          allowDev: false,
          allowProd: true,
          allowDeviceSelfSet: false,
          platforms: ['ios', 'android'],
        },
        pinnedIdHashes: [sha],
      },
      {
        name: 'reset',
        id: 43,
        bundle: 'builtin',
        policy: {
          disableAutoUpdate: 'none',
          disableAutoUpdateUnderNative: false,
          allowEmulator: true,
          allowDev: true,
          allowProd: true,
          allowDeviceSelfSet: true,
          platforms: ['android'],
        },
        pinnedIdHashes: [],
      },
    ],
  };
}

function problemsOf(doc: unknown): string[] {
  try {
    validateReleaseIndex(doc);
  } catch (error) {
    expect(error).toBeInstanceOf(ReleaseIndexValidationError);
    return (error as ReleaseIndexValidationError).problems;
  }
  return [];
}

describe('validateReleaseIndex', () => {
  it('accepts a complete index', () => {
    expect(problemsOf(validIndex())).toEqual([]);
  });

  it('accepts fields a newer version added (forward compatibility), everywhere in the document', () => {
    const index = validIndex();
    Object.assign(index, { schemaVersion: 1, shards: 2 });
    Object.assign(index.app, { tenant: 't' });
    Object.assign(index.bundles['demo-1-0-0']!, { signature: 'x' });
    Object.assign(index.channels[0]!, { label: 'l' });
    Object.assign(index.channels[0]!.policy, { allowWeb: true });
    expect(problemsOf(index)).toEqual([]);
  });

  it('refuses a schemaVersion newer than this version reads, with UnsupportedSchemaVersionError', () => {
    const index = Object.assign(validIndex(), { schemaVersion: RELEASE_SCHEMA_VERSION + 1 });
    expect(() => validateReleaseIndex(index)).toThrow(UnsupportedSchemaVersionError);
    expect(problemsOf(index).join('\n')).toContain('/schemaVersion');
  });

  it.each<[string, (i: ReleaseIndex) => void, string]>([
    ['a schemaVersion 0', (i) => (i.schemaVersion = 0), '/schemaVersion'],
    ['revision 0', (i) => (i.revision = 0), '/revision'],
    ['a bad timestamp', (i) => (i.generatedAt = 'yesterday'), '/generatedAt'],
    ['a non-semver version', (i) => (i.bundles['demo-1-0-0']!.version = 'v1'), '/bundles/demo-1-0-0/version'],
    [
      'an encrypted bundle without session key',
      (i) => delete i.bundles['demo-1-0-0']!.sessionKey,
      'sessionKey',
    ],
    [
      'an object key escaping the prefix',
      (i) => (i.bundles['demo-1-0-0']!.objectKey = '../x.zip'),
      '/objectKey',
    ],
    [
      'a percentage above 100',
      (i) => (i.channels[0]!.rollout = { bundle: 'demo-1-0-0', percentage: 101, id: 'r' }),
      '/channels/0/rollout/percentage',
    ],
    [
      'a dangling channel bundle',
      (i) => (i.channels[0]!.bundle = 'missing'),
      '/channels/0/bundle references missing',
    ],
    [
      'a dangling rollout bundle',
      (i) => (i.channels[0]!.rollout = { bundle: 'gone', percentage: 5, id: 'r' }),
      '/channels/0/rollout/bundle references gone',
    ],
    ['duplicate channel names', (i) => (i.channels[1]!.name = 'production'), 'duplicates production'],
    [
      'a pinned id in clear',
      (i) => (i.channels[0]!.pinnedIdHashes = ['5c0e3a2e-8d43-4a63-9c52-1b1f0f2c9e11']),
      '/channels/0/pinnedIdHashes/0',
    ],
  ])('refuses %s', (_name, mutate, expected) => {
    const index = validIndex();
    mutate(index);
    expect(problemsOf(index).join('\n')).toContain(expected);
  });
});

describe('validateReleaseRoot', () => {
  it('accepts a root and refuses a revision 0 entry', () => {
    const root = {
      apiVersion: 'liveupdate.dev/index-root/v1',
      kind: 'ReleaseRoot',
      generatedAt: '2026-11-29T10:00:00Z',
      apps: [
        { namespace: 'a', name: 'b', appId: 'com.example.app', indexKey: 'a/b/index.json', revision: 1 },
      ],
    };
    expect(validateReleaseRoot(root)).toBe(root);
    root.apps[0]!.revision = 0;
    expect(() => validateReleaseRoot(root)).toThrow(/revision/);
  });

  it('accepts unknown fields and refuses a newer schemaVersion', () => {
    const root = {
      apiVersion: 'liveupdate.dev/index-root/v1',
      kind: 'ReleaseRoot',
      schemaVersion: 1,
      generatedAt: '2026-11-29T10:00:00Z',
      shards: 3,
      apps: [
        {
          namespace: 'a',
          name: 'b',
          appId: 'com.example.app',
          indexKey: 'a/b/index.json',
          revision: 1,
          x: 1,
        },
      ],
    };
    expect(validateReleaseRoot(root)).toBe(root);
    root.schemaVersion = RELEASE_SCHEMA_VERSION + 1;
    expect(() => validateReleaseRoot(root)).toThrow(UnsupportedSchemaVersionError);
  });
});
