// The Argo CD health checks (deploy/argocd) under Lua 5.1 in an emulation of Argo CD's sandbox
// (argocd-sandbox.lua: base and table libraries only, no string methods, JSON null as nil), run exactly as they are
// embedded in the argocd-cm snippet. Needs the Debian packages lua5.1 and lua-cjson.
import { jest } from '@jest/globals';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { argocdCmPath, healthKey, KINDS } from '../../../scripts/generate-argocd-cm.js';
import { run } from './chart-helpers.js';

// helm, kubectl and the API server on 2 shared cores: seconds per call, not milliseconds.
jest.setTimeout(300_000);

const LUA = process.env['LIVEUPDATE_LUA'] ?? 'lua5.1';
const sandbox = fileURLToPath(new URL('argocd-sandbox.lua', import.meta.url));

type Condition = { type: string; status: string; reason?: string; message?: string };

function resource(
  kind: string,
  generation: number,
  status: unknown,
  spec: Record<string, unknown> = {},
): object {
  return {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind,
    metadata: { name: 'example', namespace: 'apps', generation },
    spec: { app: 'my-app', suspend: null, ...spec },
    status,
  };
}

const ready = (status: string, reason: string, message: string): Condition => ({
  type: 'Ready',
  status,
  reason,
  message,
});
const cond = (type: string, status: string, reason: string, message: string): Condition => ({
  type,
  status,
  reason,
  message,
});

const CASES: { name: string; object: (kind: string) => object; status: string; message?: RegExp }[] = [
  {
    name: 'Ready=True at the current generation is Healthy',
    object: (kind) =>
      resource(kind, 3, { observedGeneration: 3, conditions: [ready('True', 'Succeeded', 'stored')] }),
    status: 'Healthy',
    message: /^stored$/,
  },
  {
    name: 'a stale observedGeneration is Progressing even with Ready=True',
    object: (kind) =>
      resource(kind, 4, { observedGeneration: 3, conditions: [ready('True', 'Succeeded', 'stored')] }),
    status: 'Progressing',
    message: /generation 4/,
  },
  {
    name: 'the default observedGeneration -1 is Progressing',
    object: (kind) =>
      resource(kind, 1, { observedGeneration: -1, conditions: [ready('Unknown', 'Progressing', 'x')] }),
    status: 'Progressing',
  },
  {
    name: 'no status yet is Progressing',
    object: (kind) => resource(kind, 1, null),
    status: 'Progressing',
    message: /Waiting for the controller/,
  },
  {
    name: 'empty conditions are Progressing',
    object: (kind) => resource(kind, 1, { observedGeneration: 1, conditions: [] }),
    status: 'Progressing',
  },
  {
    name: 'Reconciling=True is Progressing',
    object: (kind) =>
      resource(kind, 2, {
        observedGeneration: 2,
        conditions: [
          ready('Unknown', 'Progressing', 'working'),
          cond('Reconciling', 'True', 'Progressing', 'fetching artifact'),
        ],
      }),
    status: 'Progressing',
    message: /fetching artifact/,
  },
  {
    name: 'Stalled=True is Degraded with the stall message',
    object: (kind) =>
      resource(kind, 2, {
        observedGeneration: 2,
        conditions: [
          ready('False', 'DigestMismatch', 'artifact digest sha256:ab.. does not match spec.digest'),
          cond('Stalled', 'True', 'DigestMismatch', 'artifact digest sha256:ab.. does not match spec.digest'),
        ],
      }),
    status: 'Degraded',
    message: /does not match spec\.digest/,
  },
  {
    name: 'RolloutHalted=True is Degraded with the halt figures, also while the halt is being published',
    object: (kind) =>
      resource(kind, 3, {
        observedGeneration: 3,
        conditions: [
          ready('False', 'Progressing', 'waiting for LiveUpdateApp demo to publish demo-1-0-0'),
          cond('Reconciling', 'True', 'Progressing', 'waiting for LiveUpdateApp demo to publish demo-1-0-0'),
          cond(
            'RolloutHalted',
            'True',
            'FailureThresholdExceeded',
            'rollout 1.1.0 halted (Pause): 120 of 400 devices failed (30%, 95% lower bound 25.72% > 10%)',
          ),
        ],
      }),
    status: 'Degraded',
    message: /120 of 400 devices failed/,
  },
  {
    name: 'Ready=False with a terminal reason is Degraded',
    object: (kind) =>
      resource(kind, 2, {
        observedGeneration: 2,
        conditions: [ready('False', 'SigningKeyMissing', 'key private.pem missing')],
      }),
    status: 'Degraded',
  },
  {
    name: 'Ready=False with a retried reason is Progressing',
    object: (kind) =>
      resource(kind, 2, {
        observedGeneration: 2,
        conditions: [ready('False', 'SourceUnavailable', 'connection refused')],
      }),
    status: 'Progressing',
    message: /connection refused/,
  },
  {
    name: 'spec.suspend is Suspended',
    object: (kind) =>
      resource(
        kind,
        2,
        { observedGeneration: 2, conditions: [ready('True', 'Succeeded', 'ok')] },
        { suspend: true },
      ),
    status: 'Suspended',
  },
];

describe('Argo CD health checks in the Lua 5.1 sandbox', () => {
  let dir: string;
  const scripts = new Map<string, string>();

  beforeAll(async () => {
    const probe = await run(LUA, ['-e', 'require("cjson")']).catch((error: unknown) => ({
      code: -1,
      stderr: String(error),
    }));
    if (probe.code !== 0) {
      throw new Error(
        `${LUA} with lua-cjson is needed (Debian: apt-get install lua5.1 lua-cjson): ${probe.stderr}`,
      );
    }
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
    const objectFile = join(dir, `object-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(objectFile, JSON.stringify(object));
    const result = await run(LUA, [sandbox, script, objectFile]);
    if (result.code !== 0) throw new Error(`health script failed (${result.code}): ${result.stderr}`);
    return JSON.parse(result.stdout) as { status: string; message?: string };
  }

  const table = KINDS.flatMap((kind) => CASES.map((c) => [kind, c.name, c] as const));
  test.each(table)('%s: %s', async (kind, _name, c) => {
    const result = await health(scripts.get(kind)!, c.object(kind));
    expect(result.status).toBe(c.status);
    if (c.message) expect(result.message).toMatch(c.message);
  });

  test('the sandbox is as strict as Argo CD: string methods and the string library are unavailable', async () => {
    const object = resource('LiveUpdateApp', 1, null);
    for (const [name, body] of [
      ['method', 'local s = "Ready"; return { status = s:lower() }'],
      ['library', 'return { status = string.lower("Ready") }'],
      ['io', 'io.write("x"); return { status = "Healthy" }'],
    ] as const) {
      const path = join(dir, `forbidden-${name}.lua`);
      await writeFile(path, body);
      await expect(health(path, object)).rejects.toThrow(/health script failed \(2\)/);
    }
    const allowed = join(dir, 'allowed.lua');
    await writeFile(
      allowed,
      'local os = require("os"); local t = {}; table.insert(t, os.time()); return { status = "Healthy" }',
    );
    await expect(health(allowed, object)).resolves.toEqual({ status: 'Healthy' });
  });
});
