/**
 * Per-object health as metrics (Flux's gotk_reconcile_condition): a stalled bundle or a channel that never became
 * Ready shows up in Prometheus, not only in `kubectl get`. Computed at scrape time from the manager's informer
 * caches, so deleted objects disappear with them and only the leader (which runs the informers) reports.
 * Labels are object names declared by users: bounded, never device-level.
 */
import { Gauge, type Registry } from 'prom-client';
import { APP_RESOURCE, BUNDLE_RESOURCE, CHANNEL_RESOURCE, ConditionType } from '../api/v1alpha1/index.js';
import type { KubeObject, ResourceType } from '../kube/types.js';

interface Condition {
  type: string;
  status: string;
  reason?: string;
}

interface ObjectWithConditions extends KubeObject {
  spec?: { appId?: string; suspend?: boolean };
  status?: { conditions?: Condition[]; observedGeneration?: number };
}

/** Lists the cached objects of a type; empty while the caches are not synced or this replica does not lead. */
export type CachedObjects = (type: ResourceType) => KubeObject[];

const KINDS: readonly ResourceType[] = [APP_RESOURCE, CHANNEL_RESOURCE, BUNDLE_RESOURCE];
const LABEL_NAMES = ['kind', 'namespace', 'name', 'reason'] as const;

/** Ready's reason, or why there is none yet: NotObserved (no status for this generation yet). */
export function readinessOf(obj: ObjectWithConditions): { ready: boolean; stalled: boolean; reason: string } {
  const conditions = obj.status?.conditions ?? [];
  const ready = conditions.find((c) => c.type === ConditionType.Ready);
  const stalled = conditions.find((c) => c.type === ConditionType.Stalled);
  if (obj.spec?.suspend) return { ready: ready?.status === 'True', stalled: false, reason: 'Suspended' };
  if (!ready) return { ready: false, stalled: false, reason: 'NotObserved' };
  return {
    ready: ready.status === 'True',
    stalled: stalled?.status === 'True',
    reason: ready.reason || (ready.status === 'True' ? 'Ready' : 'Unknown'),
  };
}

export function registerObjectMetrics(registry: Registry, cachedObjects: CachedObjects): void {
  const labelNames = LABEL_NAMES;
  const objects = (): Array<{ kind: string; obj: ObjectWithConditions }> =>
    KINDS.flatMap((type) => cachedObjects(type).map((obj) => ({ kind: type.kind, obj: obj })));
  new Gauge({
    name: 'liveupdate_object_ready',
    help: 'Whether a LiveUpdate object is Ready (1) or not (0), with the reason of its Ready condition.',
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const { kind, obj } of objects()) {
        const { ready, reason } = readinessOf(obj);
        this.set(labels(kind, obj, reason), ready ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'liveupdate_object_stalled',
    help: 'Whether a LiveUpdate object is Stalled (1: a person must act) or not (0), with the reason.',
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const { kind, obj } of objects()) {
        const { stalled, reason } = readinessOf(obj);
        this.set(labels(kind, obj, reason), stalled ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'liveupdate_object_condition',
    help: 'Every condition of a LiveUpdate object (1 while present, with its status and reason), e.g. RolloutHalted.',
    labelNames: ['kind', 'namespace', 'name', 'type', 'status', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { kind, obj } of objects())
        for (const c of obj.status?.conditions ?? [])
          this.set(
            {
              kind,
              namespace: obj.metadata.namespace ?? '',
              name: obj.metadata.name,
              type: c.type,
              status: c.status,
              reason: c.reason ?? '',
            },
            1,
          );
    },
  });
  new Gauge({
    name: 'liveupdate_app_info',
    help: 'Maps a LiveUpdateApp (namespace, app) to the app_id devices send and the update service labels by. Always 1.',
    labelNames: ['namespace', 'app', 'app_id'],
    registers: [registry],
    collect() {
      this.reset();
      for (const obj of cachedObjects(APP_RESOURCE) as ObjectWithConditions[]) {
        const appId = obj.spec?.appId;
        if (appId)
          this.set({ namespace: obj.metadata.namespace ?? '', app: obj.metadata.name, app_id: appId }, 1);
      }
    },
  });
}

function labels(kind: string, obj: KubeObject, reason: string): Record<(typeof LABEL_NAMES)[number], string> {
  return { kind, namespace: obj.metadata.namespace ?? '', name: obj.metadata.name, reason };
}
