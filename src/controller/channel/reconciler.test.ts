import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  type LiveUpdateChannel,
} from '../../api/v1alpha1/index.js';
import { findCondition } from '../common/conditions.js';
import { FakeEventRecorder, FakeObjectClient } from '../common/testing/fake-client.js';
import { NS, ctx, seedApp, seedBundle, seedChannel } from '../common/testing/fixtures.js';
import { ChannelReconciler, appKeyForChannel, channelKeysForBundle } from './reconciler.js';

const key = { namespace: NS, name: 'production' };

function setup() {
  const client = new FakeObjectClient();
  const reconciler = new ChannelReconciler({
    client,
    recorder: new FakeEventRecorder(),
    dependencyRequeueMs: 1000,
  });
  seedApp(client, 'demo');
  return { client, reconciler };
}

const ready = [
  {
    type: 'Ready',
    status: 'True' as const,
    reason: 'Succeeded',
    message: 'ok',
    observedGeneration: 1,
    lastTransitionTime: '2026-11-29T10:00:00Z',
  },
];
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

async function markReady(client: FakeObjectClient, name: string) {
  await client.applyStatus(BUNDLE_RESOURCE, {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind: 'LiveUpdateBundle',
    metadata: { name, namespace: NS },
    status: { conditions: ready, artifact },
  });
}

async function publish(client: FakeObjectClient, channels: object[]) {
  await client.applyStatus(APP_RESOURCE, {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind: 'LiveUpdateApp',
    metadata: { name: 'demo', namespace: NS },
    status: { channels },
  });
}

const channelOf = (client: FakeObjectClient) => client.peek<LiveUpdateChannel>(CHANNEL_RESOURCE, key)!;
const condition = (c: LiveUpdateChannel, type: string) => findCondition(c.status?.conditions, type);

