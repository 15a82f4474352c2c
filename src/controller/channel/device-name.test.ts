/**
 * Device-visible channel names, per-platform public channels, allowDevice and exposeBundleMetadata from the CRDs to
 * the release index, and the uniqueness of device names per app (CEL cannot see other objects, the controller does).
 */
import {
  CHANNEL_RESOURCE,
  type LiveUpdateChannel,
  type LiveUpdateChannelSpec,
} from '../../api/v1alpha1/index.js';
import type { KubeObject, ObjectClient, ResourceType } from '../../kube/types.js';
import { findCondition } from '../common/conditions.js';
import { FakeEventRecorder, FakeObjectClient } from '../common/testing/fake-client.js';
import { NS, ctx, seedApp } from '../common/testing/fixtures.js';
import { renderIndex } from '../publishing/render.js';
import { deviceNameHolders } from './device-name.js';
import { ChannelReconciler } from './reconciler.js';

function channelObj(
  name: string,
  created: string,
  spec: Partial<LiveUpdateChannelSpec> = {},
): LiveUpdateChannel {
  return {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind: 'LiveUpdateChannel',
    metadata: { name, namespace: NS, creationTimestamp: created },
    spec: { app: 'demo', bundle: 'builtin', ...spec },
  };
}

describe('device-visible channel names', () => {
  it('the oldest channel holds a name, then the smaller metadata.name', () => {
    const a = channelObj('eu-prod', '2026-11-29T10:00:00Z', { deviceName: 'Production_EU' });
    const b = channelObj('eu-prod-2', '2026-11-29T09:00:00Z', { deviceName: 'Production_EU' });
    const c = channelObj('Production_EU'.toLowerCase(), '2026-11-29T08:00:00Z');
    const holders = deviceNameHolders([a, b, c]);
    expect(holders.get('Production_EU')).toBe(b);
    expect(holders.get('production_eu')).toBe(c);
    const same = deviceNameHolders([
      channelObj('b', '2026-11-29T10:00:00Z', { deviceName: 'x' }),
      channelObj('a', '2026-11-29T10:00:00Z', { deviceName: 'x' }),
    ]);
    expect(same.get('x')?.metadata.name).toBe('a');
  });

  it('renders deviceName, allowDevice, per-platform defaults and exposeBundleMetadata into the index', () => {
    const client = new FakeObjectClient();
    const app = seedApp(client, 'demo', {
      defaultChannels: { android: 'android-prod' },
      exposeBundleMetadata: true,
    });
    const index = renderIndex({
      app,
      channels: [
        channelObj('production', '2026-11-29T10:00:00Z'),
        channelObj('android-prod', '2026-11-29T10:00:00Z', {
          deviceName: 'Production_EU',
          policy: { allowDevice: false, platforms: ['android'] },
        }),
        channelObj('copy', '2026-11-29T11:00:00Z', { deviceName: 'Production_EU' }),
      ],
      bundles: [],
      previous: undefined,
      manifests: new Map(),
    });
    expect(index.app).toMatchObject({
      defaultChannel: 'production',
      defaultChannels: { android: 'android-prod' },
      exposeBundleMetadata: true,
    });
    expect(index.channels.map((c) => c.name)).toEqual(['android-prod', 'production']);
    expect(index.channels[0]).toMatchObject({ deviceName: 'Production_EU', policy: { allowDevice: false } });
    expect(index.channels[1]).not.toHaveProperty('deviceName');
    expect(index.channels[1]!.policy).not.toHaveProperty('allowDevice');
  });

  it('a channel whose device name another channel holds is not Ready: DeviceNameConflict', async () => {
    const client = new FakeObjectClient();
    seedApp(client, 'demo');
    const reconciler = new ChannelReconciler({
      client,
      recorder: new FakeEventRecorder(),
      dependencyRequeueMs: 1000,
    });
    client.create(CHANNEL_RESOURCE, channelObj('production', '2026-11-29T10:00:00Z'));
    client.create(
      CHANNEL_RESOURCE,
      channelObj('prod-copy', '2026-11-29T11:00:00Z', { deviceName: 'production' }),
    );
    const result = await reconciler.reconcile({ namespace: NS, name: 'prod-copy' }, ctx());
    expect(result.requeueAfterMs).toBe(60_000);
    const copy = client.get<LiveUpdateChannel>(CHANNEL_RESOURCE, { namespace: NS, name: 'prod-copy' });
    const ready = findCondition((await copy).status?.conditions, 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'DeviceNameConflict' });
    expect(ready?.message).toContain('production');
  });

  it('checks the device name without a copy of the namespace’s other channels: only the ones that collide', async () => {
    const client = new FakeObjectClient();
    seedApp(client, 'demo');
    seedApp(client, 'other');
    const reconciler = new ChannelReconciler({ client, recorder: new FakeEventRecorder() });
    client.create(CHANNEL_RESOURCE, channelObj('production', '2026-11-29T10:00:00Z'));
    client.create(
      CHANNEL_RESOURCE,
      channelObj('prod-copy', '2026-11-29T11:00:00Z', { deviceName: 'production' }),
    );
    for (let i = 0; i < 20; i++) {
      client.create(CHANNEL_RESOURCE, channelObj(`beta-${i}`, '2026-11-29T09:00:00Z'));
      client.create(CHANNEL_RESOURCE, channelObj(`other-${i}`, '2026-11-29T09:00:00Z', { app: 'other' }));
    }
    // what a cached client would copy: every channel a list or listMatching hands back
    const copied: string[] = [];
    const cached: ObjectClient = client;
    const list = client.list.bind(client);
    cached.list = async <T extends KubeObject>(type: ResourceType, namespace?: string) => {
      const items = await list<T>(type, namespace);
      if (type === CHANNEL_RESOURCE) copied.push(...items.map((o) => o.metadata.name));
      return items;
    };
    cached.listMatching = async <T extends KubeObject>(
      type: ResourceType,
      namespace: string,
      match: (obj: T) => boolean,
    ) => {
      const items = (await list<T>(type, namespace)).filter(match);
      if (type === CHANNEL_RESOURCE) copied.push(...items.map((o) => o.metadata.name));
      return items;
    };

    await reconciler.reconcile({ namespace: NS, name: 'beta-3' }, ctx());
    expect(copied).toEqual([]);
    await reconciler.reconcile({ namespace: NS, name: 'prod-copy' }, ctx());
    expect(copied).toEqual(['production']);
    const copy = await client.get<LiveUpdateChannel>(CHANNEL_RESOURCE, { namespace: NS, name: 'prod-copy' });
    expect(findCondition(copy.status?.conditions, 'Ready')).toMatchObject({ reason: 'DeviceNameConflict' });
  });
});
