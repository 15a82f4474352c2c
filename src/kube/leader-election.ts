/**
 * Leader election on a coordination.k8s.io/v1 Lease, following client-go's leaderelection package:
 * - a candidate acquires the lease when it is free (no holder) or when the record has not changed for the record's
 *   own `leaseDurationSeconds` *as observed on the candidate's own clock* (never trusting the other replica's
 *   renewTime clock, nor assuming the holder uses our duration);
 * - the leader renews every retry period; if it cannot renew within the renew deadline it has lost the lease;
 * - every write carries the resourceVersion it read (optimistic concurrency), so two candidates cannot both win;
 * - on shutdown the leader first lets its work stop gracefully (still renewing), then releases the lease by clearing
 *   the holder, so a standby takes over at once instead of after the lease duration.
 * `onStartedLeading(signal)`: the signal aborts with {@link LeaseLostError} (stop now, someone else may already lead)
 * or {@link ShutdownError} (stop gracefully). {@link LeaderElector.holdsLease} is the fence every write checks: true
 * only while the last renewal is younger than the renew deadline by this process's clock, so a process that was
 * frozen (SIGSTOP, a long GC pause, a suspended VM) refuses to write before it even learns it lost the lease.
 */
import type { Logger } from 'pino';
import { realClock, sleep, type Clock } from './clock.js';
import type { KubeClient } from './client.js';
import { microTime } from './events.js';
import { KubeApiError, isConflict, isNotFound, type KubeObject, type ResourceType } from './types.js';
import type { LeaderElectionMetrics } from './metrics.js';

export const LEASE_TYPE: ResourceType = {
  group: 'coordination.k8s.io',
  version: 'v1',
  kind: 'Lease',
  plural: 'leases',
  namespaced: true,
};

export interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions: number;
}

export interface StoredLease {
  record: LeaseRecord;
  resourceVersion: string;
}

/** Where the lease lives (the API server, or a fake in unit tests). */
export interface LeaseStore {
  readonly description: string;
  /** null when the lease does not exist. */
  get(timeoutMs: number): Promise<StoredLease | null>;
  /** Throws KubeApiError AlreadyExists when someone created it first. */
  create(record: LeaseRecord, timeoutMs: number): Promise<StoredLease>;
  /** Throws KubeApiError Conflict when resourceVersion is stale. */
  update(record: LeaseRecord, resourceVersion: string, timeoutMs: number): Promise<StoredLease>;
}

export class LeaseLostError extends Error {
  constructor() {
    super('leader election lost');
    this.name = 'LeaseLostError';
  }
}

export class ShutdownError extends Error {
  constructor() {
    super('shutting down');
    this.name = 'ShutdownError';
  }
}

export interface LeaderElectorOptions {
  identity: string;
  store: LeaseStore;
  log: Logger;
  /** Name for the leader_election_master_status metric. */
  name: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  clock?: Clock;
  metrics?: LeaderElectionMetrics;
  onStartedLeading(signal: AbortSignal): void | Promise<void>;
  onStoppedLeading?(): void;
  onNewLeader?(identity: string): void;
}

export class LeaderElector {
  private readonly clock: Clock;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Logger;
  private observed: StoredLease | undefined;
  private observedRaw = '';
  private observedTime = 0;
  /** When this process last created or renewed the lease (its own clock); 0 when it never did. */
  private renewedAt = 0;
  private lastError: unknown;
  private reportedLeader = '';

  constructor(private readonly opts: LeaderElectorOptions) {
    this.clock = opts.clock ?? realClock;
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    if (this.leaseDurationMs <= this.renewDeadlineMs)
      throw new Error('leaseDuration must be greater than renewDeadline');
    if (this.renewDeadlineMs <= this.retryPeriodMs * 1.2)
      throw new Error('renewDeadline must be greater than retryPeriod*1.2');
    this.log = opts.log.child({ lease: opts.store.description, identity: opts.identity });
    opts.metrics?.masterStatus.set({ name: opts.name }, 0);
  }

  isLeader(): boolean {
    return this.observed?.record.holderIdentity === this.opts.identity;
  }

  /** The fence: this process led at its last renewal and that renewal is younger than the renew deadline. */
  holdsLease(): boolean {
    return this.isLeader() && this.clock.now() - this.renewedAt < this.renewDeadlineMs;
  }

