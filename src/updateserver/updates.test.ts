/**
 * Table-driven protocol tests of POST /updates: every policy, error code and plugin-version gate, with real §2.1
 * bodies, against the real app on an ephemeral port (memory store + IndexCache + hand-built index).
 */
import type { ReleaseIndex } from '../storage/release-index.js';
import { compileIndex } from './compiled-index.js';
import { decideUpdate } from './policy.js';
import { parseDeviceInfo } from './device-request.js';
import {
  APP_ID,
  KEY_ID,
  PINNED_CUSTOM,
  PINNED_DEVICE,
  androidBody,
  iosBody,
  layout,
  policy,
  sampleIndex,
  startServer,
  type RunningServer,
} from './testing/fixtures.js';

type Json = Record<string, unknown>;

function assertCleanSuccess(body: Json): void {
  for (const k of ['error', 'kind', 'message']) expect(body).not.toHaveProperty(k);
  const walk = (v: unknown): void => {
    expect(v).not.toBeNull();
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null) Object.values(v).forEach(walk);
  };
  walk(body);
}

const V3 = 'c'.repeat(512);
const V2 = 'QUJD'.repeat(86);
const bundleUrl = (name: string): string =>
  `https://updates.example.com/bundles/${layout.bundleKey({ namespace: 'apps', name: 'example' }, Buffer.from(name).toString('hex').padEnd(64, '0').slice(0, 64))}`;

/** A variant of the sample index with the production channel's policy / bundle changed. */
function production(p: Partial<ReturnType<typeof policy>>, bundleName = 'app-1-4-1'): ReleaseIndex {
  const idx = sampleIndex(1);
  const ch = idx.channels.find((c) => c.name === 'production')!;
  ch.policy = policy(p);
  ch.bundle = bundleName;
  return idx;
}

interface Case {
  name: string;
  body: Json;
  index?: ReleaseIndex;
  status?: number;
  /** Expected subset of the answer. */
  expect: Json;
  /** Keys that must be absent. */
  absent?: string[];
}

