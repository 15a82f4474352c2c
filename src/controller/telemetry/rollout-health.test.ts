import { judgeRollout, wilsonLowerBound } from './rollout-health.js';

describe('Wilson lower bound', () => {
  it('matches reference values', () => {
    // 1 of 3: the bound is 6.1 %, far below the raw 33 %.
    expect(wilsonLowerBound(1, 3)).toBeCloseTo(0.0615, 3);
    expect(wilsonLowerBound(120, 400)).toBeCloseTo(0.2572, 3);
    expect(wilsonLowerBound(8, 400)).toBeCloseTo(0.0102, 3);
    expect(wilsonLowerBound(0, 100)).toBe(0);
    expect(wilsonLowerBound(0, 0)).toBe(0);
  });
});

describe('judgeRollout', () => {
  const t = { maxFailurePercent: 10, minSamples: 100 };

  it('does not judge before minSamples devices reached an outcome, whatever the ratio', () => {
    expect(judgeRollout(3, 3, t)).toMatchObject({ judged: false, exceeded: false, failurePercent: 100 });
    expect(judgeRollout(1, 3, { maxFailurePercent: 10, minSamples: 1 })).toMatchObject({
      judged: true,
      exceeded: false,
    });
  });

  it('halts 30 % failures in 400 devices against a 10 % limit, keeps 2 % going', () => {
    expect(judgeRollout(120, 400, t)).toMatchObject({
      exceeded: true,
      failurePercent: 30,
      lowerBoundPercent: 25.72,
    });
    expect(judgeRollout(8, 400, t)).toMatchObject({ judged: true, exceeded: false, failurePercent: 2 });
  });

  it('does not halt a rate just above the limit until the evidence is strong enough', () => {
    expect(judgeRollout(12, 100, t).exceeded).toBe(false);
    expect(judgeRollout(1200, 10_000, t).exceeded).toBe(true);
  });
});
