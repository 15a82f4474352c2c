/**
 * Fleet telemetry in channel status and self-halting rollouts (issue 13), with rollups in a memory store exactly as
 * the update service writes them.
 */
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  RESUME_ROLLOUT_ANNOTATION,
  type LiveUpdateChannel,
  type LiveUpdateChannelSpecRolloutFailureThresholds,
} from '../../api/v1alpha1/index.js';
import { StorageLayout } from '../../storage/layout.js';
import { MemoryObjectStore } from '../../storage/memory-store.js';
import { STATS_ROLLUP_API_VERSION, type StatsRollup } from '../../updateserver/stats-rollup.js';
import { findCondition } from '../common/conditions.js';
import { FakeEventRecorder, FakeObjectClient } from '../common/testing/fake-client.js';
import { NS, ctx, seedApp, seedBundle, seedChannel } from '../common/testing/fixtures.js';
import { FleetTelemetry } from '../telemetry/fleet-stats.js';
import { ChannelReconciler } from './reconciler.js';
import { rolloutStateOf } from './rollout-state.js';

const key = { namespace: NS, name: 'production' };
const layout = new StorageLayout('lu');
const artifact = {
  revision: 'r',
  objectKey: 'k',
  size: 1,
  sha256: 'a',
  storedSha256: 'a',
  checksum: 'a',
  encrypted: false,
  lastUpdateTime: '2026-11-29T10:00:00Z',
};

async function setup(thresholds?: LiveUpdateChannelSpecRolloutFailureThresholds) {
  const client = new FakeObjectClient();
  const store = new MemoryObjectStore();
  const recorder = new FakeEventRecorder();
  const reconciler = new ChannelReconciler({
    client,
    recorder,
    storagePrefix: 'lu',
    telemetry: new FleetTelemetry({ store, cacheMs: 0 }),
    telemetryIntervalMs: 1_000,
  });
  seedApp(client, 'demo');
  for (const [name, version] of [
    ['demo-1-0-0', '1.0.0'],
    ['demo-1-1-0', '1.1.0'],
    ['demo-1-2-0', '1.2.0'],
    ['demo-1-1-0-rebuilt', '1.1.0'],
  ] as const) {
    seedBundle(client, name, { version });
    await client.applyStatus(BUNDLE_RESOURCE, {
      apiVersion: 'liveupdate.dev/v1alpha1',
      kind: 'LiveUpdateBundle',
      metadata: { name, namespace: NS },
      status: {
        artifact,
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'Succeeded',
            message: 'ok',
            observedGeneration: 1,
            lastTransitionTime: '2026-11-29T10:00:00Z',
          },
        ],
      },
    });
  }
  seedChannel(client, 'production', {
    bundle: 'demo-1-0-0',
    rollout: {
      bundle: 'demo-1-1-0',
      percentage: 20,
      sticky: true,
      paused: false,
      ...(thresholds ? { failureThresholds: thresholds } : {}),
    },
  });
  return { client, store, recorder, reconciler };
}

/** What the app reconciler publishes for the channel, in the state the channel asks for. */
async function publish(client: FakeObjectClient, rollout = { bundle: 'demo-1-1-0', version: '1.1.0' }) {
  const state = rolloutStateOf(channelOf(client));
  await client.applyStatus(APP_RESOURCE, {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind: 'LiveUpdateApp',
    metadata: { name: 'demo', namespace: NS },
    status: {
      channels: [
        {
          name: 'production',
          bundle: 'demo-1-0-0',
          version: '1.0.0',
          rolloutBundle: rollout.bundle,
          rolloutVersion: rollout.version,
          rolloutPercentage: 20,
          rolloutState: state,
        },
      ],
    },
  });
}

async function writeRollup(
  store: MemoryObjectStore,
  replica: string,
  counters: Array<[string, string, number]>,
  devices: Array<[string, number]>,
) {
  const rollup: StatsRollup = {
    apiVersion: STATS_ROLLUP_API_VERSION,
    kind: 'StatsRollup',
    replica,
    appId: 'com.example.demo',
    startedAt: '2026-11-29T09:00:00.000Z',
    updatedAt: new Date().toISOString(),
    counters: counters.map(([version, action, count]) => ({ channel: 'production', version, action, count })),
    devices: {
      windowStart: '2026-11-29T09:00:00.000Z',
      windowSeconds: 3600,
      counts: devices.map(([version, count]) => ({ channel: 'production', version, count })),
    },
  };
  await store.put(
    `${layout.statsPrefix({ namespace: NS, name: 'demo' })}${replica}.json`,
    JSON.stringify(rollup),
  );
}

const channelOf = (client: FakeObjectClient) => client.peek<LiveUpdateChannel>(CHANNEL_RESOURCE, key)!;
const halted = (client: FakeObjectClient) =>
  findCondition(channelOf(client).status?.conditions, 'RolloutHalted');