const cases: Case[] = [
  {
    name: 'android on builtin gets the production bundle with V3 checksum, session key, notes',
    body: androidBody(),
    expect: {
      version: '1.4.1',
      url: bundleUrl('app-1-4-1'),
      checksum: V3,
      session_key: 'aXZpdml2aXZpdml2aXZpdg==:' + 'k'.repeat(344),
      comment: 'Fixes login',
      link: 'https://example.com/notes/1.4.1',
    },
    absent: ['manifest', 'breaking'],
  },
  {
    name: 'ios body (no install_source) on 1.4.0 gets the update',
    body: iosBody(),
    expect: { version: '1.4.1', checksum: V3 },
  },
  {
    name: 'same version as running ⇒ no_new_version_available',
    body: androidBody({ version_name: '1.4.1' }),
    expect: { error: 'no_new_version_available', kind: 'up_to_date' },
  },
  {
    name: 'builtin whose native version equals the bundle ⇒ up_to_date',
    body: androidBody({ version_build: '1.4.1' }),
    expect: { error: 'no_new_version_available', kind: 'up_to_date' },
  },
  {
    name: 'key_id mismatch on a plugin newer than 8.40.7',
    body: androidBody({ key_id: 'MIIBCgKCAQEAotherkey' }),
    expect: {
      error: 'key_id_mismatch',
      kind: 'blocked',
      deviceKeyId: 'MIIBCgKCAQEAotherkey',
      bundleKeyId: KEY_ID,
    },
  },
  {
    name: 'key_id not compared for plugin 8.40.7',
    body: androidBody({ key_id: 'MIIBCgKCAQEAotherkey', plugin_version: '8.40.7' }),
    expect: { version: '1.4.1' },
  },
  {
    name: 'key_id check runs before the same-version check',
    body: androidBody({ key_id: 'MIIBCgKCAQEAotherkey', version_name: '1.4.1' }),
    expect: { error: 'key_id_mismatch' },
  },
  {
    // Capgo update.ts: the public-channel query filters on the platform, so no channel is found.
    name: 'a platform without a public channel ⇒ no_channel',
    body: androidBody({ platform: 'electron' }),
    expect: { error: 'no_channel', kind: 'failed' },
  },
  {
    // Capgo update.ts: a device override (our pin) on a channel not enabled for the platform.
    name: 'platform disabled on a pinned channel',
    index: (() => {
      const i = sampleIndex();
      i.channels.find((c) => c.name === 'qa')!.policy.platforms = ['android'];
      return i;
    })(),
    body: iosBody({ device_id: PINNED_DEVICE, version_build: '2.0.0' }),
    expect: { error: 'disabled_platform_ios', kind: 'blocked', version: '2.0.0', old: '1.4.0' },
  },
  {
    name: 'disableAutoUpdate major: bundle major above native major',
    body: androidBody({ version_build: '0.9.0' }),
    expect: {
      error: 'disable_auto_update_to_major',
      kind: 'blocked',
      major: true,
      version: '1.4.1',
      old: '0.9.0',
    },
  },
  {
    name: 'disableAutoUpdate major compares with version_build, not the running bundle',
    body: androidBody({ version_build: '1.0.0', version_name: '0.5.0' }),
    expect: { version: '1.4.1' },
  },
  {
    name: 'disableAutoUpdate minor blocks a minor upgrade',
    index: production({ disableAutoUpdate: 'minor' }),
    body: androidBody({ version_build: '1.3.9' }),
    expect: { error: 'disable_auto_update_to_minor', kind: 'blocked' },
  },
  {
    name: 'disableAutoUpdate minor allows a patch upgrade',
    index: production({ disableAutoUpdate: 'minor' }),
    body: androidBody({ version_build: '1.4.0' }),
    expect: { version: '1.4.1' },
  },
  {
    // Capgo update.ts (patch): only a patch increase within the native major.minor passes.
    name: 'disableAutoUpdate patch allows a patch increase within major.minor',
    index: production({ disableAutoUpdate: 'patch' }),
    body: androidBody({ version_build: '1.4.0' }),
    expect: { version: '1.4.1' },
  },
  {
    // Capgo tests/updates.test.ts 'disable auto update to patch blocks cross-minor updates'.
    name: 'disableAutoUpdate patch blocks a minor change',
    index: production({ disableAutoUpdate: 'patch' }),
    body: androidBody({ version_build: '1.3.9' }),
    expect: { error: 'disable_auto_update_to_patch', kind: 'blocked', major: true, old: '1.3.9' },
  },
  {
    name: 'disableAutoUpdate patch blocks the same patch (no increase)',
    index: production({ disableAutoUpdate: 'patch' }),
    body: androidBody({ version_build: '1.4.1', version_name: '1.4.0' }),
    expect: { error: 'disable_auto_update_to_patch' },
  },
  {
    // Capgo tests/updates.test.ts 'disable auto update to minor blocks cross-major updates'.
    name: 'disableAutoUpdate minor blocks a major change even with the same minor',
    index: production({ disableAutoUpdate: 'minor' }),
    body: androidBody({ version_build: '0.4.0' }),
    expect: { error: 'disable_auto_update_to_minor' },
  },
  {
    // Capgo update.ts: version_number without min_update_version on the bundle.
    name: 'disableAutoUpdate metadata without a minimum native version ⇒ misconfigured_channel',
    index: production({ disableAutoUpdate: 'metadata' }),
    body: androidBody(),
    expect: { error: 'misconfigured_channel', kind: 'failed', version: '1.4.1', old: '1.4.0' },
  },
  {
    // Capgo tests/updates.test.ts 'disallow device' (allow_device: false, is_emulator: false).
    name: 'physical devices refused ⇒ disable_device',
    index: production({ allowDevice: false, allowEmulator: true }),
    body: androidBody(),
    expect: { error: 'disable_device', kind: 'blocked' },
  },
  {
    name: 'emulator allowed where physical devices are refused',
    index: production({ allowDevice: false, allowEmulator: true }),
    body: androidBody({ is_emulator: true }),
    expect: { version: '1.4.1' },
  },
  {
    name: 'disableAutoUpdate none lets a major through',
    index: production({ disableAutoUpdate: 'none' }),
    body: androidBody({ version_build: '0.9.0' }),
    expect: { version: '1.4.1' },
  },
  {
    name: 'minNativeVersion above version_build ⇒ disable_auto_update_to_metadata',
    index: production({ disableAutoUpdate: 'metadata' }, 'app-1-4-2'),
    body: androidBody({ version_build: '1.3.9' }),
    expect: { error: 'disable_auto_update_to_metadata', kind: 'blocked' },
  },
  {
    name: 'minNativeVersion met',
    index: production({ disableAutoUpdate: 'metadata' }, 'app-1-4-2'),
    body: androidBody({ version_build: '1.4.0' }),
    expect: { version: '1.4.2' },
  },
  {
    name: 'under native refused',
    body: androidBody({ version_build: '1.5.0' }),
    expect: { error: 'disable_auto_update_under_native', kind: 'blocked' },
  },
  {
    name: 'under native allowed when the channel permits it',
    index: production({ disableAutoUpdateUnderNative: false }),
    body: androidBody({ version_build: '1.5.0' }),
    expect: { version: '1.4.1' },
  },
  {
    name: 'dev build on a prod-only channel',
    body: androidBody({ is_prod: false }),
    expect: { error: 'disable_dev_build', kind: 'blocked' },
  },
  {
    name: 'prod build on a channel that disallows prod',
    index: production({ allowProd: false, allowDev: true }),
    body: androidBody(),
    expect: { error: 'disable_prod_build', kind: 'blocked' },
  },
  {
    name: 'emulator refused',
    body: androidBody({ is_emulator: true }),
    expect: { error: 'disable_emulator', kind: 'blocked' },
  },
  {
    // Capgo tests/updates.test.ts 'keeps builtin channel targets addressable'.
    name: 'builtin channel, device running a downloaded bundle ⇒ already_on_builtin with version builtin',
    body: androidBody({ defaultChannel: 'reset', version_name: '1.4.1' }),
    expect: { error: 'already_on_builtin', kind: 'up_to_date', version: 'builtin' },
    absent: ['url', 'checksum'],
  },
  {
    name: 'builtin channel, plugin older than 6.2.0 ⇒ revert_to_builtin_plugin_version_too_old',
    body: androidBody({ defaultChannel: 'reset', version_name: '1.4.1', plugin_version: '6.1.9' }),
    expect: { error: 'revert_to_builtin_plugin_version_too_old', kind: 'failed' },
  },
  {
    name: 'builtin channel, device already on builtin',
    body: androidBody({ defaultChannel: 'reset' }),
    expect: { error: 'already_on_builtin', kind: 'up_to_date' },
  },
  {
    name: 'self-set channel via defaultChannel, delta manifest for 8.x',
    body: androidBody({ defaultChannel: 'beta', is_prod: false }),
    expect: {
      version: '1.5.0',
      manifest: [
        {
          file_name: 'index.html',
          file_hash: 'd'.repeat(512),
          download_url: `https://updates.example.com/bundles/lu/apps/example/files/${'1'.repeat(64)}`,
        },
        {
          file_name: 'assets/app.js.br',
          file_hash: 'e'.repeat(512),
          download_url: `https://updates.example.com/bundles/lu/apps/example/files/${'2'.repeat(64)}`,
        },
      ],
    },
  },
  ...(
    [
      ['7.0.34', false],
      ['7.0.35', true],
      ['6.24.9', false],
      ['6.25.0', true],
      ['5.9.9', false],
      ['5.10.0', true],
      ['8.0.0', true],
    ] as const
  ).map(([plugin, withManifest]): Case => ({
    name: `manifest gate: plugin ${plugin} ${withManifest ? 'gets' : 'does not get'} the manifest`,
    body: androidBody({ defaultChannel: 'beta', plugin_version: plugin }),
    expect: { version: '1.5.0' },
    ...(withManifest ? {} : { absent: ['manifest'] }),
  })),
  ...(
    [
      ['8.0.0', V3],
      ['7.30.0', V3],
      ['7.29.9', V2],
      ['6.30.0', V3],
      ['6.29.0', V2],
      ['5.30.0', V3],
      ['5.29.99', V2],
    ] as const
  ).map(([plugin, checksum]): Case => ({
    name: `checksum gate: plugin ${plugin} gets ${checksum === V3 ? 'V3' : 'V2'}`,
    body: androidBody({ plugin_version: plugin }),
    expect: { version: '1.4.1', checksum },
  })),
  {
    name: 'V2 needed but the bundle has no V2 checksum ⇒ unsupported_plugin_version',
    index: (() => {
      const i = sampleIndex();
      delete i.bundles['app-1-4-1']!.checksumV2;
      return i;
    })(),
    body: androidBody({ plugin_version: '6.10.0' }),
    expect: { error: 'unsupported_plugin_version', kind: 'failed' },
  },
  ...(
    [
      ['7.34.9', false],
      ['7.35.0', true],
      ['8.34.0', false],
      ['8.35.0', true],
      ['8.35.0-beta.1', false],
      ['7.35.0-rc.1', false],
      ['5.35.0', true],
    ] as const
  ).map(([plugin, notes]): Case => ({
    name: `link/comment gate: plugin ${plugin} ${notes ? 'gets' : 'does not get'} notes`,
    body: androidBody({ plugin_version: plugin, key_id: undefined, install_source: undefined }),
    expect: notes
      ? { comment: 'Fixes login', link: 'https://example.com/notes/1.4.1' }
      : { version: '1.4.1' },
    ...(notes ? {} : { absent: ['comment', 'link'] }),
  })),
  {
    name: 'unencrypted bundle: plain sha256 checksum and empty session_key',
    body: androidBody({ defaultChannel: 'plain' }),
    expect: { version: '1.4.3', checksum: 'f'.repeat(64), session_key: '' },
  },
  {
    // Capgo pg.ts requestInfosChannelPostgres: defaultChannel must name a channel of the platform, public or
    // self-assignable; there is no fallback to the public channel.
    name: 'self-set channel not available on the platform ⇒ no_channel',
    body: iosBody({ defaultChannel: 'plain' }),
    expect: { error: 'no_channel', kind: 'failed' },
  },
  {
    name: 'defaultChannel naming a private channel without self-assignment ⇒ no_channel',
    body: androidBody({ defaultChannel: 'qa' }),
    expect: { error: 'no_channel', kind: 'failed' },
  },
  {
    // Capgo tests/updates.test.ts 'does not resolve deleted bundles that are still referenced by a channel'.
    name: 'unknown defaultChannel ⇒ no_channel',
    body: androidBody({ defaultChannel: 'nope' }),
    expect: { error: 'no_channel', kind: 'failed' },
  },
  {
    // Capgo tests/updates.test.ts 'direct channel overwrite'.
    name: 'defaultChannel naming the public channel works',
    body: androidBody({ defaultChannel: 'production' }),
    expect: { version: '1.4.1' },
  },
  {
    // Capgo tests/updates.test.ts 'disallowed public channel update': no public channel ⇒ no_channel.
    name: 'no public channel for the platform ⇒ no_channel',
    index: (() => {
      const i = sampleIndex();
      i.app.defaultChannels = { android: 'plain', ios: 'plain' };
      return i;
    })(),
    body: iosBody(),
    expect: { error: 'no_channel', kind: 'failed' },
  },
  {
    name: 'per-platform public channels: android gets its own default',
    index: (() => {
      const i = sampleIndex();
      i.app.defaultChannels = { android: 'plain' };
      return i;
    })(),
    body: androidBody({ key_id: undefined }),
    expect: { version: '1.4.3' },
  },
  {
    name: 'per-platform public channels: ios keeps the app-wide default',
    index: (() => {
      const i = sampleIndex();
      i.app.defaultChannels = { android: 'plain' };
      return i;
    })(),
    body: iosBody(),
    expect: { version: '1.4.1' },
  },
  {
    name: 'device-visible channel names are what defaultChannel matches',
    index: (() => {
      const i = sampleIndex();
      i.channels.find((c) => c.name === 'beta')!.deviceName = 'Production_EU';
      return i;
    })(),
    body: androidBody({ defaultChannel: 'Production_EU', is_prod: false }),
    expect: { version: '1.5.0' },
  },
  {
    name: 'a channel renamed for devices is not found under its object name',
    index: (() => {
      const i = sampleIndex();
      i.channels.find((c) => c.name === 'beta')!.deviceName = 'Production_EU';
      return i;
    })(),
    body: androidBody({ defaultChannel: 'beta', is_prod: false }),
    expect: { error: 'no_channel' },
  },
  {
    // Capgo update.ts: expose_metadata off (its default) ⇒ no link/comment whatever the plugin.
    name: 'link/comment only when the app exposes bundle metadata',
    index: (() => {
      const i = sampleIndex();
      delete i.app.exposeBundleMetadata;
      return i;
    })(),
    body: androidBody(),
    expect: { version: '1.4.1' },
    absent: ['comment', 'link'],
  },
  {
    name: 'pinned device id gets its channel (breaking flag passed through)',
    body: androidBody({ device_id: PINNED_DEVICE.toUpperCase(), version_build: '1.0.0' }),
    expect: { version: '2.0.0', breaking: true },
  },
  {
    name: 'pinned custom id gets its channel, even with a self-set defaultChannel',
    body: androidBody({ custom_id: PINNED_CUSTOM, defaultChannel: 'beta' }),
    expect: { version: '2.0.0' },
  },
  {
    // Capgo plugin_parser.ts: a version_build that does not coerce is refused before the schema (400).
    name: 'version_build that is not semver ⇒ 400 semver_error',
    body: androidBody({ version_build: 'release-candidate' }),
    status: 400,
    expect: { error: 'semver_error', kind: 'failed' },
  },
  {
    name: 'lenient version_build "1.4" is 1.4.0',
    body: androidBody({ version_build: '1.4' }),
    expect: { version: '1.4.1' },
  },
  {
    // Capgo tests/updates.test.ts 'invalid plugin_version'.
    name: 'plugin_version that is not a version ⇒ 400 invalid_json_body',
    body: androidBody({ plugin_version: 'invalid_version' }),
    status: 400,
    expect: { error: 'invalid_json_body' },
  },
  {
    // Capgo update.ts: v4 is no longer supported.
    name: 'plugin 4.x ⇒ unsupported_plugin_version',
    body: androidBody({ plugin_version: '4.13.0' }),
    expect: { error: 'unsupported_plugin_version', kind: 'failed' },
  },
  {
    name: 'unknown app ⇒ 404 app_not_found',
    body: androidBody({ app_id: 'com.other.app' }),
    status: 404,
    expect: { error: 'app_not_found', kind: 'failed' },
  },
  {
    name: 'missing device_id ⇒ 400',
    body: androidBody({ device_id: undefined }),
    status: 400,
    expect: { error: 'missing_device_id', kind: 'failed' },
  },
  {
    name: 'empty device_id ⇒ 400',
    body: androidBody({ device_id: '' }),
    status: 400,
    expect: { error: 'missing_device_id' },
  },
  {
    name: 'device_id of the wrong type ⇒ 400',
    body: androidBody({ device_id: 42 }),
    status: 400,
    expect: { error: 'invalid_json_body' },
  },
  {
    name: 'missing app_id ⇒ 400',
    body: androidBody({ app_id: undefined }),
    status: 400,
    expect: { error: 'missing_app_id' },
  },
  {
    name: 'app_id not reverse-domain ⇒ 400',
    body: androidBody({ app_id: '../../etc' }),
    status: 400,
    expect: { error: 'invalid_json_body' },
  },
  {
    name: 'unknown platform ⇒ 400',
    body: androidBody({ platform: 'windows' }),
    status: 400,
    expect: { error: 'invalid_json_body' },
  },
  {
    name: 'is_prod not a boolean ⇒ 400',
    body: androidBody({ is_prod: 'yes' }),
    status: 400,
    expect: { error: 'invalid_json_body' },
  },
  {
    name: 'missing version_build ⇒ 400',
    body: androidBody({ version_build: undefined }),
    status: 400,
    expect: { error: 'invalid_json_body' },
  },
  {
    name: 'a string field too long ⇒ 400',
    body: androidBody({ custom_id: 'x'.repeat(300) }),
    status: 400,
    expect: { error: 'invalid_json_body' },
  },
];

