/**
 * LiveUpdateChannel reconciler: resolves the live bundle and the optional rollout bundle (same app, Ready) and shows
 * in status what devices on the channel are served, as published in the app's release index. Publishing itself is
 * the app's job: the manager maps channel events to the app's key ({@link appKeyForChannel}).
 */
import {
  APP_RESOURCE,
  BUILTIN_BUNDLE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  ConditionType,
  Reason,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
  type LiveUpdateChannelStatus,
  type LiveUpdateChannelStatusRollout,
  type LiveUpdateChannelStatusStatsRollout,
  RESUME_ROLLOUT_ANNOTATION,
} from '../../api/v1alpha1/index.js';
import { isNotFound, type EventRecorder, type ObjectClient, type ObjectKey } from '../../kube/types.js';
import { parseDuration } from '../common/duration.js';
import { listWhere } from '../common/list.js';
import { layoutForApp } from '../common/layout.js';
import type { ChannelLabels, ControllerDomainMetrics } from '../metrics.js';
import { emptyFigures, type AppTelemetry, type VersionFigures } from '../telemetry/fleet-stats.js';
import type { FleetTelemetry } from '../telemetry/fleet-stats.js';
import { judgeRollout } from '../telemetry/rollout-health.js';
import { currentRolloutId, haltApplies, rolloutStateOf } from './rollout-state.js';
import { findCondition, removeCondition, rfc3339, setCondition } from '../common/conditions.js';
import { StallingError, WaitingError } from '../common/errors.js';
import {
  reconcileObject,
  type KindSteps,
  type StepContext,
  type StepsResult,
} from '../common/reconcile-object.js';
import { isServable, rolloutId, roundPercentage } from '../publishing/render.js';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../reconciler-interface.js';
import { deviceNameHolders, deviceNameOf } from './device-name.js';

export interface ChannelReconcilerOptions {
  client: ObjectClient;
  recorder: EventRecorder;
  now?: () => Date;
  /**
   * How long a channel waiting for a bundle or its app looks again on its own at first; the wait then grows with the
   * time waited, up to {@link maxDependencyRequeueMs}. A safety net: the bundle and app watches wake it (ADR 0040).
   */
  dependencyRequeueMs?: number;
  /** The longest a waiting channel goes without looking again on its own (default 5 minutes). */
  maxDependencyRequeueMs?: number;
  /** Fleet telemetry (stats rollups): without it, status.stats stays empty and failure thresholds are not judged. */
  telemetry?: FleetTelemetry;
  /** The operator's storage prefix (an app's spec.storage.prefix replaces it). */
  storagePrefix?: string;
  /** How often a channel looks at its telemetry again; also the bound on its status writes. */
  telemetryIntervalMs?: number;
  metrics?: ControllerDomainMetrics;
}

/** Default of LiveUpdateApp spec.statsRetention. */
const DEFAULT_STATS_RETENTION = '720h';

/** The app whose index a channel is part of: the manager enqueues it for every channel event. */
export function appKeyForChannel(channel: LiveUpdateChannel): ObjectKey {
  return { namespace: channel.metadata.namespace ?? '', name: channel.spec.app };
}

/** The channels a bundle event concerns (the manager enqueues them from its channel cache). */
export function channelKeysForBundle(
  bundle: LiveUpdateBundle,
  channels: readonly LiveUpdateChannel[],
): ObjectKey[] {
  return channels
    .filter(
      (c) =>
        c.metadata.namespace === bundle.metadata.namespace &&
        c.spec.app === bundle.spec.app &&
        (c.spec.bundle === bundle.metadata.name || c.spec.rollout?.bundle === bundle.metadata.name),
    )
    .map((c) => ({ namespace: c.metadata.namespace ?? '', name: c.metadata.name }));
}

interface Resolved {
  name: string;
  version: string;
}

export class ChannelReconciler implements Reconciler, KindSteps<LiveUpdateChannel, LiveUpdateChannelStatus> {
  readonly type = CHANNEL_RESOURCE;
  readonly transientReason = Reason.ProgressingWithRetry;
  private readonly requeueMs: number;
  private readonly maxRequeueMs: number;

  constructor(private readonly opts: ChannelReconcilerOptions) {
    this.requeueMs = opts.dependencyRequeueMs ?? 10_000;
    this.maxRequeueMs = Math.max(this.requeueMs, opts.maxDependencyRequeueMs ?? 300_000);
  }

  reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult> {
    return reconcileObject(this.opts, this, key, ctx);
  }

  async reconcileLive(
    channel: LiveUpdateChannel,
    status: LiveUpdateChannelStatus,
    ctx: StepContext,
  ): Promise<StepsResult> {
    const waitMs = this.waitMs(status, ctx.now());
    const app = await this.getApp(channel, waitMs);
    await this.checkDeviceName(channel);
    const conditions = (status.conditions ??= []);
    const generation = channel.metadata.generation ?? 0;
    let live: Resolved;
    let rollout: Resolved | undefined;
    try {
      live = await this.resolveBundle(channel, channel.spec.bundle, waitMs);
      rollout = channel.spec.rollout
        ? await this.resolveBundle(channel, channel.spec.rollout.bundle, waitMs)
        : undefined;
    } catch (error) {
      if (error instanceof StallingError || error instanceof WaitingError) {
        setCondition(
          conditions,
          {
            type: ConditionType.BundlesResolved,
            status: 'False',
            reason: error.reason,
            message: error.message,
            observedGeneration: generation,
          },
          ctx.now(),
        );
      }
      throw error;
    }
    setCondition(
      conditions,
      {
        type: ConditionType.BundlesResolved,
        status: 'True',
        reason: Reason.BundlesResolved,
        message: rollout ? `${live.name} and rollout ${rollout.name} are Ready` : `${live.name} is Ready`,
        observedGeneration: generation,
      },
      ctx.now(),
    );
    const prior = status.rollout;
    this.showServed(channel, app, status);
    let rolloutFigures: VersionFigures | undefined;
    if (this.opts.telemetry) {
      const telemetry = await this.opts.telemetry.read(
        layoutForApp(app, this.opts.storagePrefix),
        { namespace: channel.metadata.namespace ?? '', name: app.metadata.name },
        parseDuration(app.spec.statsRetention ?? DEFAULT_STATS_RETENTION) ||
          parseDuration(DEFAULT_STATS_RETENTION),
        ctx.signal,
      );
      this.showStats(channel, app, status, telemetry, live, rollout);
      // Judged: the figures of the spec's rollout version. Until the app publishes a new rollout bundle,
      // status.stats shows the served one, whose failures must not halt its replacement.
      if (rollout)
        rolloutFigures =
          telemetry.channels.get(channel.metadata.name)?.versions.get(rollout.version) ?? emptyFigures();
    }
    this.judgeRollout(channel, app, status, prior, rollout, rolloutFigures, ctx);
    const result = this.checkPublished({ ...channel, status }, app, live, rollout, waitMs);
    return this.opts.telemetry && this.opts.telemetryIntervalMs
      ? { ...result, requeueAfterMs: this.opts.telemetryIntervalMs }
      : result;
  }

  /** Figures of the stable and rollout versions (devices, installs, failures by action) into status and metrics. */
  private showStats(
    channel: LiveUpdateChannel,
    app: LiveUpdateApp,
    status: LiveUpdateChannelStatus,
    telemetry: AppTelemetry,
    live: Resolved,
    rollout: Resolved | undefined,
  ): void {
    const figures = telemetry.channels.get(channel.metadata.name);
    const labels = this.labels(channel, app);
    const stableVersion = status.servingVersion ?? live.version;
    const rolloutVersion = rollout ? (status.rollout?.version ?? rollout.version) : undefined;
    // Adoption among the devices seen on the two served versions (a device also reports its old version, e.g.
    // builtin, in the same window: counting every version would count it twice).
    const seen = [stableVersion, rolloutVersion].reduce(
      (n, v) => n + (v === undefined ? 0 : (figures?.versions.get(v)?.devices ?? 0)),
      0,
    );
    const track = (version: string | undefined): LiveUpdateChannelStatusStatsRollout | undefined => {
      if (version === undefined) return undefined;
      const f = figures?.versions.get(version) ?? emptyFigures();
      return {
        version,
        devices: f.devices,
        installs: f.installs,
        failures: f.failures,
        failuresByAction: f.failuresByAction,
        failurePercent: percent(Math.min(f.failures, f.samples), f.samples),
        adoptionPercent: percent(f.devices, seen),
      };
    };
    const stable = track(stableVersion);
    const rolloutTrack = track(rolloutVersion);
    status.stats = {
      ...(telemetry.lastUpdateTime ? { lastUpdateTime: telemetry.lastUpdateTime } : {}),
      ...(telemetry.windowStart ? { windowStart: telemetry.windowStart } : {}),
      ...(stable ? { stable } : {}),
      ...(rolloutTrack ? { rollout: rolloutTrack } : {}),
    };
    this.opts.metrics?.channelTelemetry(labels, 'stable', stable && withDefaults(stable));
    this.opts.metrics?.channelTelemetry(labels, 'rollout', rolloutTrack && withDefaults(rolloutTrack));
  }

