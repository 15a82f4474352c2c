/**
 * The series a PromQL expression reads: metric names with the labels their selectors match on, and the labels of
 * `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` clauses. Enough of PromQL for the monitoring contract
 * test (alerts and dashboard only query what the code exports); not a parser for arbitrary PromQL.
 */
export interface QueriedSeries {
  metrics: Array<{ metric: string; labels: string[] }>;
  groupingLabels: string[];
}

const KEYWORDS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'count',
  'stddev',
  'stdvar',
  'topk',
  'bottomk',
  'quantile',
  'count_values',
  'group',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'offset',
  'bool',
  'rate',
  'irate',
  'increase',
  'delta',
  'idelta',
  'deriv',
  'histogram_quantile',
  'abs',
  'absent',
  'clamp_min',
  'clamp_max',
  'label_replace',
  'label_join',
  'time',
  'vector',
  'scalar',
  'sort',
  'sort_desc',
  'round',
  'ceil',
  'floor',
  'changes',
  'resets',
  'avg_over_time',
  'max_over_time',
  'min_over_time',
  'sum_over_time',
  'count_over_time',
  'last_over_time',
  'present_over_time',
  'timestamp',
  'inf',
  'nan',
]);

export function queriedSeries(expr: string): QueriedSeries {
  // Strings, range selectors and Grafana's $variables carry no metric names.
  const text = expr.replace(/\[[^\]]*\]/g, '[]');
  const metrics: QueriedSeries['metrics'] = [];
  const groupingLabels = new Set<string>();
  const clause = /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g;
  for (const m of text.matchAll(clause))
    for (const label of (m[2] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean))
      groupingLabels.add(label);
  const withoutClauses = text.replace(clause, ' ');
  const token = /"(?:[^"\\]|\\.)*"|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\{([^}]*)\})?|\{[^}]*\}/g;
  for (const m of withoutClauses.matchAll(token)) {
    const name = m[1];
    if (!name || KEYWORDS.has(name)) continue;
    const after = withoutClauses.slice((m.index ?? 0) + m[0].length).trimStart();
    if (!m[2] && after.startsWith('(')) continue; // a function call
    const labels = [...(m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map(
      (l) => l[1] ?? '',
    );
    metrics.push({ metric: name, labels });
  }
  return { metrics, groupingLabels: [...groupingLabels] };
}
