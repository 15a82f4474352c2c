/**
 * The one reconcile shape every kind follows (Flux source-controller): get the object (NotFound → done); whatever
 * happens next, summarize the outcome into kstatus conditions and apply the status once at the end; deletion →
 * clean up → drop the finalizer; add the finalizer (for a kind that asks, while its steps fetch and prepare);
 * suspend → stop; then the kind's ordered steps.
 * Kinds implement {@link KindSteps}; this file owns the control flow, the status patch and the error taxonomy.
 * The interface the manager calls (Reconciler, ReconcileResult) is `../reconciler-interface.ts`.
 */
import type { Logger } from 'pino';
import { FINALIZER, RECONCILE_REQUESTED_AT_ANNOTATION } from '../../api/v1alpha1/index.js';
import {
  isNotFound,
  keyOf,
  type EventRecorder,
  type KubeObject,
  type ObjectClient,
  type ObjectKey,
  type ResourceType,
} from '../../kube/types.js';
import type { ReconcileContext, ReconcileResult } from '../reconciler-interface.js';
import { classify } from './errors.js';
import { patchStatusIfChanged, type StatusBase } from './status.js';
import { summarize, type Outcome } from './summarize.js';

export interface Reconcilable<S extends StatusBase> extends KubeObject {
  spec: { suspend?: boolean };
  status?: S;
}

/** What a step run hands to the summary: the Ready message on success, and when to look again. */
export interface StepsResult {
  reason: string;
  message: string;
  requeueAfterMs?: number;
}

/** Deletion either finished (the finalizer may go) or waits (conditions set by the kind, look again later). */
export type DeletionResult = { done: true } | { done: false; requeueAfterMs: number };

export interface KindSteps<T extends Reconcilable<S>, S extends StatusBase> {
  readonly type: ResourceType;
  /** Fallback condition reason for unclassified (transient) errors of this kind's steps. */
  readonly transientReason: string;
  /** The ordered steps for a live object. They mutate `status` and throw classified errors. */
  reconcileLive(obj: T, status: S, ctx: StepContext): Promise<StepsResult>;
  /** Cleanup before the finalizer is removed. */
  reconcileDelete(obj: T, status: S, ctx: StepContext): Promise<DeletionResult>;
  /**
   * The kind's steps await `ctx.finalizerAdded` themselves before their first write outside the API server (the
   * bundle: before its upload), so the finalizer PATCH of a new object runs while they fetch and prepare.
   * Otherwise the finalizer is on the object before the steps start.
   */
  readonly awaitsFinalizer?: boolean;
}

export interface StepContext extends ReconcileContext {
  now: () => Date;
  /** True when the reconcile-requested-at annotation asks for a reconcile not handled yet. */
  forced: boolean;
  /**
   * Resolves once the object carries the finalizer (at once when it already did); rejects as the PATCH did, and the
   * reconcile then ends with that error whatever the steps did, as if it had failed before them.
   */
  finalizerAdded?: Promise<void>;
}

export interface ReconcileDeps {
  client: ObjectClient;
  recorder: EventRecorder;
  now?: () => Date;
}