describe('channel status from fleet telemetry', () => {
  it('sums the replicas per version: devices, installs, failures by action, adoption and failure rate', async () => {
    const { client, store, reconciler } = await setup();
    await publish(client);
    await writeRollup(
      store,
      'a',
      [
        ['1.0.0', 'set', 900],
        ['1.1.0', 'set', 150],
        ['1.1.0', 'download_fail', 10],
        ['1.1.0', 'app_moved_to_foreground', 5000],
      ],
      [
        ['1.0.0', 1200],
        ['1.1.0', 200],
      ],
    );
    await writeRollup(
      store,
      'b',
      [
        ['1.1.0', 'set', 30],
        ['1.1.0', 'decrypt_fail', 10],
      ],
      [
        ['1.0.0', 400],
        ['1.1.0', 200],
      ],
    );
    expect(await reconciler.reconcile(key, ctx())).toEqual({ requeueAfterMs: 1_000 });
    const stats = channelOf(client).status?.stats;
    expect(stats).toMatchObject({
      windowStart: '2026-11-29T09:00:00.000Z',
      stable: { version: '1.0.0', devices: 1600, installs: 900, failures: 0, adoptionPercent: 80 },
      rollout: {
        version: '1.1.0',
        devices: 400,
        installs: 180,
        failures: 20,
        failuresByAction: { download_fail: 10, decrypt_fail: 10 },
        failurePercent: 10,
        adoptionPercent: 20,
      },
    });
    expect(halted(client)).toBeUndefined();
  });

  it('writes nothing new when the rollups did not change', async () => {
    const { client, store, reconciler } = await setup();
    await publish(client);
    await writeRollup(store, 'a', [['1.1.0', 'set', 3]], [['1.1.0', 3]]);
    await reconciler.reconcile(key, ctx());
    const version = channelOf(client).metadata.resourceVersion;
    await reconciler.reconcile(key, ctx());
    expect(channelOf(client).metadata.resourceVersion).toBe(version);
  });
});