describe('POST /updates protocol', () => {
  const servers = new Map<ReleaseIndex | undefined, Promise<RunningServer>>();
  const serverFor = (index?: ReleaseIndex): Promise<RunningServer> => {
    let s = servers.get(index);
    if (!s) {
      s = startServer(index ? { indexes: [index] } : {});
      servers.set(index, s);
    }
    return s;
  };
  afterAll(async () => {
    for (const s of servers.values()) await (await s).close();
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const srv = await serverFor(c.index);
    const res = await srv.post('/updates', c.body);
    expect(res.status).toBe(c.status ?? 200);
    const body = res.json as Json;
    expect(body).toMatchObject(c.expect);
    for (const k of c.absent ?? []) expect(body).not.toHaveProperty(k);
    if (!('error' in body)) assertCleanSuccess(body);
    else {
      expect(typeof body['message']).toBe('string');
      expect(['up_to_date', 'blocked', 'failed']).toContain(body['kind']);
    }
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it.each([
    ['invalid JSON', '{"platform":', 'invalid_json_parse_body', 400],
    ['a JSON array', '[1,2]', 'invalid_json_body', 400],
    ['a JSON string', '"hello"', 'invalid_json_parse_body', 400],
    ['deep nesting', `{"a":${'['.repeat(100)}${']'.repeat(100)}}`, 'invalid_json_body', 400],
    ['a huge body', JSON.stringify(androidBody({ junk: 'x'.repeat(200_000) })), 'payload_too_large', 413],
    // Capgo tests/updates.test.ts 'missing fields' / 'only platform field'.
    ['an empty body', '', 'invalid_json_body', 400],
    ['an empty object', '{}', 'invalid_json_body', 400],
    ['only a platform', '{"platform":"android"}', 'missing_device_id', 400],
  ])('refuses %s with %s', async (_n, raw, code, status) => {
    const srv = await serverFor();
    const res = await srv.post('/updates', raw);
    expect(res.status).toBe(status);
    expect(res.json).toMatchObject({ error: code, kind: 'failed' });
    expect(JSON.stringify(res.json)).not.toMatch(/at .*\.ts|stack/i);
  });

  it('serves a configurable update path', async () => {
    const srv = await startServer({ options: { updatePath: '/api/v1/check' } });
    try {
      expect((await srv.post('/api/v1/check', androidBody())).json).toMatchObject({ version: '1.4.1' });
      expect((await srv.post('/updates', androidBody())).status).toBe(404);
    } finally {
      await srv.close();
    }
  });
});

describe('sticky percentage rollouts', () => {
  const ids = Array.from(
    { length: 10_000 },
    (_, i) => `${i.toString(16).padStart(8, '0')}-1111-4222-8333-444455556666`,
  );
  const withPercentage = (p: number, paused = false): ReturnType<typeof compileIndex> => {
    const idx = sampleIndex();
    idx.channels.find((c) => c.name === 'next')!.rollout = {
      bundle: 'app-1-4-2',
      percentage: p,
      id: 'rollout-1',
      ...(paused ? { paused } : {}),
    };
    return compileIndex(idx);
  };
  const inRollout = (app: ReturnType<typeof compileIndex>): Set<string> => {
    const set = new Set<string>();
    for (const id of ids) {
      const d = decideUpdate(app, parseDeviceInfo(androidBody({ device_id: id, defaultChannel: 'next' })));
      if (d.type === 'update' && d.bundle.bundle.version === '1.4.2') set.add(id);
      else expect(d).toMatchObject({ type: 'update', bundle: { bundle: { version: '1.4.1' } } });
    }
    return set;
  };

  it('gives 10 ± 2 % of 10,000 devices the rollout bundle, the same on repeat, and 20 % keeps the first set', () => {
    const ten = inRollout(withPercentage(10));
    expect(ten.size).toBeGreaterThanOrEqual(800);
    expect(ten.size).toBeLessThanOrEqual(1200);
    expect(inRollout(withPercentage(10))).toEqual(ten);
    const twenty = inRollout(withPercentage(20));
    expect(twenty.size).toBeGreaterThanOrEqual(1800);
    expect(twenty.size).toBeLessThanOrEqual(2200);
    for (const id of ten) expect(twenty.has(id)).toBe(true);
  });

  it('serves nobody the rollout bundle when paused or at 0 %, everybody at 100 %', () => {
    expect(inRollout(withPercentage(10, true)).size).toBe(0);
    expect(inRollout(withPercentage(0)).size).toBe(0);
    expect(inRollout(withPercentage(100)).size).toBe(ids.length);
  });

  it('gives the same answer over HTTP on repeat', async () => {
    const srv = await startServer();
    try {
      for (const id of ids.slice(0, 50)) {
        const body = androidBody({ device_id: id, defaultChannel: 'next' });
        const a = await srv.post('/updates', body);
        const b = await srv.post('/updates', body);
        expect(b.json).toEqual(a.json);
      }
    } finally {
      await srv.close();
    }
  });
});

describe('app ids', () => {
  it('are matched exactly', async () => {
    const srv = await startServer();
    try {
      expect((await srv.post('/updates', androidBody({ app_id: APP_ID.toUpperCase() }))).status).toBe(404);
    } finally {
      await srv.close();
    }
  });
});
