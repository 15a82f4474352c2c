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
} from '../../api/v1alpha1/index.js';
import { isNotFound, type EventRecorder, type ObjectClient, type ObjectKey } from '../../kube/types.js';
import { findCondition, removeCondition, setCondition } from '../common/conditions.js';
import { StallingError, WaitingError } from '../common/errors.js';
import { reconcileObject, type KindSteps, type StepContext, type StepsResult } from '../common/reconcile.js';
import { isServable, rolloutId, roundPercentage } from '../publishing/render.js';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../reconciler.js';
import { deviceNameHolders, deviceNameOf } from './device-name.js';

export interface ChannelReconcilerOptions {
  client: ObjectClient;
  recorder: EventRecorder;
  now?: () => Date;
  /** How long to wait before looking again at a bundle or app that is not ready yet. */
  dependencyRequeueMs?: number;
}

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

  constructor(private readonly opts: ChannelReconcilerOptions) {
    this.requeueMs = opts.dependencyRequeueMs ?? 10_000;
  }

  reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult> {
    return reconcileObject(this.opts, this, key, ctx);
  }

  async reconcileLive(
    channel: LiveUpdateChannel,
    status: LiveUpdateChannelStatus,
    ctx: StepContext,
  ): Promise<StepsResult> {
    const app = await this.getApp(channel);
    await this.checkDeviceName(channel);
    const conditions = (status.conditions ??= []);
    const generation = channel.metadata.generation ?? 0;
    let live: Resolved;
    let rollout: Resolved | undefined;
    try {
      live = await this.resolveBundle(channel, channel.spec.bundle);
      rollout = channel.spec.rollout
        ? await this.resolveBundle(channel, channel.spec.rollout.bundle)
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
    this.showServed(channel, app, status);
    return this.checkPublished(channel, app, live, rollout);
  }

  /** Device-visible names are unique per app; the holder is decided as the index renderer decides it. */
  private async checkDeviceName(channel: LiveUpdateChannel): Promise<void> {
    const siblings = (
      await this.opts.client.list<LiveUpdateChannel>(CHANNEL_RESOURCE, channel.metadata.namespace)
    ).filter((c) => c.spec.app === channel.spec.app && !c.metadata.deletionTimestamp);
    const name = deviceNameOf(channel);
    const holder = deviceNameHolders(siblings).get(name);
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

  private async getApp(channel: LiveUpdateChannel): Promise<LiveUpdateApp> {
    try {
      return await this.opts.client.get<LiveUpdateApp>(APP_RESOURCE, appKeyForChannel(channel));
    } catch (error) {
      if (isNotFound(error)) {
        throw new WaitingError(
          Reason.AppNotFound,
          `LiveUpdateApp ${channel.spec.app} not found`,
          this.requeueMs,
        );
      }
      throw error;
    }
  }

  private async resolveBundle(channel: LiveUpdateChannel, name: string): Promise<Resolved> {
    if (name === BUILTIN_BUNDLE) return { name, version: BUILTIN_BUNDLE };
    let bundle: LiveUpdateBundle;
    try {
      bundle = await this.opts.client.get<LiveUpdateBundle>(BUNDLE_RESOURCE, {
        namespace: channel.metadata.namespace ?? '',
        name,
      });
    } catch (error) {
      if (isNotFound(error))
        throw new WaitingError(Reason.BundleNotFound, `LiveUpdateBundle ${name} not found`, this.requeueMs);
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
      throw new WaitingError(Reason.BundleNotReady, message, this.requeueMs);
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
        paused: channel.spec.rollout?.paused ?? false,
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
  ): StepsResult {
    const summary = app.status?.channels?.find((c) => c.name === channel.metadata.name);
    const published =
      summary?.bundle === live.name &&
      summary.rolloutBundle === rollout?.name &&
      (rollout === undefined ||
        summary.rolloutPercentage === roundPercentage(channel.spec.rollout?.percentage ?? 0));
    if (!published) {
      throw new WaitingError(
        Reason.Progressing,
        `waiting for LiveUpdateApp ${app.metadata.name} to publish ${live.name}`,
        5_000,
      );
    }
    const rolloutText = rollout ? `; rollout ${rollout.version} to ${summary.rolloutPercentage}%` : '';
    return { reason: Reason.Succeeded, message: `serving ${live.version}${rolloutText}` };
  }

  reconcileDelete(_channel: LiveUpdateChannel, status: LiveUpdateChannelStatus) {
    removeCondition((status.conditions ??= []), ConditionType.BundlesResolved);
    return Promise.resolve({ done: true as const });
  }
}