  /**
   * Failure thresholds: keeps a halt while it applies, records a baseline when a person lifted it, and halts the
   * rollout when the rollout version's failure rate (since the baseline) is above the limit with confidence.
   */
  private judgeRollout(
    channel: LiveUpdateChannel,
    app: LiveUpdateApp,
    status: LiveUpdateChannelStatus,
    prior: LiveUpdateChannelStatusRollout | undefined,
    rollout: Resolved | undefined,
    figures: VersionFigures | undefined,
    ctx: StepContext,
  ): void {
    const conditions = (status.conditions ??= []);
    const labels = this.labels(channel, app);
    const id = currentRolloutId(channel);
    const spec = channel.spec.rollout;
    if (!spec || !rollout || id === undefined) {
      removeCondition(conditions, ConditionType.RolloutHalted);
      this.opts.metrics?.rolloutHalted(labels, false);
      return;
    }
    const samplesNow = figures?.samples ?? 0;
    const failuresNow = figures?.failures ?? 0;
    let halted = prior?.halted;
    let baseline = prior?.baseline?.id === id ? prior.baseline : undefined;
    // A rollout not served yet whose version already has figures (a same-version rebuild after a halt, or an earlier
    // rollout of that version in the window): those belong to another rollout, count from here.
    if (!baseline && status.rollout?.id !== id && (samplesNow > 0 || failuresNow > 0))
      baseline = { id, samples: samplesNow, failures: failuresNow };
    if (halted && !haltApplies(channel, halted)) {
      if (halted.id === id) {
        baseline = { id, samples: samplesNow, failures: failuresNow };
        this.opts.recorder.event(
          channel,
          'Normal',
          Reason.RolloutResumed,
          `rollout ${rollout.version} resumed at ${spec.percentage}%; failures are counted again from here`,
        );
      }
      halted = undefined;
    }
    const thresholds = spec.failureThresholds;
    if (!halted && thresholds && figures) {
      const verdict = judgeRollout(
        failuresNow - (baseline?.failures ?? 0),
        samplesNow - (baseline?.samples ?? 0),
        { maxFailurePercent: thresholds.maxFailurePercent, minSamples: thresholds.minSamples ?? 100 },
      );
      if (verdict.exceeded) {
        const action = thresholds.onFailure ?? 'Pause';
        const token = channel.metadata.annotations?.[RESUME_ROLLOUT_ANNOTATION];
        halted = {
          action,
          id,
          percentage: roundPercentage(spec.percentage),
          ...(token !== undefined ? { resumeToken: token } : {}),
          time: rfc3339(ctx.now()),
          samples: verdict.samples,
          failures: verdict.failures,
          failurePercent: verdict.failurePercent,
          lowerBoundPercent: verdict.lowerBoundPercent,
        };
        const message = haltMessage(rollout.version, halted, thresholds.maxFailurePercent);
        ctx.log.warn({ action, ...verdict }, 'rollout halted by its failure threshold');
        this.opts.recorder.event(channel, 'Warning', ConditionType.RolloutHalted, message);
        this.opts.metrics?.rolloutHalt(labels, action);
      }
    }
    if (status.rollout ?? halted ?? baseline) {
      status.rollout ??= { bundle: rollout.name, version: rollout.version, id };
      if (halted) status.rollout.halted = halted;
      if (baseline) status.rollout.baseline = baseline;
    }
    this.opts.metrics?.rolloutHalted(labels, halted !== undefined);
    if (!halted) {
      removeCondition(conditions, ConditionType.RolloutHalted);
      return;
    }
    setCondition(
      conditions,
      {
        type: ConditionType.RolloutHalted,
        status: 'True',
        reason: Reason.FailureThresholdExceeded,
        message: haltMessage(rollout.version, halted, thresholds?.maxFailurePercent),
        observedGeneration: channel.metadata.generation ?? 0,
      },
      ctx.now(),
    );
  }

