/**
 * Update-service benchmark (`npm run bench -- update-server`), every ratio against a baseline measured in the same
 * run, with vegeta (test/bench/_vegeta.ts) as the load generator: multi-core, open loop, pinned to other cores than
 * the server where `taskset` and two cores exist (the output says which applies).
 *   1. POST /updates with realistic §2.1 bodies over 20,000 device ids, 256 connections, against a bare node:http
 *      server answering a fixed JSON of the same size:
 *      a. saturated (closed loop: 256 requests always in flight): maximum throughput, its ratio, and CPU per request
 *         of each server (CPU time the server process used ÷ requests; robust when the machine is shared). Its
 *         latencies are queueing (Little's law: 256 in flight at N req/s wait ~256/N s), so they are not reported.
 *      b. open loop at fixed rates (2 k, 5 k, 10 k, 15 k req/s and 50 %/75 % of the bare maximum; rates above 1.2×
 *         the bare maximum are skipped): requests start on vegeta's schedule whether or not earlier ones were
 *         answered, as a fleet of devices loads the service. p50/p99/p99.9 latency and the achieved rate per server;
 *         a server that cannot keep up falls behind (achieved < rate) and its latencies then measure the backlog.
 *   2. GET of a bundle (BENCH_DL_MIB, default 4 MiB) through the service vs a direct (presigned) GET from the S3
 *      server (versitygw of its own, pinned with the service): saturated MiB/s with 8 connections and CPU per MiB in
 *      the service, then p50/p99/p99.9 at 50 % and 75 % of the direct maximum.
 *   3. RSS with 1,000 apps × 10 channels loaded, against the same process with no app, and the index sizes.
 * The service runs with the `NODE_OPTIONS` the chart gives the update-service Pod (`updateServer.nodeOptions` of
 * charts/liveupdate-operator/values.yaml, read from there); `bare` and mode `service-node-defaults` run without,
 * mode `bare-node-options` is bare with the chart's node options (what they do to HTTP alone).
 * Servers run in child processes on 127.0.0.1 (compiled by tsc, as in the image). Figures only, no assertions.
 * Knobs: BENCH_ONLY=throughput|download|rss, BENCH_DURATION (s per attack, default 5), BENCH_ROUNDS (saturated
 * rounds, default 3), BENCH_RATES (comma-separated req/s, replaces the fixed list), BENCH_MODES (default
 * bare,service; add `before` with BENCH_BEFORE_TARGET for a before/after comparison, `service-node-defaults` for the
 * service without the chart's node options).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { getPath, readChartValues } from '../../scripts/chart-values.js';
import { S3ObjectStore } from '../../src/storage/s3-store.js';
import { minioClientFor } from '../env/environment.js';
import { startPrivateS3 } from '../integration/updateserver/private-s3.js';
import {
  attack,
  median,
  pinProcess,
  pinned,
  pinning,
  targetLines,
  vegeta,
  type AttackResult,
  type Pinning,
} from './_vegeta.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
/**
 * The servers run as JavaScript compiled by tsc, as in the image (tsx's on-the-fly transform adds a helper call to
 * every closure it creates, which would bill the service for a cost production does not have).
 */
const OUT = join(REPO, 'node_modules/.cache/liveupdate-bench');
const TARGET = join(OUT, 'test/bench/_update-server-target.js');

function compile(): void {
  const tsconfig = join(OUT, 'tsconfig.json');
  mkdirSync(OUT, { recursive: true });
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(REPO, 'tsconfig.json'),
      compilerOptions: { outDir: OUT, rootDir: REPO, sourceMap: false, noEmit: false, types: ['node'] },
      // Only the target and what it imports.
      files: [join(REPO, 'test/bench/_update-server-target.ts')],
      include: [],
    }),
  );
  writeFileSync(join(OUT, 'package.json'), '{"type":"module"}\n');
  const r = spawnSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', tsconfig], {
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error('tsc failed');
}

const DURATION = Number(process.env['BENCH_DURATION'] ?? 5);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const CONNECTIONS = 256;
/** Distinct device ids (bodies); the per-device rate limit stays on, so each id must not be reused too often. */
const DEVICES = 20_000;
const FIXED_RATES = [2_000, 5_000, 10_000, 15_000];
const PIN: Pinning = pinning();

