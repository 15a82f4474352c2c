/**
 * The controller's domain metrics (`liveupdate_*`), beside controller-runtime's. Labels are namespace and app names
 * and source types: bounded by what users declare, never device-level.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ControllerDomainMetrics {
  /** A new release index revision was written for an app. */
  indexPublished(namespace: string, app: string, revision: number): void;
  /** A bundle artifact (zip, plus delta files) was stored and verified. */
  artifactStored(namespace: string, app: string, bytes: number): void;
  /** One fetch of an artifact from its source ended. */
  artifactFetched(source: 'http' | 's3' | 'oci', result: 'success' | 'error', seconds: number): void;
  /** One attempt to write the root document: written, lost a race (conflict), restored a lost entry, or unreadable. */
  rootWrite(result: 'written' | 'conflict' | 'repaired' | 'unreadable'): void;
  /** Fleet telemetry of a channel's stable or rollout version, as written to its status. */
  channelTelemetry(
    labels: ChannelLabels,
    track: 'stable' | 'rollout',
    figures: TrackFigures | undefined,
  ): void;
  /** Whether the channel's rollout is halted by a failure threshold (1) or not (0). */
  rolloutHalted(labels: ChannelLabels, halted: boolean): void;
  /** A failure threshold halted a rollout. */
  rolloutHalt(labels: ChannelLabels, action: 'Pause' | 'Rollback'): void;
  /** A garbage collection run of an app ended. */
  gcRun(namespace: string, app: string, result: GcRunFigures): void;
  /** A channel was deleted: its series go. */
  forgetChannel(labels: ChannelLabels): void;
}

export interface ChannelLabels {
  namespace: string;
  app: string;
  channel: string;
}

export interface TrackFigures {
  devices: number;
  installs: number;
  failures: number;
  failuresByAction: Record<string, number>;
  failurePercent?: number;
}

export interface GcRunFigures {
  objects: number;
  bytes: number;
  errors: number;
  seconds: number;
  success: boolean;
}

