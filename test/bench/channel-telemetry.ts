/**
 * Channel status writes under fleet telemetry (`npm run bench -- channel-telemetry`): the controller and the update
 * service as processes on a real kube-apiserver, etcd and versitygw; one app with 100 channels, each with a 20 %
 * rollout; devices post stats over HTTP to every channel all the time (every rollup changes at every flush), so every
 * channel has new figures at every telemetry interval.
 *   - measured: channel status writes (changes of a channel's resourceVersion seen by polling every 500 ms, i.e. at
 *     most one per channel and poll), the controller's PATCH requests and channel reconciles, per second;
 *   - bound (same run): channels / telemetry interval, one status write per channel per interval (ADR 0018).
 * Figures only, no assertions. BENCH_CHANNELS, BENCH_TELEMETRY_SECONDS and BENCH_SECONDS override 100, 5 and 60.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BUNDLE_RESOURCE, CHANNEL_RESOURCE, type LiveUpdateChannel } from '../../src/api/v1alpha1/index.js';
import { FIRST_VERSION, Journey, SECOND_VERSION, deviceIds, isReady } from '../../scripts/demo/journey.js';
import { Stack } from '../../scripts/demo/stack.js';
import { startEnvironment } from '../env/environment.js';

const CHANNELS = Number(process.env['BENCH_CHANNELS'] ?? 100);
const TELEMETRY_SECONDS = Number(process.env['BENCH_TELEMETRY_SECONDS'] ?? 5);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 60);
const NAMESPACE = 'bench-telemetry';

async function counter(adminUrl: string, name: string, match: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && l.includes(match))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

async function main(): Promise<void> {
  const env = await startEnvironment({ handleSignals: true });
  const workDir = await mkdtemp(join(tmpdir(), 'liveupdate-bench-telemetry-'));
  const stack = new Stack({ env, logDir: join(workDir, 'logs'), namespace: NAMESPACE });
  let keep = false;
  try {
    await stack.installCrds();
    await stack.ensureNamespace(NAMESPACE);
    await stack.createBucket();
    await stack.artifacts.start();
    await stack.startController({
      env: { LIVEUPDATE_TELEMETRY_INTERVAL_SECONDS: String(TELEMETRY_SECONDS) },
    });
    await stack.startUpdateServer({ env: { LIVEUPDATE_STATS_FLUSH_SECONDS: '1' } });
    const journey = new Journey({ stack, namespace: NAMESPACE, workDir, waitMs: 180_000 });
    await journey.packBuilds([FIRST_VERSION, SECOND_VERSION]);
    await journey.createKey();
    await journey.createResources(FIRST_VERSION);
    await journey.createBundle(SECOND_VERSION);
    const [v1, v2] = [journey.build(FIRST_VERSION), journey.build(SECOND_VERSION)];
    const names = [
      journey.channelName,
      ...Array.from({ length: CHANNELS - 1 }, (_, i) => `ch-${String(i + 1).padStart(3, '0')}`),
    ];
    const rollout = { bundle: v2.bundleName, percentage: 20 };
    await journey.startRollout(SECOND_VERSION, 20);
    for (const name of names.slice(1)) {
      await stack.kube.create(CHANNEL_RESOURCE, {
        apiVersion: 'liveupdate.dev/v1alpha1',
        kind: 'LiveUpdateChannel',
        metadata: { name, namespace: NAMESPACE },
        spec: { app: journey.appName, bundle: v1.bundleName, rollout, policy: { allowDeviceSelfSet: true } },
      } as LiveUpdateChannel);
    }
    await journey.waitReady([
      { type: BUNDLE_RESOURCE, name: v2.bundleName },
      ...names.map((name) => ({ type: CHANNEL_RESOURCE, name })),
    ]);
    console.log(`${CHANNELS} channels Ready; devices post stats to every channel for ${SECONDS} s`);

    // Devices: each POST is one device's batch on a channel, round robin over the channels, 16 at a time.
    const ids = deviceIds(20_000, 'bench-telemetry');
    let posts = 0;
    const stop = AbortSignal.timeout(SECONDS * 1000 + 5_000);
    const load = Promise.all(
      Array.from({ length: 16 }, async () => {
        while (!stop.aborted) {
          const n = posts++;
          const info = { ...journey.deviceBody(ids[n % ids.length]!, 'builtin') };
          const channel = names[n % names.length]!;
          const events = [
            {
              ...info,
              defaultChannel: channel,
              action: 'set',
              version_name: v2.version,
              old_version_name: 'builtin',
              timestamp: Date.now(),
            },
          ];
          const r = await fetch(stack.statsUrl, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(events),
          });
          await r.text();
        }
      }),
    );
    await sleep(5_000);

    // Measure: resourceVersion changes per channel (polled), the controller's PATCHes and channel reconciles.
    const admin = stack.controllerAdminUrl;
    const patches0 = await counter(admin, 'rest_client_requests_total', 'method="PATCH"');
    const reconciles0 = await counter(
      admin,
      'controller_runtime_reconcile_total',
      'controller="liveupdatechannel"',
    );
    const versions = new Map<string, string>();
    let writes = 0;
    const t0 = performance.now();
    for (let first = true; performance.now() - t0 < SECONDS * 1000; first = false) {
      for (const c of await stack.kube.list<LiveUpdateChannel>(CHANNEL_RESOURCE, NAMESPACE)) {
        const rv = c.metadata.resourceVersion ?? '';
        if (!first && versions.get(c.metadata.name) !== rv) writes++;
        versions.set(c.metadata.name, rv);
      }
      await sleep(500);
    }
    const seconds = (performance.now() - t0) / 1000;
    const patches = (await counter(admin, 'rest_client_requests_total', 'method="PATCH"')) - patches0;
    const reconciles =
      (await counter(admin, 'controller_runtime_reconcile_total', 'controller="liveupdatechannel"')) -
      reconciles0;
    await load;
    const notReady = (await stack.kube.list<LiveUpdateChannel>(CHANNEL_RESOURCE, NAMESPACE)).filter(
      (c) => !isReady(c),
    ).length;
    const bound = CHANNELS / TELEMETRY_SECONDS;
    const rows: [string, string][] = [
      ['channels', String(CHANNELS)],
      ['telemetry interval (s)', String(TELEMETRY_SECONDS)],
      ['stats POSTs/s (all channels)', (posts / (seconds + 10)).toFixed(0)],
      ['channel status writes/s (observed)', (writes / seconds).toFixed(2)],
      ['bound: channels / interval (/s)', bound.toFixed(2)],
      ['ratio observed / bound', (writes / seconds / bound).toFixed(2)],
      ['controller PATCH requests/s (all kinds)', (patches / seconds).toFixed(2)],
      ['channel reconciles/s', (reconciles / seconds).toFixed(2)],
      ['channels not Ready at the end', String(notReady)],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
    console.log('(figures from this machine, indicative only when others share it)');
  } catch (error) {
    keep = true;
    console.error(`logs kept in ${join(workDir, 'logs')}`);
    throw error;
  } finally {
    await stack.stop();
    await env.stop();
    if (!keep) await rm(workDir, { recursive: true, force: true });
  }
}

await main();