interface Child {
  port: number;
  proc: ChildProcess;
  /** Marks the start of the measured phase (CPU counted from here). */
  mark(): Promise<void>;
  /** CPU microseconds the child used since the (first) mark, without stopping it. */
  cpuSinceMark(): Promise<number>;
  /** Resolves with the CPU microseconds the child used since the mark (or since it was ready). */
  stop(): Promise<number>;
}

/** Extra node flags for the server children, e.g. `BENCH_TARGET_FLAGS='--cpu-prof --cpu-prof-dir=/tmp/prof'`. */
const TARGET_FLAGS = (process.env['BENCH_TARGET_FLAGS'] ?? '').split(' ').filter((f) => f !== '');

/**
 * Before/after comparisons: `BENCH_BEFORE_TARGET=<compiled _update-server-target.js of another revision>` adds a
 * "before" series (mode `before` in BENCH_MODES for the update check; a third download series), measured in the
 * same alternating rounds.
 */
const BEFORE_TARGET = process.env['BENCH_BEFORE_TARGET'];

/** The `NODE_OPTIONS` the chart sets for the update-service Pod by default (`updateServer.nodeOptions`). */
const chartNodeOptions = getPath((await readChartValues()).values, ['updateServer', 'nodeOptions']);
const CHART_NODE_OPTIONS = typeof chartNodeOptions === 'string' ? chartNodeOptions : '';

/** The environment of a server child: the update service as the chart runs it, bare node:http with node's defaults. */
function targetEnv(mode: string): NodeJS.ProcessEnv {
  const asDeployed = mode !== 'bare' && mode !== 'express' && mode !== 'service-node-defaults';
  const env = { ...process.env };
  delete env['NODE_OPTIONS'];
  if (asDeployed && CHART_NODE_OPTIONS !== '') env['NODE_OPTIONS'] = CHART_NODE_OPTIONS;
  return env;
}

function startTarget(args: string[], nodeFlags: string[] = []): Promise<Child> {
  let target = TARGET;
  const env = targetEnv(args[0]!);
  if (args[0] === 'service-node-defaults') {
    args = ['service', ...args.slice(1)];
  } else if (args[0] === 'bare-node-options') {
    args = ['bare', ...args.slice(1)];
  } else if (args[0] === 'before') {
    if (BEFORE_TARGET === undefined) throw new Error('mode "before" needs BENCH_BEFORE_TARGET');
    target = BEFORE_TARGET;
    args = ['service', ...args.slice(1)];
  } else if (args[0] === 'download-before') {
    if (BEFORE_TARGET === undefined) throw new Error('BENCH_BEFORE_TARGET is not set');
    target = BEFORE_TARGET;
    args = ['download', ...args.slice(1)];
  }
  return new Promise((resolve, reject) => {
    const argv = pinned(PIN.server, [process.execPath, ...TARGET_FLAGS, ...nodeFlags, target, ...args]);
    const proc = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'inherit'],
      env,
    });
    let out = '';
    proc.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /READY (\d+) (\d+)/.exec(out);
      if (m) {
        const startupCpu = Number(m[2]);
        resolve({
          port: Number(m[1]),
          proc,
          mark: async () => {
            proc.kill('SIGUSR2');
            for (let i = 0; i < 100 && !/MARK \d+/.test(out); i++)
              await new Promise((t) => setTimeout(t, 20));
          },
          cpuSinceMark: async () => {
            const marks = (): number[] => [...out.matchAll(/MARK (\d+)/g)].map((m) => Number(m[1]));
            const before = marks().length;
            proc.kill('SIGUSR2');
            for (let i = 0; i < 100 && marks().length === before; i++)
              await new Promise((t) => setTimeout(t, 20));
            const all = marks();
            return all[all.length - 1]! - (all[0] ?? startupCpu);
          },
          stop: () =>
            new Promise<number>((r) => {
              if (proc.exitCode !== null) return r(NaN);
              proc.once('exit', () =>
                r(
                  Number(/CPU (\d+)/.exec(out)?.[1] ?? NaN) -
                    Number(/MARK (\d+)/.exec(out)?.[1] ?? startupCpu),
                ),
              );
              proc.kill('SIGTERM');
            }),
        });
      }
    });
    proc.once('exit', (code) => reject(new Error(`target ${args.join(' ')} exited with ${code}: ${out}`)));
  });
}

