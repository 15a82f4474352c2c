/** The status write: one server-side apply of the status subresource, skipped when nothing changed. */
import { API_VERSION } from '../../api/v1alpha1/index.js';
import type { Condition, KubeObject, ObjectClient, ResourceType } from '../../kube/types.js';
import { sortConditions } from './conditions.js';

export interface StatusBase {
  observedGeneration?: number;
  lastHandledReconcileAt?: string;
  conditions?: Condition[];
}

/** JSON with sorted keys, so that two equal statuses compare equal whatever order their fields were set in. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : v,
  );
}

/**
 * A copy without empty objects (a map or struct whose every key is gone is left out). Server-side apply turns an
 * object that the apply emptied into null, which the CRD schema refuses (kubernetes/kubernetes#135841): a channel's
 * `stats.rollout.failuresByAction` going from `{download_fail: 4}` to `{}` failed every later status write with 422.
 * Leaving the field out is what the apply means anyway: this manager no longer sets it, so it is removed.
 */
export function withoutEmptyObjects<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v: unknown) => withoutEmptyObjects(v)) as T;
  if (!value || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>)
    .map(([k, v]) => [k, withoutEmptyObjects(v)] as const)
    .filter(([, v]) => !isEmptyObject(v));
  return Object.fromEntries(entries) as T;
}

function isEmptyObject(value: unknown): boolean {
  return !!value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0;
}

export function statusChanged(before: unknown, after: StatusBase): boolean {
  return canonicalJson(before ?? {}) !== canonicalJson(after);
}

/**
 * Applies `status` (the complete status this controller owns: fields it omits are removed, as server-side apply
 * does for a field manager's own fields). No write when it equals what the object already has, so status writes
 * do not feed an endless loop of watch events.
 */
export async function patchStatusIfChanged<S extends StatusBase>(
  client: ObjectClient,
  type: ResourceType,
  obj: KubeObject & { status?: S },
  status: S,
): Promise<void> {
  status.conditions = sortConditions(status.conditions ?? []);
  const applied = withoutEmptyObjects(status);
  if (!statusChanged(obj.status, applied)) return;
  await client.applyStatus(type, {
    apiVersion: API_VERSION,
    kind: type.kind,
    metadata: {
      name: obj.metadata.name,
      ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
    },
    status: applied,
  });
}
