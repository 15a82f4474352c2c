/** Short leader-election timings so tests take seconds (the product uses 15 s / 10 s / 2 s). */
export const TEST_TIMINGS = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 };
