/**
 * Judging a rollout from device telemetry (ADR 0019). The failure rate of the rollout version is failures over the
 * devices that reached an outcome (installs + failures before install); it is judged by the lower bound of its 95 %
 * Wilson score interval, not the raw ratio, so that a handful of early failures cannot halt a rollout: the bound is
 * above the limit only when the data say so with confidence. Nothing is judged before `minSamples` outcomes.
 */

/** z for a two-sided 95 % interval. */
export const WILSON_Z = 1.96;

/** Lower bound of the Wilson score interval of `failures / samples` (0 when there are no samples). */
export function wilsonLowerBound(failures: number, samples: number, z = WILSON_Z): number {
  if (samples <= 0) return 0;
  const p = Math.min(1, Math.max(0, failures / samples));
  const z2 = z * z;
  const centre = p + z2 / (2 * samples);
  const spread = z * Math.sqrt((p * (1 - p)) / samples + z2 / (4 * samples * samples));
  return Math.max(0, (centre - spread) / (1 + z2 / samples));
}

export interface Thresholds {
  maxFailurePercent: number;
  minSamples: number;
}

export interface Judgement {
  samples: number;
  failures: number;
  /** Raw failure rate, 0–100 (two decimals). */
  failurePercent: number;
  /** Wilson lower bound, 0–100 (two decimals). */
  lowerBoundPercent: number;
  /** Enough samples were in to judge. */
  judged: boolean;
  /** The lower bound is above the limit: halt. */
  exceeded: boolean;
}

const twoDecimals = (x: number): number => Math.round(x * 10_000) / 100;

export function judgeRollout(failures: number, samples: number, t: Thresholds): Judgement {
  const f = Math.max(0, Math.min(failures, samples));
  const n = Math.max(0, samples);
  const lower = wilsonLowerBound(f, n);
  const judged = n >= t.minSamples;
  return {
    samples: n,
    failures: f,
    failurePercent: n > 0 ? twoDecimals(f / n) : 0,
    lowerBoundPercent: twoDecimals(lower),
    judged,
    exceeded: judged && lower * 100 > t.maxFailurePercent,
  };
}
