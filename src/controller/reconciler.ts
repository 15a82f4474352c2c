/**
 * The reconcile contract, as in controller-runtime: a reconciler receives a key, reads the current state itself and
 * converges it. Throwing requeues the key with per-item exponential backoff; returning `requeueAfterMs` requeues it
 * after that delay (and resets the backoff); returning {} forgets it until the next event.
 */
import type { Logger } from 'pino';
import type { ObjectKey } from '../kube/types.js';

export interface ReconcileResult {
  requeueAfterMs?: number;
}

export interface ReconcileContext {
  /** Unique per reconcile call; present on every log line of that call. */
  reconcileID: string;
  log: Logger;
  /** Aborted on shutdown or loss of leadership: in-flight work stops at the next safe point. */
  signal: AbortSignal;
}

export interface Reconciler {
  reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult>;
}
