import { StallingError, TransientError, WaitingError } from './errors.js';
import { setCondition } from './conditions.js';
import { summarize } from './summarize.js';
import type { StatusBase } from './status.js';
import { statusChanged, withoutEmptyObjects } from './status.js';

const t0 = new Date('2026-11-29T10:00:00Z');
const t1 = new Date('2026-11-29T10:05:00Z');
const types = (s: StatusBase) =>
  Object.fromEntries((s.conditions ?? []).map((c) => [c.type, `${c.status}/${c.reason}`]));

describe('summarize (kstatus)', () => {
  it('success: Ready, no Reconciling/Stalled, observedGeneration advances', () => {
    const status: StatusBase = { observedGeneration: 1 };
    summarize(status, new TransientError('SourceUnavailable', 'down'), 2, t0);
    summarize(status, { kind: 'success', reason: 'Succeeded', message: 'ok' }, 2, t1);
    expect(types(status)).toEqual({ Ready: 'True/Succeeded' });
    expect(status.observedGeneration).toBe(2);
  });

  it('stalling: Stalled and Ready=False with the reason, observedGeneration advances', () => {
    const status: StatusBase = {};
    summarize(status, new StallingError('DigestMismatch', 'bad'), 3, t0);
    expect(types(status)).toEqual({ Ready: 'False/DigestMismatch', Stalled: 'True/DigestMismatch' });
    expect(status.observedGeneration).toBe(3);
  });

  it('waiting and transient: Reconciling, observedGeneration stays', () => {
    const waiting: StatusBase = { observedGeneration: 1 };
    summarize(waiting, new WaitingError('AppNotReady', 'later', 1000), 2, t0);
    expect(types(waiting)).toEqual({ Ready: 'False/AppNotReady', Reconciling: 'True/Progressing' });
    expect(waiting.observedGeneration).toBe(1);
    const transient: StatusBase = {};
    summarize(transient, new TransientError('SourceUnavailable', '503'), 2, t0);
    expect(types(transient)).toEqual({
      Ready: 'False/SourceUnavailable',
      Reconciling: 'True/ProgressingWithRetry',
    });
    expect(transient.observedGeneration).toBeUndefined();
  });

  it('keeps lastTransitionTime while the status does not change, so equal statuses skip the write', () => {
    const conditions: StatusBase['conditions'] = [];
    setCondition(conditions, { type: 'Ready', status: 'True', reason: 'Succeeded', message: 'a' }, t0);
    const before = structuredClone({ conditions });
    setCondition(conditions, { type: 'Ready', status: 'True', reason: 'Succeeded', message: 'a' }, t1);
    expect(conditions[0]!.lastTransitionTime).toBe('2026-11-29T10:00:00Z');
    expect(statusChanged(before, { conditions })).toBe(false);
    setCondition(conditions, { type: 'Ready', status: 'False', reason: 'X', message: 'b' }, t1);
    expect(conditions[0]!.lastTransitionTime).toBe('2026-11-29T10:05:00Z');
    expect(statusChanged(before, { conditions })).toBe(true);
  });

  it('status writes leave out emptied objects (server-side apply would turn them into null) and keep arrays', () => {
    const status = {
      conditions: [],
      stats: { rollout: { version: '1.2.0', failures: 0, failuresByAction: {} }, stable: { extra: {} } },
    };
    expect(withoutEmptyObjects(status)).toEqual({
      conditions: [],
      stats: { rollout: { version: '1.2.0', failures: 0 } },
    });
    expect(statusChanged({ conditions: [] }, withoutEmptyObjects({ conditions: [], stats: {} }))).toBe(false);
  });
});
