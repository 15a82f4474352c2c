import { APP_RESOURCE, BUNDLE_RESOURCE, CHANNEL_RESOURCE } from '../api/v1alpha1/index.js';
import type { KubeObject, ResourceType } from '../kube/types.js';
import { MemoryObjectStore } from '../storage/memory-store.js';
import { buildControllers } from './command.js';
import { FakeEventRecorder, FakeObjectClient } from './common/testing/fake-client.js';
import { NS, seedApp, seedBundle, seedChannel } from './common/testing/fixtures.js';
import type { CacheReader } from './manager.js';

function controllers() {
  const client = new FakeObjectClient();
  const specs = buildControllers({
    client,
    recorder: new FakeEventRecorder(),
    store: new MemoryObjectStore(),
    config: {
      s3: { prefix: 'lu' } as never,
      artifactMaxBytes: 1024,
      fetchTimeoutMs: 1000,
      sourceSecretLabel: undefined,
    },
  });
  const cache: CacheReader = {
    list: <T extends KubeObject>(type: ResourceType, namespace?: string): T[] =>
      ['production', 'beta', 'other-app']
        .map((name) => client.peek<T>(type, { namespace: namespace ?? NS, name }))
        .filter((o): o is T => o !== undefined && type === CHANNEL_RESOURCE),
  };
  return { client, specs, cache };
}

describe('buildControllers', () => {
  it('enqueues an app for events of the bundles its channels name, not for the others (5,000 bundles: a few app reconciles)', () => {
    const { client, specs, cache } = controllers();
    seedApp(client, 'demo');
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    seedChannel(client, 'beta', { bundle: 'demo-1-0-0', rollout: { bundle: 'demo-2-0-0', percentage: 5 } });
    seedChannel(client, 'other-app', { app: 'other', bundle: 'demo-3-0-0' });
    const watch = specs
      .find((c) => c.forType === APP_RESOURCE)!
      .watches!.find((w) => w.type === BUNDLE_RESOURCE)!;
    const mapped = (name: string) => watch.mapFn(seedBundle(client, name), cache);
    expect(mapped('demo-1-0-0')).toEqual({ namespace: NS, name: 'demo' });
    expect(mapped('demo-2-0-0')).toEqual({ namespace: NS, name: 'demo' });
    // named by a channel of another app only, or by none
    expect(mapped('demo-3-0-0')).toBeUndefined();
    expect(mapped('demo-4-0-0')).toBeUndefined();
  });

  it('a bundle’s status update wakes the channels that name it (they wait for it without polling)', () => {
    const { client, specs, cache } = controllers();
    seedApp(client, 'demo');
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    seedChannel(client, 'beta', { bundle: 'demo-0-9-0', rollout: { bundle: 'demo-1-0-0', percentage: 5 } });
    seedChannel(client, 'other-app', { app: 'other', bundle: 'demo-2-0-0' });
    const watch = specs
      .find((c) => c.forType === CHANNEL_RESOURCE)!
      .watches!.find((w) => w.type === BUNDLE_RESOURCE)!;
    const pending = seedBundle(client, 'demo-1-0-0');
    const ready = { ...pending, status: { conditions: [] } };
    expect(watch.updatePredicate?.(pending, ready) ?? true).toBe(true);
    expect(watch.mapFn(ready, cache)).toEqual([
      { namespace: NS, name: 'production' },
      { namespace: NS, name: 'beta' },
    ]);
  });
});
