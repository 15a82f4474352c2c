/**
 * An informer: list, then watch from the list's resourceVersion, keeping a cache by "namespace/name" and calling
 * add/update/delete handlers. Unlike client-node's ListWatch (which stops on any error but 410 Gone) it never gives
 * up: every failure relists after a capped exponential backoff; 410 Gone relists at once; a normal server-side close
 * of the watch re-watches from the last seen version; a periodic relist re-delivers every cached object as an update
 * (resync); a watchdog aborts a watch that delivered neither events nor bookmarks for too long (a half-open
 * connection). `hasSynced()` turns true after the first complete list.
 */
import type { Logger } from 'pino';
import { realClock, sleep, type Clock, type TimerHandle } from './clock.js';
import { keyString, type ListWatcher, type WatchEvent } from './client.js';
import { KubeApiError, type KubeObject, type ResourceType } from './types.js';

/** How often an informer relists and re-delivers every cached object (resync) by default. */
export const DEFAULT_RESYNC_MS = 600_000;

export interface InformerHandlers<T extends KubeObject> {
  onAdd?(obj: T): void;
  /** Also called on resync with the cached object as `oldObj`. */
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions {
  type: ResourceType;
  source: ListWatcher;
  log: Logger;
  /** Undefined or '' = all namespaces. */
  namespace?: string;
  labelSelector?: string;
  clock?: Clock;
  /** Periodic relist and resync; 0 disables. Default 10 min. */
  resyncMs?: number;
  /** Restart a watch that was silent (no event, no bookmark) this long. Default 5.5 min. */
  watchdogMs?: number;
  /** Server-side watch timeout; default random 240–300 s so the server normally closes before the watchdog fires. */
  watchTimeoutSeconds?: () => number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

export interface InformerStats {
  lists: number;
  watches: number;
  failures: number;
  watchdogRestarts: number;
}

class ResyncDue extends Error {}
class WatchSilent extends Error {}

export class Informer<T extends KubeObject = KubeObject> {
  readonly type: ResourceType;
  readonly stats: InformerStats = { lists: 0, watches: 0, failures: 0, watchdogRestarts: 0 };
  private readonly cache = new Map<string, T>();
  private readonly handlers: InformerHandlers<T>[] = [];
  private readonly clock: Clock;
  private readonly log: Logger;
  private synced = false;
  private stopper: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private syncWaiters: (() => void)[] = [];

  constructor(private readonly opts: InformerOptions) {
    this.type = opts.type;
    this.clock = opts.clock ?? realClock;
    this.log = opts.log.child({ informer: `${opts.type.plural}.${opts.type.group || 'core'}` });
  }

  addHandlers(h: InformerHandlers<T>): void {
    this.handlers.push(h);
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list completed; rejects if the signal aborts first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(signal?.reason as Error);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  isRunning(): boolean {
    return this.loop !== undefined;
  }

  start(): void {
    if (this.loop) return;
    this.stopper = new AbortController();
    this.loop = this.run(this.stopper.signal).catch((err: unknown) => {
      this.log.error({ err }, 'informer loop ended unexpectedly');
    });
  }

  /** Stops the watch; the cache and synced state are dropped (a later start lists again). */
  async stop(): Promise<void> {
    this.stopper?.abort(new Error('informer stopped'));
    await this.loop;
    this.loop = undefined;
    this.stopper = undefined;
    this.synced = false;
    this.cache.clear();
  }

  private async run(stop: AbortSignal): Promise<void> {
    const initial = this.opts.backoffInitialMs ?? 800;
    const max = this.opts.backoffMaxMs ?? 30_000;
    const resyncMs = this.opts.resyncMs ?? DEFAULT_RESYNC_MS;
    let resourceVersion = '';
    let needList = true;
    let failures = 0;
    let lastList = 0;
    while (!stop.aborted) {
      const watchCtl = new AbortController();
      const abortWatch = (): void => watchCtl.abort(stop.reason);
      stop.addEventListener('abort', abortWatch, { once: true });
      let watchdog: TimerHandle | undefined;
      let resync: TimerHandle | undefined;
      try {
        if (needList) {
          this.stats.lists++;
          const res = await this.opts.source.listWithVersion<T>(
            this.opts.type,
            this.opts.namespace || undefined,
            {
              ...(this.opts.labelSelector ? { labelSelector: this.opts.labelSelector } : {}),
              signal: watchCtl.signal,
            },
          );
          this.replace(res.items);
          resourceVersion = res.resourceVersion;
          needList = false;
          lastList = this.clock.now();
          this.markSynced();
        }
        if (resyncMs > 0) {
          resync = this.clock.setTimer(
            () => watchCtl.abort(new ResyncDue()),
            Math.max(0, lastList + resyncMs - this.clock.now()),
          );
        }
        const watchdogMs = this.opts.watchdogMs ?? 330_000;
        const armWatchdog = (): void => {
          watchdog?.cancel();
          watchdog = this.clock.setTimer(() => watchCtl.abort(new WatchSilent()), watchdogMs);
        };
        armWatchdog();
        this.stats.watches++;
        await this.opts.source.watch<T>(
          this.opts.type,
          this.opts.namespace || undefined,
          {
            resourceVersion,
            timeoutSeconds: this.opts.watchTimeoutSeconds?.() ?? 240 + Math.floor(Math.random() * 60),
            ...(this.opts.labelSelector ? { labelSelector: this.opts.labelSelector } : {}),
            signal: watchCtl.signal,
          },
          (e) => {
            armWatchdog();
            failures = 0;
            const rv = this.apply(e);
            if (rv) resourceVersion = rv;
          },
        );
        // the server ended the watch (its timeout): continue from the last version without relisting
        failures = 0;
      } catch (err) {
        if (stop.aborted) break;
        const reason: unknown = watchCtl.signal.aborted ? watchCtl.signal.reason : err;
        needList = true;
        if (reason instanceof ResyncDue) continue;
        if (reason instanceof WatchSilent) {
          this.stats.watchdogRestarts++;
          this.log.warn(
            { watchdogMs: this.opts.watchdogMs ?? 330_000 },
            'watch silent for too long, restarting it',
          );
          continue;
        }
        if (reason instanceof KubeApiError && reason.reason === 'Gone') {
          this.log.debug('watch version expired (410 Gone), relisting');
          continue;
        }
        this.stats.failures++;
        const delay = Math.min(max, initial * Math.pow(2, failures++));
        this.log.warn({ err: reason, retryInMs: delay }, 'list/watch failed, retrying');
        try {
          await sleep(this.clock, delay, stop);
        } catch {
          break;
        }
      } finally {
        watchdog?.cancel();
        resync?.cancel();
        stop.removeEventListener('abort', abortWatch);
      }
    }
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  /** Applies one watch event; returns the resourceVersion to continue from. */
  private apply(e: WatchEvent<T>): string | undefined {
    const rv = e.object.metadata?.resourceVersion;
    if (e.type === 'BOOKMARK') return rv;
    const obj = withTypeMeta(e.object, this.opts.type);
    const key = keyString(obj.metadata);
    const old = this.cache.get(key);
    if (e.type === 'DELETED') {
      this.cache.delete(key);
      this.dispatch((h) => h.onDelete?.(old ?? obj));
    } else {
      this.cache.set(key, obj);
      if (old) this.dispatch((h) => h.onUpdate?.(old, obj));
      else this.dispatch((h) => h.onAdd?.(obj));
    }
    return rv;
  }

  /** A fresh list: adds new objects, re-delivers known ones as updates (resync), deletes vanished ones. */
  private replace(items: T[]): void {
    const seen = new Set<string>();
    for (const item of items) {
      const obj = withTypeMeta(item, this.opts.type);
      const key = keyString(obj.metadata);
      seen.add(key);
      const old = this.cache.get(key);
      this.cache.set(key, obj);
      if (old) this.dispatch((h) => h.onUpdate?.(old, obj));
      else this.dispatch((h) => h.onAdd?.(obj));
    }
    for (const [key, old] of this.cache) {
      if (seen.has(key)) continue;
      this.cache.delete(key);
      this.dispatch((h) => h.onDelete?.(old));
    }
  }

  private dispatch(fn: (h: InformerHandlers<T>) => void): void {
    for (const h of this.handlers) {
      try {
        fn(h);
      } catch (err) {
        this.log.error({ err }, 'informer event handler failed');
      }
    }
  }
}

function withTypeMeta<T extends KubeObject>(obj: T, type: ResourceType): T {
  if (obj.apiVersion && obj.kind) return obj;
  return { ...obj, apiVersion: type.group ? `${type.group}/${type.version}` : type.version, kind: type.kind };
}

/** What the manager needs of an informer: one {@link Informer}, or an {@link InformerGroup} over namespaces. */
export type CacheInformer<T extends KubeObject = KubeObject> = Pick<
  Informer<T>,
  'addHandlers' | 'hasSynced' | 'waitForSync' | 'get' | 'list' | 'start' | 'stop'
>;

/**
 * One informer per namespace behind one cache interface, for a controller that watches a list of namespaces: no
 * list or watch is ever cluster-wide, so namespace-scoped RBAC (RoleBindings per namespace) suffices. Keys are
 * "namespace/name", so the members never collide.
 */
export class InformerGroup<T extends KubeObject = KubeObject> implements CacheInformer<T> {
  constructor(private readonly members: readonly Informer<T>[]) {}

  addHandlers(h: InformerHandlers<T>): void {
    for (const member of this.members) member.addHandlers(h);
  }

  hasSynced(): boolean {
    return this.members.every((member) => member.hasSynced());
  }

  async waitForSync(signal?: AbortSignal): Promise<void> {
    await Promise.all(this.members.map((member) => member.waitForSync(signal)));
  }

  get(key: string): T | undefined {
    for (const member of this.members) {
      const obj = member.get(key);
      if (obj) return obj;
    }
    return undefined;
  }

  list(): T[] {
    return this.members.flatMap((member) => member.list());
  }

  start(): void {
    for (const member of this.members) member.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((member) => member.stop()));
  }
}