describe('failure thresholds', () => {
  const thresholds = { maxFailurePercent: 10, minSamples: 100 };

  it('halts (Pause) when 30 % of 400 rollout devices fail to decrypt: condition, Warning event, index state', async () => {
    const { client, store, recorder, reconciler } = await setup({ ...thresholds, onFailure: 'Pause' });
    await publish(client);
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 280],
        ['1.1.0', 'decrypt_fail', 120],
      ],
      [['1.1.0', 400]],
    );
    await reconciler.reconcile(key, ctx());
    const channel = channelOf(client);
    expect(channel.status?.rollout?.halted).toMatchObject({
      action: 'Pause',
      percentage: 20,
      samples: 400,
      failures: 120,
      failurePercent: 30,
      lowerBoundPercent: 25.72,
    });
    expect(halted(client)).toMatchObject({ status: 'True', reason: 'FailureThresholdExceeded' });
    expect(halted(client)?.message).toContain('120 of 400 devices failed');
    expect(recorder.events).toContainEqual(
      expect.objectContaining({ type: 'Warning', reason: 'RolloutHalted' }),
    );
    expect(rolloutStateOf(channel)).toBe('Paused');
    // Ready waits until the app publishes the held rollout, then says so.
    expect(findCondition(channel.status?.conditions, 'Ready')?.status).toBe('False');
    await publish(client);
    await reconciler.reconcile(key, ctx());
    expect(findCondition(channelOf(client).status?.conditions, 'Ready')).toMatchObject({
      status: 'True',
      message: 'serving 1.0.0; rollout 1.1.0 to 20% (paused)',
    });
    expect(recorder.reasons().filter((r) => r === 'RolloutHalted')).toHaveLength(1);
  });

  it('rolls back with onFailure: Rollback', async () => {
    const { client, store, reconciler } = await setup({ ...thresholds, onFailure: 'Rollback' });
    await publish(client);
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 280],
        ['1.1.0', 'update_fail', 120],
      ],
      [],
    );
    await reconciler.reconcile(key, ctx());
    expect(rolloutStateOf(channelOf(client))).toBe('RolledBack');
  });

  it('keeps a healthy rollout (2 % failures) and does not judge below minSamples', async () => {
    const { client, store, reconciler } = await setup(thresholds);
    await publish(client);
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 392],
        ['1.1.0', 'download_fail', 8],
      ],
      [],
    );
    await reconciler.reconcile(key, ctx());
    expect(halted(client)).toBeUndefined();
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 2],
        ['1.1.0', 'download_fail', 50],
      ],
      [],
    );
    await reconciler.reconcile(key, ctx());
    expect(halted(client)).toBeUndefined();
  });

  it('is lifted by the resume annotation and then judges only what devices reported since', async () => {
    const { client, store, recorder, reconciler } = await setup(thresholds);
    await publish(client);
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 280],
        ['1.1.0', 'decrypt_fail', 120],
      ],
      [],
    );
    await reconciler.reconcile(key, ctx());
    expect(rolloutStateOf(channelOf(client))).toBe('Paused');
    await client.mergePatch(CHANNEL_RESOURCE, key, {
      metadata: { annotations: { [RESUME_ROLLOUT_ANNOTATION]: 'fixed-1' } },
    });
    expect(rolloutStateOf(channelOf(client))).toBe('Active');
    await reconciler.reconcile(key, ctx());
    expect(halted(client)).toBeUndefined();
    expect(channelOf(client).status?.rollout?.baseline).toMatchObject({ samples: 400, failures: 120 });
    expect(recorder.reasons()).toContain('RolloutResumed');
    // 200 more healthy installs: 120 of 600 overall, but 0 of 200 since the resume.
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 480],
        ['1.1.0', 'decrypt_fail', 120],
      ],
      [],
    );
    await reconciler.reconcile(key, ctx());
    expect(halted(client)).toBeUndefined();
  });

  it('is lifted by a new percentage', async () => {
    const { client, store, reconciler } = await setup(thresholds);
    await publish(client);
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 280],
        ['1.1.0', 'decrypt_fail', 120],
      ],
      [],
    );
    await reconciler.reconcile(key, ctx());
    expect(rolloutStateOf(channelOf(client))).toBe('Paused');
    await client.mergePatch(CHANNEL_RESOURCE, key, { spec: { rollout: { percentage: 5 } } });
    expect(rolloutStateOf(channelOf(client))).toBe('Active');
  });

  it('a new rollout bundle is not halted by the failures of the one before it, published or not', async () => {
    const { client, store, recorder, reconciler } = await setup({ ...thresholds, onFailure: 'Rollback' });
    await publish(client);
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 280],
        ['1.1.0', 'decrypt_fail', 120],
      ],
      [['1.1.0', 400]],
    );
    await reconciler.reconcile(key, ctx());
    expect(rolloutStateOf(channelOf(client))).toBe('RolledBack');
    // The fix goes out as a new rollout bundle; the app still serves the halted 1.1.0 rollout until it publishes.
    await client.mergePatch(CHANNEL_RESOURCE, key, { spec: { rollout: { bundle: 'demo-1-2-0' } } });
    await reconciler.reconcile(key, ctx());
    expect(halted(client)).toBeUndefined();
    expect(rolloutStateOf(channelOf(client))).toBe('Active');
    await publish(client, { bundle: 'demo-1-2-0', version: '1.2.0' });
    await reconciler.reconcile(key, ctx());
    expect(halted(client)).toBeUndefined();
    expect(channelOf(client).status?.stats?.rollout).toMatchObject({ version: '1.2.0', failures: 0 });
    expect(recorder.reasons().filter((r) => r === 'RolloutHalted')).toHaveLength(1);
  });

  it('a rebuild of the same version under a new name counts only what devices report after it starts', async () => {
    const { client, store, reconciler } = await setup({ ...thresholds, onFailure: 'Pause' });
    await publish(client);
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 280],
        ['1.1.0', 'decrypt_fail', 120],
      ],
      [['1.1.0', 400]],
    );
    await reconciler.reconcile(key, ctx());
    expect(rolloutStateOf(channelOf(client))).toBe('Paused');
    await client.mergePatch(CHANNEL_RESOURCE, key, { spec: { rollout: { bundle: 'demo-1-1-0-rebuilt' } } });
    await reconciler.reconcile(key, ctx());
    expect(halted(client)).toBeUndefined();
    expect(channelOf(client).status?.rollout?.baseline).toMatchObject({ samples: 400, failures: 120 });
    await publish(client, { bundle: 'demo-1-1-0-rebuilt', version: '1.1.0' });
    await reconciler.reconcile(key, ctx());
    expect(halted(client)).toBeUndefined();
    // 200 healthy installs of the rebuild: still no halt; then 150 of the next 200 fail: halted again.
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 480],
        ['1.1.0', 'decrypt_fail', 120],
      ],
      [['1.1.0', 600]],
    );
    await reconciler.reconcile(key, ctx());
    expect(halted(client)).toBeUndefined();
    await writeRollup(
      store,
      'a',
      [
        ['1.1.0', 'set', 530],
        ['1.1.0', 'decrypt_fail', 270],
      ],
      [['1.1.0', 800]],
    );
    await reconciler.reconcile(key, ctx());
    expect(channelOf(client).status?.rollout?.halted).toMatchObject({ samples: 400, failures: 150 });
  });
});
