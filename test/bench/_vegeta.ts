/**
 * Load generation for the HTTP benchmarks with vegeta (MIT, Go, built into the tool cache by test/env/testbin.ts):
 * a multi-core open-loop generator, so that at a fixed rate requests start on schedule whatever the server does, and
 * the figures measure the server, not a JavaScript generator sharing its event loop with the bookkeeping.
 *
 * CPU pinning: with `taskset` and at least two cores the server under test (and whatever backs it) runs on CPU 0 and
 * the generator on the others, so they never compete for a core; {@link pinning} says which applies, and every
 * benchmark prints it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import { ensureTool } from '../env/testbin.js';

export interface Pinning {
  /** taskset CPU lists, or undefined when pinning is not possible. */
  readonly server: string | undefined;
  readonly generator: string | undefined;
  /** Number of CPUs the generator may use (GOMAXPROCS). */
  readonly generatorCpus: number;
  /** One line for the output. */
  readonly description: string;
}

export function pinning(): Pinning {
  const n = cpus().length;
  const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
  if (!hasTaskset || n < 2) {
    return {
      server: undefined,
      generator: undefined,
      generatorCpus: Math.max(1, n),
      description: `NOT pinned (${hasTaskset ? `only ${n} core` : 'no taskset'}): server and generator share the CPUs, so latencies include scheduling against the generator`,
    };
  }
  const generator = n === 2 ? '1' : `1-${n - 1}`;
  return {
    server: '0',
    generator,
    generatorCpus: n - 1,
    description: `server (and its S3 server) pinned to CPU 0, vegeta to CPU ${generator} (taskset, ${n} cores)`,
  };
}

/** `argv` prefixed with taskset when a CPU list is given. */
export function pinned(cpuList: string | undefined, argv: readonly string[]): string[] {
  return cpuList === undefined ? [...argv] : ['taskset', '-c', cpuList, ...argv];
}

/** Moves every thread of a running process to the CPU list (no-op without one). */
export function pinProcess(cpuList: string | undefined, pid: number): void {
  if (cpuList === undefined) return;
  const r = spawnSync('taskset', ['-a', '-p', '-c', cpuList, String(pid)], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`taskset -p ${pid} failed`);
}

export interface Target {
  method: 'GET' | 'POST';
  url: string;
  body?: string;
  header?: Record<string, string[]>;
}

/** One vegeta JSON target per line. */
export function targetLines(targets: Iterable<Target>): string {
  let out = '';
  for (const t of targets) {
    const line: Record<string, unknown> = { method: t.method, url: t.url };
    if (t.body !== undefined) line['body'] = Buffer.from(t.body).toString('base64');
    if (t.header) line['header'] = t.header;
    out += `${JSON.stringify(line)}\n`;
  }
  return out;
}

export interface AttackOptions {
  targetsFile: string;
  /** Requests per second; 0 = closed loop (as fast as `workers` allow). */
  rate: number;
  seconds: number;
  /** Connections to the server (and, for a closed loop, requests in flight). */
  connections: number;
  resultsFile: string;
  pin: Pinning;
  timeoutSeconds?: number;
}

export interface AttackResult {
  /** Scheduled rate (0 = closed loop). */
  rate: number;
  requests: number;
  non2xx: number;
  errors: number;
  /** Latency percentiles in ms, measured by vegeta from each request's start to the end of its answer. */
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Answers per second over the attack, from the first start to the last answer. */
  achieved: number;
  seconds: number;
}

let vegetaPath: Promise<string> | undefined;
export function vegeta(): Promise<string> {
  vegetaPath ??= ensureTool('vegeta');
  return vegetaPath;
}

/** Runs one vegeta attack and summarises its results. */
export async function attack(o: AttackOptions): Promise<AttackResult> {
  const bin = await vegeta();
  const args = [
    'attack',
    '-format=json',
    `-targets=${o.targetsFile}`,
    `-rate=${o.rate}/1s`,
    `-duration=${o.seconds}s`,
    `-timeout=${o.timeoutSeconds ?? 30}s`,
    `-max-connections=${o.connections}`,
    `-connections=${o.connections}`,
    '-keepalive=true',
    '-http2=false',
    // Bodies are read to the end but not kept: the results stay small.
    '-max-body=0',
    `-output=${o.resultsFile}`,
    ...(o.rate === 0 ? [`-workers=${o.connections}`, `-max-workers=${o.connections}`] : ['-workers=64']),
  ];
  const argv = pinned(o.pin.generator, [bin, ...args]);
  await new Promise<void>((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, GOMAXPROCS: String(o.pin.generatorCpus) },
    });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.once('error', reject);
    p.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`vegeta attack exited with ${code}: ${err}`)),
    );
  });
  return summarise(bin, o.resultsFile, o.rate);
}

async function summarise(bin: string, resultsFile: string, rate: number): Promise<AttackResult> {
  const enc = spawn(bin, ['encode', '--to=csv', resultsFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  let first = Infinity;
  let last = 0;
  for await (const line of createInterface({ input: enc.stdout })) {
    // timestamp ns, code, latency ns, bytes out, bytes in, error, ...
    const f = line.split(',', 6);
    const start = Number(f[0]) / 1e6;
    const code = Number(f[1]);
    const latency = Number(f[2]) / 1e6;
    if (f[5] !== undefined && f[5] !== '') errors++;
    else if (code < 200 || code > 299) non2xx++;
    latencies.push(latency);
    first = Math.min(first, start);
    last = Math.max(last, start + latency);
  }
  await new Promise<void>((resolve) =>
    enc.exitCode !== null ? resolve() : enc.once('exit', () => resolve()),
  );
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  const seconds = (last - first) / 1000;
  return {
    rate,
    requests: latencies.length,
    non2xx,
    errors,
    p50: pct(0.5),
    p99: pct(0.99),
    p999: pct(0.999),
    max: latencies[latencies.length - 1] ?? NaN,
    achieved: latencies.length / seconds,
    seconds,
  };
}

export function median(xs: readonly number[]): number {
  const v = [...xs].sort((x, y) => x - y);
  return v[Math.floor(v.length / 2)] ?? NaN;
}
