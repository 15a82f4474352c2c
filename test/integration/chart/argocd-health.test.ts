// The Argo CD health check (deploy/argocd/health.lua), exactly as embedded in the argocd-cm snippet, run by gopher-lua
// set up the way Argo CD's application controller runs health scripts (test/infra/argocd-lua: package, base, table
// and a reduced os library, no string library, JSON null dropped, invalid statuses become Unknown). One case per
// kstatus rule (sigs.k8s.io/cli-utils kstatus.Compute for a kind without built-in rules), then the Argo CD-only
// refinements and the cause of a transient failure in the message.
import { jest } from '@jest/globals';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { argocdCmPath, healthKey, KINDS } from '../../../scripts/generate-argocd-cm.js';
import { toolBinary } from '../../env/fixtures.js';
import { run } from './chart-helpers.js';

// A process per case on 2 shared cores: seconds, not milliseconds.
jest.setTimeout(300_000);

type Condition = { type: string; status: string; reason?: string; message?: string };
type Metadata = Record<string, unknown>;

function resource(
  kind: string,
  metadata: Metadata,
  status: unknown,
  spec: Record<string, unknown> = {},
): object {
  return {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind,
    metadata: { name: 'example', namespace: 'apps', ...metadata },
    spec: { app: 'my-app', suspend: null, ...spec },
    status,
  };
}

const cond = (type: string, status: string, reason?: string, message?: string): Condition => ({
  type,
  status,
  ...(reason ? { reason } : {}),
  ...(message ? { message } : {}),
});
const ready = (status: string, reason: string, message: string) => cond('Ready', status, reason, message);

// A transient failure as summarize() writes it: Reconciling=True (ProgressingWithRetry) and Ready=False with the
// error, observedGeneration still at the last generation handled.
const transient = [
  ready('False', 'SourceUnavailable', 'GET https://ci.example/app.zip: connection refused'),
  cond('Reconciling', 'True', 'ProgressingWithRetry', 'GET https://ci.example/app.zip: connection refused'),
];

interface Case {
  readonly name: string;
  readonly object: (kind: string) => object;
  readonly status: string;
  readonly message?: string | RegExp;
}

