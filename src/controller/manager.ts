/**
 * The Manager: controller-runtime's shape in TypeScript. Each registered controller gets an informer for its own
 * type (plus informers for watched types whose events map to keys of its type), a rate-limited de-duplicating work
 * queue and N workers. A reconcile gets a fresh `reconcileID`, a child logger carrying it and an AbortSignal.
 *
 * Result handling (as controller-runtime): a thrown error → `addRateLimited` (per-item exponential backoff);
 * `requeueAfterMs` → `forget` + `addAfter`; otherwise `forget`.
 *
 * Events never bypass a backoff the object caused itself (ADR 0026): an update of a controller's own type enqueues
 * only when something besides status changed ({@link changedBeyondStatus}: generation, labels, annotations such as
 * `liveupdate.dev/reconcile-requested-at`, deletion) — the controller's own status and finalizer writes, and with them
 * an error message that differs each time, never re-queue the object; watched types may filter their updates with a
 * predicate; a resync (the same resourceVersion delivered again) enqueues only keys that are not backing off and
 * were not reconciled successfully within the last half resync period (a periodic look at every object, not a second
 * reconcile of each one a burst just built: 5,000 new bundles were reconciled twice, issue 17).
 *
 * With leader election, informers and workers run only while this process leads. Losing the lease aborts in-flight
 * reconciles at once and ends `run` with {@link LeaseLostError} (the process exits non-zero, as controller-runtime
 * does; it never campaigns again); {@link Manager.holdsLease} fences every write meanwhile. Shutdown stops taking
 * work, waits up to the grace period for in-flight reconciles, then aborts them, and only then releases the lease.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { realClock, type Clock } from '../kube/clock.js';
import { keyString, parseKey, type ListWatcher } from '../kube/client.js';
import { DEFAULT_RESYNC_MS, Informer, InformerGroup, type CacheInformer } from '../kube/informer.js';
import { LeaderElector, LeaseLostError, type LeaseStore } from '../kube/leader-election.js';
import {
  KubeApiError,
  type KubeObject,
  type ObjectClient,
  type ObjectKey,
  type ResourceType,
} from '../kube/types.js';
import { WorkQueue, type RateLimiter } from '../kube/workqueue.js';
import type { RuntimeMetrics } from '../observability/metrics.js';
import { canonicalJson } from './common/status.js';
import { isProgrammingError, type Reconciler } from './reconciler-interface.js';

/** Read access to the manager's informer caches (only types some controller is for or watches). */
export interface CacheReader {
  /** Cached objects of a type, optionally of one namespace. Treat them as read-only. */
  list<T extends KubeObject>(type: ResourceType, namespace?: string): T[];
}

export interface WatchSpec {
  type: ResourceType;
  /** Keys of the controller's own type to reconcile when an object of `type` changes. */
  mapFn(obj: KubeObject, cache: CacheReader): ObjectKey | ObjectKey[] | null | undefined;
  /** Whether an update of the watched object matters to this controller (default: every update does). */
  updatePredicate?(oldObj: KubeObject, newObj: KubeObject): boolean;
}

/**
 * controller-runtime's GenerationChangedPredicate or'ed with its label and annotation predicates, plus deletion: true
 * unless only status, finalizers (or server-maintained metadata) changed. Finalizers are left out as in
 * controller-runtime: the reconcile that adds ours goes on with the patched object, and the event of that patch would
 * only run every new object a second, idle time (500 bundles: 1,000 reconciles instead of 500, issue 17).
 */
export function changedBeyondStatus(oldObj: KubeObject, newObj: KubeObject): boolean {
  const o = oldObj.metadata;
  const n = newObj.metadata;
  return (
    // Kinds without a generation (ConfigMaps, Secrets) have no status/spec split: every change counts.
    n.generation === undefined ||
    o.generation !== n.generation ||
    o.deletionTimestamp !== n.deletionTimestamp ||
    !sameJson(o.labels, n.labels) ||
    !sameJson(o.annotations, n.annotations)
  );
}

/** Only a generation change: for watched kinds whose status a controller does not read. */
export function generationChanged(oldObj: KubeObject, newObj: KubeObject): boolean {
  return (
    newObj.metadata.generation === undefined ||
    oldObj.metadata.generation !== newObj.metadata.generation ||
    oldObj.metadata.deletionTimestamp !== newObj.metadata.deletionTimestamp
  );
}

/** A periodic relist delivers the cached object again: same resourceVersion, nothing changed. */
function isResync(oldObj: KubeObject, newObj: KubeObject): boolean {
  const rv = newObj.metadata.resourceVersion;
  return rv !== undefined && rv === oldObj.metadata.resourceVersion;
}

