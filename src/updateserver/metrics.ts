/**
 * liveupdate_* metrics of the update service. Labels are app ids (`app_id`, what devices send; the controller's
 * liveupdate_app_info maps it to the LiveUpdateApp's namespace and name), channel names, bundle versions, actions and
 * routes: never device or custom ids (personal data), and every label set is bounded (see StatsAggregator).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { BinnedHistogram } from '../observability/binned-histogram.js';

export class UpdateServerMetrics {
  readonly indexLoadErrors: Counter<'reason'>;
  readonly indexRevision: Gauge<'app_id'>;
  readonly indexApps: Gauge<'state'>;
  readonly deviceEvents: Counter<'app_id' | 'channel' | 'version' | 'action'>;
  readonly statsDropped: Counter<'reason'>;
  readonly statsFlushErrors: Counter;
  readonly requests: Counter<'route' | 'code'>;
  readonly updateAnswers: Counter<'app_id' | 'answer'>;
  /** Observed once per device request: a {@link BinnedHistogram}, not prom-client's (label hashing per observe). */
  readonly requestDuration: BinnedHistogram<'route'>;
  readonly rateLimited: Counter<'scope'>;
  readonly downloadBytes: Counter;
  private ageSource: () => Array<{ app: string; seconds: number }> = () => [];
  /** Counts kept outside prom-client on the hot path, added to the counters when they are collected. */
  private readonly pending: Array<() => void> = [];

  constructor(registry: Registry) {
    const registers = [registry];
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new Gauge({
      name: 'liveupdate_index_age_seconds',
      help: 'Seconds since this replica last confirmed that the release index it serves for an app is current',
      labelNames: ['app_id'],
      registers,
      collect() {
        this.reset();
        for (const { app, seconds } of self.ageSource()) this.set({ app_id: app }, seconds);
      },
    });
    this.indexRevision = new Gauge({
      name: 'liveupdate_index_revision',
      help: 'Revision of the release index served for an app',
      labelNames: ['app_id'],
      registers,
    });
    this.indexApps = new Gauge({
      name: 'liveupdate_index_apps',
      help: 'Apps the release root lists, by state: serving (current index), stale (a newer index was refused, the previous one serves), failed (no usable index: its devices get app_unavailable)',
      labelNames: ['state'],
      registers,
    });
    this.indexLoadErrors = new Counter({
      name: 'liveupdate_index_load_errors_total',
      help: 'Failed loads of the release root or of an app index (the previous index keeps serving)',
      labelNames: ['reason'],
      registers,
    });
    this.deviceEvents = new Counter({
      name: 'liveupdate_device_events_total',
      help: 'Device stats events by app, channel, bundle version and action (overflow series "_overflow")',
      labelNames: ['app_id', 'channel', 'version', 'action'],
      registers,
    });
    this.statsDropped = new Counter({
      name: 'liveupdate_device_events_dropped_total',
      help: 'Device stats events not counted, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.statsFlushErrors = new Counter({
      name: 'liveupdate_stats_rollup_errors_total',
      help: 'Failed writes of stats rollups to the object store',
      registers,
    });
    const flushPending = (): void => {
      for (const flush of self.pending) flush();
    };
    this.requests = new Counter({
      name: 'liveupdate_http_requests_total',
      help: 'Device API requests by route and HTTP status',
      labelNames: ['route', 'code'],
      registers,
      collect: flushPending,
    });
    this.updateAnswers = new Counter({
      name: 'liveupdate_update_answers_total',
      help: 'Update-check answers by app and answer (new_version, builtin, or the error code)',
      labelNames: ['app_id', 'answer'],
      registers,
      collect: flushPending,
    });
    this.requestDuration = new BinnedHistogram({
      name: 'liveupdate_http_request_duration_seconds',
      help: 'Device API request duration by route (downloads: time to first byte)',
      labelNames: ['route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.rateLimited = new Counter({
      name: 'liveupdate_rate_limited_total',
      help: 'Requests refused with 429 by scope (device or address)',
      labelNames: ['scope'],
      registers,
    });
    this.downloadBytes = new Counter({
      name: 'liveupdate_download_bytes_total',
      help: 'Bytes of bundles and delta files sent to devices',
      registers,
    });
  }

  /**
   * Registers a function that adds counts kept outside prom-client (plain numbers on the hot path: prom-client hashes
   * the labels of every `inc`) to the counters; it runs whenever `liveupdate_http_requests_total` or
   * `liveupdate_update_answers_total` is collected.
   */
  onCollect(flush: () => void): void {
    this.pending.push(flush);
  }

  setIndexAgeSource(source: () => Array<{ app: string; seconds: number }>): void {
    this.ageSource = source;
  }
}
