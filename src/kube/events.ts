/**
 * Kubernetes Events (events.k8s.io/v1) for humans running `kubectl describe` / `kubectl events`. Repeats of the same
 * (object, type, reason, message) within the series window update one Event's `series.count` instead of creating
 * new ones, as client-go's event broadcaster does. Recording never throws and never blocks the reconciler: writes
 * happen in the background, at most `concurrency` at a time and at most 1,000 waiting (more are dropped, as
 * client-go's broadcaster drops when its queue is full); failures are logged, and every outcome is counted.
 */
import type { Logger } from 'pino';
import { realClock, type Clock } from './clock.js';
import type { KubeClient } from './client.js';
import type { EventMetrics } from './metrics.js';
import type { EventRecorder, EventType, KubeObject, ResourceType } from './types.js';

export const EVENT_TYPE: ResourceType = {
  group: 'events.k8s.io',
  version: 'v1',
  kind: 'Event',
  plural: 'events',
  namespaced: true,
};

const SERIES_WINDOW_MS = 6 * 60_000;
const MAX_NOTE = 1024;
const MAX_TRACKED = 4096;
const MAX_PENDING = 1000;

interface Series {
  name: string;
  namespace: string;
  count: number;
  firstSeen: number;
  lastSeen: number;
  /** a write for this series is queued or running */
  writing: boolean;
  created: boolean;
  /** count the API server has seen */
  written: number;
}

export interface EventRecorderOptions {
  /** reportingController, e.g. liveupdate.dev/controller */
  controller: string;
  /** reportingInstance, e.g. the pod name */
  instance: string;
  log: Logger;
  clock?: Clock;
  /** Event writes in flight at once (default 4). */
  concurrency?: number;
  metrics?: EventMetrics;
}

export class KubeEventRecorder implements EventRecorder {
  private readonly series = new Map<string, Series>();
  /** Writes waiting or running. */
  private pending = 0;
  private running = 0;
  private readonly waiting: (() => Promise<void>)[] = [];
  private idle: { promise: Promise<void>; resolve: () => void } | undefined;
  private readonly clock: Clock;

  constructor(
    private readonly client: Pick<KubeClient, 'create' | 'mergePatch'>,
    private readonly opts: EventRecorderOptions,
  ) {
    this.clock = opts.clock ?? realClock;
  }

  event(obj: KubeObject, type: EventType, reason: string, message: string): void {
    try {
      const note = message.length > MAX_NOTE ? `${message.slice(0, MAX_NOTE - 3)}...` : message;
      const namespace = obj.metadata.namespace || 'default';
      const id = [
        obj.metadata.uid ?? `${namespace}/${obj.kind}/${obj.metadata.name}`,
        type,
        reason,
        note,
      ].join('\u0000');
      const now = this.clock.now();
      let s = this.series.get(id);
      if (s && now - s.lastSeen <= SERIES_WINDOW_MS) {
        s.count++;
        s.lastSeen = now;
      } else {
        s = {
          name: `${obj.metadata.name}.${now.toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`,
          namespace,
          count: 1,
          firstSeen: now,
          lastSeen: now,
          writing: false,
          created: false,
          written: 0,
        };
        this.series.delete(id);
        this.series.set(id, s);
        this.evictOld();
      }
      this.schedule(s, obj, type, reason, note);
    } catch (err) {
      this.opts.log.warn({ err }, 'failed to record event');
    }
  }

  private schedule(s: Series, obj: KubeObject, type: EventType, reason: string, note: string): void {
    if (s.writing) return; // the running write is followed by one with the latest count
    if (this.pending >= MAX_PENDING) {
      this.opts.metrics?.events.inc({ result: 'dropped' });
      this.opts.log.warn({ reason }, 'event dropped: too many pending event writes');
      return;
    }
    s.writing = true;
    this.pending++;
    this.waiting.push(() =>
      this.write(s, obj, type, reason, note)
        .then(
          () => this.opts.metrics?.events.inc({ result: 'written' }),
          (err: unknown) => {
            this.opts.metrics?.events.inc({ result: 'failed' });
            this.opts.log.warn(
              { err, reason, name: obj.metadata.name, namespace: s.namespace },
              'failed to record event',
            );
            s.written = s.count; // do not retry a failing write forever
          },
        )
        .finally(() => {
          s.writing = false;
          this.pending--;
          if (s.count > s.written) this.schedule(s, obj, type, reason, note);
        }),
    );
    this.startWrites();
  }

  private startWrites(): void {
    const limit = this.opts.concurrency ?? 4;
    while (this.running < limit && this.waiting.length > 0) {
      const next = this.waiting.shift()!;
      this.running++;
      void next().finally(() => {
        this.running--;
        this.startWrites();
        if (this.pending === 0 && this.idle) {
          this.idle.resolve();
          this.idle = undefined;
        }
      });
    }
  }

  /** Resolves once every queued event write has finished (for shutdown and tests). */
  async flush(): Promise<void> {
    if (this.pending === 0) return;
    if (!this.idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.idle = { promise, resolve };
    }
    await this.idle.promise;
  }

  private async write(
    s: Series,
    obj: KubeObject,
    type: EventType,
    reason: string,
    note: string,
  ): Promise<void> {
    const count = s.count;
    if (!s.created) {
      await this.client.create(EVENT_TYPE, {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name: s.name, namespace: s.namespace },
        eventTime: microTime(s.firstSeen),
        reportingController: this.opts.controller,
        reportingInstance: this.opts.instance,
        action: 'Reconcile',
        reason,
        note,
        type,
        regarding: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata.name,
          namespace: obj.metadata.namespace,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
        ...(count > 1 ? { series: { count, lastObservedTime: microTime(s.lastSeen) } } : {}),
      } as KubeObject);
      s.created = true;
      s.written = count;
      return;
    }
    await this.client.mergePatch(
      EVENT_TYPE,
      { namespace: s.namespace, name: s.name },
      {
        series: { count, lastObservedTime: microTime(s.lastSeen) },
      },
    );
    s.written = count;
  }

  private evictOld(): void {
    while (this.series.size > MAX_TRACKED) {
      const oldest = this.series.keys().next();
      if (oldest.done) return;
      this.series.delete(oldest.value);
    }
  }
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
