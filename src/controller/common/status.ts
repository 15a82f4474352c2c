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
  if (!statusChanged(obj.status, status)) return;
  await client.applyStatus(type, {
    apiVersion: API_VERSION,
    kind: type.kind,
    metadata: {
      name: obj.metadata.name,
      ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
    },
    status,
  });
}
