/**
 * In-memory ObjectClient and EventRecorder for reconciler unit tests. It keeps the API semantics reconcilers depend
 * on: generation bumps on spec changes only, resourceVersion checks on merge patches that carry one, deletion with
 * finalizers sets deletionTimestamp and the object disappears when the last finalizer goes, status is a separate
 * subresource (applyStatus never touches spec or metadata).
 */
import {
  KubeApiError,
  type EventRecorder,
  type EventType,
  type KubeObject,
  type ObjectClient,
  type ObjectKey,
  type ResourceType,
} from '../../../kube/types.js';

type Stored = KubeObject & { spec?: unknown; status?: unknown; data?: Record<string, string> };

function id(type: ResourceType, key: ObjectKey): string {
  return `${type.group}/${type.plural}/${key.namespace}/${key.name}`;
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete result[k];
    else result[k] = mergePatch(result[k], v);
  }
  return result;
}

export class FakeObjectClient implements ObjectClient {
  private readonly objects = new Map<string, Stored>();
  private version = 1;
  readonly calls: string[] = [];
  /** Makes the next calls of one operation fail with this error (one-shot per entry). */
  readonly failNext: Partial<
    Record<'get' | 'list' | 'apply' | 'mergePatch' | 'applyStatus' | 'delete', KubeApiError>
  > = {};

  private nextVersion(): string {
    return String(++this.version);
  }

  private failIfAsked(op: keyof FakeObjectClient['failNext']): void {
    const error = this.failNext[op];
    if (error) {
      delete this.failNext[op];
      throw error;
    }
  }

  /** Seeds or replaces an object as a user would create it (generation 1, uid, timestamps). */
  create<T extends KubeObject>(type: ResourceType, obj: T): T {
    const key = { namespace: obj.metadata.namespace ?? '', name: obj.metadata.name };
    if (this.objects.has(id(type, key)))
      throw new KubeApiError('AlreadyExists', 409, `${obj.metadata.name} exists`);
    const stored = structuredClone(obj) as Stored;
    stored.metadata = {
      uid: `uid-${obj.metadata.name}`,
      generation: 1,
      creationTimestamp: '2026-11-29T10:00:00Z',
      ...stored.metadata,
      resourceVersion: this.nextVersion(),
    };
    this.objects.set(id(type, key), stored);
    return structuredClone(stored) as unknown as T;
  }

  /** Replaces the spec the way `kubectl apply` would (bumps generation when it changed). */
  updateSpec(type: ResourceType, key: ObjectKey, spec: unknown): void {
    const stored = this.mustGet(type, key);
    if (JSON.stringify(stored.spec) !== JSON.stringify(spec)) {
      stored.spec = structuredClone(spec);
      stored.metadata.generation = (stored.metadata.generation ?? 0) + 1;
    }
    stored.metadata.resourceVersion = this.nextVersion();
  }

  peek<T extends KubeObject>(type: ResourceType, key: ObjectKey): T | undefined {
    const stored = this.objects.get(id(type, key));
    return stored ? (structuredClone(stored) as unknown as T) : undefined;
  }

  private mustGet(type: ResourceType, key: ObjectKey): Stored {
    const stored = this.objects.get(id(type, key));
    if (!stored) throw new KubeApiError('NotFound', 404, `${type.plural} "${key.name}" not found`);
    return stored;
  }

  get<T extends KubeObject>(type: ResourceType, key: ObjectKey): Promise<T> {
    this.calls.push(`get ${type.kind} ${key.name}`);
    try {
      this.failIfAsked('get');
      return Promise.resolve(structuredClone(this.mustGet(type, key)) as unknown as T);
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  list<T extends KubeObject>(type: ResourceType, namespace?: string): Promise<T[]> {
    this.calls.push(`list ${type.kind}`);
    try {
      this.failIfAsked('list');
    } catch (error) {
      return Promise.reject(toError(error));
    }
    const prefix = `${type.group}/${type.plural}/${namespace ?? ''}`;
    const items = [...this.objects.entries()]
      .filter(([k]) =>
        namespace === undefined ? k.startsWith(`${type.group}/${type.plural}/`) : k.startsWith(`${prefix}/`),
      )
      .map(([, v]) => structuredClone(v) as unknown as T);
    return Promise.resolve(items);
  }

  apply<T extends KubeObject>(type: ResourceType, obj: KubeObject): Promise<T> {
    this.calls.push(`apply ${type.kind} ${obj.metadata.name}`);
    const key = { namespace: obj.metadata.namespace ?? '', name: obj.metadata.name };
    if (!this.objects.has(id(type, key))) return Promise.resolve(this.create(type, obj) as T);
    const spec = (obj as Stored).spec;
    this.updateSpec(type, key, spec);
    return this.get<T>(type, key);
  }

  mergePatch<T extends KubeObject>(type: ResourceType, key: ObjectKey, patch: object): Promise<T> {
    this.calls.push(`mergePatch ${type.kind} ${key.name}`);
    try {
      this.failIfAsked('mergePatch');
      const stored = this.mustGet(type, key);
      const wanted = (patch as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
      if (wanted !== undefined && wanted !== stored.metadata.resourceVersion) {
        throw new KubeApiError(
          'Conflict',
          409,
          `the object has been modified; please apply your changes to the latest version`,
        );
      }
      const merged = mergePatch(stored, patch) as Stored;
      merged.metadata.resourceVersion = this.nextVersion();
      if (merged.metadata.deletionTimestamp && (merged.metadata.finalizers ?? []).length === 0) {
        this.objects.delete(id(type, key));
      } else {
        this.objects.set(id(type, key), merged);
      }
      return Promise.resolve(structuredClone(merged) as unknown as T);
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  applyStatus<T extends KubeObject>(type: ResourceType, obj: KubeObject & { status: unknown }): Promise<T> {
    this.calls.push(`applyStatus ${type.kind} ${obj.metadata.name}`);
    try {
      this.failIfAsked('applyStatus');
      const stored = this.mustGet(type, { namespace: obj.metadata.namespace ?? '', name: obj.metadata.name });
      stored.status = structuredClone(obj.status);
      stored.metadata.resourceVersion = this.nextVersion();
      return Promise.resolve(structuredClone(stored) as unknown as T);
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  delete(type: ResourceType, key: ObjectKey): Promise<void> {
    this.calls.push(`delete ${type.kind} ${key.name}`);
    try {
      this.failIfAsked('delete');
      const stored = this.mustGet(type, key);
      if ((stored.metadata.finalizers ?? []).length > 0) {
        stored.metadata.deletionTimestamp ??= '2026-11-29T11:00:00Z';
        stored.metadata.resourceVersion = this.nextVersion();
      } else {
        this.objects.delete(id(type, key));
      }
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }
}

export interface RecordedEvent {
  name: string;
  type: EventType;
  reason: string;
  message: string;
}

export class FakeEventRecorder implements EventRecorder {
  readonly events: RecordedEvent[] = [];

  event(obj: KubeObject, type: EventType, reason: string, message: string): void {
    this.events.push({ name: obj.metadata.name, type, reason, message });
  }

  reasons(): string[] {
    return this.events.map((e) => e.reason);
  }
}
