// A bad bundle halts itself (issue 13), end to end: the controller and the update service as processes on the real
// apiserver and S3, 2,000 simulated devices that check for updates and post their stats over HTTP exactly as the
// plugin does. A 20 % rollout with 2 % failures keeps going; one whose devices report decrypt_fail at 30 % is halted
// by its failure threshold (Pause: nobody downgraded, nobody new; Rollback: rollout devices offered the stable
// bundle). Short intervals keep it quick; waits are polls with deadlines, and the halt latency is printed, not
// asserted. Logs are kept (path printed) when a test fails. About 2 minutes on the shared 2-core machine.
import { setTimeout as sleep } from 'node:timers/promises';
import { BUNDLE_RESOURCE, CHANNEL_RESOURCE } from '../../../src/api/v1alpha1/index.js';
import { EVENT_TYPE } from '../../../src/kube/events.js';
import type { KubeObject } from '../../../src/kube/types.js';
import type { Journey } from '../../../scripts/demo/journey.js';
import {
  FIRST_VERSION,
  FOURTH_VERSION,
  SECOND_VERSION,
  THIRD_VERSION,
  deviceIds,
  installOutcomes,
  rolloutHaltedCondition,
  sendInstallStats,
  startProcessJourney,
  type InstallOutcome,
  type ProcessJourney,
} from '../../../scripts/demo/journey.js';
import type { Stack } from '../../../scripts/demo/stack.js';
import {
  INTEGRATION_TEST_TIMEOUT_MS,
  cleanupTestResources,
  newBucket,
  newNamespace,
  testEnvironment,
} from '../../env/fixtures.js';

const DEVICES = 2000;
const TELEMETRY_SECONDS = 2;
const WAIT_MS = 90_000;
const ids = deviceIds(DEVICES, 'halt');
const TIMEOUT = 4 * INTEGRATION_TEST_TIMEOUT_MS;

let started: ProcessJourney | undefined;
let stack: Stack;
let journey: Journey;
let failed = true;

beforeAll(async () => {
  started = await startProcessJourney('halt', {
    env: testEnvironment(),
    namespace: await newNamespace('halt'),
    bucket: await newBucket('halt'),
    waitMs: WAIT_MS,
    controllerEnv: { LIVEUPDATE_TELEMETRY_INTERVAL_SECONDS: String(TELEMETRY_SECONDS) },
    updateServerEnv: { LIVEUPDATE_STATS_FLUSH_SECONDS: '1' },
  });
  ({ stack, journey } = started);
  await journey.packBuilds([THIRD_VERSION, FOURTH_VERSION]);
  await journey.createKey();
  await journey.createResources(FIRST_VERSION);
  await journey.waitReady([{ type: CHANNEL_RESOURCE, name: journey.channelName }]);
  failed = false;
}, TIMEOUT);

afterAll(async () => {
  if (started && failed) {
    await stack.stop();
    process.stderr.write(`self-halting rollout: logs kept in ${started.workDir}/logs\n`);
  } else if (started) {
    await started.stop();
  }
  await cleanupTestResources();
}, INTEGRATION_TEST_TIMEOUT_MS);

/** Marks the run failed when `fn` throws (the logs are then kept). */
async function tracked(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    failed = true;
    throw error;
  }
}

/** Starts a 20 % rollout of `version` with a 10 % failure limit; returns the devices it puts on the new version. */
async function rollOut(version: string, onFailure: 'Pause' | 'Rollback'): Promise<string[]> {
  await journey.createBundle(version);
  await journey.waitReady([{ type: BUNDLE_RESOURCE, name: journey.build(version).bundleName }]);
  await journey.startRollout(version, 20, { maxFailurePercent: 10, minSamples: 100, onFailure });
  await withControllerLog(() => journey.waitChannelReady());
  await journey.waitUntilServed(
    ids.slice(0, 64),
    'builtin',
    (o) => o.includes(version),
    `the ${version} rollout`,
  );
  const assigned = await journey.assignments(ids);
  return ids.filter((id) => assigned.get(id) === version);
}