  /** The holder last observed ('' when none). */
  leader(): string {
    return this.observed?.record.holderIdentity ?? '';
  }

  /**
   * Liveness as client-go's HealthzAdaptor: unhealthy only when we believe we lead but have not renewed for the lease
   * duration plus a tolerance (a stuck leader must be restarted).
   */
  healthy(toleranceMs = 20_000): boolean {
    if (!this.isLeader()) return true;
    return this.clock.now() <= this.observedTime + this.leaseDurationMs + toleranceMs;
  }

  /** The store answered the last attempt (for readiness of a standby). */
  reachable(): boolean {
    return this.lastError === undefined;
  }

  /**
   * One term: waits to acquire, leads until the lease is lost or the signal aborts, and returns which of the two
   * ended it. On abort it lets onStartedLeading's work finish (renewing meanwhile) and then releases the lease.
   */
  async run(signal: AbortSignal): Promise<'lost' | 'stopped'> {
    if (!(await this.acquire(signal))) return 'stopped';
    const leaderCtl = new AbortController();
    this.setLeading(true);
    this.log.info('became leader');
    const work = Promise.resolve()
      .then(() => this.opts.onStartedLeading(leaderCtl.signal))
      .catch((err: unknown) => this.log.error({ err }, 'leader work failed'));
    const stopRenew = new AbortController();
    const onShutdown = (): void => {
      leaderCtl.abort(new ShutdownError());
      void work.then(() => stopRenew.abort());
    };
    signal.addEventListener('abort', onShutdown, { once: true });
    if (signal.aborted) onShutdown();
    const lost = await this.renewLoop(stopRenew.signal);
    signal.removeEventListener('abort', onShutdown);
    if (lost) {
      this.log.error('leader election lost');
      leaderCtl.abort(new LeaseLostError());
      this.setLeading(false);
      await work;
    } else {
      await this.release();
      this.setLeading(false);
    }
    this.opts.onStoppedLeading?.();
    return lost ? 'lost' : 'stopped';
  }

  private setLeading(leading: boolean): void {
    this.opts.metrics?.masterStatus.set({ name: this.opts.name }, leading ? 1 : 0);
  }