function sameJson(a: unknown, b: unknown): boolean {
  return canonicalJson(a ?? null) === canonicalJson(b ?? null);
}

export interface ControllerSpec {
  name: string;
  forType: ResourceType;
  reconciler: Reconciler;
  watches?: WatchSpec[];
  /** Defaults to the manager's maxConcurrentReconciles. */
  maxConcurrentReconciles?: number;
}

/** Background work that runs only while this process leads (controller-runtime's leader-election Runnable). */
export interface Runnable {
  name: string;
  /** Runs until the signal aborts (end of the leadership term or shutdown); errors are logged. */
  run(signal: AbortSignal): Promise<void>;
}

export interface LeaderElectionSpec {
  identity: string;
  store: LeaseStore;
  /** Metric label for leader_election_master_status. */
  name: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface ManagerOptions {
  source: ListWatcher;
  log: Logger;
  metrics: RuntimeMetrics;
  clock?: Clock;
  /** '' or undefined = all namespaces. */
  namespace?: string;
  /** Several namespaces (one informer each, nothing cluster-wide); empty = {@link namespace}. */
  namespaces?: readonly string[];
  maxConcurrentReconciles?: number;
  shutdownGraceMs?: number;
  leaderElection?: LeaderElectionSpec;
  informer?: { resyncMs?: number; watchdogMs?: number; backoffInitialMs?: number; backoffMaxMs?: number };
  /** For tests: a rate limiter per controller queue. */
  rateLimiter?: () => RateLimiter;
}

export interface Readiness {
  ready: boolean;
  reason: string;
}

/** How long to wait for reconciles to return after their signal was aborted, before giving up on them. */
const ABORT_SETTLE_MS = 10_000;

export class Manager {
  private readonly controllers: ControllerSpec[] = [];
  private readonly runnables: Runnable[] = [];
  private readonly clock: Clock;
  private readonly log: Logger;
  private informers = new Map<string, CacheInformer>();
  private queues = new Map<string, WorkQueue>();
  /** The watched namespaces; empty = all. */
  private readonly scope: readonly string[];
  private elector: LeaderElector | undefined;
  private leading = false;
  private running = false;

  constructor(private readonly opts: ManagerOptions) {
    this.clock = opts.clock ?? realClock;
    this.log = opts.log;
    this.scope = opts.namespaces?.length ? [...opts.namespaces] : opts.namespace ? [opts.namespace] : [];
  }

  add(spec: ControllerSpec): void {
    if (this.running) throw new Error('controllers must be added before the manager runs');
    if (this.controllers.some((c) => c.name === spec.name))
      throw new Error(`duplicate controller name ${spec.name}`);
    this.controllers.push(spec);
    this.opts.metrics.controller.maxConcurrentReconciles.set({ controller: spec.name }, this.workersOf(spec));
    this.opts.metrics.controller.activeWorkers.set({ controller: spec.name }, 0);
  }

  addRunnable(runnable: Runnable): void {
    if (this.running) throw new Error('runnables must be added before the manager runs');
    this.runnables.push(runnable);
  }

  private workersOf(spec: ControllerSpec): number {
    return spec.maxConcurrentReconciles ?? this.opts.maxConcurrentReconciles ?? 4;
  }

  /** Leads (or works without election) until the signal aborts; resolves after a graceful shutdown. */
  async run(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error('manager already running');
    this.running = true;
    try {
      const le = this.opts.leaderElection;
      if (!le) {
        await this.work(signal);
        return;
      }
      // a failure of the work itself (a bug, not a lost lease) stops the manager instead of leading idly
      let fatal: Error | undefined;
      const failed = new AbortController();
      const stop = AbortSignal.any([signal, failed.signal]);
      this.elector = new LeaderElector({
        ...le,
        log: this.log,
        clock: this.clock,
        metrics: this.opts.metrics.leaderElection,
        onStartedLeading: (leaderSignal) =>
          this.work(leaderSignal).catch((err: unknown) => {
            fatal = err instanceof Error ? err : new Error(errorMessage(err));
            failed.abort(fatal);
          }),
      });
      // returns after losing the lease (work already stopped) or after shutdown (work drained, lease released)
      const ended = await this.elector.run(stop);
      if (fatal !== undefined) throw fatal;
      // As controller-runtime: a process that lost its lease does not campaign again. Work that ignored the abort
      // may still be running; ending the process ends it (the pod restarts and becomes a clean standby).
      if (ended === 'lost') throw new LeaseLostError();
    } finally {
      this.running = false;
    }
  }

  isLeader(): boolean {
    return this.leading;
  }

