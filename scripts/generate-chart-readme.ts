// Regenerates the values reference in charts/liveupdate-operator/README.md from the `# --` comments of values.yaml.
// `--check` fails instead of writing when the README is out of date or a value is undocumented.
//
//   npx tsx scripts/generate-chart-readme.ts [--check]
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chartDir, readChartValues, renderReadme, undocumentedLeaves } from './chart-values.js';

const readmePath = join(chartDir, 'README.md');
const chart = await readChartValues();
const missing = undocumentedLeaves(chart);
if (missing.length > 0) {
  console.error(`values without a "# --" description in values.yaml: ${missing.join(', ')}`);
  process.exit(1);
}
const current = await readFile(readmePath, 'utf8');
const next = renderReadme(current, chart);
if (process.argv.includes('--check')) {
  if (next !== current) {
    console.error(
      'charts/liveupdate-operator/README.md is out of date: run npx tsx scripts/generate-chart-readme.ts',
    );
    process.exit(1);
  }
  console.log('chart README values reference is up to date');
} else {
  await writeFile(readmePath, next);
  console.log(`wrote the values reference (${chart.documented.length} keys) into ${readmePath}`);
}