/** Rollout members install `version`, `failPercent` of them fail with `action`; the others install stable. */
const outcomes = (members: readonly string[], version: string, failPercent: number, action: InstallOutcome) =>
  installOutcomes(ids, members, { stable: FIRST_VERSION, rollout: version }, failPercent, action);

async function withControllerLog<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof Error)
      error.message += `\n--- controller log ---\n${await stack.controller!.tail(4000)}`;
    throw error;
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${WAIT_MS / 1000} s\n${await stack.controller!.tail(4000)}`);
    await sleep(200);
  }
}

const halted = rolloutHaltedCondition;

async function metricsText(): Promise<string> {
  const response = await fetch(`${stack.controllerAdminUrl}/metrics`);
  return response.text();
}

/** The value of a metric sample of this channel, e.g. liveupdate_rollout_halted{…channel="production"…}. */
function sample(text: string, name: string, extra = ''): number | undefined {
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith(`${name}{`) &&
        l.includes(`namespace="${journey.namespace}"`) &&
        l.includes(`channel="${journey.channelName}"`) &&
        l.includes(extra),
    );
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

interface EventObject extends KubeObject {
  reason?: string;
  type?: string;
  note?: string;
  regarding?: { name?: string; kind?: string };
}

async function channelEvents(reason: string): Promise<EventObject[]> {
  const events = await stack.kube.list<EventObject>(EVENT_TYPE, journey.namespace);
  return events.filter((e) => e.reason === reason && e.regarding?.name === journey.channelName);
}

/**
 * Everyone reports: the stable devices first, then the rollout's devices, 30 % of them decrypt_fail; the channel is
 * polled meanwhile. Returns the halted channel and the halt latency from the first rollout stats POST (and how long
 * the sending took: the halt may come before the last POST, once minSamples are in).
 */
async function haltByDecryptFailures(version: string, members: readonly string[]) {
  const reports = outcomes(members, version, 30, 'decrypt_fail');
  await sendInstallStats(
    journey,
    reports.filter((r) => r.version !== version),
  );
  const started = Date.now();
  let sentMs = 0;
  const sending = sendInstallStats(
    journey,
    reports.filter((r) => r.version === version),
  ).then(() => (sentMs = Date.now() - started));
  const { channel } = await withControllerLog(() => journey.waitRolloutHalted());
  const haltMs = Date.now() - started;
  await sending;
  process.stdout.write(
    `halt latency (${version}): ${haltMs} ms from the first rollout stats POST, ${haltMs - sentMs} ms after the last ` +
      `(${members.length} devices' stats sent in ${sentMs} ms; telemetry interval ${TELEMETRY_SECONDS} s, stats flush 1 s)\n`,
  );
  return channel;
}