function runChild(args: string[], nodeFlags: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...TARGET_FLAGS, ...nodeFlags, TARGET, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env,
    });
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}`))));
  });
}

function deviceBodies(): string[] {
  const bodies: string[] = [];
  for (let i = 0; i < DEVICES; i++) {
    const r = (i * 2654435761) >>> 0;
    const android = r % 10 < 6;
    const id = `${((r ^ i) >>> 0).toString(16).padStart(8, '0')}-${(i & 0xffff).toString(16).padStart(4, '0')}-4${(r & 0xfff).toString(16).padStart(3, '0')}-8a3b-${i.toString(16).padStart(12, '0')}`;
    const versionName = [
      'builtin',
      'builtin',
      'builtin',
      'builtin',
      'builtin',
      'builtin',
      'builtin',
      '1.4.1',
      '1.4.1',
      '1.3.0',
    ][r % 10]!;
    const channel = ['', '', '', '', '', '', '', '', 'beta', 'next'][(r >>> 4) % 10]!;
    const body: Record<string, unknown> = {
      platform: android ? 'android' : 'ios',
      device_id: id,
      app_id: 'com.example.app',
      custom_id: '',
      version_build: '1.4.0',
      version_code: android ? '140' : '27',
      version_os: android ? '14' : '18.1',
      version_name: versionName,
      plugin_version: '8.51.23',
      is_emulator: false,
      is_prod: true,
      defaultChannel: channel,
      key_id: 'MIIBCgKCAQEAzvBQkpU7',
    };
    if (android) body['install_source'] = 'google_play';
    bodies.push(JSON.stringify(body));
  }
  return bodies;
}

/** A temp dir for targets and results, removed at the end. */
async function scratch(): Promise<{ dir: string; done(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'lu-bench-'));
  return { dir, done: () => rm(dir, { recursive: true, force: true }) };
}

async function updateTargets(dir: string, mode: string, port: number, bodies: string[]): Promise<string> {
  const file = join(dir, `targets-${mode}.jsonl`);
  await writeFile(
    file,
    targetLines(
      bodies.map((body) => ({
        method: 'POST' as const,
        url: `http://127.0.0.1:${port}/updates`,
        body,
        header: { 'Content-Type': ['application/json; charset=utf-8'] },
      })),
    ),
  );
  return file;
}

const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '-').padStart(7);

function openLoopRow(r: AttackResult): string {
  const behind = r.achieved < 0.95 * r.rate ? ' behind' : '';
  return `${ms(r.p50)} ${ms(r.p99)} ${ms(r.p999)} ${r.achieved.toFixed(0).padStart(7)}${behind.padEnd(7)}`;
}

