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
  return {
    rootWrite(result) {
      rootWrites.inc({ result });
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
