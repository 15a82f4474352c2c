/**
 * The reconcile error taxonomy (Flux's serror): every failure a step reports is one of
 * - {@link StallingError}: a human must act (bad input, missing Secret, 404, digest mismatch). Stalled=True,
 *   Warning event, no requeue; the next spec or dependency change triggers a new attempt.
 * - {@link WaitingError}: a dependency is not ready yet (the app has no key yet). Reconciling=True, requeue later.
 * - {@link TransientError} (or any other error): the world failed us (network, 5xx, S3 down). Reconciling=True with
 *   ProgressingWithRetry, the error is thrown so the work queue retries with exponential backoff — or, when the
 *   error carries `retryAfterMs` (a schedule the object sets), requeued after that delay.
 * Each carries the CamelCase reason that goes into the conditions; messages never contain secrets.
 */
import { Reason } from '../../api/v1alpha1/index.js';
import { KubeApiError } from '../../kube/types.js';
import { StoreUnavailableError } from '../../storage/object-store.js';

export abstract class ReconcileError extends Error {
  abstract readonly kind: 'stalling' | 'waiting' | 'transient';
  constructor(
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class StallingError extends ReconcileError {
  override readonly name = 'StallingError';
  readonly kind = 'stalling' as const;
}

export class WaitingError extends ReconcileError {
  override readonly name = 'WaitingError';
  readonly kind = 'waiting' as const;
  constructor(
    reason: string,
    message: string,
    readonly requeueAfterMs: number,
  ) {
    super(reason, message);
  }
}

export class TransientError extends ReconcileError {
  override readonly name = 'TransientError';
  readonly kind = 'transient' as const;
  /**
   * Retry after this long instead of the work queue's per-item backoff: for failures whose retry schedule the object
   * sets (a bundle's spec.retryInterval caps the waits for its source).
   */
  readonly retryAfterMs: number | undefined;
  constructor(reason: string, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(reason, message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }
}

export type ClassifiedError = StallingError | WaitingError | TransientError;

/**
 * Any error as a classified one; unknown errors are transient (retrying is the safe default). API server and S3
 * failures a step did not classify keep a reason naming what failed (a 403 from missing RBAC is not a storage
 * outage); anything else gets the kind's fallback reason.
 */
export function classify(error: unknown, fallbackReason: string): ClassifiedError {
  if (error instanceof StallingError || error instanceof WaitingError || error instanceof TransientError)
    return error;
  const message = error instanceof Error ? error.message : String(error);
  return new TransientError(unclassifiedReason(error, fallbackReason), message, { cause: error });
}

function unclassifiedReason(error: unknown, fallbackReason: string): string {
  if (error instanceof KubeApiError) {
    return error.statusCode === 403 ? Reason.KubernetesApiForbidden : Reason.KubernetesApiError;
  }
  if (error instanceof StoreUnavailableError) return Reason.StorageUnavailable;
  return fallbackReason;
}
