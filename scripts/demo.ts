// `npm run demo [-- --keep]`: the whole product on this machine in one command. Starts a real kube-apiserver, etcd and
// S3 server (building the Go tools on first use), installs the CRDs, runs the controller and the update service as
// processes, publishes the sample web build from deploy/examples' manifests, then plays devices: update check,
// download, verification as the plugin does it, a 50 % rollout over 4,000 devices, promotion and rollback, and a bad
// bundle that halts itself (its devices report decrypt_fail, the failure threshold pauses the rollout).
// With --keep it stays up after setup and prints the URLs and paths to drive it by hand, until Ctrl-C.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { APP_RESOURCE, BUNDLE_RESOURCE, CHANNEL_RESOURCE } from '../src/api/v1alpha1/index.js';
import { EVENT_TYPE } from '../src/kube/events.js';
import type { KubeObject } from '../src/kube/types.js';
import { startEnvironment, type TestEnvironment } from '../test/env/environment.js';
import {
  FIRST_VERSION,
  Journey,
  NATIVE_VERSION,
  SECOND_VERSION,
  THIRD_VERSION,
  deviceIds,
  formatCounts,
  installOutcomes,
  rolloutHaltedCondition,
  sendInstallStats,
} from './demo/journey.js';
import { Stack, StepError } from './demo/stack.js';

const DEVICES = 4000;
const NAMESPACE = 'demo';
/** How often the controller reads fleet telemetry (the default is 30 s; short so the halt shows up quickly). */
const TELEMETRY_SECONDS = 3;

const keep = process.argv.includes('--keep');
if (process.argv.some((a) => a === '--help' || a === '-h')) {
  console.log(
    'usage: npm run demo [-- --keep]\n\n  --keep  stay up after setup and print the URLs to use, until Ctrl-C',
  );
  process.exit(0);
}

const out = (line = '') => process.stdout.write(`${line}\n`);
const ok = (line: string) => out(`✓ ${line}`);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

let env: TestEnvironment | undefined;
let stack: Stack | undefined;
let stopping: Promise<void> | undefined;

async function shutdown(): Promise<void> {
  const tmpDir = env?.tmpDir;
  const components = stack ? await stack.stop() : {};
  await env?.stop();
  const left = tmpDir && existsSync(tmpDir);
  ok(
    `stopped: ${Object.entries(components)
      .map(([name, how]) => `${name} ${how}`)
      .join(
        ', ',
      )}${env ? ', kube-apiserver, etcd and versitygw stopped' : ''}; temp dir ${left ? 'NOT removed: ' + tmpDir : 'removed'}`,
  );
}