  /**
   * The write fence (true without leader election): every write of a leader-elected controller checks it, so a
   * process that was frozen past its renew deadline, or lost its lease, writes nothing (ADR 0009).
   */
  holdsLease(): boolean {
    if (!this.opts.leaderElection) return true;
    return this.leading && (this.elector?.holdsLease() ?? false);
  }

  /** Liveness: false only when the leader believes it leads but has not renewed for far too long. */
  healthy(): boolean {
    return this.elector?.healthy() ?? true;
  }

  /** Readiness: a standby that can reach the API server, or a leader (or unelected process) with synced caches. */
  readiness(): Readiness {
    if (this.opts.leaderElection) {
      if (!this.elector) return { ready: false, reason: 'leader election not started' };
      if (!this.leading) {
        return this.elector.reachable()
          ? { ready: true, reason: `standby (leader: ${this.elector.leader() || 'none'})` }
          : { ready: false, reason: 'lease not readable' };
      }
    } else if (!this.running) {
      return { ready: false, reason: 'not running' };
    }
    const unsynced = [...this.informers.entries()].filter(([, i]) => !i.hasSynced()).map(([k]) => k);
    if (this.informers.size === 0 || unsynced.length > 0)
      return { ready: false, reason: `caches not synced: ${unsynced.join(', ') || 'starting'}` };
    return { ready: true, reason: this.opts.leaderElection ? 'leader, caches synced' : 'caches synced' };
  }

  /** The cached objects of a type while this replica leads and the cache is synced, otherwise none. */
  cachedObjects(type: ResourceType): KubeObject[] {
    const inf = this.informers.get(informerId(type));
    return this.leading && inf?.hasSynced() ? inf.list() : [];
  }

  /**
   * Adds a key to a controller's queue while this replica works (controller-runtime's channel source): for runnables
   * that notice changes no informer delivers, such as a referenced Secret the controller may only `get`. False when
   * not working or no such controller.
   */
  enqueue(controller: string, key: ObjectKey): boolean {
    const queue = this.leading ? this.queues.get(controller) : undefined;
    queue?.add(keyString(key));
    return queue !== undefined;
  }

  /**
   * An ObjectClient whose get/list (without label selector) are served from the manager's informer caches while they
   * are synced, as controller-runtime's default client does; writes and everything else go to `client`. Reads may
   * lag the API server by the watch latency, so reconcilers must tolerate stale reads (writes with server-side apply
   * or merge patch, no resourceVersion preconditions). Cached objects are deep-copied on every read.
   */
  cachedClient(client: ObjectClient): ObjectClient {
    const cached = (type: ResourceType): CacheInformer | undefined => {
      const inf = this.informers.get(informerId(type));
      return inf?.hasSynced() ? inf : undefined;
    };
    const scope = this.scope;
    const inScope = (namespace: string | undefined): boolean =>
      scope.length === 0 || (namespace !== undefined && scope.includes(namespace));
    const list = <T extends KubeObject>(
      type: ResourceType,
      namespace?: string,
      labelSelector?: string,
    ): Promise<T[]> => {
      // Without a namespace, "all" means every watched namespace: never a cluster-wide list when scoped.
      const inf = !labelSelector && (!namespace || inScope(namespace)) ? cached(type) : undefined;
      if (!inf) {
        if (namespace || scope.length === 0) return client.list<T>(type, namespace, labelSelector);
        return Promise.all(scope.map((ns) => client.list<T>(type, ns, labelSelector))).then((lists) =>
          lists.flat(),
        );
      }
      const items = inf.list().filter((o) => !namespace || o.metadata.namespace === namespace);
      return Promise.resolve(items.map((o) => structuredClone(o) as T));
    };
    return {
      get: <T extends KubeObject>(type: ResourceType, key: ObjectKey): Promise<T> => {
        const inf = inScope(key.namespace) ? cached(type) : undefined;
        if (!inf) return client.get<T>(type, key);
        const obj = inf.get(key.namespace ? `${key.namespace}/${key.name}` : key.name);
        if (!obj)
          return Promise.reject(
            new KubeApiError('NotFound', 404, `${type.plural} "${key.name}" not found (cache)`),
          );
        return Promise.resolve(structuredClone(obj) as T);
      },
      list,
      // Filters the cached objects before copying: a reconcile that looks for a few objects among thousands does
      // not deep-copy them all (500 bundles: 250,000 copies of ~4 KiB for the version-conflict check, issue 17).
      listMatching: <T extends KubeObject>(
        type: ResourceType,
        namespace: string | undefined,
        match: (obj: T) => boolean,
      ): Promise<T[]> => {
        const inf = !namespace || inScope(namespace) ? cached(type) : undefined;
        if (!inf) return list<T>(type, namespace).then((items) => items.filter(match));
        const items = (inf.list() as T[]).filter(
          (o) => (!namespace || o.metadata.namespace === namespace) && match(o),
        );
        return Promise.resolve(items.map((o) => structuredClone(o)));
      },
      apply: (type, obj) => client.apply(type, obj),
      mergePatch: (type, key, patch) => client.mergePatch(type, key, patch),
      applyStatus: (type, obj) => client.applyStatus(type, obj),
      delete: (type, key) => client.delete(type, key),
    };
  }

