/**
 * The Secrets reconcilers read (signing keys, source credentials, CAs), kept for a bounded time instead of one GET
 * per reconcile (docs/adr/0037-secret-reads-from-a-bounded-cache.md). The RBAC of ADR 0013 allows only `get` on
 * Secrets, so there is no watch to keep a cache current; instead {@link ReferencedSecrets} re-reads every referenced
 * Secret once per period through {@link SecretCache.refresh}, which replaces the cached copy before it enqueues the
 * objects that read an older one. An entry older than the period is read again on use, so no reconcile works with a
 * Secret older than what the poll already allowed; a reconcile request (`fresh`) always reads the API server.
 *
 * The cache also remembers, per Secret, the resourceVersion each reader (a reconciled object) last got: the poll
 * re-enqueues exactly the objects whose read differs from the Secret it now sees.
 */
import { realClock, type Clock } from '../kube/clock.js';
import { keyString } from '../kube/client.js';
import { isNotFound, type KubeObject, type ObjectClient, type ObjectKey } from '../kube/types.js';
import { SECRET_RESOURCE } from '../api/v1alpha1/index.js';
import type { ResourceType } from '../kube/types.js';

export interface SecretObject extends KubeObject {
  data?: Record<string, string>;
}

export interface SecretReadOptions {
  /** Read the API server, not a cached copy (a reconcile request). */
  fresh?: boolean;
  /** Who reads ({@link secretReaderId}): recorded with the version read. */
  reader?: string;
}

/** How reconcilers read Secrets. Returned objects are shared and frozen: never modify them. */
export interface SecretReader {
  /** The Secret, or undefined when it does not exist; other API errors are thrown. */
  get(key: ObjectKey, opts?: SecretReadOptions): Promise<SecretObject | undefined>;
}

/** Reads every Secret from the API server (no cache; tests and a controller without the Secret poll). */
export function directSecrets(client: ObjectClient): SecretReader {
  return {
    get: async (key) => {
      try {
        return await client.get<SecretObject>(SECRET_RESOURCE, key);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    },
  };
}

/** The reader id of an object: its type and key, as the poll names the objects that refer to a Secret. */
export function secretReaderId(type: ResourceType, key: ObjectKey): string {
  return `${type.plural}.${type.group} ${key.namespace}/${key.name}`;
}

/** resourceVersion recorded for a Secret that does not exist. */
export const ABSENT = '';

interface Entry {
  secret: SecretObject | undefined;
  version: string;
  readAt: number;
  /** Order of the read that produced it: a slower, older read never replaces a newer one. */
  seq: number;
}

export interface SecretCacheOptions {
  client: ObjectClient;
  /** How long a read serves later reads: the Secret poll's period. */
  maxAgeMs: number;
  /** Most Secrets kept (default 10,000); the oldest read is dropped first. */
  maxEntries?: number;
  clock?: Clock;
}

export class SecretCache implements SecretReader {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();
  /** Secret → reader → resourceVersion the reader last got. */
  private readonly reads = new Map<string, Map<string, string>>();
  private seq = 0;
  private readonly clock: Clock;

  private readonly direct: SecretReader;

  constructor(private readonly opts: SecretCacheOptions) {
    this.clock = opts.clock ?? realClock;
    this.direct = directSecrets(opts.client);
  }

  async get(key: ObjectKey, opts: SecretReadOptions = {}): Promise<SecretObject | undefined> {
    const id = keyString(key);
    let entry = this.entries.get(id);
    if (opts.fresh || !entry || this.clock.now() - entry.readAt >= this.opts.maxAgeMs) {
      entry = opts.fresh ? await this.load(id, key) : await this.loadShared(id, key);
    }
    if (opts.reader !== undefined) this.record(id, opts.reader, entry.version);
    return entry.secret;
  }

  /**
   * Counts `reader` as having read `version`: the poll does so for the objects it enqueues, whose reconcile reads the
   * copy the poll just cached (and may not read the Secret at all: an artifact already built needs no credentials).
   */
  recordRead(key: ObjectKey, reader: string, version: string): void {
    this.record(keyString(key), reader, version);
  }

  private record(id: string, reader: string, version: string): void {
    let readers = this.reads.get(id);
    if (!readers) this.reads.set(id, (readers = new Map<string, string>()));
    readers.set(reader, version);
  }

  /** Reads the Secret from the API server into the cache; its resourceVersion, {@link ABSENT} when it is gone. */
  async refresh(key: ObjectKey): Promise<string> {
    return (await this.load(keyString(key), key)).version;
  }

  /** The resourceVersion `reader` last got of the Secret, undefined if it never read it (since it was forgotten). */
  versionReadBy(key: ObjectKey, reader: string): string | undefined {
    return this.reads.get(keyString(key))?.get(reader);
  }

  /**
   * Drops what is no longer referenced: Secrets no object names (their cached data too) and readers that no longer
   * name a Secret. `referrers` maps each referenced Secret (keyString) to the reader ids of the objects naming it.
   */
  retain(referrers: ReadonlyMap<string, ReadonlySet<string>>): void {
    for (const [id, readers] of this.reads) {
      const current = referrers.get(id);
      if (!current) {
        this.reads.delete(id);
        continue;
      }
      for (const reader of readers.keys()) if (!current.has(reader)) readers.delete(reader);
    }
    for (const id of this.entries.keys()) if (!referrers.has(id)) this.entries.delete(id);
  }

  /** Concurrent reads of the same Secret share one request. */
  private loadShared(id: string, key: ObjectKey): Promise<Entry> {
    let pending = this.loading.get(id);
    if (!pending) {
      pending = this.load(id, key).finally(() => this.loading.delete(id));
      this.loading.set(id, pending);
    }
    return pending;
  }

  private async load(id: string, key: ObjectKey): Promise<Entry> {
    const seq = ++this.seq;
    const readAt = this.clock.now();
    const secret = deepFreeze(await this.direct.get(key));
    const entry: Entry = { secret, version: secret?.metadata.resourceVersion ?? ABSENT, readAt, seq };
    const current = this.entries.get(id);
    if (!current || current.seq < seq) {
      this.entries.delete(id);
      this.entries.set(id, entry);
      this.evictOldest();
    }
    return entry;
  }

  private evictOldest(): void {
    const max = this.opts.maxEntries ?? 10_000;
    for (const id of this.entries.keys()) {
      if (this.entries.size <= max) return;
      this.entries.delete(id);
    }
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