async function throughputBench(): Promise<void> {
  const bodies = deviceBodies();
  const modes = (process.env['BENCH_MODES'] ?? 'bare,service').split(',');
  const tmp = await scratch();
  const children = new Map<string, Child>();
  const targets = new Map<string, string>();
  const saturated = new Map<string, AttackResult[]>();
  const cpuPerRequest = new Map<string, number>();
  const cpuRounds = new Map<string, number[]>(modes.map((m) => [m, []]));
  const open = new Map<number, Map<string, AttackResult & { cpuPerRequest: number }>>();
  let n = 0;
  const results = (): string => join(tmp.dir, `results-${n++}.bin`);
  try {
    for (const mode of modes) {
      const child = await startTarget([mode]);
      children.set(mode, child);
      targets.set(mode, await updateTargets(tmp.dir, mode, child.port, bodies));
      // Warm-up (JIT, connections): not counted.
      await attack({
        targetsFile: targets.get(mode)!,
        rate: 2000,
        seconds: 2,
        connections: CONNECTIONS,
        resultsFile: results(),
        pin: PIN,
      });
      saturated.set(mode, []);
    }
    // Saturated, alternating rounds: a load spike from other work on the machine hits every server alike.
    const cpu = new Map<string, number>(modes.map((m) => [m, 0]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of modes) {
        const child = children.get(mode)!;
        const before = await child.cpuSinceMark();
        const r = await attack({
          targetsFile: targets.get(mode)!,
          rate: 0,
          seconds: DURATION,
          connections: CONNECTIONS,
          resultsFile: results(),
          pin: PIN,
        });
        const perRequest = ((await child.cpuSinceMark()) - before) / r.requests;
        cpu.set(mode, cpu.get(mode)! + perRequest);
        cpuRounds.get(mode)!.push(perRequest);
        saturated.get(mode)!.push(r);
      }
    }
    for (const mode of modes) cpuPerRequest.set(mode, cpu.get(mode)! / ROUNDS);
    const bareMax = median(saturated.get('bare')?.map((r) => r.achieved) ?? [NaN]);
    const rates = (
      process.env['BENCH_RATES']
        ? process.env['BENCH_RATES'].split(',').map(Number)
        : [...FIXED_RATES, Math.round(bareMax * 0.5), Math.round(bareMax * 0.75)]
    )
      .filter((r) => Number.isFinite(r) && r > 0)
      .sort((a, b) => a - b);
    for (const rate of rates) {
      if (!process.env['BENCH_RATES'] && rate > 1.2 * bareMax) continue;
      const row = new Map<string, AttackResult & { cpuPerRequest: number }>();
      open.set(rate, row);
      for (const mode of modes) {
        const child = children.get(mode)!;
        const before = await child.cpuSinceMark();
        const r = await attack({
          targetsFile: targets.get(mode)!,
          rate,
          seconds: DURATION,
          connections: CONNECTIONS,
          resultsFile: results(),
          pin: PIN,
        });
        row.set(mode, { ...r, cpuPerRequest: ((await child.cpuSinceMark()) - before) / r.requests });
      }
    }
  } finally {
    for (const child of children.values()) await child.stop();
    await tmp.done();
  }

  console.log(`\nPOST /updates — ${PIN.description}; ${DEVICES} device ids, ${CONNECTIONS} connections`);
  console.log(
    `SATURATED (closed loop, ${CONNECTIONS} in flight), ${ROUNDS} alternating rounds of ${DURATION} s, medians:`,
  );
  console.log('server     req/s   non-2xx  errors  CPU µs/req   per round req/s');
  for (const mode of modes) {
    const rs = saturated.get(mode)!;
    console.log(
      `${mode.padEnd(8)} ${median(rs.map((r) => r.achieved))
        .toFixed(0)
        .padStart(
          7,
        )}  ${String(rs.reduce((a, r) => a + r.non2xx, 0)).padStart(8)}  ${String(rs.reduce((a, r) => a + r.errors, 0)).padStart(6)}  ${cpuPerRequest.get(mode)!.toFixed(1).padStart(10)}   ${rs.map((r) => r.achieved.toFixed(0)).join(', ')}`,
    );
  }
  const bare = saturated.get('bare');
  const svc = saturated.get('service');
  if (bare && svc) {
    const perRound = svc.map((r, i) => (r.achieved / bare[i]!.achieved).toFixed(2)).join(', ');
    console.log(
      `throughput ratio service/bare: ${median(svc.map((r, i) => r.achieved / bare[i]!.achieved)).toFixed(2)} (per round: ${perRound}; goal ≥ 0.9)`,
    );
    console.log(
      `CPU per request service/bare: ${(cpuPerRequest.get('service')! / cpuPerRequest.get('bare')!).toFixed(2)} (goal ≤ 1.3)`,
    );
  }
  // Per round, so that a load spike on a shared machine shows as one odd round rather than a shifted mean.
  console.log(
    `CPU µs/req per round: ${modes
      .map(
        (m) =>
          `${m} ${cpuRounds
            .get(m)!
            .map((c) => c.toFixed(1))
            .join(', ')}`,
      )
      .join('; ')}`,
  );
  for (const mode of modes.filter((m) => m !== 'bare' && m !== 'service')) {
    const other = saturated.get(mode)!;
    if (!bare) break;
    console.log(
      `${mode}${mode === 'before' ? ' (BENCH_BEFORE_TARGET)' : ''}: throughput ratio ${median(other.map((r, i) => r.achieved / bare[i]!.achieved)).toFixed(2)}, CPU per request ratio ${(cpuPerRequest.get(mode)! / cpuPerRequest.get('bare')!).toFixed(2)}`,
    );
  }
  console.log(
    `\nOPEN LOOP at fixed rates, ${DURATION} s each (servers alternate per rate); latency ms from each request's start; "behind": achieved < 95 % of the rate (overloaded: latencies measure the backlog)`,
  );
  console.log(
    `rate req/s  ${modes.map((m) => `${m.padEnd(7)} p50     p99   p99.9 achieved       CPU µs/req`).join('   ')}   p99 ${modes
      .slice(1)
      .map((m) => `${m}/bare`)
      .join(' ')}`,
  );
  for (const [rate, row] of open) {
    const cells = modes.map((m) => {
      const r = row.get(m)!;
      return `${openLoopRow(r)} ${r.cpuPerRequest.toFixed(1).padStart(8)}`;
    });
    const ratios = modes.slice(1).map((m) => (row.get(m)!.p99 / row.get('bare')!.p99).toFixed(2));
    console.log(`${String(rate).padStart(10)}  ${cells.join('   ')}   ${ratios.join(' ')}`);
  }
  const at75 = [...open.entries()].find(
    ([rate]) => rate === Math.round(median(bare?.map((r) => r.achieved) ?? []) * 0.75),
  );
  if (at75) {
    const [rate, row] = at75;
    console.log(
      `p99 at 75 % of the bare maximum (${rate} req/s): service ${row.get('service')!.p99.toFixed(2)} ms, bare ${row.get('bare')!.p99.toFixed(2)} ms, ratio ${(row.get('service')!.p99 / row.get('bare')!.p99).toFixed(2)} (goal ≤ 2)`,
    );
  }
}