const CASES: Case[] = [
  // kstatus rule 1: deletionTimestamp → Terminating (before everything else, suspend and Stalled included).
  {
    name: 'kstatus 1: scheduled for deletion is Progressing, whatever the conditions say',
    object: (kind) =>
      resource(
        kind,
        { generation: 2, deletionTimestamp: '2026-12-04T10:00:00Z' },
        { observedGeneration: 2, conditions: [cond('Stalled', 'True', 'DigestMismatch', 'digest differs')] },
        { suspend: true },
      ),
    status: 'Progressing',
    message: 'Resource scheduled for deletion',
  },
  // kstatus rule 2: observedGeneration present and different from metadata.generation → InProgress.
  {
    name: 'kstatus 2: a stale observedGeneration is Progressing even with Ready=True',
    object: (kind) =>
      resource(
        kind,
        { generation: 4 },
        { observedGeneration: 3, conditions: [ready('True', 'Succeeded', 'ok')] },
      ),
    status: 'Progressing',
    message: /^LiveUpdate\w+ generation is 4, but latest observed generation is 3$/,
  },
  {
    name: 'kstatus 2: the default observedGeneration -1 is Progressing',
    object: (kind) => resource(kind, { generation: 1 }, { observedGeneration: -1, conditions: [] }),
    status: 'Progressing',
    message: /generation is 1, but latest observed generation is -1$/,
  },
  {
    name: 'kstatus 2 + cause: a new generation failing transiently shows the error being retried',
    object: (kind) => resource(kind, { generation: 5 }, { observedGeneration: 4, conditions: transient }),
    status: 'Progressing',
    message:
      /generation is 5, but latest observed generation is 4; last attempt: SourceUnavailable: GET https:\/\/ci\.example\/app\.zip: connection refused$/,
  },
  {
    name: 'kstatus 2 is skipped without status.observedGeneration: the conditions decide (Healthy)',
    object: (kind) =>
      resource(kind, { generation: 7 }, { conditions: [ready('True', 'Succeeded', 'stored')] }),
    status: 'Healthy',
    message: 'stored',
  },
  {
    name: 'kstatus 2 is skipped without status.observedGeneration: the conditions decide (Progressing)',
    object: (kind) => resource(kind, { generation: 7 }, { conditions: transient }),
    status: 'Progressing',
    message: 'SourceUnavailable: GET https://ci.example/app.zip: connection refused',
  },
  {
    name: 'kstatus 2 is skipped without metadata.generation',
    object: (kind) =>
      resource(kind, {}, { observedGeneration: 3, conditions: [ready('True', 'Succeeded', 'ok')] }),
    status: 'Healthy',
  },
  // kstatus rule 3: the first Reconciling=True (InProgress) or Stalled=True (Failed), in list order.
  {
    name: 'kstatus 3: Reconciling=True is Progressing with its message',
    object: (kind) =>
      resource(
        kind,
        { generation: 2 },
        {
          observedGeneration: 2,
          conditions: [
            cond('Reconciling', 'True', 'Progressing', 'waiting for LiveUpdateApp demo to publish'),
          ],
        },
      ),
    status: 'Progressing',
    message: 'waiting for LiveUpdateApp demo to publish',
  },
  {
    name: 'kstatus 3 + cause: a transient failure shows its reason and error once',
    object: (kind) => resource(kind, { generation: 2 }, { observedGeneration: 2, conditions: transient }),
    status: 'Progressing',
    message: 'SourceUnavailable: GET https://ci.example/app.zip: connection refused',
  },
  {
    name: 'kstatus 3 + cause: a waiting message and a different Ready message both show',
    object: (kind) =>
      resource(
        kind,
        { generation: 2 },
        {
          observedGeneration: 2,
          conditions: [
            cond('Reconciling', 'True', 'Progressing', 'waiting for the signing key'),
            ready('False', 'SigningKeyMissing', 'Secret apps/keys has no private.pem'),
          ],
        },
      ),
    status: 'Progressing',
    message:
      'waiting for the signing key; last attempt: SigningKeyMissing: Secret apps/keys has no private.pem',
  },
  {
    name: 'kstatus 3: Stalled=True is Degraded with the stall message',
    object: (kind) =>
      resource(
        kind,
        { generation: 2 },
        {
          observedGeneration: 2,
          conditions: [
            ready('False', 'DigestMismatch', 'artifact digest sha256:ab.. does not match spec.digest'),
            cond(
              'Stalled',
              'True',
              'DigestMismatch',
              'artifact digest sha256:ab.. does not match spec.digest',
            ),
          ],
        },
      ),
    status: 'Degraded',
    message: 'artifact digest sha256:ab.. does not match spec.digest',
  },
  {
    name: 'kstatus 3: list order decides between Stalled=True and Reconciling=True (Stalled first)',
    object: (kind) =>
      resource(
        kind,
        { generation: 2 },
        {
          observedGeneration: 2,
          conditions: [
            cond('Stalled', 'True', 'X', 'stalled'),
            cond('Reconciling', 'True', 'Y', 'reconciling'),
          ],
        },
      ),
    status: 'Degraded',
    message: 'stalled',
  },
  {
    name: 'kstatus 3: list order decides between Stalled=True and Reconciling=True (Reconciling first)',
    object: (kind) =>
      resource(
        kind,
        { generation: 2 },
        {
          observedGeneration: 2,
          conditions: [
            cond('Reconciling', 'True', 'Y', 'reconciling'),
            cond('Stalled', 'True', 'X', 'stalled'),
          ],
        },
      ),
    status: 'Progressing',
    message: 'reconciling',
  },
  {
    name: 'kstatus 3: Reconciling and Stalled that are not True are ignored',
    object: (kind) =>
      resource(
        kind,
        { generation: 2 },
        {
          observedGeneration: 2,
          conditions: [
            cond('Reconciling', 'False', 'Done'),
            cond('Stalled', 'Unknown', 'Maybe'),
            ready('True', 'Succeeded', 'serving 1.0.0'),
          ],
        },
      ),
    status: 'Healthy',
    message: 'serving 1.0.0',
  },
  // kstatus rule 4: otherwise Current.
  {
    name: 'kstatus 4: no status at all is Current (Healthy)',
    object: (kind) => resource(kind, { generation: 1 }, null),
    status: 'Healthy',
    message: 'Resource is current',
  },
  {
    name: 'kstatus 4: empty conditions are Current (Healthy)',
    object: (kind) => resource(kind, { generation: 1 }, { observedGeneration: 1, conditions: [] }),
    status: 'Healthy',
    message: 'Resource is current',
  },
  {
    name: 'kstatus 4: Ready=False without Reconciling or Stalled is Current; the message keeps Ready',
    object: (kind) =>
      resource(
        kind,
        { generation: 1 },
        { observedGeneration: 1, conditions: [ready('False', 'SourceUnavailable', 'timeout')] },
      ),
    status: 'Healthy',
    message: 'Resource is current (Ready: SourceUnavailable: timeout)',
  },
  // Argo CD-only refinements.
  {
    name: 'spec.suspend is Suspended',
    object: (kind) =>
      resource(
        kind,
        { generation: 2 },
        { observedGeneration: 2, conditions: [ready('True', 'Succeeded', 'ok')] },
        { suspend: true },
      ),
    status: 'Suspended',
  },
  {
    name: 'RolloutHalted=True is Degraded with the halt figures, also while the halt is being published',
    object: (kind) =>
      resource(
        kind,
        { generation: 3 },
        {
          observedGeneration: 3,
          conditions: [
            ready('False', 'Progressing', 'waiting for LiveUpdateApp demo to publish demo-1-0-0'),
            cond(
              'Reconciling',
              'True',
              'Progressing',
              'waiting for LiveUpdateApp demo to publish demo-1-0-0',
            ),
            cond(
              'RolloutHalted',
              'True',
              'FailureThresholdExceeded',
              'rollout 1.1.0 halted (Pause): 120 of 400 devices failed (30%, 95% lower bound 25.72% > 10%)',
            ),
          ],
        },
      ),
    status: 'Degraded',
    message: /120 of 400 devices failed/,
  },
];

