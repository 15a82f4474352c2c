// The alerts and the dashboard the chart ships query only metrics (and labels) the code exports: a renamed metric or
// label breaks this test instead of silently emptying a panel or disarming an alert. The exported set is read from
// the registries both commands build (same constructors as src/controller/command.ts and src/updateserver/command.ts).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { Registry } from 'prom-client';
import { createControllerDomainMetrics } from '../controller/metrics.js';
import { registerObjectMetrics } from '../controller/object-metrics.js';
import { UpdateServerMetrics } from '../updateserver/metrics.js';
import { RestClientMetrics, createRegistry, createRuntimeMetrics } from './metrics.js';
import { queriedSeries } from './promql-refs.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const chartFiles = join(repo, 'charts', 'liveupdate-operator', 'files');

/** Labels Prometheus attaches at scrape time (ServiceMonitor targets), valid on every series. */
const TARGET_LABELS = ['job', 'instance', 'namespace', 'pod', 'service', 'container', 'endpoint'];

interface Exported {
  labels: Set<string>;
}

async function exportedBy(registry: Registry): Promise<Map<string, Exported>> {
  const out = new Map<string, Exported>();
  for (const metric of await registry.getMetricsAsJSON()) {
    const m = registry.getSingleMetric(metric.name) as unknown as { labelNames?: string[] };
    const labels = new Set([...(m.labelNames ?? []), ...TARGET_LABELS]);
    const names =
      String(metric.type) === 'histogram'
        ? [`${metric.name}_bucket`, `${metric.name}_sum`, `${metric.name}_count`]
        : [metric.name];
    for (const name of names)
      out.set(name, { labels: name.endsWith('_bucket') ? new Set([...labels, 'le']) : labels });
  }
  return out;
}

async function allExported(): Promise<Map<string, Exported>> {
  const controller = createRegistry();
  createRuntimeMetrics(controller);
  new RestClientMetrics(controller);
  createControllerDomainMetrics(controller);
  registerObjectMetrics(controller, () => []);
  const updateServer = createRegistry();
  new UpdateServerMetrics(updateServer);
  return new Map([...(await exportedBy(controller)), ...(await exportedBy(updateServer))]);
}

function alertExpressions(): Array<{ where: string; expr: string }> {
  const rules = parse(readFileSync(join(chartFiles, 'prometheus', 'alerts.yaml'), 'utf8')) as {
    groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
  };
  return rules.groups.flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })));
}

function dashboardExpressions(): Array<{ where: string; expr: string }> {
  const dashboard = JSON.parse(
    readFileSync(join(chartFiles, 'grafana', 'liveupdate-operator.json'), 'utf8'),
  ) as {
    panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
    templating: { list: Array<{ name: string; definition?: string }> };
  };
  return [
    ...dashboard.panels.flatMap((p) =>
      (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr })),
    ),
    ...dashboard.templating.list
      .filter((v) => v.definition?.startsWith('label_values('))
      .map((v) => ({
        where: `variable ${v.name}`,
        expr: (v.definition ?? '').replace(/^label_values\((.*), *(\w+)\)$/, '$1{$2!=""}'),
      })),
  ];
}

describe('monitoring contract', () => {
  it('every metric and label the alerts and the dashboard query is exported', async () => {
    const exported = await allExported();
    const problems: string[] = [];
    const expressions = [...alertExpressions(), ...dashboardExpressions()];
    expect(expressions.length).toBeGreaterThan(30);
    for (const { where, expr } of expressions) {
      const refs = queriedSeries(expr);
      if (refs.metrics.length === 0) problems.push(`${where}: no metric found in ${expr}`);
      const known = new Set<string>(['le']);
      for (const { metric, labels } of refs.metrics) {
        const e = exported.get(metric);
        if (!e) {
          problems.push(`${where}: ${metric} is not exported`);
          continue;
        }
        for (const l of e.labels) known.add(l);
        for (const label of labels)
          if (!e.labels.has(label)) problems.push(`${where}: ${metric} has no label ${label}`);
      }
      for (const label of refs.groupingLabels)
        if (!known.has(label)) problems.push(`${where}: no queried metric has the label ${label}`);
    }
    expect(problems).toEqual([]);
  });

  it('every alert has a severity and a runbook link to a section of docs/troubleshooting.md', () => {
    const rules = parse(readFileSync(join(chartFiles, 'prometheus', 'alerts.yaml'), 'utf8')) as {
      groups: Array<{
        rules: Array<{ alert: string; labels?: { severity?: string }; annotations?: Record<string, string> }>;
      }>;
    };
    const headings = new Set(
      [...readFileSync(join(repo, 'docs', 'troubleshooting.md'), 'utf8').matchAll(/^#+ (.+)$/gm)].map((m) =>
        (m[1] ?? '')
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    const problems: string[] = [];
    for (const rule of rules.groups.flatMap((g) => g.rules)) {
      if (!['critical', 'warning', 'info'].includes(rule.labels?.severity ?? ''))
        problems.push(`${rule.alert}: severity`);
      const url = rule.annotations?.['runbook_url'] ?? '';
      const match = /\/troubleshooting\.md#([a-z0-9-]+)$/.exec(url);
      if (!match || !headings.has(match[1] ?? '')) problems.push(`${rule.alert}: runbook ${url}`);
      if (match?.[1] !== rule.alert.toLowerCase())
        problems.push(`${rule.alert}: runbook anchor is not the alert's`);
    }
    expect(problems).toEqual([]);
  });

  it('the extractor finds selectors, matchers and grouping labels (so the test above can fail)', () => {
    const refs = queriedSeries(
      'sum by (app_id, channel) (rate(liveupdate_device_events_total{action=~"set|x", version!=""}[5m])) ' +
        '/ on (app_id) group_left (namespace) liveupdate_app_info > 0',
    );
    expect(refs.metrics).toEqual([
      { metric: 'liveupdate_device_events_total', labels: ['action', 'version'] },
      { metric: 'liveupdate_app_info', labels: [] },
    ]);
    expect(refs.groupingLabels.sort()).toEqual(['app_id', 'channel', 'namespace']);
  });

  it('a query of a metric or label that does not exist is reported', async () => {
    const exported = await allExported();
    expect(exported.has('liveupdate_device_events_total')).toBe(true);
    expect(exported.get('liveupdate_device_events_total')?.labels.has('app')).toBe(false);
    expect(exported.has('liveupdate_no_such_metric')).toBe(false);
  });
});