async function downloadBench(): Promise<void> {
  const MiB = 1024 * 1024;
  const SIZE = Number(process.env['BENCH_DL_MIB'] ?? 4) * MiB;
  const DL_CONNECTIONS = 8;
  const s3 = await startPrivateS3();
  const tmp = await scratch();
  const children: Child[] = [];
  try {
    // The S3 server shares the service's core: the service's cost shows as lost throughput on the same CPU budget.
    const s3Pid = execFileSync('pgrep', ['-P', String(process.pid), '-f', 'versitygw'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map(Number)[0];
    if (s3Pid !== undefined && s3Pid > 0) pinProcess(PIN.server, s3Pid);
    const client = minioClientFor(s3);
    await client.makeBucket('bench', s3.region);
    const key = `lu/apps/example/bundles/${randomBytes(32).toString('hex')}.zip`;
    const chunk = randomBytes(MiB);
    await client.putObject(
      'bench',
      key,
      Readable.from(
        (function* () {
          for (let i = 0; i < SIZE / MiB; i++) yield chunk;
        })(),
      ),
      SIZE,
    );
    const store = new S3ObjectStore({
      endpoint: s3.endpoint,
      bucket: 'bench',
      accessKeyId: s3.accessKey,
      secretAccessKey: s3.secretKey,
    });
    const direct = await store.presignGet(key, 3600);
    store.close();
    const args = [s3.endpoint, 'bench', key, String(SIZE), s3.accessKey, s3.secretKey];
    const series: { name: string; child?: Child; targets: string }[] = [];
    const directTargets = join(tmp.dir, 'direct.jsonl');
    await writeFile(directTargets, targetLines([{ method: 'GET', url: direct }]));
    series.push({ name: 'direct S3', targets: directTargets });
    for (const [name, mode] of [
      ['service', 'download'],
      ...(BEFORE_TARGET !== undefined ? [['before', 'download-before']] : []),
    ] as [string, string][]) {
      const child = await startTarget([mode, ...args]);
      children.push(child);
      const file = join(tmp.dir, `${name}.jsonl`);
      await writeFile(
        file,
        targetLines([{ method: 'GET', url: `http://127.0.0.1:${child.port}/bundles/${key}` }]),
      );
      series.push({ name, child, targets: file });
    }
    let n = 0;
    const results = (): string => join(tmp.dir, `dl-${n++}.bin`);
    const run = (targetsFile: string, rate: number, connections: number): Promise<AttackResult> =>
      attack({ targetsFile, rate, seconds: DURATION, connections, resultsFile: results(), pin: PIN });
    for (const s of series) await run(s.targets, 5, 2); // warm-up
    const sat = new Map<string, AttackResult[]>(series.map((s) => [s.name, []]));
    const cpuPerMiB = new Map<string, number>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of series) {
        const before = (await s.child?.cpuSinceMark()) ?? 0;
        const r = await run(s.targets, 0, DL_CONNECTIONS);
        if (s.child) {
          const used = (await s.child.cpuSinceMark()) - before;
          cpuPerMiB.set(
            s.name,
            (cpuPerMiB.get(s.name) ?? 0) +
              used / (((r.requests - r.errors - r.non2xx) * SIZE) / MiB) / ROUNDS,
          );
        }
        sat.get(s.name)!.push(r);
      }
    }
    const directMax = median(sat.get('direct S3')!.map((r) => r.achieved));
    const open = new Map<number, Map<string, AttackResult>>();
    for (const fraction of [0.5, 0.75]) {
      const rate = Math.max(1, Math.round(directMax * fraction));
      const row = new Map<string, AttackResult>();
      open.set(rate, row);
      for (const s of series) row.set(s.name, await run(s.targets, rate, 64));
    }
    // vegeta reads every body to the end but keeps none (-max-body=0): bytes = answered × size.
    const mibs = (r: AttackResult): number => ((r.requests - r.errors - r.non2xx) * SIZE) / MiB / r.seconds;
    console.log(
      `\nGET ${SIZE / MiB} MiB bundle — ${PIN.description}; SATURATED (${DL_CONNECTIONS} in flight), ${ROUNDS} alternating rounds of ${DURATION} s, medians:`,
    );
    console.log('series        MiB/s   ratio to direct (per round)        errors  CPU µs/MiB in the service');
    const directRounds = sat.get('direct S3')!;
    for (const s of series) {
      const rs = sat.get(s.name)!;
      const ratios = rs.map((r, i) => mibs(r) / mibs(directRounds[i]!));
      console.log(
        `${s.name.padEnd(10)} ${median(rs.map(mibs)).toFixed(0).padStart(8)}   ${median(ratios).toFixed(2)} (${ratios.map((r) => r.toFixed(2)).join(', ')})`.padEnd(
          60,
        ) +
          `${String(rs.reduce((a, r) => a + r.errors + r.non2xx, 0)).padStart(6)}  ${s.child ? cpuPerMiB.get(s.name)!.toFixed(0) : ''}`,
      );
    }
    const svc = sat.get('service')!;
    console.log(
      `download ratio service/direct: ${median(svc.map((r, i) => mibs(r) / mibs(directRounds[i]!))).toFixed(2)} (median of per-round ratios; goal ≥ 0.8)`,
    );
    console.log(
      `OPEN LOOP at 50 % / 75 % of the direct maximum, ${DURATION} s each; latency ms to the last byte`,
    );
    console.log(
      `rate req/s  ${series.map((s) => `${s.name.padEnd(9)} p50     p99   p99.9 achieved`).join('   ')}`,
    );
    for (const [rate, row] of open)
      console.log(
        `${String(rate).padStart(10)}  ${series.map((s) => openLoopRow(row.get(s.name)!)).join('   ')}`,
      );
  } finally {
    for (const c of children) await c.stop();
    await tmp.done();
    await s3.destroy();
  }
}

