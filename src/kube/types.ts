/**
 * The small Kubernetes surface the rest of the code depends on. Only src/kube/ imports @kubernetes/client-node;
 * reconcilers receive these interfaces, so unit tests substitute in-memory fakes without module mocking.
 */

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
}

/** metav1.Condition */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface ObjectKey {
  namespace: string;
  name: string;
}

export function keyOf(obj: KubeObject): ObjectKey {
  return { namespace: obj.metadata.namespace ?? '', name: obj.metadata.name };
}

export interface ResourceType {
  group: string; // '' for core
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

/** A typed API failure, mapped from the HTTP status the API server returned. */
export type ApiErrorReason =
  | 'NotFound'
  | 'Conflict'
  | 'AlreadyExists'
  | 'Invalid'
  | 'Forbidden'
  | 'Unauthorized'
  | 'Gone'
  | 'TooManyRequests'
  | 'ServerError'
  | 'Timeout'
  | 'Unavailable';

export class KubeApiError extends Error {
  constructor(
    readonly reason: ApiErrorReason,
    readonly statusCode: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KubeApiError';
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof KubeApiError && e.reason === 'NotFound';
export const isConflict = (e: unknown): boolean => e instanceof KubeApiError && e.reason === 'Conflict';

export type EventType = 'Normal' | 'Warning';

/** The client reconcilers use. Implemented over client-node in src/kube/client.ts. */
export interface ObjectClient {
  /** Throws KubeApiError(NotFound) when absent. */
  get<T extends KubeObject>(type: ResourceType, key: ObjectKey): Promise<T>;
  list<T extends KubeObject>(type: ResourceType, namespace?: string, labelSelector?: string): Promise<T[]>;
  /**
   * The objects of a namespace (undefined: of every namespace, as {@link list}) that `match`, when the client can filter
   * cheaper than {@link list} (a cache: only the matches are copied; `match` must not modify what it is given).
   * Optional: callers fall back to list + filter.
   */
  listMatching?<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    match: (obj: T) => boolean,
  ): Promise<T[]>;
  /** Server-side apply of the main resource (not status) with this component's field manager; force=true. */
  apply<T extends KubeObject>(type: ResourceType, obj: KubeObject): Promise<T>;
  /** JSON merge patch of the main resource (metadata.finalizers, annotations). */
  mergePatch<T extends KubeObject>(type: ResourceType, key: ObjectKey, patch: object): Promise<T>;
  /** Server-side apply of the status subresource with this component's field manager. */
  applyStatus<T extends KubeObject>(type: ResourceType, obj: KubeObject & { status: unknown }): Promise<T>;
  delete(type: ResourceType, key: ObjectKey): Promise<void>;
}

export interface EventRecorder {
  /** reason is CamelCase; message must never contain secrets. Repeated identical events are aggregated. */
  event(obj: KubeObject, type: EventType, reason: string, message: string): void;
}
