/**
 * The metrics the runtime reports, as interfaces the runtime owns: src/observability implements them with prom-client
 * (client-go's workqueue_* and leader_election_* names), tests may pass anything shaped like them.
 */

/** One labelled series set: the queue's or the lease's name. */
type NameLabel = { name: string };

/** What a work queue reports at scrape time (seconds). */
export interface QueueProbe {
  unfinishedWorkSeconds(): number;
  longestRunningProcessorSeconds(): number;
}

/** workqueue_* metrics, labelled by queue name. */
export interface WorkqueueMetrics {
  readonly depth: { set(labels: NameLabel, value: number): void };
  readonly adds: { inc(labels: NameLabel): void };
  readonly queueDuration: { observe(labels: NameLabel, seconds: number): void };
  readonly workDuration: { observe(labels: NameLabel, seconds: number): void };
  readonly retries: { inc(labels: NameLabel): void };
  registerQueue(name: string, probe: QueueProbe): void;
  unregisterQueue(name: string): void;
}

/** leader_election_master_status: 1 while this process holds the lease, labelled by lease name. */
export interface LeaderElectionMetrics {
  readonly masterStatus: { set(labels: NameLabel, value: number): void };
}

/** Outcomes of the event recorder's writes: written, failed (logged), dropped (too many waiting). */
export interface EventMetrics {
  readonly events: { inc(labels: { result: 'written' | 'failed' | 'dropped' }): void };
}