export function createControllerDomainMetrics(registry: Registry): ControllerDomainMetrics {
  const publishes = new Counter({
    name: 'liveupdate_release_index_publishes_total',
    help: 'Release index revisions written, per app.',
    labelNames: ['namespace', 'app'],
    registers: [registry],
  });
  const revision = new Gauge({
    name: 'liveupdate_release_index_revision',
    help: 'Revision of the release index last written, per app.',
    labelNames: ['namespace', 'app'],
    registers: [registry],
  });
  const stored = new Counter({
    name: 'liveupdate_artifacts_stored_total',
    help: 'Bundle artifacts encrypted, stored and verified in the object store, per app.',
    labelNames: ['namespace', 'app'],
    registers: [registry],
  });
  const storedBytes = new Counter({
    name: 'liveupdate_artifact_stored_bytes_total',
    help: 'Bytes of bundle artifacts stored, per app.',
    labelNames: ['namespace', 'app'],
    registers: [registry],
  });
  const fetchSeconds = new Histogram({
    name: 'liveupdate_artifact_fetch_duration_seconds',
    help: 'Time to fetch an artifact from its source (download and hash), by source type and result.',
    labelNames: ['source', 'result'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const rootWrites = new Counter({
    name: 'liveupdate_root_document_writes_total',
    help: 'Attempts to write the root document: written, conflict (another writer won; retried on a fresh read), repaired (an entry a racing writer lost was restored), unreadable (left untouched).',
    labelNames: ['result'],
    registers: [registry],
  });
  const channelLabels = ['namespace', 'app', 'channel', 'track'];
  const devices = new Gauge({
    name: 'liveupdate_channel_devices',
    help: "Distinct devices seen in the current stats window on the channel's stable or rollout version.",
    labelNames: channelLabels,
    registers: [registry],
  });
  const installs = new Gauge({
    name: 'liveupdate_channel_installs',
    help: "Installs (set) of the channel's stable or rollout version reported by devices.",
    labelNames: channelLabels,
    registers: [registry],
  });
  const failures = new Gauge({
    name: 'liveupdate_channel_failures',
    help: "Failed downloads or installs of the channel's stable or rollout version, by Capgo action.",
    labelNames: [...channelLabels, 'action'],
    registers: [registry],
  });
  const failureRatio = new Gauge({
    name: 'liveupdate_channel_failure_ratio',
    help: "Failures over devices that reached an outcome, for the channel's stable or rollout version (0-1).",
    labelNames: channelLabels,
    registers: [registry],
  });
  const halted = new Gauge({
    name: 'liveupdate_rollout_halted',
    help: "Whether a failure threshold halted the channel's rollout (1) or not (0).",
    labelNames: ['namespace', 'app', 'channel'],
    registers: [registry],
  });
  const halts = new Counter({
    name: 'liveupdate_rollout_halts_total',
    help: 'Rollouts halted by a failure threshold, by action (Pause, Rollback).',
    labelNames: ['namespace', 'app', 'channel', 'action'],
    registers: [registry],
  });
  const gcObjects = new Counter({
    name: 'liveupdate_gc_objects_deleted_total',
    help: 'Objects deleted by garbage collection, per app.',
    labelNames: ['namespace', 'app'],
    registers: [registry],
  });
  const gcBytes = new Counter({
    name: 'liveupdate_gc_bytes_deleted_total',
    help: 'Bytes deleted by garbage collection, per app.',
    labelNames: ['namespace', 'app'],
    registers: [registry],
  });
  const gcErrors = new Counter({
    name: 'liveupdate_gc_errors_total',
    help: 'Garbage collection runs or deletions that failed, per app.',
    labelNames: ['namespace', 'app'],
    registers: [registry],
  });
  const gcLastRun = new Gauge({
    name: 'liveupdate_gc_last_run_timestamp_seconds',
    help: 'When the last garbage collection run of the app ended (Unix time), by result.',
    labelNames: ['namespace', 'app', 'result'],
    registers: [registry],
  });
  const gcSeconds = new Histogram({
    name: 'liveupdate_gc_duration_seconds',
    help: 'Duration of garbage collection runs.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  const failureSeries = new Map<string, Set<string>>();
  return {
    rootWrite(result) {
      rootWrites.inc({ result });
    },
    channelTelemetry(l, track, figures) {
      const labels = { ...l, track };
      const key = `${l.namespace}/${l.app}/${l.channel}/${track}`;
      const previous = failureSeries.get(key) ?? new Set<string>();
      const now = new Set(Object.keys(figures?.failuresByAction ?? {}));
      for (const action of previous) if (!now.has(action)) failures.remove({ ...labels, action });
      failureSeries.set(key, now);
      if (!figures) {
        devices.remove(labels);
        installs.remove(labels);
        failureRatio.remove(labels);
        return;
      }
      devices.set(labels, figures.devices);
      installs.set(labels, figures.installs);
      for (const [action, count] of Object.entries(figures.failuresByAction))
        failures.set({ ...labels, action }, count);
      failureRatio.set(labels, (figures.failurePercent ?? 0) / 100);
    },
    rolloutHalted(l, value) {
      halted.set(l, value ? 1 : 0);
    },
    rolloutHalt(l, action) {
      halts.inc({ ...l, action });
    },
    gcRun(namespace, app, r) {
      gcObjects.inc({ namespace, app }, r.objects);
      gcBytes.inc({ namespace, app }, r.bytes);
      if (r.errors > 0) gcErrors.inc({ namespace, app }, r.errors);
      gcLastRun.set({ namespace, app, result: r.success ? 'success' : 'error' }, Date.now() / 1000);
      gcSeconds.observe(r.seconds);
    },
    forgetChannel(l) {
      for (const track of ['stable', 'rollout'] as const) this.channelTelemetry(l, track, undefined);
      halted.remove(l);
    },
    indexPublished(namespace, app, rev) {
      publishes.inc({ namespace, app });
      revision.set({ namespace, app }, rev);
    },
    artifactStored(namespace, app, bytes) {
      stored.inc({ namespace, app });
      storedBytes.inc({ namespace, app }, bytes);
    },
    artifactFetched(source, result, seconds) {
      fetchSeconds.observe({ source, result }, seconds);
    },
  };
}
