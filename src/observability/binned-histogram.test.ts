import { Histogram, Registry } from 'prom-client';
import { BinnedHistogram } from './binned-histogram.js';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Values on, between, below and above the bounds. */
const VALUES = [0, 0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.02, 0.05, 0.3, 1, 2.5, 2.6, 40];

function pair(): {
  ours: Registry;
  theirs: Registry;
  binned: BinnedHistogram<'route'>;
  reference: Histogram<'route'>;
} {
  const ours = new Registry();
  const theirs = new Registry();
  const config = {
    name: 'x_duration_seconds',
    help: 'Duration',
    labelNames: ['route'] as const,
    buckets: BUCKETS,
  };
  return {
    ours,
    theirs,
    binned: new BinnedHistogram({ ...config, registers: [ours] }),
    reference: new Histogram({ ...config, labelNames: ['route'], registers: [theirs] }),
  };
}

describe('BinnedHistogram', () => {
  it('renders the same text and JSON as prom-client’s Histogram for the same observations', async () => {
    const { ours, theirs, binned, reference } = pair();
    const a = binned.labels({ route: 'updates' });
    const b = binned.labels({ route: 'stats "x"\n' });
    VALUES.forEach((v, i) => {
      a.observe(v);
      reference.labels({ route: 'updates' }).observe(v);
      if (i % 3 === 0) {
        b.observe(v * 2);
        reference.observe({ route: 'stats "x"\n' }, v * 2);
      }
    });
    expect(await ours.metrics()).toBe(await theirs.metrics());
    // prom-client adds `exemplar: null` to each value (exemplars are off); nothing else may differ.
    const withoutExemplars = JSON.parse(
      JSON.stringify(await theirs.getMetricsAsJSON(), (k, v: unknown) => (k === 'exemplar' ? undefined : v)),
    ) as unknown;
    expect(await ours.getMetricsAsJSON()).toEqual(withoutExemplars);
  });

  it('returns the same series for the same labels and starts from zero after a reset', async () => {
    const { ours, theirs, binned, reference } = pair();
    expect(binned.labels({ route: 'updates' })).toBe(binned.labels({ route: 'updates' }));
    binned.labels({ route: 'updates' }).observe(0.2);
    reference.observe({ route: 'updates' }, 0.2);
    ours.resetMetrics();
    theirs.resetMetrics();
    binned.labels({ route: 'updates' }).observe(0.003);
    reference.observe({ route: 'updates' }, 0.003);
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });
});