async function rssBench(): Promise<void> {
  const flags = ['--expose-gc'];
  const runs = Number(process.env['BENCH_RSS_RUNS'] ?? 3);
  const mib = (x: number): string => (x / 1024 / 1024).toFixed(1);
  interface RssReading {
    apps: number;
    rss: number;
    heapUsed: number;
    indexBytes: number;
  }
  const measure = async (apps: string, env: NodeJS.ProcessEnv): Promise<RssReading[]> => {
    const readings: RssReading[] = [];
    for (let i = 0; i < runs; i++)
      readings.push(JSON.parse(await runChild(['rss', apps, '10'], flags, env)) as RssReading);
    return readings;
  };
  // As the chart runs the update service, then with node's defaults (what the chart's node options save). RSS
  // varies between runs (when V8 and malloc hand pages back): medians of BENCH_RSS_RUNS processes, and the range.
  for (const [label, mode] of [
    [`NODE_OPTIONS=${CHART_NODE_OPTIONS || '(none)'} (the chart's updateServer.nodeOptions)`, 'service'],
    ["node's defaults", 'service-node-defaults'],
  ] as const) {
    const env = targetEnv(mode);
    const empty = await measure('0', env);
    const loaded = await measure('1000', env);
    const rss = (rs: RssReading[]): string =>
      `${mib(median(rs.map((r) => r.rss)))} MiB (${rs.map((r) => mib(r.rss)).join(', ')}; heap ${mib(median(rs.map((r) => r.heapUsed)))} MiB)`;
    console.log(`\nRSS, ${label}, ${runs} processes each:`);
    console.log(
      `  with ${loaded[0]!.apps} apps × 10 channels (${mib(loaded[0]!.indexBytes)} MiB of index JSON): ${rss(loaded)}`,
    );
    console.log(`  the same process with no app: ${rss(empty)}`);
    console.log(
      `  cost of the indexes: ${mib(median(loaded.map((r) => r.rss)) - median(empty.map((r) => r.rss)))} MiB (medians; goal ≤ 60)`,
    );
  }
}

compile();
await vegeta();
const only = process.env['BENCH_ONLY'];
if (!only || only === 'throughput') await throughputBench();
if (!only || only === 'download') await downloadBench();
if (!only || only === 'rss') await rssBench();
