// Copies the CRDs from crds/ (the single source of truth) into the Helm chart, which cannot read files outside its
// own directory. `--check` reports a difference instead of writing (used by test/integration/chart).
//
//   npx tsx scripts/sync-chart-crds.ts [--check]
import { readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const sourceDir = join(repoRoot, 'crds');
export const chartCrdDir = join(repoRoot, 'charts', 'liveupdate-operator', 'files', 'crds');

async function yamlFiles(dir: string): Promise<Map<string, string>> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.yaml')).sort();
  const files = new Map<string, string>();
  for (const name of names) files.set(name, await readFile(join(dir, name), 'utf8'));
  return files;
}

/** File names whose content differs between crds/ and the chart copy (missing or extra files included). */
export async function crdDifferences(): Promise<string[]> {
  const [source, copy] = await Promise.all([yamlFiles(sourceDir), yamlFiles(chartCrdDir)]);
  const names = new Set([...source.keys(), ...copy.keys()]);
  return [...names].filter((name) => source.get(name) !== copy.get(name)).sort();
}

export async function syncChartCrds(): Promise<string[]> {
  const source = await yamlFiles(sourceDir);
  if (source.size === 0) throw new Error(`no CRD files in ${sourceDir}`);
  await rm(chartCrdDir, { recursive: true, force: true });
  await mkdir(chartCrdDir, { recursive: true });
  for (const [name, content] of source) await writeFile(join(chartCrdDir, name), content);
  return [...source.keys()];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const differences = await crdDifferences();
    if (differences.length > 0) {
      console.error(
        `chart CRDs differ from crds/: ${differences.join(', ')}\nrun: npx tsx scripts/sync-chart-crds.ts`,
      );
      process.exit(1);
    }
    console.log('chart CRDs match crds/');
  } else {
    const names = await syncChartCrds();
    console.log(`copied ${names.length} CRDs into ${chartCrdDir}`);
  }
}