export async function reconcileObject<T extends Reconcilable<S>, S extends StatusBase>(
  deps: ReconcileDeps,
  steps: KindSteps<T, S>,
  key: ObjectKey,
  ctx: ReconcileContext,
): Promise<ReconcileResult> {
  const now = deps.now ?? (() => new Date());
  let obj: T;
  try {
    obj = await deps.client.get<T>(steps.type, key);
  } catch (error) {
    if (isNotFound(error)) return {};
    throw error;
  }
  // The manager's logger already carries namespace, name and reconcileID.
  const log = ctx.log.child({ generation: obj.metadata.generation });
  const requestedAt = obj.metadata.annotations?.[RECONCILE_REQUESTED_AT_ANNOTATION];
  const status = structuredClone(obj.status ?? ({} as S));
  status.conditions ??= [];
  const forced = requestedAt !== undefined && requestedAt !== status.lastHandledReconcileAt;

  if (obj.metadata.deletionTimestamp) return finalize(deps, steps, obj, status, { ...ctx, log, now, forced });

  const adding = obj.metadata.finalizers?.includes(FINALIZER)
    ? undefined
    : addFinalizer(deps.client, steps.type, obj);
  if (adding && (!steps.awaitsFinalizer || obj.spec.suspend)) obj = await adding;
  if (obj.spec.suspend) {
    log.info('reconciliation is suspended');
    return {};
  }
  const finalizerAdded = adding ? adding.then(() => undefined) : Promise.resolve();
  // Awaited by the steps and below: a rejection is never unhandled, and it is thrown after the steps.
  finalizerAdded.catch(() => undefined);
  const stepCtx: StepContext = { ...ctx, log, now, forced, finalizerAdded };

  let outcome: Outcome;
  try {
    outcome = { kind: 'success', ...(await steps.reconcileLive(obj, status, stepCtx)) };
  } catch (error) {
    outcome = classify(error, steps.transientReason);
  }
  // A failed finalizer PATCH ends the reconcile with its error and writes nothing, as before any step ran.
  if (adding) obj = await adding;
  summarize(status, outcome, obj.metadata.generation ?? 0, now());
  if (outcome.kind !== 'waiting' && outcome.kind !== 'transient' && requestedAt !== undefined) {
    status.lastHandledReconcileAt = requestedAt;
  }
  await patchStatusIfChanged(deps.client, steps.type, obj, status);
  return finish(deps.recorder, obj, outcome, log);
}

function finish(recorder: EventRecorder, obj: KubeObject, outcome: Outcome, log: Logger): ReconcileResult {
  switch (outcome.kind) {
    case 'success':
      return outcome.requeueAfterMs !== undefined ? { requeueAfterMs: outcome.requeueAfterMs } : {};
    case 'stalling':
      log.warn({ reason: outcome.reason, err: outcome.message }, 'reconciliation stalled');
      recorder.event(obj, 'Warning', outcome.reason, outcome.message);
      return { terminalError: outcome.reason };
    case 'waiting':
      log.info({ reason: outcome.reason }, outcome.message);
      return { requeueAfterMs: outcome.requeueAfterMs };
    case 'transient':
      recorder.event(obj, 'Warning', outcome.reason, outcome.message);
      if (outcome.retryAfterMs !== undefined) {
        log.info(
          { reason: outcome.reason, retryAfterMs: outcome.retryAfterMs, err: outcome.message },
          'will retry',
        );
        return { requeueAfterMs: outcome.retryAfterMs };
      }
      throw outcome;
  }
}

async function finalize<T extends Reconcilable<S>, S extends StatusBase>(
  deps: ReconcileDeps,
  steps: KindSteps<T, S>,
  obj: T,
  status: S,
  ctx: StepContext,
): Promise<ReconcileResult> {
  if (!obj.metadata.finalizers?.includes(FINALIZER)) return {};
  let result: DeletionResult;
  try {
    result = await steps.reconcileDelete(obj, status, ctx);
  } catch (error) {
    const failure = classify(error, steps.transientReason);
    deps.recorder.event(obj, 'Warning', failure.reason, `deletion: ${failure.message}`);
    throw failure;
  }
  if (!result.done) {
    await patchStatusIfChanged(deps.client, steps.type, obj, status);
    return { requeueAfterMs: result.requeueAfterMs };
  }
  await removeFinalizer(deps.client, steps.type, obj);
  ctx.log.info('finalizer removed');
  return {};
}

/** Merge patch guarded by resourceVersion: a concurrent finalizer change by someone else causes a Conflict retry. */
async function addFinalizer<T extends KubeObject>(
  client: ObjectClient,
  type: ResourceType,
  obj: T,
): Promise<T> {
  const finalizers = [...(obj.metadata.finalizers ?? []), FINALIZER];
  return client.mergePatch<T>(type, keyOf(obj), {
    metadata: {
      finalizers,
      ...(obj.metadata.resourceVersion ? { resourceVersion: obj.metadata.resourceVersion } : {}),
    },
  });
}

async function removeFinalizer(client: ObjectClient, type: ResourceType, obj: KubeObject): Promise<void> {
  const finalizers = (obj.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
  try {
    await client.mergePatch(type, keyOf(obj), {
      metadata: {
        finalizers,
        ...(obj.metadata.resourceVersion ? { resourceVersion: obj.metadata.resourceVersion } : {}),
      },
    });
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
}
