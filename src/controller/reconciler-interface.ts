/**
 * The reconcile contract, as in controller-runtime: a reconciler receives a key, reads the current state itself and
 * converges it. Throwing requeues the key with per-item exponential backoff; returning `requeueAfterMs` requeues it
 * after that delay (and resets the backoff); returning {} forgets it until the next event.
 * This is only the interface the manager calls; the three kinds implement it with the shared control flow in
 * `common/reconcile-object.ts` (reconcileObject).
 */
import type { Logger } from 'pino';
import type { ObjectKey } from '../kube/types.js';

export interface ReconcileResult {
  requeueAfterMs?: number;
  /**
   * The reason of an error no retry can fix (the object is Stalled), like controller-runtime's TerminalError: counted
   * as an error and a terminal error, never requeued.
   */
  terminalError?: string;
}

export interface ReconcileContext {
  /** Unique per reconcile call; present on every log line of that call. */
  reconcileID: string;
  log: Logger;
  /** Aborted on shutdown or loss of leadership: in-flight work stops at the next safe point. */
  signal: AbortSignal;
}

/**
 * JavaScript's equivalent of a Go panic: a programming error (ReferenceError, RangeError, SyntaxError, or a
 * TypeError that is not undici's network failure, which carries a cause) anywhere in the cause chain.
 */
export function isProgrammingError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof ReferenceError || e instanceof RangeError || e instanceof SyntaxError) return true;
    if (e instanceof TypeError && e.cause === undefined && e.message !== 'fetch failed') return true;
  }
  return false;
}

export interface Reconciler {
  reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult>;
}