describe('ChannelReconciler', () => {
  it('waits for the app to publish the resolved bundles, then shows what is served', async () => {
    const { client, reconciler } = setup();
    seedBundle(client, 'demo-1-0-0', { version: '1.0.0' });
    seedBundle(client, 'demo-1-1-0', { version: '1.1.0' });
    await markReady(client, 'demo-1-0-0');
    await markReady(client, 'demo-1-1-0');
    seedChannel(client, 'production', {
      bundle: 'demo-1-0-0',
      rollout: { bundle: 'demo-1-1-0', percentage: 25, sticky: true, paused: false },
    });

    const waiting = await reconciler.reconcile(key, ctx());
    expect(waiting.requeueAfterMs).toBeGreaterThan(0);
    expect(condition(channelOf(client), 'BundlesResolved')?.status).toBe('True');
    expect(condition(channelOf(client), 'Ready')).toMatchObject({ status: 'False' });

    await publish(client, [
      {
        name: 'production',
        bundle: 'demo-1-0-0',
        version: '1.0.0',
        rolloutBundle: 'demo-1-1-0',
        rolloutVersion: '1.1.0',
        rolloutPercentage: 25,
      },
    ]);
    expect(await reconciler.reconcile(key, ctx())).toEqual({});
    const channel = channelOf(client);
    expect(condition(channel, 'Ready')).toMatchObject({
      status: 'True',
      message: 'serving 1.0.0; rollout 1.1.0 to 25%',
    });
    expect(channel.status).toMatchObject({
      servingBundle: 'demo-1-0-0',
      servingVersion: '1.0.0',
      rollout: { bundle: 'demo-1-1-0', version: '1.1.0', percentage: 25, paused: false },
    });
    expect(channel.status?.observedGeneration).toBe(1);
  });

  it('serves builtin without a bundle', async () => {
    const { client, reconciler } = setup();
    seedChannel(client, 'production', { bundle: 'builtin' });
    await publish(client, [{ name: 'production', bundle: 'builtin' }]);
    await reconciler.reconcile(key, ctx());
    expect(channelOf(client).status).toMatchObject({ servingBundle: 'builtin', servingVersion: 'builtin' });
    expect(condition(channelOf(client), 'Ready')?.status).toBe('True');
  });

  it('waits for a missing bundle and stalls on a bundle of another app or a stalled bundle', async () => {
    const { client, reconciler } = setup();
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    expect((await reconciler.reconcile(key, ctx())).requeueAfterMs).toBe(1000);
    expect(condition(channelOf(client), 'BundlesResolved')).toMatchObject({
      status: 'False',
      reason: 'BundleNotFound',
    });

    seedBundle(client, 'demo-1-0-0', { app: 'another' });
    await reconciler.reconcile(key, ctx());
    expect(condition(channelOf(client), 'Stalled')).toMatchObject({ reason: 'BundleAppMismatch' });
  });

  it('reports a stalled bundle as Stalled BundleNotReady, and keeps showing the published bundle', async () => {
    const { client, reconciler } = setup();
    seedBundle(client, 'demo-2-0-0', { version: '2.0.0' });
    await client.applyStatus(BUNDLE_RESOURCE, {
      apiVersion: 'liveupdate.dev/v1alpha1',
      kind: 'LiveUpdateBundle',
      metadata: { name: 'demo-2-0-0', namespace: NS },
      status: {
        conditions: [
          {
            type: 'Ready',
            status: 'False',
            reason: 'DigestMismatch',
            message: 'digest differs',
            lastTransitionTime: '2026-11-29T10:00:00Z',
          },
          {
            type: 'Stalled',
            status: 'True',
            reason: 'DigestMismatch',
            message: 'digest differs',
            lastTransitionTime: '2026-11-29T10:00:00Z',
          },
        ],
      },
    });
    await publish(client, [{ name: 'production', bundle: 'demo-1-0-0', version: '1.0.0' }]);
    seedChannel(client, 'production', { bundle: 'demo-2-0-0' });
    expect(await reconciler.reconcile(key, ctx())).toEqual({ terminalError: 'BundleNotReady' });
    const channel = channelOf(client);
    expect(condition(channel, 'Stalled')).toMatchObject({ reason: 'BundleNotReady' });
    expect(condition(channel, 'Stalled')?.message).toContain('DigestMismatch');
  });
  it('a channel waiting for its bundle looks again on its own less and less often: the bundle’s watch wakes it', async () => {
    let now = Date.parse('2026-11-29T10:00:00Z');
    const client = new FakeObjectClient();
    const reconciler = new ChannelReconciler({
      client,
      recorder: new FakeEventRecorder(),
      now: () => new Date(now),
      dependencyRequeueMs: 1000,
      maxDependencyRequeueMs: 300_000,
    });
    seedApp(client, 'demo');
    seedBundle(client, 'demo-1-0-0', { version: '1.0.0' });
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    const waits: (number | undefined)[] = [];
    for (const after of [0, 1_000, 60_000, 3_600_000]) {
      now += after;
      waits.push((await reconciler.reconcile(key, ctx())).requeueAfterMs);
    }
    expect(condition(channelOf(client), 'BundlesResolved')?.reason).toBe('BundleNotReady');
    // from the start of the wait: 1 s, 1 s, then as long as it has waited, at most the cap
    expect(waits).toEqual([1000, 1000, 61_000, 300_000]);

    // an edit that makes it wait again starts from the short wait
    await markReady(client, 'demo-1-0-0');
    await publish(client, [{ name: 'production', bundle: 'demo-1-0-0', version: '1.0.0' }]);
    await reconciler.reconcile(key, ctx());
    expect(condition(channelOf(client), 'Ready')?.status).toBe('True');
    now += 3_600_000;
    seedBundle(client, 'demo-2-0-0', { version: '2.0.0' });
    client.updateSpec(CHANNEL_RESOURCE, key, { app: 'demo', bundle: 'demo-2-0-0' });
    expect((await reconciler.reconcile(key, ctx())).requeueAfterMs).toBe(1000);
  });
});

describe('event mapping for the manager', () => {
  it('maps channels to their app and bundles to the channels that reference them', () => {
    const client = new FakeObjectClient();
    const a = seedChannel(client, 'a', { bundle: 'b1' });
    const b = seedChannel(client, 'b', { bundle: 'b0', rollout: { bundle: 'b1', percentage: 5 } });
    const c = seedChannel(client, 'c', { bundle: 'b0' });
    const bundle = seedBundle(client, 'b1');
    expect(appKeyForChannel(a)).toEqual({ namespace: NS, name: 'demo' });
    expect(channelKeysForBundle(bundle, [a, b, c]).map((k) => k.name)).toEqual(['a', 'b']);
  });
});
