/** Distinct devices per channel and version in aligned windows, in the rollups the controller reads (issue 13). */
import { createRegistry } from '../observability/metrics.js';
import { compileIndex } from './compiled-index.js';
import { UpdateServerMetrics } from './metrics.js';
import { StatsAggregator } from './stats-rollup.js';
import { sampleIndex } from './testing/fixtures.js';

describe('device windows', () => {
  const app = compileIndex(sampleIndex());
  const metrics = new UpdateServerMetrics(createRegistry({ defaultMetrics: false }));

  it('counts each device once per version and window, and starts again in the next window', () => {
    let now = new Date('2026-11-29T09:10:00Z');
    const agg = new StatsAggregator({ replica: 'r', metrics, windowSeconds: 3600, now: () => now });
    for (let i = 0; i < 5; i++) {
      agg.record(app, 'production', '1.4.1', 'app_moved_to_foreground', `device-${i}`);
      agg.record(app, 'production', '1.4.1', 'set', `device-${i}`);
    }
    agg.record(app, 'production', '1.5.0', 'download_fail', 'device-0');
    const [first] = agg.takeDirty();
    expect(first!.rollup.devices).toEqual({
      windowStart: '2026-11-29T09:00:00.000Z',
      windowSeconds: 3600,
      counts: [
        { channel: 'production', version: '1.4.1', count: 5 },
        { channel: 'production', version: '1.5.0', count: 1 },
      ],
    });
    expect(JSON.stringify(first!.rollup)).not.toContain('device-0');
    now = new Date('2026-11-29T10:00:01Z');
    const [rolled] = agg.takeDirty();
    expect(rolled!.rollup.devices).toMatchObject({ windowStart: '2026-11-29T10:00:00.000Z', counts: [] });
    // Counters are cumulative: they survive the window change.
    expect(rolled!.rollup.counters).toContainEqual({
      channel: 'production',
      version: '1.4.1',
      action: 'set',
      count: 5,
    });
  });

  it('caps the tracked devices and says so', () => {
    const agg = new StatsAggregator({ replica: 'r', metrics, maxTrackedDevices: 3 });
    for (let i = 0; i < 10; i++) agg.record(app, 'production', '1.4.1', 'set', `device-${i}`);
    const [r] = agg.takeDirty();
    expect(r!.rollup.devices).toMatchObject({ truncated: true, counts: [{ count: 3 }] });
  });
});
