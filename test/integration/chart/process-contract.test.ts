// The environment the chart gives each container is accepted by the commands' own configuration parsers
// (src/config), for every value set: a renamed variable, a bad format or a missing required option fails here
// instead of in a crash-looping Pod.
import { jest } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseOptions, type OptionSpec } from '../../../src/config/common.js';
import { CONTROLLER_OPTIONS, loadControllerConfig } from '../../../src/config/controller.js';
import { UPDATE_SERVER_OPTIONS, parseUpdateServerConfig } from '../../../src/config/update-server.js';
import { repoRoot } from '../../env/process-utils.js';
import {
  ciValues,
  containerEnv,
  findObject,
  helmTemplate,
  parseManifests,
  run,
  VALUE_SETS,
  type K8sObject,
} from './chart-helpers.js';

// helm on 2 shared cores: seconds per call, not milliseconds.
jest.setTimeout(300_000);

let caFile: string;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chart-contract-'));
  caFile = join(dir, 'ca.crt');
  await writeFile(caFile, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The container environment with the CA file at a readable path (the parser checks it). */
function resolvedEnv(deployment: K8sObject): { args: string[]; env: NodeJS.ProcessEnv } {
  const resolved = containerEnv(deployment);
  // The CA bundle is mounted from a ConfigMap at that path in the Pod; the parser checks that it is readable.
  if (resolved.env['LIVEUPDATE_S3_CA_FILE']) resolved.env['LIVEUPDATE_S3_CA_FILE'] = caFile;
  return resolved;
}

describe.each(VALUE_SETS)('process contract with %s values', (set) => {
  let objects: K8sObject[];

  beforeAll(async () => {
    objects = parseManifests(await helmTemplate([ciValues(set)]));
  });

  test('the controller parses its environment', () => {
    const { args, env } = resolvedEnv(findObject(objects, 'Deployment', 'liveupdate-operator-controller'));
    expect(args).toEqual(['controller']);
    const config = loadControllerConfig([], env);
    expect(config).not.toBeNull();
    expect(config!.leaderElection).toEqual({
      enabled: true,
      namespace: 'liveupdate-system',
      name: 'liveupdate-operator-controller',
    });
    expect(config!.identity).toBe('liveupdate-operator-controller-7d9f-abcde');
    expect(config!.artifactMaxBytes).toBe(268435456);
    expect(config!.watchNamespaces).toEqual(set === 'external-s3' ? ['team-a', 'team-b'] : []);
    expect(config!.sourceSecretLabel).toEqual({ key: 'liveupdate.dev/bundle-source', value: 'true' });
  });

  test('the update server parses its environment', () => {
    const { args, env } = resolvedEnv(findObject(objects, 'Deployment', 'liveupdate-operator-update-server'));
    expect(args).toEqual(['update-server']);
    const config = parseUpdateServerConfig([], env);
    expect(config).toBeDefined();
    expect(config!.listenAddr).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(config!.adminAddr).toEqual({ host: '0.0.0.0', port: 8081 });
    expect(config!.replicaName).toBe('liveupdate-operator-update-server-7d9f-abcde');
  });
});

/**
 * Options whose chart value is a fact of the deployment, not a tunable with a default to agree on: the Lease is named
 * after the release, and the source-Secret label is the chart's secure choice where the binary cannot know a label.
 */
const DEPLOYMENT_FACTS = new Set(['leaseName', 'sourceSecretLabel']);

/** Options of `specs` with a plain default that the chart sets, whose chart value differs from that default. */
function chartDefaultsDiffering(
  specs: Record<string, OptionSpec<unknown>>,
  env: NodeJS.ProcessEnv,
): { set: string[]; differing: { key: string; chart: unknown; binary: unknown }[] } {
  const tunables = Object.entries(specs).filter(
    ([key, spec]) =>
      spec.default !== undefined &&
      typeof spec.default !== 'function' &&
      !DEPLOYMENT_FACTS.has(key) &&
      spec.env.some((name) => env[name] !== undefined),
  );
  const fromChart = parseOptions(specs, [], env).values as Record<string, unknown>;
  return {
    set: tunables.map(([key]) => key),
    differing: tunables
      .filter(([key, spec]) => JSON.stringify(fromChart[key]) !== JSON.stringify(spec.default))
      .map(([key, spec]) => ({ key, chart: fromChart[key], binary: spec.default })),
  };
}

describe('binary and chart defaults', () => {
  let objects: K8sObject[];

  beforeAll(async () => {
    objects = parseManifests(await helmTemplate([]));
  });

  test('every controller option the chart sets has the value the binary uses by default', () => {
    const { env } = resolvedEnv(findObject(objects, 'Deployment', 'liveupdate-operator-controller'));
    const { set, differing } = chartDefaultsDiffering(CONTROLLER_OPTIONS, env);
    // the disk, timeout and concurrency settings at least: a chart that stops setting them fails here too
    expect(set).toEqual(
      expect.arrayContaining([
        'maxConcurrentReconciles',
        'artifactMaxBytes',
        'workDirBytes',
        'fetchTimeoutSeconds',
        'shutdownGraceSeconds',
      ]),
    );
    expect(differing).toEqual([]);
  });

  test('every update server option the chart sets has the value the binary uses by default', () => {
    const { env } = resolvedEnv(findObject(objects, 'Deployment', 'liveupdate-operator-update-server'));
    const { set, differing } = chartDefaultsDiffering(UPDATE_SERVER_OPTIONS, env);
    expect(set).toEqual(
      expect.arrayContaining(['indexPollSeconds', 'statsFlushSeconds', 'statsWindowSeconds']),
    );
    expect(differing).toEqual([]);
  });

  test("the update server's node caps the young generation (updateServer.nodeOptions); the controller's does not", async () => {
    const { env } = resolvedEnv(findObject(objects, 'Deployment', 'liveupdate-operator-update-server'));
    // Node with the Pod's NODE_OPTIONS (an option Node refuses there would fail the run) after enough short-lived
    // garbage to grow an uncapped young generation to its 2 × 16 MiB maximum; capped, it stays at 2 × 8 MiB.
    const churn = [
      'const kept = [];',
      'for (let i = 0; i < 3e6; i++) { kept.push({ i }); if (kept.length > 1e5) kept.length = 0; }',
      "const s = require('node:v8').getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');",
      'console.log(s.space_size);',
    ].join('\n');
    const result = await run(join(repoRoot(), 'node_modules', '.bin', 'node'), ['-e', churn], {
      env: { PATH: process.env['PATH'], NODE_OPTIONS: env['NODE_OPTIONS'] },
    });
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    expect(Number(result.stdout.trim())).toBeLessThanOrEqual(16 * 1024 * 1024);

    const controller = resolvedEnv(findObject(objects, 'Deployment', 'liveupdate-operator-controller'));
    expect(controller.env['NODE_OPTIONS']).toBeUndefined();
  });
});
