/**
 * The concrete ObjectClient: get, list, server-side apply (main resource and status subresource) with this
 * component's field manager, JSON merge patch, delete; plus the list/watch primitives informers and leader election
 * need. Every call has a timeout; every failure is a KubeApiError.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { RestClient, apiVersionOf, collectionPath, objectPath, type RestClientOptions } from './rest.js';
import {
  KubeApiError,
  keyOf,
  type KubeObject,
  type ObjectClient,
  type ObjectKey,
  type ResourceType,
} from './types.js';

export interface KubeClientOptions extends RestClientOptions {
  /** Server-side apply field manager, one per component (e.g. liveupdate-controller). */
  fieldManager: string;
  /** Items per list page (default 500). */
  listPageSize?: number;
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';
  object: T;
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  signal?: AbortSignal;
}

export interface WatchOptions {
  resourceVersion: string;
  timeoutSeconds: number;
  labelSelector?: string;
  fieldSelector?: string;
  signal: AbortSignal;
}

/** The list+watch source an informer runs on (a fake in unit tests). */
export interface ListWatcher {
  listWithVersion<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts?: ListOptions,
  ): Promise<ListResult<T>>;
  /** Resolves when the server ends the watch, rejects on failure (KubeApiError 'Gone' when the version expired). */
  watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (e: WatchEvent<T>) => void,
  ): Promise<void>;
}

export class KubeClient implements ObjectClient, ListWatcher {
  readonly rest: RestClient;
  readonly fieldManager: string;
  private readonly listPageSize: number;

  constructor(kc: KubeConfig, opts: KubeClientOptions) {
    this.rest = new RestClient(kc, opts);
    this.fieldManager = opts.fieldManager;
    this.listPageSize = opts.listPageSize ?? 500;
  }

  get<T extends KubeObject>(type: ResourceType, key: ObjectKey): Promise<T> {
    return this.rest.request<T>('GET', objectPath(type, key));
  }

  async list<T extends KubeObject>(
    type: ResourceType,
    namespace?: string,
    labelSelector?: string,
  ): Promise<T[]> {
    return (await this.listWithVersion<T>(type, namespace, labelSelector ? { labelSelector } : {})).items;
  }

  async listWithVersion<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: ListOptions = {},
  ): Promise<ListResult<T>> {
    const items: T[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    // bounded: the API server's continue tokens always end; 10k pages of 500 is far beyond any real namespace
    for (let page = 0; page < 10_000; page++) {
      const res = await this.rest.request<{
        items?: T[];
        metadata?: { resourceVersion?: string; continue?: string };
      }>('GET', collectionPath(type, namespace), {
        query: {
          limit: this.listPageSize,
          continue: cont,
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
        },
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      // list responses omit apiVersion/kind on items; restore them so handlers see whole objects
      for (const item of res.items ?? [])
        items.push({ ...item, apiVersion: apiVersionOf(type), kind: type.kind });
      resourceVersion = res.metadata?.resourceVersion ?? resourceVersion;
      cont = res.metadata?.continue;
      if (!cont) break;
    }
    return { items, resourceVersion };
  }

  apply<T extends KubeObject>(type: ResourceType, obj: KubeObject): Promise<T> {
    return this.ssa<T>(type, obj);
  }

  applyStatus<T extends KubeObject>(type: ResourceType, obj: KubeObject & { status: unknown }): Promise<T> {
    return this.ssa<T>(type, obj, 'status');
  }

  mergePatch<T extends KubeObject>(type: ResourceType, key: ObjectKey, patch: object): Promise<T> {
    return this.rest.request<T>('PATCH', objectPath(type, key), {
      body: patch,
      contentType: 'application/merge-patch+json',
      query: { fieldManager: this.fieldManager },
    });
  }

  create<T extends KubeObject>(type: ResourceType, obj: KubeObject): Promise<T> {
    return this.rest.request<T>('POST', collectionPath(type, obj.metadata.namespace), {
      body: obj,
      query: { fieldManager: this.fieldManager },
    });
  }

  /** PUT with the object's resourceVersion: fails with Conflict if someone else wrote in between. */
  replace<T extends KubeObject>(type: ResourceType, obj: KubeObject): Promise<T> {
    return this.rest.request<T>('PUT', objectPath(type, keyOf(obj)), {
      body: obj,
      query: { fieldManager: this.fieldManager },
    });
  }

  async delete(type: ResourceType, key: ObjectKey): Promise<void> {
    await this.rest.request('DELETE', objectPath(type, key), {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' },
    });
  }

  private ssa<T extends KubeObject>(type: ResourceType, obj: KubeObject, subresource?: string): Promise<T> {
    // managedFields must not be sent with an apply request
    const { managedFields: _m, ...metadata } = obj.metadata as KubeObject['metadata'] & {
      managedFields?: unknown;
    };
    const body = { ...obj, apiVersion: apiVersionOf(type), kind: type.kind, metadata };
    return this.rest.request<T>('PATCH', objectPath(type, keyOf(obj), subresource), {
      body,
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager: this.fieldManager, force: true },
    });
  }

  watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (e: WatchEvent<T>) => void,
  ): Promise<void> {
    let failure: KubeApiError | undefined;
    const ctl = new AbortController();
    const abort = (): void => ctl.abort(opts.signal.reason);
    if (opts.signal.aborted) abort();
    opts.signal.addEventListener('abort', abort, { once: true });
    return this.rest
      .stream(
        collectionPath(type, namespace),
        {
          resourceVersion: opts.resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds: opts.timeoutSeconds,
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
        },
        (line) => {
          let event: { type?: string; object?: unknown };
          try {
            event = JSON.parse(line) as typeof event;
          } catch {
            return;
          }
          if (event.type === 'ERROR') {
            const status = event.object as { code?: number; message?: string; reason?: string };
            const code = status.code ?? 500;
            failure = new KubeApiError(
              code === 410 ? 'Gone' : code >= 500 ? 'ServerError' : 'Invalid',
              code,
              `watch ${type.plural}: ${status.message ?? 'error'}`,
            );
            ctl.abort(failure);
            return;
          }
          if (
            event.type === 'ADDED' ||
            event.type === 'MODIFIED' ||
            event.type === 'DELETED' ||
            event.type === 'BOOKMARK'
          ) {
            onEvent({ type: event.type, object: event.object as T });
          }
        },
        ctl.signal,
      )
      .catch((err: unknown) => {
        throw failure ?? err;
      })
      .finally(() => opts.signal.removeEventListener('abort', abort));
  }
}

/** "namespace/name" (or "name" for cluster-scoped objects), as client-go's MetaNamespaceKeyFunc. */
export function keyString(key: { namespace?: string; name: string }): string {
  return key.namespace ? `${key.namespace}/${key.name}` : key.name;
}

export function parseKey(s: string): ObjectKey {
  const i = s.indexOf('/');
  return i < 0 ? { namespace: '', name: s } : { namespace: s.slice(0, i), name: s.slice(i + 1) };
}
