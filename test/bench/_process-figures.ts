/**
 * What the controller benchmarks read from the processes they run: Prometheus text from an admin port summed by
 * label, a process's memory and CPU time from /proc, and the controller's entry point compiled as the image runs it.
 */
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Sums of every sample of the named metrics in a Prometheus text exposition, by metric and by one label. */
export function parseMetrics(
  text: string,
  labels: readonly string[] = ['controller', 'method', 'code', 'result'],
): Map<string, number> {
  const sums = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{([^}]*)\})? ([0-9.eE+-]+)$/.exec(line);
    if (!m) continue;
    const [, name, , labelText, value] = m;
    const v = Number(value);
    sums.set(name!, (sums.get(name!) ?? 0) + v);
    for (const label of labels) {
      const lm = new RegExp(`${label}="([^"]*)"`).exec(labelText ?? '');
      if (lm) sums.set(`${name}|${label}=${lm[1]}`, (sums.get(`${name}|${label}=${lm[1]}`) ?? 0) + v);
    }
  }
  return sums;
}

/** GET `<adminUrl>/metrics`, parsed by {@link parseMetrics}. */
export async function scrape(adminUrl: string, labels?: readonly string[]): Promise<Map<string, number>> {
  const res = await fetch(`${adminUrl}/metrics`);
  if (res.status !== 200) throw new Error(`GET ${adminUrl}/metrics: ${res.status}`);
  return parseMetrics(await res.text(), labels);
}

/** VmHWM (peak) and VmRSS of a process, in bytes. */
export async function procMemory(pid: number): Promise<{ hwm: number; rss: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { hwm: kb('VmHWM') * 1024, rss: kb('VmRSS') * 1024 };
}

/** CPU seconds (user + system) a process has used; /proc/<pid>/stat counts in USER_HZ ticks (100 on Linux). */
export async function procCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export const mib = (b: number): string => (b / 2 ** 20).toFixed(0);

/** after[key] - before[key], a missing sample counting as 0. */
export const delta = (after: Map<string, number>, before: Map<string, number>, key: string): number =>
  (after.get(key) ?? 0) - (before.get(key) ?? 0);

/**
 * The components run as the image runs them: JavaScript compiled by tsc (`npm run build` → dist/main.js), not under
 * tsx, whose on-the-fly transform costs CPU and memory production does not have. BENCH_TSX=1 runs src/main.ts under
 * tsx instead (for comparison).
 */
export function controllerEntry(): { compiledMain?: string } {
  if (process.env['BENCH_TSX'] === '1') {
    console.log('components: src/main.ts under tsx (BENCH_TSX=1)');
    return {};
  }
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  const r = spawnSync(
    process.execPath,
    [join(repo, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: repo,
      stdio: 'inherit',
    },
  );
  if (r.status !== 0) throw new Error('npm run build (tsc -p tsconfig.build.json) failed');
  console.log('components: dist/main.js compiled by tsc (as in the image)');
  return { compiledMain: join(repo, 'dist/main.js') };
}
