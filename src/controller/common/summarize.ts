/**
 * Turns the outcome of a reconcile into kstatus conditions (Ready, Reconciling, Stalled) and observedGeneration, so
 * that Argo CD, Flux and `kubectl wait` read the same truth: Current when Ready, InProgress while Reconciling,
 * Failed when Stalled. observedGeneration only advances when a generation was fully handled or stalled.
 */
import { ConditionType, Reason } from '../../api/v1alpha1/index.js';
import type { ClassifiedError } from './errors.js';
import { removeCondition, setCondition } from './conditions.js';
import type { StatusBase } from './status.js';

export type Outcome =
  { kind: 'success'; reason: string; message: string; requeueAfterMs?: number } | ClassifiedError;

export function summarize(status: StatusBase, outcome: Outcome, generation: number, now: Date): void {
  const conditions = (status.conditions ??= []);
  const set = (type: string, s: 'True' | 'False' | 'Unknown', reason: string, message: string) =>
    setCondition(conditions, { type, status: s, reason, message, observedGeneration: generation }, now);

  switch (outcome.kind) {
    case 'success':
      set(ConditionType.Ready, 'True', outcome.reason, outcome.message);
      removeCondition(conditions, ConditionType.Reconciling);
      removeCondition(conditions, ConditionType.Stalled);
      status.observedGeneration = generation;
      break;
    case 'stalling':
      set(ConditionType.Stalled, 'True', outcome.reason, outcome.message);
      set(ConditionType.Ready, 'False', outcome.reason, outcome.message);
      removeCondition(conditions, ConditionType.Reconciling);
      status.observedGeneration = generation;
      break;
    case 'waiting':
      set(ConditionType.Reconciling, 'True', Reason.Progressing, outcome.message);
      set(ConditionType.Ready, 'False', outcome.reason, outcome.message);
      removeCondition(conditions, ConditionType.Stalled);
      break;
    case 'transient':
      set(ConditionType.Reconciling, 'True', Reason.ProgressingWithRetry, outcome.message);
      set(ConditionType.Ready, 'False', outcome.reason, outcome.message);
      removeCondition(conditions, ConditionType.Stalled);
      break;
  }
}
