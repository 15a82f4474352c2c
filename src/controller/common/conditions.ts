/**
 * metav1.Condition helpers with kstatus semantics: a condition's lastTransitionTime only moves when its status
 * changes; negative-polarity conditions (Stalled, Reconciling, FetchFailed, ...) are removed rather than set False.
 */
import type { Condition } from '../../kube/types.js';

export type ConditionStatus = Condition['status'];

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}

/** Sets (or replaces) a condition, keeping lastTransitionTime when the status did not change. */
export function setCondition(
  conditions: Condition[],
  update: {
    type: string;
    status: ConditionStatus;
    reason: string;
    message: string;
    observedGeneration?: number;
  },
  now: Date,
): void {
  const index = conditions.findIndex((c) => c.type === update.type);
  const previous = index >= 0 ? conditions[index] : undefined;
  const next: Condition = {
    type: update.type,
    status: update.status,
    reason: update.reason,
    message: truncateMessage(update.message),
    lastTransitionTime:
      previous && previous.status === update.status ? previous.lastTransitionTime : rfc3339(now),
    ...(update.observedGeneration !== undefined ? { observedGeneration: update.observedGeneration } : {}),
  };
  if (index >= 0) conditions[index] = next;
  else conditions.push(next);
}

export function removeCondition(conditions: Condition[], type: string): void {
  const index = conditions.findIndex((c) => c.type === type);
  if (index >= 0) conditions.splice(index, 1);
}

/** Kubernetes caps condition messages at 32768 characters; keep them readable far below that. */
export function truncateMessage(message: string, max = 1024): string {
  return message.length <= max ? message : `${message.slice(0, max - 1)}…`;
}

/** RFC 3339 with second precision, as metav1.Time serializes. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Stable order for status output: kstatus conditions first, then domain conditions alphabetically. */
export function sortConditions(conditions: Condition[]): Condition[] {
  const rank = (type: string) => ['Ready', 'Reconciling', 'Stalled'].indexOf(type);
  return [...conditions].sort((a, b) => {
    const ra = rank(a.type);
    const rb = rank(b.type);
    if (ra !== rb) return (ra < 0 ? 99 : ra) - (rb < 0 ? 99 : rb);
    return a.type.localeCompare(b.type);
  });
}