  /** One working term: informers → queues → workers until the signal aborts. */
  private async work(signal: AbortSignal): Promise<void> {
    this.leading = true;
    const informers = new Map<string, CacheInformer>();
    const newInformer = (type: ResourceType, namespace: string | undefined): Informer =>
      new Informer({
        type,
        source: this.opts.source,
        log: this.log,
        clock: this.clock,
        ...(namespace ? { namespace } : {}),
        ...this.opts.informer,
      });
    const informerFor = (type: ResourceType): CacheInformer => {
      const id = informerId(type);
      let inf = informers.get(id);
      if (!inf) {
        inf =
          this.scope.length > 1
            ? new InformerGroup(this.scope.map((ns) => newInformer(type, ns)))
            : newInformer(type, this.scope[0]);
        informers.set(id, inf);
      }
      return inf;
    };
    const cache: CacheReader = {
      list: <T extends KubeObject>(type: ResourceType, namespace?: string): T[] => {
        const items = (informers.get(informerId(type))?.list() ?? []) as T[];
        return namespace === undefined ? items : items.filter((o) => o.metadata.namespace === namespace);
      },
    };
    const queues = new Map<string, WorkQueue>();
    const recents = new Map<string, RecentKeys>();
    const resyncMs = this.opts.informer?.resyncMs ?? DEFAULT_RESYNC_MS;
    for (const c of this.controllers) {
      // The keys reconciled without error lately: a resync skips them.
      const recent = new RecentKeys(this.clock, resyncMs / 2);
      recents.set(c.name, recent);
      const resyncAdd = (k: string): void => {
        if (!recent.has(k)) queue.addUnlessBackingOff(k);
      };
      const queue = new WorkQueue({
        name: c.name,
        clock: this.clock,
        metrics: this.opts.metrics.workqueue,
        ...(this.opts.rateLimiter ? { rateLimiter: this.opts.rateLimiter() } : {}),
      });
      queues.set(c.name, queue);
      const enqueue = (obj: KubeObject): void => queue.add(keyString(obj.metadata));
      informerFor(c.forType).addHandlers({
        onAdd: enqueue,
        onUpdate: (o, n) => {
          if (isResync(o, n)) resyncAdd(keyString(n.metadata));
          else if (changedBeyondStatus(o, n)) enqueue(n);
        },
        onDelete: enqueue,
      });
      for (const w of c.watches ?? []) {
        const enqueueMapped = (obj: KubeObject, resync = false): void => {
          let keys: ObjectKey | ObjectKey[] | null | undefined;
          try {
            keys = w.mapFn(obj, cache);
          } catch (err) {
            this.log.error({ err, controller: c.name, kind: w.type.kind }, 'watch map function failed');
            return;
          }
          for (const k of Array.isArray(keys) ? keys : keys ? [keys] : []) {
            if (resync) resyncAdd(keyString(k));
            else queue.add(keyString(k));
          }
        };
        informerFor(w.type).addHandlers({
          onAdd: (obj) => enqueueMapped(obj),
          onUpdate: (o, n) => {
            if (isResync(o, n)) {
              enqueueMapped(n, true);
              return;
            }
            if (w.updatePredicate && !w.updatePredicate(o, n)) return;
            enqueueMapped(o);
            enqueueMapped(n);
          },
          onDelete: (obj) => enqueueMapped(obj),
        });
      }
    }
    this.informers = informers;
    this.queues = queues;
    const workCtl = new AbortController();
    const workers: Promise<void>[] = [];
    const background: Promise<void>[] = [];
    let stopping = false;
    try {
      for (const inf of informers.values()) inf.start();
      this.log.info({ informers: [...informers.keys()] }, 'waiting for caches to sync');
      await Promise.all([...informers.values()].map((i) => i.waitForSync(signal)));
      this.log.info('caches synced, starting workers');
      for (const c of this.controllers) {
        const queue = queues.get(c.name) as WorkQueue;
        const recent = recents.get(c.name) as RecentKeys;
        for (let i = 0; i < this.workersOf(c); i++)
          workers.push(this.worker(c, queue, recent, workCtl.signal, () => stopping));
      }
      for (const r of this.runnables)
        background.push(
          r.run(signal).catch((err: unknown) => this.log.error({ err, runnable: r.name }, 'runnable failed')),
        );
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      stopping = true;
      const lost = signal.reason instanceof LeaseLostError;
      for (const q of queues.values()) q.shutdown();
      const all = Promise.all([...workers, ...background]);
      const grace = lost ? 0 : (this.opts.shutdownGraceMs ?? 30_000);
      this.log.info({ reason: errorMessage(signal.reason), graceMs: grace }, 'stopping workers');
      if (!(await settles(all, grace, this.clock))) {
        this.log.warn('aborting in-flight reconciles');
        workCtl.abort(signal.reason ?? new Error('stopped'));
        if (!(await settles(all, ABORT_SETTLE_MS, this.clock)))
          this.log.error('some reconciles ignored the abort signal');
      }
      workCtl.abort(new Error('stopped'));
      await Promise.all([...informers.values()].map((i) => i.stop()));
      this.leading = false;
      this.log.info('workers stopped');
    }
  }

