// The chart's PrometheusRule, as rendered: its rules pass `promtool check rules`, its alerts pass their promtool unit
// tests (test/fixtures/prometheus/alerts.test.yaml), and the runbook base URL is the configured one.
import { jest } from '@jest/globals';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { toolBinary } from '../../env/fixtures.js';
import { repoRoot } from '../../env/process-utils.js';
import {
  chartPath,
  ciValues,
  helm,
  helmTemplate,
  imagesOf,
  parseManifests,
  run,
  type K8sObject,
} from './chart-helpers.js';

jest.setTimeout(300_000);

interface Rule {
  alert: string;
  annotations?: Record<string, string>;
}
interface RuleSpec {
  groups: Array<{ name: string; rules: Rule[] }>;
}

let dir: string;
let spec: RuleSpec;
let objects: K8sObject[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'liveupdate-promtool-'));
  objects = parseManifests(
    await helmTemplate(
      [],
      [
        'prometheusRule.enabled=true',
        'prometheusRule.runbookBaseUrl=https://docs.factory.internal/liveupdate/',
        'grafanaDashboard.enabled=true',
      ],
    ),
  );
  const rule = objects.find((o) => o.kind === 'PrometheusRule');
  if (!rule) throw new Error('no PrometheusRule rendered');
  spec = rule['spec'] as RuleSpec;
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function promtool(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  const result = await run(toolBinary('promtool'), args, { cwd: dir });
  return { code: result.code, output: `${result.stdout}\n${result.stderr}` };
}

describe('PrometheusRule', () => {
  it('is off by default', async () => {
    const defaults = parseManifests(await helmTemplate());
    expect(
      defaults.filter((o) => o.kind === 'PrometheusRule' || o.metadata.name.endsWith('-dashboard')),
    ).toEqual([]);
  });

  it('passes promtool check rules, with runbook links to the configured docs', async () => {
    await writeFile(join(dir, 'rendered.yaml'), stringify(spec));
    const checked = await promtool(['check', 'rules', 'rendered.yaml']);
    expect(checked.output).toContain('SUCCESS');
    expect(checked.code).toBe(0);
    const urls = spec.groups.flatMap((g) => g.rules.map((r) => r.annotations?.['runbook_url'] ?? ''));
    expect(urls.length).toBeGreaterThan(15);
    for (const url of urls)
      expect(url).toMatch(
        /^https:\/\/docs\.factory\.internal\/liveupdate\/troubleshooting\.md#liveupdate[a-z]+$/,
      );
  });

  it('fires each alert when (and only when) its unit test says so: promtool test rules', async () => {
    // Alert tests compare annotations too; the templates in them are checked above, the conditions here.
    const bare: RuleSpec = {
      groups: spec.groups.map((g) => ({
        ...g,
        rules: g.rules.map(({ annotations: _, ...rule }) => rule as Rule),
      })),
    };
    await writeFile(join(dir, 'alerts.yaml'), stringify(bare));
    await copyFile(
      join(repoRoot(), 'test', 'fixtures', 'prometheus', 'alerts.test.yaml'),
      join(dir, 'alerts.test.yaml'),
    );
    const tested = await promtool(['test', 'rules', 'alerts.test.yaml']);
    expect(tested.output).toContain('SUCCESS');
    expect(tested.code).toBe(0);
  });

  it('a broken expectation fails promtool test rules (the unit tests can fail)', async () => {
    const bare: RuleSpec = {
      groups: spec.groups.map((g) => ({
        ...g,
        rules: g.rules.map(({ annotations: _, ...rule }) => rule as Rule & { expr?: string }),
      })),
    };
    const stalled = bare.groups.flatMap((g) => g.rules).find((r) => r.alert === 'LiveUpdateObjectStalled') as
      (Rule & { expr: string }) | undefined;
    if (!stalled) throw new Error('LiveUpdateObjectStalled missing');
    stalled.expr = stalled.expr.replace('== 1', '== 2');
    await writeFile(join(dir, 'alerts.yaml'), stringify(bare));
    await copyFile(
      join(repoRoot(), 'test', 'fixtures', 'prometheus', 'alerts.test.yaml'),
      join(dir, 'alerts.test.yaml'),
    );
    const tested = await promtool(['test', 'rules', 'alerts.test.yaml']);
    expect(tested.code).not.toBe(0);
    expect(tested.output).toContain('LiveUpdateObjectStalled');
  });

  it('ships the Grafana dashboard in a ConfigMap with the sidecar label', () => {
    const dashboard = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-dashboard'));
    expect((dashboard?.metadata['labels'] as Record<string, string>)['grafana_dashboard']).toBe('1');
    const json = JSON.parse(
      (dashboard?.['data'] as Record<string, string>)['liveupdate-operator.json'] ?? '{}',
    ) as {
      uid: string;
      panels: unknown[];
    };
    expect(json.uid).toBe('liveupdate-operator');
    expect(json.panels.length).toBeGreaterThan(15);
  });

  it.each(['monitoring', 'subchart'])('helm lint --strict passes with the %s values', async (set) => {
    const result = await helm(['lint', chartPath, '--strict', '--values', ciValues(set)]);
    expect(result.stdout + result.stderr).toContain('0 chart(s) failed');
    expect(result.code).toBe(0);
  });

  it("as a subchart: other charts' global keys and enabled are accepted, pull secrets as objects, the global registry", async () => {
    const rendered = parseManifests(await helmTemplate([ciValues('subchart')]));
    expect(imagesOf(rendered).every((image) => image.startsWith('registry.factory.internal/mirror/'))).toBe(
      true,
    );
    const deployment = rendered.find((o) => o.kind === 'Deployment');
    const pod = (deployment?.['spec'] as { template: { spec: { imagePullSecrets?: unknown } } }).template
      .spec;
    expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
  });
});
