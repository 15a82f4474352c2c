/**
 * `liveupdate status` (one screen: apps, channels, what they serve, rollout, adoption and failure bars, conditions
 * that are not fine) and `liveupdate reconcile <kind>/<name>` (sets the reconcile-requested annotation, like
 * `flux reconcile`). Both talk to the cluster of the current kubeconfig context, as kubectl does.
 */
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  RECONCILE_REQUESTED_AT_ANNOTATION,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../../api/v1alpha1/index.js';
import { KubeClient } from '../../kube/client.js';
import { loadKubeConfig } from '../../kube/config.js';
import type { ResourceType } from '../../kube/types.js';
import { optionalString, positional, UsageError, type Command, type CommandContext } from '../io.js';
import { CLI_FIELD_MANAGER } from './publish-apply.js';

const KUBE_OPTIONS = {
  kubeconfig: {
    type: 'string',
    description: 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config)',
    valueName: 'file',
  },
  namespace: {
    type: 'string',
    short: 'n',
    description: "namespace (default: the context's)",
    valueName: 'ns',
  },
} as const;

interface ConditionLike {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface StatusReport {
  namespace: string;
  apps: Array<{
    name: string;
    appId: string;
    ready: boolean;
    revision?: number;
    keyId?: string;
    problems: ConditionLike[];
    channels: ChannelReport[];
  }>;
  bundles: { total: number; ready: number; problems: Array<{ name: string } & ConditionLike> };
}

interface TrackReport {
  version?: string;
  devices?: number;
  adoptionPercent?: number;
  failurePercent?: number;
}

interface ChannelReport {
  name: string;
  ready: boolean;
  serving?: { bundle?: string | undefined; version?: string | undefined };
  rollout?: {
    bundle?: string | undefined;
    version?: string | undefined;
    percentage?: number | undefined;
    state: string;
  };
  stable?: TrackReport;
  rolloutStats?: TrackReport;
  problems: ConditionLike[];
}

/** Conditions a person should look at: Ready that is not True, any negative condition that is True. */
function problemsOf(conditions: ConditionLike[] | undefined): ConditionLike[] {
  const out: ConditionLike[] = [];
  for (const c of conditions ?? []) {
    if (c.type === 'Ready' ? c.status !== 'True' : c.status === 'True' && NEGATIVE.has(c.type))
      out.push({
        type: c.type,
        status: c.status,
        ...(c.reason ? { reason: c.reason } : {}),
        ...(c.message ? { message: c.message } : {}),
      });
  }
  return out;
}

const NEGATIVE = new Set(['Stalled', 'Reconciling', 'FetchFailed', 'VerificationFailed', 'RolloutHalted']);

function isReady(conditions: ConditionLike[] | undefined): boolean {
  return conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

export function buildStatusReport(
  namespace: string,
  apps: LiveUpdateApp[],
  channels: LiveUpdateChannel[],
  bundles: LiveUpdateBundle[],
): StatusReport {
  const byName = (a: { metadata: { name: string } }, b: { metadata: { name: string } }) =>
    a.metadata.name.localeCompare(b.metadata.name);
  return {
    namespace,
    apps: [...apps].sort(byName).map((app) => ({
      name: app.metadata.name,
      appId: app.spec.appId,
      ready: isReady(app.status?.conditions),
      ...(app.status?.index?.revision !== undefined ? { revision: app.status.index.revision } : {}),
      ...(app.status?.keyId ? { keyId: app.status.keyId } : {}),
      problems: problemsOf(app.status?.conditions),
      channels: channels
        .filter((c) => c.spec.app === app.metadata.name)
        .sort(byName)
        .map((c) => channelReport(c)),
    })),
    bundles: {
      total: bundles.length,
      ready: bundles.filter((b) => isReady(b.status?.conditions)).length,
      problems: [...bundles]
        .sort(byName)
        .flatMap((b) => problemsOf(b.status?.conditions).map((p) => ({ name: b.metadata.name, ...p }))),
    },
  };
}

function channelReport(c: LiveUpdateChannel): ChannelReport {
  const s = c.status;
  const rollout = s?.rollout;
  const track = (t: TrackReport | undefined): TrackReport | undefined =>
    t && {
      ...(t.version !== undefined ? { version: t.version } : {}),
      ...(t.devices !== undefined ? { devices: t.devices } : {}),
      ...(t.adoptionPercent !== undefined ? { adoptionPercent: t.adoptionPercent } : {}),
      ...(t.failurePercent !== undefined ? { failurePercent: t.failurePercent } : {}),
    };
  const stable = track(s?.stats?.stable);
  const rolloutStats = track(s?.stats?.rollout);
  return {
    name: c.metadata.name,
    ready: isReady(s?.conditions),
    ...(s?.servingBundle || s?.servingVersion
      ? { serving: { bundle: s.servingBundle, version: s.servingVersion } }
      : {}),
    ...(rollout?.bundle
      ? {
          rollout: {
            bundle: rollout.bundle,
            version: rollout.version,
            percentage: rollout.percentage,
            state: rollout.rolledBack ? 'RolledBack' : rollout.paused ? 'Paused' : 'Active',
          },
        }
      : {}),
    ...(stable ? { stable } : {}),
    ...(rolloutStats ? { rolloutStats } : {}),
    problems: problemsOf(s?.conditions),
  };
}

/** A 20-cell bar for a percentage (0-100), e.g. `[#####...............]  25.0%`. */
export function bar(percent: number | undefined, width = 20): string {
  if (percent === undefined || !Number.isFinite(percent)) return `[${' '.repeat(width)}]     -`;
  const clamped = Math.max(0, Math.min(100, percent));
  const filled = Math.round((clamped / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${clamped.toFixed(1).padStart(5)}%`;
}

export function renderStatus(report: StatusReport): string {
  const lines: string[] = [`namespace ${report.namespace}`];
  if (report.apps.length === 0) lines.push('  no LiveUpdateApps');
  const problem = (indent: string, p: ConditionLike & { name?: string }) =>
    `${indent}! ${p.name ? `${p.name}: ` : ''}${p.type}=${p.status} ${p.reason ?? ''}${p.message ? `: ${p.message}` : ''}`;
  for (const app of report.apps) {
    lines.push(
      '',
      `app ${app.name} (${app.appId})  ${app.ready ? 'Ready' : 'NOT READY'}` +
        `${app.revision !== undefined ? `  index revision ${app.revision}` : ''}${app.keyId ? `  key ${app.keyId}` : ''}`,
    );
    for (const p of app.problems) lines.push(problem('  ', p));
    if (app.channels.length === 0) lines.push('  no channels');
    for (const c of app.channels) {
      const serving = c.serving ? `${c.serving.version ?? '?'} (${c.serving.bundle ?? '?'})` : 'nothing yet';
      lines.push(`  channel ${c.name}  ${c.ready ? 'Ready' : 'NOT READY'}  serves ${serving}`);
      if (c.rollout)
        lines.push(
          `    rollout ${c.rollout.version ?? '?'} (${c.rollout.bundle ?? '?'})  ${c.rollout.state}  ` +
            `${bar(c.rollout.percentage)} of devices`,
        );
      for (const [label, t] of [
        ['stable ', c.stable],
        ['rollout', c.rolloutStats],
      ] as const) {
        if (!t) continue;
        lines.push(
          `    ${label} ${(t.version ?? '?').padEnd(12)} adoption ${bar(t.adoptionPercent)}  ` +
            `failures ${bar(t.failurePercent)}  devices ${t.devices ?? 0}`,
        );
      }
      for (const p of c.problems) lines.push(problem('    ', p));
    }
  }
  lines.push('', `bundles ${report.bundles.ready}/${report.bundles.total} Ready`);
  for (const p of report.bundles.problems) lines.push(problem('  ', p));
  return `${lines.join('\n')}\n`;
}

function clientFor(ctx: CommandContext): { client: KubeClient; namespace: string } {
  const kc = loadKubeConfig(optionalString(ctx, 'kubeconfig'));
  const namespace =
    optionalString(ctx, 'namespace') ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  return { client: new KubeClient(kc, { fieldManager: CLI_FIELD_MANAGER }), namespace };
}

export const status: Command = {
  name: 'status',
  summary: 'show apps, channels, what they serve, rollouts, adoption and failures, and what is not Ready',
  usage: 'liveupdate status [-n <namespace>] [--kubeconfig <file>] [--json]',
  options: KUBE_OPTIONS,
  positionals: [],
  async run(ctx) {
    const { client, namespace } = clientFor(ctx);
    const [apps, channels, bundles] = await Promise.all([
      client.list<LiveUpdateApp>(APP_RESOURCE, namespace),
      client.list<LiveUpdateChannel>(CHANNEL_RESOURCE, namespace),
      client.list<LiveUpdateBundle>(BUNDLE_RESOURCE, namespace),
    ]);
    const report = buildStatusReport(namespace, apps, channels, bundles);
    return { ...report, text: renderStatus(report) };
  },
  human: (result) => String(result['text']),
};

const KINDS: Record<string, ResourceType> = {
  app: APP_RESOURCE,
  lua: APP_RESOURCE,
  liveupdateapp: APP_RESOURCE,
  channel: CHANNEL_RESOURCE,
  luc: CHANNEL_RESOURCE,
  liveupdatechannel: CHANNEL_RESOURCE,
  bundle: BUNDLE_RESOURCE,
  lub: BUNDLE_RESOURCE,
  liveupdatebundle: BUNDLE_RESOURCE,
};

export const reconcile: Command = {
  name: 'reconcile',
  summary: 'ask the controller to reconcile an object now (sets the reconcile-requested annotation)',
  usage: 'liveupdate reconcile <app|channel|bundle>/<name> [-n <namespace>] [--kubeconfig <file>] [--json]',
  options: KUBE_OPTIONS,
  positionals: ['kind/name'],
  async run(ctx) {
    const [kindName = '', name = '', ...extra] = positional(ctx, 0).split('/');
    const type = KINDS[kindName.toLowerCase().replace(/s$/, '')];
    if (!type || !name || extra.length > 0)
      throw new UsageError(
        `expected <kind>/<name> with kind app, channel or bundle (or lua, luc, lub), got "${positional(ctx, 0)}"`,
      );
    const { client, namespace } = clientFor(ctx);
    const requestedAt = new Date().toISOString();
    await client.mergePatch(
      type,
      { namespace, name },
      {
        metadata: { annotations: { [RECONCILE_REQUESTED_AT_ANNOTATION]: requestedAt } },
      },
    );
    return { kind: type.kind, namespace, name, requestedAt };
  },
};
