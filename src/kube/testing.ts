/** In-memory fakes behind our own interfaces, for unit tests (no module mocking). */
import type { ListOptions, ListResult, ListWatcher, WatchEvent, WatchOptions } from './client.js';
import type { LeaseRecord, LeaseStore, StoredLease } from './leader-election.js';
import { KubeApiError, type KubeObject, type ResourceType } from './types.js';

export interface ActiveWatch {
  type: ResourceType;
  /** Undefined: every namespace. */
  namespace: string | undefined;
  opts: WatchOptions;
  emit(e: WatchEvent<KubeObject>): void;
  end(): void;
  fail(err: Error): void;
}

/**
 * An in-memory list/watch source. `put`/`remove` change objects and notify open watches of that type; tests can also
 * drive watches by hand (`current().emit/end/fail`).
 */
export class FakeSource implements ListWatcher {
  private readonly store = new Map<string, Map<string, KubeObject>>();
  rv = 1;
  lists = 0;
  listFailures: Error[] = [];
  watches: ActiveWatch[] = [];
  /** The namespace of every list and watch call (undefined: cluster-wide). */
  readonly scopes: (string | undefined)[] = [];

  /** The ConfigMap objects (the default plural). */
  get objects(): Map<string, KubeObject> {
    return this.bucket('configmaps');
  }

  bucket(plural: string): Map<string, KubeObject> {
    let b = this.store.get(plural);
    if (!b) {
      b = new Map<string, KubeObject>();
      this.store.set(plural, b);
    }
    return b;
  }

  /** Objects carry `generation: 1` like custom resources with a status subresource (data lives in an annotation). */
  put(name: string, data = '', type?: ResourceType, notify = false, namespace = 'ns'): KubeObject {
    const plural = type?.plural ?? 'configmaps';
    const obj: KubeObject = {
      apiVersion: type ? (type.group ? `${type.group}/${type.version}` : type.version) : 'v1',
      kind: type?.kind ?? 'ConfigMap',
      metadata: { name, namespace, generation: 1, resourceVersion: String(++this.rv), annotations: { data } },
    };
    const key = namespace === 'ns' ? name : `${namespace}/${name}`;
    const existed = this.bucket(plural).has(key);
    this.bucket(plural).set(key, obj);
    if (notify) this.notify(plural, { type: existed ? 'MODIFIED' : 'ADDED', object: obj });
    return obj;
  }

  remove(name: string, type?: ResourceType): void {
    const plural = type?.plural ?? 'configmaps';
    const obj = this.bucket(plural).get(name);
    if (!obj) return;
    this.bucket(plural).delete(name);
    this.notify(plural, { type: 'DELETED', object: obj });
  }

  current(plural = 'configmaps'): ActiveWatch {
    const w = this.watches.filter((x) => x.type.plural === plural).at(-1);
    if (!w) throw new Error('no watch');
    return w;
  }

  private notify(plural: string, e: WatchEvent<KubeObject>): void {
    for (const w of this.watches) {
      const inScope = w.namespace === undefined || w.namespace === e.object.metadata.namespace;
      if (w.type.plural === plural && inScope && !w.opts.signal.aborted) w.emit(e);
    }
  }

  listWithVersion<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    _o?: ListOptions,
  ): Promise<ListResult<T>> {
    this.lists++;
    this.scopes.push(namespace);
    const failure = this.listFailures.shift();
    if (failure) return Promise.reject(failure);
    return Promise.resolve({
      items: [...this.bucket(type.plural).values()].filter(
        (o) => namespace === undefined || o.metadata.namespace === namespace,
      ) as T[],
      resourceVersion: String(this.rv),
    });
  }

  watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    opts: WatchOptions,
    onEvent: (e: WatchEvent<T>) => void,
  ): Promise<void> {
    this.scopes.push(namespace);
    return new Promise((resolve, reject) => {
      const w: ActiveWatch = {
        type,
        namespace,
        opts,
        emit: (e) => onEvent(e as WatchEvent<T>),
        end: resolve,
        fail: reject,
      };
      opts.signal.addEventListener('abort', () => reject(opts.signal.reason as Error), { once: true });
      this.watches.push(w);
    });
  }
}

/** One lease shared by several candidates, with optimistic concurrency like the API server. */
export class FakeLeaseBackend {
  lease: StoredLease | null = null;
  private rv = 0;
  writes = 0;

  get(): StoredLease | null {
    return this.lease && structuredClone(this.lease);
  }
  create(record: LeaseRecord): StoredLease {
    if (this.lease) throw new KubeApiError('AlreadyExists', 409, 'exists');
    this.writes++;
    this.lease = { record: { ...record }, resourceVersion: String(++this.rv) };
    return structuredClone(this.lease);
  }
  update(record: LeaseRecord, resourceVersion: string): StoredLease {
    if (!this.lease || this.lease.resourceVersion !== resourceVersion)
      throw new KubeApiError('Conflict', 409, 'conflict');
    this.writes++;
    this.lease = { record: { ...record }, resourceVersion: String(++this.rv) };
    return structuredClone(this.lease);
  }
}

/** A candidate's view of the backend; `partitioned` makes every call fail like an unreachable API server. */
export class FakeStore implements LeaseStore {
  readonly description = 'ns/lease';
  partitioned = false;
  constructor(private readonly backend: FakeLeaseBackend) {}
  private check(): void {
    if (this.partitioned) throw new KubeApiError('Unavailable', 0, 'connection refused');
  }
  get(): Promise<StoredLease | null> {
    return Promise.resolve().then(() => (this.check(), this.backend.get()));
  }
  create(record: LeaseRecord): Promise<StoredLease> {
    return Promise.resolve().then(() => (this.check(), this.backend.create(record)));
  }
  update(record: LeaseRecord, rv: string): Promise<StoredLease> {
    return Promise.resolve().then(() => (this.check(), this.backend.update(record, rv)));
  }
}
