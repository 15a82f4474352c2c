import { createRegistry } from '../observability/metrics.js';
import { APP_RESOURCE, BUNDLE_RESOURCE, CHANNEL_RESOURCE } from '../api/v1alpha1/index.js';
import type { KubeObject, ResourceType } from '../kube/types.js';
import { registerObjectMetrics } from './object-metrics.js';

function obj(name: string, extra: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind: 'X',
    metadata: { name, namespace: 'team-a' },
    ...extra,
  };
}

describe('object metrics', () => {
  it('exports readiness, stalled state, every condition and the app_id mapping from the caches at scrape time', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const cache = new Map<ResourceType, KubeObject[]>([
      [
        APP_RESOURCE,
        [
          obj('demo', {
            spec: { appId: 'com.example.demo' },
            status: { conditions: [{ type: 'Ready', status: 'True', reason: 'IndexPublished' }] },
          }),
        ],
      ],
      [
        BUNDLE_RESOURCE,
        [
          obj('demo-1-0-0', {
            status: {
              conditions: [
                { type: 'Ready', status: 'False', reason: 'DigestMismatch' },
                { type: 'Stalled', status: 'True', reason: 'DigestMismatch' },
              ],
            },
          }),
          obj('demo-1-0-1'),
        ],
      ],
      [
        CHANNEL_RESOURCE,
        [
          obj('production', {
            spec: { suspend: true },
            status: { conditions: [{ type: 'Ready', status: 'False', reason: 'BundleNotFound' }] },
          }),
        ],
      ],
    ]);
    registerObjectMetrics(registry, (type) => cache.get(type) ?? []);
    const text = await registry.metrics();
    expect(text).toContain(
      'liveupdate_object_ready{kind="LiveUpdateApp",namespace="team-a",name="demo",reason="IndexPublished"} 1',
    );
    expect(text).toContain(
      'liveupdate_object_ready{kind="LiveUpdateBundle",namespace="team-a",name="demo-1-0-0",reason="DigestMismatch"} 0',
    );
    expect(text).toContain(
      'liveupdate_object_stalled{kind="LiveUpdateBundle",namespace="team-a",name="demo-1-0-0",reason="DigestMismatch"} 1',
    );
    expect(text).toContain(
      'liveupdate_object_ready{kind="LiveUpdateBundle",namespace="team-a",name="demo-1-0-1",reason="NotObserved"} 0',
    );
    expect(text).toContain(
      'liveupdate_object_ready{kind="LiveUpdateChannel",namespace="team-a",name="production",reason="Suspended"} 0',
    );
    expect(text).toContain(
      'liveupdate_object_condition{kind="LiveUpdateBundle",namespace="team-a",name="demo-1-0-0",type="Stalled",status="True",reason="DigestMismatch"} 1',
    );
    expect(text).toContain('liveupdate_app_info{namespace="team-a",app="demo",app_id="com.example.demo"} 1');

    // A deleted object leaves no series behind.
    cache.set(BUNDLE_RESOURCE, []);
    const after = await registry.metrics();
    expect(after).not.toContain('demo-1-0-0');
  });
});