  private async worker(
    c: ControllerSpec,
    queue: WorkQueue,
    recent: RecentKeys,
    signal: AbortSignal,
    stopping: () => boolean,
  ): Promise<void> {
    const m = this.opts.metrics.controller;
    for (;;) {
      const k = await queue.get();
      if (k === undefined) return;
      if (stopping()) {
        queue.done(k);
        return;
      }
      const key = parseKey(k);
      const reconcileID = randomUUID();
      const log = this.log.child({
        controller: c.name,
        namespace: key.namespace,
        name: key.name,
        reconcileID,
      });
      const start = this.clock.now();
      m.activeWorkers.inc({ controller: c.name });
      try {
        log.debug('reconciling');
        const result = await c.reconciler.reconcile(key, { reconcileID, log, signal });
        queue.forget(k);
        recent.add(k);
        if (result.terminalError !== undefined) {
          m.reconcileTotal.inc({ controller: c.name, result: 'error' });
          m.reconcileErrors.inc({ controller: c.name });
          m.terminalReconcileErrors.inc({ controller: c.name });
        } else if (result.requeueAfterMs !== undefined && result.requeueAfterMs > 0) {
          queue.addAfter(k, result.requeueAfterMs);
          m.reconcileTotal.inc({ controller: c.name, result: 'requeue_after' });
        } else {
          m.reconcileTotal.inc({ controller: c.name, result: 'success' });
        }
        log.debug({ requeueAfterMs: result.requeueAfterMs }, 'reconciled');
      } catch (err) {
        m.reconcileTotal.inc({ controller: c.name, result: 'error' });
        m.reconcileErrors.inc({ controller: c.name });
        if (isProgrammingError(err)) m.reconcilePanics.inc({ controller: c.name });
        if (signal.aborted) {
          log.info({ err }, 'reconcile aborted');
        } else {
          queue.addRateLimited(k);
          log.error({ err, retries: queue.numRequeues(k) }, 'reconciler error');
        }
      } finally {
        m.reconcileTime.observe({ controller: c.name }, (this.clock.now() - start) / 1000);
        m.activeWorkers.dec({ controller: c.name });
        queue.done(k);
      }
    }
  }
}

/** Keys seen within a time window; entries older than the window are swept as the set grows. */
class RecentKeys {
  private readonly at = new Map<string, number>();
  private sweepAt = 1024;

  constructor(
    private readonly clock: Clock,
    private readonly windowMs: number,
  ) {}

  add(key: string): void {
    this.at.delete(key);
    this.at.set(key, this.clock.now());
    if (this.at.size < this.sweepAt) return;
    // insertion order is time order: drop from the oldest until one is recent
    const cutoff = this.clock.now() - this.windowMs;
    for (const [k, t] of this.at) {
      if (t > cutoff) break;
      this.at.delete(k);
    }
    this.sweepAt = Math.max(1024, this.at.size * 2);
  }

  has(key: string): boolean {
    const t = this.at.get(key);
    return t !== undefined && this.clock.now() - t < this.windowMs;
  }
}

function informerId(type: ResourceType): string {
  return `${type.plural}.${type.group || 'core'}/${type.version}`;
}

/** True if p settled within ms. */
async function settles(p: Promise<unknown>, ms: number, clock: Clock): Promise<boolean> {
  let timer: { cancel(): void } | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = clock.setTimer(() => resolve(false), ms);
  });
  const result = await Promise.race([p.then(() => true as const), timeout]);
  timer?.cancel();
  return result;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