describe('a bad bundle halts itself, on the real stack', () => {
  it(
    'a healthy 20 % rollout with 2 % failures keeps going, with adoption and failure rate in status',
    () =>
      tracked(async () => {
        const members = await rollOut(SECOND_VERSION, 'Pause');
        expect(members.length).toBeGreaterThan(DEVICES * 0.16);
        expect(members.length).toBeLessThan(DEVICES * 0.24);
        await sendInstallStats(journey, outcomes(members, SECOND_VERSION, 2, 'download_fail'));
        const c = await until('telemetry of the healthy rollout', async () => {
          const ch = await journey.channel();
          const r = ch.status?.stats?.rollout;
          return r && (r.installs ?? 0) + (r.failures ?? 0) === members.length ? ch : undefined;
        });
        expect(halted(c)).toBeUndefined();
        expect(c.status?.stats?.rollout).toMatchObject({ version: SECOND_VERSION, devices: members.length });
        expect(c.status?.stats?.rollout?.failurePercent).toBeGreaterThan(1);
        expect(c.status?.stats?.rollout?.failurePercent).toBeLessThan(3);
        expect(c.status?.stats?.rollout?.adoptionPercent).toBeGreaterThan(15);
        expect(c.status?.stats?.rollout?.adoptionPercent).toBeLessThan(25);
        // More telemetry rounds change nothing: still not halted, the same devices on the rollout.
        await sleep(3 * TELEMETRY_SECONDS * 1000);
        expect(halted(await journey.channel())).toBeUndefined();
        const split = await journey.split(ids);
        expect(split.get(SECOND_VERSION)).toBe(members.length);
      }),
    TIMEOUT,
  );

  it(
    'onFailure: Pause — 30 % decrypt_fail halts the rollout: condition, event, metric; nobody downgraded, nobody new',
    () =>
      tracked(async () => {
        const members = await rollOut(THIRD_VERSION, 'Pause');
        expect(members.length).toBeGreaterThan(DEVICES * 0.16);
        const channel = await haltByDecryptFailures(THIRD_VERSION, members);
        const servedMs = await journey.waitUntilServed(
          ids.slice(0, 64),
          'builtin',
          (o) => !o.includes(THIRD_VERSION),
          'the paused rollout',
        );
        process.stdout.write(
          `paused rollout served to devices ${servedMs} ms after RolloutHalted was seen\n`,
        );
        const condition = halted(channel)!;
        expect(condition.reason).toBe('FailureThresholdExceeded');
        expect(condition.message).toContain(`rollout ${THIRD_VERSION} halted (Pause)`);
        expect(channel.status?.stats?.rollout?.failuresByAction?.['decrypt_fail']).toBeGreaterThan(0);
        expect(channel.status?.rollout?.halted).toMatchObject({ action: 'Pause', percentage: 20 });
        expect(channel.status?.rollout?.halted?.failurePercent).toBeGreaterThan(25);
        const events = await until('the RolloutHalted event', async () => {
          const e = await channelEvents('RolloutHalted');
          return e.length ? e : undefined;
        });
        expect(events[0]!.type).toBe('Warning');
        const metrics = await metricsText();
        expect(sample(metrics, 'liveupdate_rollout_halted')).toBe(1);
        expect(sample(metrics, 'liveupdate_rollout_halts_total', 'action="Pause"')).toBe(1);
        // Devices once the paused index is served: members that installed keep THIRD (up to date), those whose
        // install failed and everyone else get the stable bundle; nobody new enters.
        const installed = members.filter((_, i) => i % 100 >= 30);
        const onRollout = await journey.split(installed, THIRD_VERSION);
        expect([...onRollout]).toEqual([['up_to_date:no_new_version_available', installed.length]]);
        const fresh = await journey.split(ids);
        expect([...fresh]).toEqual([[FIRST_VERSION, DEVICES]]);
      }),
    TIMEOUT,
  );

  it(
    'onFailure: Rollback — 30 % decrypt_fail halts the rollout and its devices are offered the stable bundle',
    () =>
      tracked(async () => {
        const members = await rollOut(FOURTH_VERSION, 'Rollback');
        expect(members.length).toBeGreaterThan(DEVICES * 0.16);
        const channel = await haltByDecryptFailures(FOURTH_VERSION, members);
        const installed = members.filter((_, i) => i % 100 >= 30);
        const servedMs = await journey.waitUntilServed(
          installed.slice(0, 32),
          FOURTH_VERSION,
          (o) => o.every((v) => v === FIRST_VERSION),
          'the rollback',
        );
        process.stdout.write(`rollback served to devices ${servedMs} ms after RolloutHalted was seen\n`);
        expect(halted(channel)?.message).toContain(`rollout ${FOURTH_VERSION} halted (Rollback)`);
        expect(channel.status?.rollout?.halted).toMatchObject({ action: 'Rollback', percentage: 20 });
        const metrics = await metricsText();
        expect(sample(metrics, 'liveupdate_rollout_halts_total', 'action="Rollback"')).toBe(1);
        const onRollout = await journey.split(installed, FOURTH_VERSION);
        expect([...onRollout]).toEqual([[FIRST_VERSION, installed.length]]);
      }),
    TIMEOUT,
  );
});