  private async acquire(signal: AbortSignal): Promise<boolean> {
    this.log.info('attempting to acquire leader lease');
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew(this.renewDeadlineMs)) return true;
      try {
        await sleep(this.clock, this.retryPeriodMs * (1 + Math.random() * 1.2), signal);
      } catch {
        return false;
      }
    }
    return false;
  }

  /** Renews every retry period; resolves true when the lease was lost, false when stopped. */
  private async renewLoop(stop: AbortSignal): Promise<boolean> {
    while (!stop.aborted) {
      try {
        await sleep(this.clock, this.retryPeriodMs, stop);
      } catch {
        return false;
      }
      const deadline = this.clock.now() + this.renewDeadlineMs;
      let renewed = false;
      while (!renewed) {
        const remaining = deadline - this.clock.now();
        if (remaining <= 0) break;
        renewed = await this.tryAcquireOrRenew(remaining);
        if (renewed || !this.isLeader()) break;
        try {
          await sleep(
            this.clock,
            Math.min(this.retryPeriodMs, Math.max(0, deadline - this.clock.now())),
            stop,
          );
        } catch {
          return false;
        }
      }
      if (!renewed) return true;
    }
    return false;
  }

  private async tryAcquireOrRenew(timeoutMs: number): Promise<boolean> {
    const now = this.clock.now();
    const fresh: LeaseRecord = {
      holderIdentity: this.opts.identity,
      leaseDurationSeconds: Math.round(this.leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    try {
      const current = await this.opts.store.get(timeoutMs);
      if (!current) {
        this.setObserved(await this.opts.store.create(fresh, timeoutMs));
        this.renewedAt = now;
        this.lastError = undefined;
        return true;
      }
      this.setObserved(current);
      this.lastError = undefined;
      const holder = current.record.holderIdentity;
      // The holder's own duration decides when its lease expires (replicas may be configured differently).
      const recordDurationMs =
        current.record.leaseDurationSeconds > 0
          ? current.record.leaseDurationSeconds * 1000
          : this.leaseDurationMs;
      if (
        holder !== '' &&
        holder !== this.opts.identity &&
        this.observedTime + recordDurationMs > this.clock.now()
      ) {
        return false; // held by another candidate and not expired by our own observation
      }
      const record: LeaseRecord = { ...fresh, renewTime: microTime(this.clock.now()) };
      if (holder === this.opts.identity) {
        if (current.record.acquireTime) record.acquireTime = current.record.acquireTime;
        record.leaseTransitions = current.record.leaseTransitions;
      } else {
        record.leaseTransitions = current.record.leaseTransitions + 1;
      }
      this.setObserved(await this.opts.store.update(record, current.resourceVersion, timeoutMs));
      this.renewedAt = now;
      return true;
    } catch (err) {
      if (isConflict(err) || (err instanceof KubeApiError && err.reason === 'AlreadyExists')) {
        // the API server answered: another candidate wrote first
        this.lastError = undefined;
        this.log.debug('lease changed concurrently');
      } else {
        this.lastError = err;
        this.log.warn({ err }, 'failed to acquire or renew lease');
      }
      return false;
    }
  }

  private setObserved(lease: StoredLease): void {
    const raw = JSON.stringify(lease.record);
    if (raw !== this.observedRaw) {
      this.observedRaw = raw;
      this.observedTime = this.clock.now();
    }
    this.observed = lease;
    const holder = lease.record.holderIdentity;
    if (holder !== this.reportedLeader) {
      this.reportedLeader = holder;
      if (holder) this.log.info({ leader: holder }, 'new leader observed');
      this.opts.onNewLeader?.(holder);
    }
  }

  /** Gives the lease up at once (holder cleared, 1 s duration), as client-go's ReleaseOnCancel does. */
  private async release(): Promise<void> {
    if (!this.isLeader() || !this.observed) return;
    const now = microTime(this.clock.now());
    try {
      const released = await this.opts.store.update(
        {
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: now,
          renewTime: now,
          leaseTransitions: this.observed.record.leaseTransitions,
        },
        this.observed.resourceVersion,
        this.renewDeadlineMs,
      );
      this.setObserved(released);
      this.log.info('released leader lease');
    } catch (err) {
      this.log.warn({ err }, 'failed to release leader lease');
    }
  }
}

interface LeaseObject extends KubeObject {
  spec?: Partial<LeaseRecord>;
}

/** The Lease as stored in the API server. */
export class KubeLeaseStore implements LeaseStore {
  readonly description: string;
  constructor(
    private readonly client: KubeClient,
    private readonly namespace: string,
    private readonly name: string,
  ) {
    this.description = `${namespace}/${name}`;
  }

  async get(timeoutMs: number): Promise<StoredLease | null> {
    try {
      return toStored(
        await this.client.rest.request<LeaseObject>(
          'GET',
          `/apis/coordination.k8s.io/v1/namespaces/${this.namespace}/leases/${this.name}`,
          { timeoutMs },
        ),
      );
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async create(record: LeaseRecord, timeoutMs: number): Promise<StoredLease> {
    return toStored(
      await this.client.rest.request<LeaseObject>(
        'POST',
        `/apis/coordination.k8s.io/v1/namespaces/${this.namespace}/leases`,
        {
          body: this.object(record),
          timeoutMs,
        },
      ),
    );
  }

  async update(record: LeaseRecord, resourceVersion: string, timeoutMs: number): Promise<StoredLease> {
    return toStored(
      await this.client.rest.request<LeaseObject>(
        'PUT',
        `/apis/coordination.k8s.io/v1/namespaces/${this.namespace}/leases/${this.name}`,
        {
          body: this.object(record, resourceVersion),
          timeoutMs,
        },
      ),
    );
  }

  private object(record: LeaseRecord, resourceVersion?: string): LeaseObject {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.name,
        namespace: this.namespace,
        ...(resourceVersion ? { resourceVersion } : {}),
      },
      spec: record,
    };
  }
}

function toStored(obj: LeaseObject): StoredLease {
  const spec = obj.spec ?? {};
  return {
    resourceVersion: obj.metadata.resourceVersion ?? '',
    record: {
      holderIdentity: spec.holderIdentity ?? '',
      leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
      ...(spec.acquireTime ? { acquireTime: spec.acquireTime } : {}),
      ...(spec.renewTime ? { renewTime: spec.renewTime } : {}),
      leaseTransitions: spec.leaseTransitions ?? 0,
    },
  };
}
