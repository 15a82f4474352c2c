/**
 * Prometheus metrics with controller-runtime's names, so dashboards and alerts written for Go operators work
 * unchanged. One registry per process; tests create their own. No device-level labels, ever.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EventMetrics, LeaderElectionMetrics, QueueProbe, WorkqueueMetrics } from '../kube/metrics.js';

export { Registry } from 'prom-client';

/** A fresh registry with the standard process_* and nodejs_* collectors. */
export function createRegistry(opts: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  return registry;
}

const QUEUE_BUCKETS = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10];
const RECONCILE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5,
  1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/** workqueue_* metrics (label `name`), as client-go's workqueue metrics provider registers them. */
export class PromWorkqueueMetrics implements WorkqueueMetrics {
  readonly depth: Gauge<'name'>;
  readonly adds: Counter<'name'>;
  readonly queueDuration: Histogram<'name'>;
  readonly workDuration: Histogram<'name'>;
  readonly retries: Counter<'name'>;
  private readonly probes = new Map<string, QueueProbe>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.depth = new Gauge({
      name: 'workqueue_depth',
      help: 'Current depth of workqueue',
      labelNames: ['name'],
      registers,
    });
    this.adds = new Counter({
      name: 'workqueue_adds_total',
      help: 'Total number of adds handled by workqueue',
      labelNames: ['name'],
      registers,
    });
    this.queueDuration = new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames: ['name'],
      buckets: QUEUE_BUCKETS,
      registers,
    });
    this.workDuration = new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes',
      labelNames: ['name'],
      buckets: QUEUE_BUCKETS,
      registers,
    });
    this.retries = new Counter({
      name: 'workqueue_retries_total',
      help: 'Total number of retries handled by workqueue',
      labelNames: ['name'],
      registers,
    });
    const probes = this.probes;
    new Gauge({
      name: 'workqueue_unfinished_work_seconds',
      help: 'How many seconds of work has been done that is in progress and has not been observed by work_duration',
      labelNames: ['name'],
      registers,
      collect() {
        for (const [name, p] of probes) this.set({ name }, p.unfinishedWorkSeconds());
      },
    });
    new Gauge({
      name: 'workqueue_longest_running_processor_seconds',
      help: 'How many seconds has the longest running processor for workqueue been running',
      labelNames: ['name'],
      registers,
      collect() {
        for (const [name, p] of probes) this.set({ name }, p.longestRunningProcessorSeconds());
      },
    });
  }

  registerQueue(name: string, probe: QueueProbe): void {
    this.probes.set(name, probe);
  }

  unregisterQueue(name: string): void {
    this.probes.delete(name);
  }
}

/** controller_runtime_* metrics (label `controller`). */
export class ControllerMetrics {
  readonly reconcileTotal: Counter<'controller' | 'result'>;
  readonly reconcileErrors: Counter<'controller'>;
  readonly terminalReconcileErrors: Counter<'controller'>;
  readonly reconcilePanics: Counter<'controller'>;
  readonly reconcileTime: Histogram<'controller'>;
  readonly maxConcurrentReconciles: Gauge<'controller'>;
  readonly activeWorkers: Gauge<'controller'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.reconcileTotal = new Counter({
      name: 'controller_runtime_reconcile_total',
      help: 'Total number of reconciliations per controller',
      labelNames: ['controller', 'result'],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: 'controller_runtime_reconcile_errors_total',
      help: 'Total number of reconciliation errors per controller',
      labelNames: ['controller'],
      registers,
    });
    this.terminalReconcileErrors = new Counter({
      name: 'controller_runtime_terminal_reconcile_errors_total',
      help: 'Total number of terminal reconciliation errors per controller',
      labelNames: ['controller'],
      registers,
    });
    this.reconcilePanics = new Counter({
      name: 'controller_runtime_reconcile_panics_total',
      help: 'Total number of reconciliation panics per controller',
      labelNames: ['controller'],
      registers,
    });
    this.reconcileTime = new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'],
      buckets: RECONCILE_BUCKETS,
      registers,
    });
    this.maxConcurrentReconciles = new Gauge({
      name: 'controller_runtime_max_concurrent_reconciles',
      help: 'Maximum number of concurrent reconciles per controller',
      labelNames: ['controller'],
      registers,
    });
    this.activeWorkers = new Gauge({
      name: 'controller_runtime_active_workers',
      help: 'Number of currently used workers per controller',
      labelNames: ['controller'],
      registers,
    });
  }
}

/** leader_election_master_status (1 while this process holds the lease), as client-go reports it. */
export class PromLeaderElectionMetrics implements LeaderElectionMetrics {
  readonly masterStatus: Gauge<'name'>;

  constructor(registry: Registry) {
    this.masterStatus = new Gauge({
      name: 'leader_election_master_status',
      help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master',
      labelNames: ['name'],
      registers: [registry],
    });
  }
}

/** liveupdate_events_total{result}: Kubernetes Events the controller wrote, failed to write, or dropped. */
export class PromEventMetrics implements EventMetrics {
  readonly events: Counter<'result'>;

  constructor(registry: Registry) {
    this.events = new Counter({
      name: 'liveupdate_events_total',
      help: 'Kubernetes Events recorded, by result: written, failed (logged) or dropped (too many writes waiting).',
      labelNames: ['result'],
      registers: [registry],
    });
  }
}

/**
 * rest_client_requests_total{method,code}: every request to the API server by HTTP method (a watch counts as GET)
 * and status code (`<error>` when no response came), as client-go registers it for controller-runtime. Wire it with
 * `new RestClient(kc, { onRequest: m.observe })`.
 */
export class RestClientMetrics {
  readonly requests: Counter<'method' | 'code'>;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: 'rest_client_requests_total',
      help: 'Number of HTTP requests, partitioned by status code and method.',
      labelNames: ['method', 'code'],
      registers: [registry],
    });
  }

  readonly observe = (method: string, code: string): void => {
    this.requests.inc({ method, code });
  };
}

/** All runtime metrics of one process, created once on its registry. */
export interface RuntimeMetrics {
  registry: Registry;
  workqueue: PromWorkqueueMetrics;
  controller: ControllerMetrics;
  leaderElection: PromLeaderElectionMetrics;
}

export function createRuntimeMetrics(registry: Registry): RuntimeMetrics {
  return {
    registry,
    workqueue: new PromWorkqueueMetrics(registry),
    controller: new ControllerMetrics(registry),
    leaderElection: new PromLeaderElectionMetrics(registry),
  };
}