describe('Argo CD health checks in gopher-lua, as Argo CD runs them', () => {
  let dir: string;
  let lua: string;
  const scripts = new Map<string, string>();
  let counter = 0;

  beforeAll(async () => {
    lua = toolBinary('argocd-lua');
    dir = await mkdtemp(join(tmpdir(), 'argocd-health-'));
    const configMap = parse(await readFile(argocdCmPath, 'utf8')) as { data: Record<string, string> };
    for (const kind of KINDS) {
      const script = configMap.data[healthKey(kind)];
      if (!script) throw new Error(`argocd-cm.yaml has no ${healthKey(kind)}`);
      const path = join(dir, `${kind}.lua`);
      await writeFile(path, script);
      scripts.set(kind, path);
    }
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function health(script: string, object: object): Promise<{ status: string; message?: string }> {
    const objectFile = join(dir, `object-${counter++}.json`);
    await writeFile(objectFile, JSON.stringify(object));
    const result = await run(lua, [script, objectFile]);
    if (result.code !== 0) throw new Error(`health script failed (${result.code}): ${result.stderr}`);
    return JSON.parse(result.stdout) as { status: string; message?: string };
  }

  const table = KINDS.flatMap((kind) => CASES.map((c) => [kind, c.name, c] as const));
  test.each(table)('%s: %s', async (kind, _name, c) => {
    const result = await health(scripts.get(kind)!, c.object(kind));
    expect(result.status).toBe(c.status);
    if (typeof c.message === 'string') expect(result.message).toBe(c.message);
    else if (c.message) expect(result.message).toMatch(c.message);
  });

  test('the harness is as strict as Argo CD: no string library or methods, no io; invalid statuses are Unknown', async () => {
    const object = resource('LiveUpdateApp', { generation: 1 }, null);
    for (const [name, body] of [
      ['method', 'local s = "Ready"; return { status = s:lower() }'],
      ['library', 'return { status = string.lower("Ready") }'],
      ['io', 'io.write("x"); return { status = "Healthy" }'],
      ['os.execute', 'os.execute("true"); return { status = "Healthy" }'],
    ] as const) {
      const path = join(dir, `forbidden-${name}.lua`);
      await writeFile(path, body);
      await expect(health(path, object)).rejects.toThrow(/health script failed \(1\)/);
    }
    const allowed = join(dir, 'allowed.lua');
    await writeFile(
      allowed,
      'local os = require("os"); local t = {}; table.insert(t, os.time()); return { status = "Healthy" }',
    );
    await expect(health(allowed, object)).resolves.toEqual({ status: 'Healthy' });
    const invalid = join(dir, 'invalid.lua');
    await writeFile(invalid, 'return { status = "Fine" }');
    await expect(health(invalid, object)).resolves.toEqual({
      status: 'Unknown',
      message: 'Lua returned an invalid health status',
    });
    const nulls = join(dir, 'nulls.lua');
    await writeFile(
      nulls,
      'if obj.spec.suspend == nil then return { status = "Healthy" } end return { status = "Degraded" }',
    );
    await expect(health(nulls, object)).resolves.toEqual({ status: 'Healthy' });
  });
});