  private labels(channel: LiveUpdateChannel, app: LiveUpdateApp): ChannelLabels {
    return {
      namespace: channel.metadata.namespace ?? '',
      app: app.metadata.name,
      channel: channel.metadata.name,
    };
  }

  /**
   * Device-visible names are unique per app; the holder is decided as the index renderer decides it. Only the other
   * channels with the same name are read: a copy of every channel of the namespace in each channel reconcile was most
   * of the controller's time with 1,000 channels in one namespace (issue 17).
   */
  private async checkDeviceName(channel: LiveUpdateChannel): Promise<void> {
    const name = deviceNameOf(channel);
    const rivals = await listWhere<LiveUpdateChannel>(
      this.opts.client,
      CHANNEL_RESOURCE,
      channel.metadata.namespace ?? '',
      (c) =>
        c.spec.app === channel.spec.app &&
        !c.metadata.deletionTimestamp &&
        c.metadata.name !== channel.metadata.name &&
        deviceNameOf(c) === name,
    );
    if (rivals.length === 0) return;
    const holder = deviceNameHolders([channel, ...rivals]).get(name);
    if (holder && holder.metadata.name !== channel.metadata.name) {
      // Not stalling: the conflict ends when the other channel is renamed or deleted, which is not an event of this
      // channel, so look again later.
      throw new WaitingError(
        Reason.DeviceNameConflict,
        `device-visible name ${name} is already used by LiveUpdateChannel ${holder.metadata.name} of app ${channel.spec.app}; this channel is not served`,
        60_000,
      );
    }
  }

  /**
   * When a channel that waits for its bundles or app looks again on its own: as long as it has waited (Ready False
   * since), between the first wait and the cap. The watches wake it when what it waits for changes; this timer only
   * bounds how long a missed event could leave it stale, so 1,000 waiting channels do not poll 100 times a second.
   */
  private waitMs(status: LiveUpdateChannelStatus, now: Date): number {
    const ready = findCondition(status.conditions, ConditionType.Ready);
    const since = ready?.status === 'False' ? Date.parse(ready.lastTransitionTime) : NaN;
    const waited = Number.isFinite(since) ? now.getTime() - since : 0;
    return Math.min(this.maxRequeueMs, Math.max(this.requeueMs, waited));
  }

  private async getApp(channel: LiveUpdateChannel, waitMs: number): Promise<LiveUpdateApp> {
    try {
      return await this.opts.client.get<LiveUpdateApp>(APP_RESOURCE, appKeyForChannel(channel));
    } catch (error) {
      if (isNotFound(error)) {
        throw new WaitingError(Reason.AppNotFound, `LiveUpdateApp ${channel.spec.app} not found`, waitMs);
      }
      throw error;
    }
  }

  private async resolveBundle(channel: LiveUpdateChannel, name: string, waitMs: number): Promise<Resolved> {
    if (name === BUILTIN_BUNDLE) return { name, version: BUILTIN_BUNDLE };
    let bundle: LiveUpdateBundle;
    try {
      bundle = await this.opts.client.get<LiveUpdateBundle>(BUNDLE_RESOURCE, {
        namespace: channel.metadata.namespace ?? '',
        name,
      });
    } catch (error) {
      if (isNotFound(error))
        throw new WaitingError(Reason.BundleNotFound, `LiveUpdateBundle ${name} not found`, waitMs);
      throw error;
    }
    if (bundle.spec.app !== channel.spec.app) {
      throw new StallingError(
        Reason.BundleAppMismatch,
        `LiveUpdateBundle ${name} belongs to app ${bundle.spec.app}, not ${channel.spec.app}`,
      );
    }
    if (!isServable(bundle, channel.spec.app)) {
      const ready = findCondition(bundle.status?.conditions, ConditionType.Ready);
      const why = ready ? `${ready.reason}: ${ready.message}` : 'not reconciled yet';
      const message = `LiveUpdateBundle ${name} is not Ready (${why}); devices keep the previously published bundle`;
      if (findCondition(bundle.status?.conditions, ConditionType.Stalled)?.status === 'True') {
        throw new StallingError(Reason.BundleNotReady, message);
      }
      throw new WaitingError(Reason.BundleNotReady, message, waitMs);
    }
    return { name, version: bundle.spec.version };
  }