function onSignal(signal: NodeJS.Signals): void {
  if (stopping) return;
  out(`\n${signal}: stopping`);
  stopping = shutdown().then(
    () => process.exit(keep ? 0 : 130),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}

async function step<T>(title: string, fn: () => Promise<T>, describe: (result: T) => string): Promise<T> {
  const started = Date.now();
  out(`… ${title}`);
  const result = await fn();
  ok(`${title}: ${describe(result)} (${secs(Date.now() - started)})`);
  return result;
}

async function main(): Promise<void> {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  out(
    'liveupdate-operator demo: a local Kubernetes API, S3, the controller, the update service and simulated devices\n',
  );

  env = await step(
    'local stack (etcd, kube-apiserver, versitygw; Go tools are built on first use)',
    () => startEnvironment({ progress: (m) => out(`    · ${m}`), handleSignals: false }),
    (e) => `API server ${e.apiServerUrl}, S3 ${e.s3.endpoint}, temp dir ${e.tmpDir}`,
  );
  const workDir = join(env.tmpDir, 'demo');
  const s = (stack = new Stack({ env, logDir: join(env.tmpDir, 'logs'), namespace: NAMESPACE }));
  await step(
    'CRDs installed (server-side apply)',
    () => s.installCrds(),
    (names) => names.join(', '),
  );
  await step(
    `namespace "${NAMESPACE}" and S3 bucket`,
    async () => {
      await s.ensureNamespace(NAMESPACE);
      await s.createBucket();
    },
    () => `bucket ${s.bucket}`,
  );
  await step(
    'controller running (leader-elected)',
    () => s.startController({ env: { LIVEUPDATE_TELEMETRY_INTERVAL_SECONDS: String(TELEMETRY_SECONDS) } }),
    () =>
      `admin ${s.controllerAdminUrl}, telemetry every ${TELEMETRY_SECONDS} s, log ${s.controller!.logPath}`,
  );
  await step(
    'update service running',
    () => s.startUpdateServer(),
    () => `devices use ${s.publicUrl}, log ${s.updateServer!.logPath}`,
  );
  await s.artifacts.start();

  const journey = new Journey({ stack: s, namespace: NAMESPACE, workDir, log: out });
  await step(
    'sample web build packed (test/fixtures/webapp) and served over HTTP',
    () => journey.packBuilds(),
    (builds) =>
      builds
        .map((b) => `v${b.version} ${b.size} bytes, ${b.files} files, sha256 ${b.sha256.slice(0, 16)}…`)
        .join('; '),
  );
  const key = await step(
    'signing key created (Capgo v2 format)',
    () => journey.createKey(),
    (k) => `key_id ${k.keyId}, public key ${k.publicKeyPath}`,
  );
  const manifests = journey.manifests!;
  for (const gap of manifests.gaps) out(`    ! ${gap}`);
  await step(
    `resources created from ${manifests.source}`,
    () => journey.createResources(FIRST_VERSION),
    (names) => names.join(', '),
  );
  const v1 = journey.build(FIRST_VERSION);
  await step(
    'waiting for Ready',
    () =>
      journey.waitReady([
        { type: APP_RESOURCE, name: journey.appName },
        { type: BUNDLE_RESOURCE, name: v1.bundleName },
        { type: CHANNEL_RESOURCE, name: journey.channelName },
      ]),
    () => 'app, bundle and channel Ready',
  );
  const app = await journey.app();
  ok(
    `app ${journey.appId}: keyId ${app.status?.keyId ?? '?'}, release index revision ${app.status?.index?.revision ?? '?'}`,
  );

  // One device.
  const device = deviceIds(1, 'demo-device')[0]!;
  const answer = await step(
    `update check (POST /updates: Android, plugin 8.51.23, native ${NATIVE_VERSION}, version_name builtin, key_id)`,
    async () => {
      await journey.waitUntilServed([device], 'builtin', (o) => o[0] === v1.version, `bundle ${v1.version}`);
      return journey.checkUpdate(device);
    },
    (a) => `HTTP ${a.status}, version ${String(a.body['version'])}`,
  );
  const b = answer.body;
  out(`    version      ${String(b['version'])}`);
  out(`    url          ${String(b['url'])}`);
  out(
    `    checksum     ${String(b['checksum']).slice(0, 32)}… (${String(b['checksum']).length} hex chars, signed SHA-256)`,
  );
  out(`    session_key  ${String(b['session_key']).slice(0, 40)}… (iv:key)`);
  const other = Object.keys(b).filter((k) => !['version', 'url', 'checksum', 'session_key'].includes(k));
  if (other.length) out(`    also         ${other.map((k) => `${k}=${JSON.stringify(b[k])}`).join(' ')}`);
  const verified = await step(
    'downloaded and verified as the plugin does (decrypt with session_key, check signed checksum)',
    () => journey.downloadAndVerify(answer, `v${v1.version}`),
    (r) => `${r.downloadedBytes} bytes encrypted → ${r.plainSize} bytes zip`,
  );
  const match = verified.sha256 === v1.sha256;
  out(`    sha256 of decrypted zip ${verified.sha256}`);
  out(`    sha256 of packed build  ${v1.sha256}  ${match ? '→ match' : '→ MISMATCH'}`);
  if (!match) throw new StepError('the decrypted download is not the packed build');

  if (keep) {
    out('\nThe stack stays up; drive it with these (Ctrl-C stops everything):');
    out(`LIVEUPDATE_UPDATE_URL=${s.updateUrl}`);
    out(`LIVEUPDATE_STATS_URL=${s.statsUrl}`);
    out(`LIVEUPDATE_CHANNEL_URL=${s.channelUrl}`);
    out(`LIVEUPDATE_APP_ID=${journey.appId}`);
    out(`LIVEUPDATE_PUBLIC_KEY=${key.publicKeyPath}`);
    out(`KUBECONFIG=${env.kubeconfigPath}`);
    setInterval(() => {
      if (stopping) return;
      try {
        s.assertRunning();
      } catch (error) {
        void fail(error);
      }
    }, 1000);
    return;
  }

  // A second version to half of the devices.
  const v2 = journey.build(SECOND_VERSION);
  await step(
    `bundle v${v2.version} published`,
    async () => {
      await journey.createBundle(v2.version);
      return journey.waitReady([{ type: BUNDLE_RESOURCE, name: v2.bundleName }]);
    },
    () => `${v2.bundleName} Ready`,
  );
  const ids = deviceIds(DEVICES);
  const probe = ids.slice(0, 16);
  await step(
    `rollout of v${v2.version} to 50 % (channel spec.rollout)`,
    async () => {
      await journey.startRollout(v2.version, 50);
      await journey.waitChannelReady();
      return journey.waitUntilServed(probe, 'builtin', (o) => o.includes(v2.version), 'the rollout');
    },
    (ms) => `visible to devices ${secs(ms)} after the channel was Ready`,
  );
  const rolling = (await journey.channel()).status;
  out(
    `    channel status: serving ${rolling?.servingVersion ?? '?'}, rollout ${rolling?.rollout?.version ?? '?'} at ${rolling?.rollout?.percentage ?? '?'} %`,
  );
  const split = await step(`split over ${DEVICES} simulated devices`, () => journey.split(ids), formatCounts);
  const again = await step(
    'same devices asking again (sticky by device id)',
    () => journey.split(ids),
    formatCounts,
  );
  if (JSON.stringify([...split].sort()) !== JSON.stringify([...again].sort()))
    throw new StepError('the split changed on repeat', 'update-server');

  await step(
    `promotion: channel.bundle = ${v2.bundleName}, rollout removed`,
    async () => {
      await journey.setChannelBundle(v2.version);
      await journey.waitChannelReady();
      return journey.waitUntilServed(
        probe,
        'builtin',
        (o) => o.every((v) => v === v2.version),
        'the promotion',
      );
    },
    (ms) => `visible to devices ${secs(ms)} after the channel was Ready`,
  );
  await step(`all ${DEVICES} devices after promotion`, () => journey.split(ids), formatCounts);

  await step(
    `rollback: channel.bundle = ${v1.bundleName}`,
    async () => {
      await journey.setChannelBundle(v1.version);
      await journey.waitChannelReady();
      return journey.waitUntilServed(
        probe,
        v2.version,
        (o) => o.every((v) => v === v1.version),
        'the rollback',
      );
    },
    (ms) => `visible to devices ${secs(ms)} after the channel was Ready`,
  );
  await step(
    `all ${DEVICES} devices running v${v2.version} ask again`,
    () => journey.split(ids, v2.version),
    (c) => `${formatCounts(c)} — a device on ${v2.version} is told to install ${v1.version}: a normal update`,
  );
  const rolledBack = await journey.checkUpdate(device, v2.version);
  const back = await journey.downloadAndVerify(rolledBack, 'rollback');
  ok(
    `rollback download verified: sha256 ${back.sha256 === v1.sha256 ? 'matches' : 'DOES NOT MATCH'} the v${v1.version} build`,
  );
  if (back.sha256 !== v1.sha256) throw new StepError(`the rollback download is not v${v1.version}`);

  await badBundleHaltsItself(journey, ids);

  stopping = shutdown();
  await stopping;
  out('\ndemo complete');
}

/**
 * A bad bundle halts itself: v1.2.0 goes to 20 % with a failure threshold (10 %, judged on ≥ 100 devices with a 95 %
 * confidence bound, onFailure: Pause); 30 % of its devices report decrypt_fail over /stats as the plugin does; the
 * controller pauses the rollout by itself: condition, Warning event, metric, and devices served accordingly.
 */
async function badBundleHaltsItself(journey: Journey, ids: readonly string[]): Promise<void> {
  const [v1, v3] = [journey.build(FIRST_VERSION), (await journey.packBuilds([THIRD_VERSION]))[0]!];
  await step(
    `bad bundle v${v3.version} published`,
    async () => {
      await journey.createBundle(v3.version);
      return journey.waitReady([{ type: BUNDLE_RESOURCE, name: v3.bundleName }]);
    },
    () => `${v3.bundleName} Ready`,
  );
  const probe = ids.slice(0, 32);
  await step(
    `rollout of v${v3.version} to 20 % with failureThresholds {maxFailurePercent: 10, minSamples: 100, onFailure: Pause}`,
    async () => {
      await journey.startRollout(v3.version, 20, {
        maxFailurePercent: 10,
        minSamples: 100,
        onFailure: 'Pause',
      });
      await journey.waitChannelReady();
      return journey.waitUntilServed(probe, 'builtin', (o) => o.includes(v3.version), 'the rollout');
    },
    (ms) => `visible to devices ${secs(ms)} after the channel was Ready`,
  );
  const assigned = await journey.assignments(ids);
  const members = ids.filter((id) => assigned.get(id) === v3.version);
  const reports = installOutcomes(
    ids,
    members,
    { stable: v1.version, rollout: v3.version },
    30,
    'decrypt_fail',
  );
  await step(
    `${DEVICES} devices report over POST /stats: the ${members.length} on v${v3.version} fail to decrypt 30 % of the time`,
    () => sendInstallStats(journey, reports),
    (events) => `${events} events accepted`,
  );
  const { channel } = await step(
    'the rollout halts by itself',
    () => journey.waitRolloutHalted(),
    (h) => `RolloutHalted ${secs(h.ms)} after the last stats were accepted`,
  );
  const condition = rolloutHaltedCondition(channel)!;
  out(`    condition  RolloutHalted=True (${condition.reason}): ${condition.message}`);
  const r = channel.status?.stats?.rollout;
  out(
    `    stats      rollout ${r?.version ?? '?'}: ${r?.devices ?? 0} devices, ${r?.installs ?? 0} installs, failures ${JSON.stringify(r?.failuresByAction ?? {})} (${r?.failurePercent ?? 0} %)`,
  );
  const events = await journey.stack.kube.list<
    KubeObject & { reason?: string; type?: string; note?: string }
  >(EVENT_TYPE, journey.namespace);
  for (const e of events.filter((e) => e.reason === 'RolloutHalted'))
    out(`    event      ${e.type ?? '?'} ${e.reason ?? '?'}: ${e.note ?? ''}`);
  const metrics = await (await fetch(`${journey.stack.controllerAdminUrl}/metrics`)).text();
  for (const line of metrics.split('\n').filter((l) => /^liveupdate_rollout_halt/.test(l)))
    out(`    metric     ${line}`);
  const installed = members.filter((_, i) => i % 100 >= 30);
  await step(
    'devices once the paused index is served',
    async () => {
      await journey.waitUntilServed(probe, 'builtin', (o) => !o.includes(v3.version), 'the paused rollout');
      const kept = await journey.split(installed, v3.version);
      const others = await journey.split(ids);
      return { kept, others };
    },
    ({ kept, others }) =>
      `the ${installed.length} that installed v${v3.version} keep it (${formatCounts(kept)}); asking from builtin: ${formatCounts(others)} — nobody downgraded, nobody new enters`,
  );
}

async function fail(error: unknown): Promise<void> {
  if (stopping) return;
  out(`\n✗ ${error instanceof Error ? error.message : String(error)}`);
  const name = error instanceof StepError ? error.component : undefined;
  const shown = name
    ? [stack?.component(name)]
    : [stack?.controller, stack?.updateServer].filter((c) => c && !c.running);
  for (const c of shown) {
    if (!c) continue;
    out(`\n--- last lines of ${c.name} log (${c.logPath}) ---`);
    out((await c.tail()).trimEnd());
    out('---');
  }
  stopping = shutdown().catch((e: unknown) => console.error(e));
  await stopping;
  process.exit(1);
}

main().catch(fail);