  /** What the app's published index says this channel serves. */
  private showServed(channel: LiveUpdateChannel, app: LiveUpdateApp, status: LiveUpdateChannelStatus): void {
    const summary = app.status?.channels?.find((c) => c.name === channel.metadata.name);
    delete status.servingBundle;
    delete status.servingVersion;
    delete status.rollout;
    if (!summary) return;
    if (summary.bundle) status.servingBundle = summary.bundle;
    const version = summary.bundle === BUILTIN_BUNDLE ? BUILTIN_BUNDLE : summary.version;
    if (version) status.servingVersion = version;
    if (summary.rolloutBundle) {
      status.rollout = {
        bundle: summary.rolloutBundle,
        ...(summary.rolloutVersion ? { version: summary.rolloutVersion } : {}),
        ...(summary.rolloutPercentage !== undefined ? { percentage: summary.rolloutPercentage } : {}),
        paused: summary.rolloutState === 'Paused',
        ...(summary.rolloutState === 'RolledBack' ? { rolledBack: true } : {}),
        id: rolloutId(channel.metadata.namespace ?? '', channel.metadata.name, summary.rolloutBundle),
      };
    }
  }

  /** Ready once the app's index serves what the spec asks for. */
  private checkPublished(
    channel: LiveUpdateChannel,
    app: LiveUpdateApp,
    live: Resolved,
    rollout: Resolved | undefined,
    waitMs: number,
  ): StepsResult {
    const summary = app.status?.channels?.find((c) => c.name === channel.metadata.name);
    const state = rolloutStateOf(channel);
    const published =
      summary?.bundle === live.name &&
      summary.rolloutBundle === rollout?.name &&
      (rollout === undefined ||
        (summary.rolloutPercentage === roundPercentage(channel.spec.rollout?.percentage ?? 0) &&
          (summary.rolloutState ?? 'Active') === state));
    if (!published) {
      throw new WaitingError(
        Reason.Progressing,
        `waiting for LiveUpdateApp ${app.metadata.name} to publish ${live.name}`,
        waitMs,
      );
    }
    const held = state === 'Paused' ? ' (paused)' : state === 'RolledBack' ? ' (rolled back)' : '';
    const rolloutText = rollout ? `; rollout ${rollout.version} to ${summary.rolloutPercentage}%${held}` : '';
    return { reason: Reason.Succeeded, message: `serving ${live.version}${rolloutText}` };
  }

  reconcileDelete(channel: LiveUpdateChannel, status: LiveUpdateChannelStatus) {
    removeCondition((status.conditions ??= []), ConditionType.BundlesResolved);
    this.opts.metrics?.forgetChannel({
      namespace: channel.metadata.namespace ?? '',
      app: channel.spec.app,
      channel: channel.metadata.name,
    });
    return Promise.resolve({ done: true as const });
  }
}

function percent(part: number, whole: number): number {
  return whole > 0 ? Math.round((10_000 * part) / whole) / 100 : 0;
}

function withDefaults(t: LiveUpdateChannelStatusStatsRollout): VersionFigures & { failurePercent: number } {
  return {
    devices: t.devices ?? 0,
    installs: t.installs ?? 0,
    failures: t.failures ?? 0,
    failuresByAction: t.failuresByAction ?? {},
    samples: 0,
    failurePercent: t.failurePercent ?? 0,
  };
}

function haltMessage(
  version: string,
  halt: NonNullable<LiveUpdateChannelStatusRollout['halted']>,
  maxFailurePercent: number | undefined,
): string {
  const effect =
    halt.action === 'Rollback'
      ? `devices on ${version} are offered the stable bundle`
      : `devices on ${version} keep it, nobody new enters`;
  const limit = maxFailurePercent !== undefined ? ` > ${maxFailurePercent}%` : '';
  return (
    `rollout ${version} halted (${halt.action}): ${halt.failures} of ${halt.samples} devices failed ` +
    `(${halt.failurePercent}%, 95% lower bound ${halt.lowerBoundPercent}%${limit}); ${effect}. ` +
    `Resume: change spec.rollout.bundle or percentage, or set the ${RESUME_ROLLOUT_ANNOTATION} annotation to a new value`
  );
}
