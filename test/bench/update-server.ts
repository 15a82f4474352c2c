/**
 * Update-service benchmark (`npm run bench -- update-server`), baselines measured in the same run:
 *   1. POST /updates with realistic §2.1 bodies over 100,000 device ids, 256 connections, against a bare node:http
 *      server answering a fixed JSON of the same size, in two regimes:
 *      a. saturated (closed loop, autocannon: every connection sends its next request as soon as the previous answer
 *         arrives): gives the maximum throughput and the throughput ratio (goal ≥ 0.7). Its latencies are NOT the
 *         service time: with 256 requests always in flight, a server doing N req/s answers each after ~256/N s of
 *         queueing (Little's law), whatever server it is, so its p99 only tells how long the queue is.
 *      b. open loop at a fixed rate below saturation (default 50 % of the bare server's measured maximum, same rate
 *         for both servers): requests start on a fixed schedule, whether or not earlier ones were answered, spread
 *         over 256 warm keep-alive connections. This is how a fleet of devices loads the service, and its p50/p99 are
 *         the latency the goal (p99 ≤ 5 ms at 256 connections) is about. autocannon's `overallRate` is not used for
 *         this: it sends each connection's per-second quota in a burst at the start of every second, which queues
 *         like saturation. Latency is measured from the scheduled start (no coordinated omission: a request delayed by
 *         a stalled load generator or a slow server counts its wait), so generator lag on a loaded machine shows up
 *         in both servers' figures alike.
 *   2. Download of a 100 MiB bundle through the service vs a direct (presigned) GET from the S3 server (versitygw of
 *      its own): throughput ratio (goal ≥ 0.8).
 *   3. RSS with 1,000 apps × 10 channels loaded, against the same process with no app.
 * Servers run in child processes on 127.0.0.1; the load generator runs here. Figures only, no assertions.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { S3ObjectStore } from '../../src/storage/s3-store.js';
import { minioClientFor } from '../env/environment.js';
import { startPrivateS3 } from '../integration/updateserver/private-s3.js';

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
const DURATION = Number(process.env['BENCH_DURATION'] ?? 8);
/** Open-loop phase: rate as a fraction of the bare server's saturated throughput, and length of a round (s). */
const OPEN_FRACTION = Number(process.env['BENCH_OPEN_FRACTION'] ?? 0.5);
const OPEN_DURATION = Number(process.env['BENCH_OPEN_DURATION'] ?? 8);

function median(xs: number[]): number {
  const v = [...xs].sort((x, y) => x - y);
  return v[Math.floor(v.length / 2)]!;
}
const CONNECTIONS = 256;
const DEVICES = 100_000;

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

function startTarget(args: string[], nodeFlags: string[] = []): Promise<Child> {
  let target = TARGET;
  if (args[0] === 'before') {
    if (BEFORE_TARGET === undefined) throw new Error('mode "before" needs BENCH_BEFORE_TARGET');
    target = BEFORE_TARGET;
    args = ['service', ...args.slice(1)];
  } else if (args[0] === 'download-before') {
    if (BEFORE_TARGET === undefined) throw new Error('BENCH_BEFORE_TARGET is not set');
    target = BEFORE_TARGET;
    args = ['download', ...args.slice(1)];
  }
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...TARGET_FLAGS, ...nodeFlags, target, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
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

function runChild(args: string[], nodeFlags: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...nodeFlags, TARGET, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
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

async function load(port: number, bodies: string[], duration: number): Promise<autocannon.Result> {
  let i = 0;
  return autocannon({
    url: `http://127.0.0.1:${port}/updates`,
    connections: CONNECTIONS,
    duration,
    method: 'POST',
    headers: { 'content-type': 'application/json; charset=utf-8' },
    requests: [
      {
        setupRequest: (req) => ({ ...req, body: bodies[i++ % bodies.length]! }),
      },
    ],
  });
}

interface OpenLoopResult {
  rate: number;
  sent: number;
  answered: number;
  non2xx: number;
  errors: number;
  p50: number;
  p99: number;
  p999: number;
  /** Requests answered per second from the first scheduled start to the last answer. */
  achieved: number;
}

/**
 * Open-loop load: `rate` requests per second on a fixed schedule for `seconds`, over `CONNECTIONS` keep-alive
 * connections (opened first, used least-recently-used first so that all of them carry traffic). Latency in ms from
 * each request's scheduled start to the end of its answer.
 */
async function openLoop(
  port: number,
  bodies: string[],
  rate: number,
  seconds: number,
  offset: number,
): Promise<OpenLoopResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS, scheduling: 'fifo' });
  let i = offset;
  let errors = 0;
  let non2xx = 0;
  const send = (scheduled: number, onDone: (ms: number) => void): void => {
    const body = bodies[i++ % bodies.length]!;
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: '/updates',
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        if (res.statusCode === undefined || res.statusCode < 200 || res.statusCode > 299) non2xx++;
        res.on('end', () => onDone(performance.now() - scheduled));
        res.resume();
      },
    );
    req.on('error', () => {
      errors++;
      onDone(NaN);
    });
    req.end(body);
  };
  // Open every connection (all at once, then answered before the measured phase).
  await Promise.all(
    Array.from({ length: CONNECTIONS }, () => new Promise<void>((r) => send(performance.now(), () => r()))),
  );
  const latencies: number[] = [];
  let sent = 0;
  let answered = 0;
  const interval = 1000 / rate;
  const start = performance.now();
  const total = Math.floor(rate * seconds);
  await new Promise<void>((resolve) => {
    const finish = (): void => {
      if (sent === total && answered === total) resolve();
    };
    const tick = (): void => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        sent++;
        send(start + (sent - 1) * interval, (ms) => {
          answered++;
          if (!Number.isNaN(ms)) latencies.push(ms);
          finish();
        });
      }
      if (sent < total)
        setTimeout(tick, Math.max(0, Math.min(1, start + sent * interval - performance.now())));
    };
    tick();
  });
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return {
    rate,
    sent,
    answered,
    non2xx,
    errors,
    p50: pct(0.5),
    p99: pct(0.99),
    p999: pct(0.999),
    achieved: answered / elapsed,
  };
}

async function throughputBench(): Promise<void> {
  const bodies = deviceBodies();
  const modes = (process.env['BENCH_MODES'] ?? 'bare,service').split(',');
  const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);
  // Both servers stay up and are measured in alternation, so a load spike from other work on the machine hits both.
  const children = new Map<string, Child>();
  const segments = new Map<string, autocannon.Result[]>();
  const open = new Map<string, OpenLoopResult[]>();
  const cpu = new Map<string, number>();
  try {
    for (const mode of modes) {
      const child = await startTarget([mode]);
      children.set(mode, child);
      await load(child.port, bodies, 4); // warm-up (JIT, connection setup): not counted
      await child.mark();
      segments.set(mode, []);
    }
    for (let round = 0; round < rounds; round++) {
      for (const mode of modes)
        segments.get(mode)!.push(await load(children.get(mode)!.port, bodies, DURATION));
    }
    for (const [mode, child] of children) cpu.set(mode, await child.cpuSinceMark());
    // Open loop, at a fraction of the bare server's measured maximum (or BENCH_OPEN_RATE req/s), same for both.
    const bareMax = median(segments.get('bare')?.map((r) => r.requests.average) ?? [NaN]);
    const rate = Math.round(Number(process.env['BENCH_OPEN_RATE'] ?? OPEN_FRACTION * bareMax));
    if (Number.isFinite(rate) && rate > 0) {
      for (const mode of modes) open.set(mode, []);
      for (let round = 0; round < rounds; round++) {
        for (const mode of modes) {
          open
            .get(mode)!
            .push(await openLoop(children.get(mode)!.port, bodies, rate, OPEN_DURATION, round * 7919));
        }
      }
    }
  } finally {
    for (const child of children.values()) await child.stop();
  }
  console.log(
    `\nPOST /updates, SATURATED (closed loop), ${CONNECTIONS} connections, ${rounds} alternating rounds of ${DURATION} s, ${DEVICES} device ids (medians over rounds)`,
  );
  console.log('server    req/s      p50 ms  p99 ms  non-2xx  errors  CPU µs/request');
  const stats = new Map<string, { rps: number; p99: number; cpuPerRequest: number; perRound: number[] }>();
  for (const mode of modes) {
    const segs = segments.get(mode)!;
    const total = segs.reduce((a, r) => a + r.requests.total, 0);
    const st = {
      rps: median(segs.map((r) => r.requests.average)),
      p99: median(segs.map((r) => r.latency.p99)),
      cpuPerRequest: cpu.get(mode)! / total,
      perRound: segs.map((r) => r.requests.average),
    };
    stats.set(mode, st);
    const non2xx = segs.reduce((a, r) => a + r.non2xx, 0);
    const errors = segs.reduce((a, r) => a + r.errors + r.timeouts, 0);
    console.log(
      `${mode.padEnd(9)} ${st.rps.toFixed(0).padStart(8)}  ${String(median(segs.map((r) => r.latency.p50))).padStart(6)}  ${String(st.p99).padStart(6)}  ${String(non2xx).padStart(7)}  ${String(errors).padStart(6)}  ${st.cpuPerRequest.toFixed(0).padStart(14)}`,
    );
  }
  const bare = stats.get('bare');
  const svc = stats.get('service');
  if (!bare || !svc) return;
  const perRound = svc.perRound.map((v, i) => (v / bare.perRound[i]!).toFixed(2)).join(', ');
  console.log(
    `throughput ratio service/bare: ${(svc.rps / bare.rps).toFixed(2)} (per round: ${perRound}; goal ≥ 0.7)`,
  );
  const before = stats.get('before');
  if (before) {
    console.log(
      `before (BENCH_BEFORE_TARGET): throughput ratio ${(before.rps / bare.rps).toFixed(2)}, CPU-bound ratio ${(bare.cpuPerRequest / before.cpuPerRequest).toFixed(2)}`,
    );
  }
  console.log(
    `CPU-bound throughput ratio (bare CPU ÷ service CPU per request): ${(bare.cpuPerRequest / svc.cpuPerRequest).toFixed(2)}`,
  );
  console.log(
    `p99 latency of the service at ${CONNECTIONS} connections, saturated: ${svc.p99} ms (queueing, see the header comment)`,
  );
  const ob = open.get('bare');
  const os = open.get('service');
  if (!ob || !os || ob.length === 0) return;
  const ms = (x: number): string => x.toFixed(2).padStart(7);
  console.log(
    `\nPOST /updates, OPEN LOOP at ${ob[0]!.rate} req/s (${OPEN_FRACTION * 100} % of the bare maximum), ${CONNECTIONS} connections, ${ob.length} alternating rounds of ${OPEN_DURATION} s (medians over rounds)`,
  );
  console.log(
    'server     p50 ms  p99 ms  p99.9 ms  achieved req/s  answered  non-2xx  errors   p99 per round',
  );
  for (const [mode, rs] of open) {
    console.log(
      `${mode.padEnd(9)} ${ms(median(rs.map((r) => r.p50)))} ${ms(median(rs.map((r) => r.p99)))} ${ms(median(rs.map((r) => r.p999))).padStart(9)}  ${median(
        rs.map((r) => r.achieved),
      )
        .toFixed(0)
        .padStart(
          14,
        )}  ${String(rs.reduce((a, r) => a + r.answered, 0)).padStart(8)}  ${String(rs.reduce((a, r) => a + r.non2xx, 0)).padStart(7)}  ${String(rs.reduce((a, r) => a + r.errors, 0)).padStart(6)}   ${rs.map((r) => r.p99.toFixed(1)).join(', ')}`,
    );
  }
  // A server that cannot keep up falls behind the schedule: its latencies then grow with the length of the round.
  if (median(os.map((r) => r.achieved)) < 0.95 * ob[0]!.rate)
    console.log(
      '(the service fell behind the schedule: overloaded at this rate on this machine, not a service time)',
    );
  console.log(
    `p99 latency of the service at ${CONNECTIONS} connections, open loop at ${ob[0]!.rate} req/s: ${median(os.map((r) => r.p99)).toFixed(2)} ms (goal ≤ 5 ms)`,
  );
}

async function timedDownload(url: string): Promise<{ bytes: number; seconds: number }> {
  const start = process.hrtime.bigint();
  const res = await fetch(url);
  if (res.status !== 200 || !res.body) throw new Error(`GET ${url} → ${res.status}`);
  let bytes = 0;
  for await (const chunk of res.body) bytes += (chunk as Uint8Array).length;
  return { bytes, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}

async function downloadBench(): Promise<void> {
  const SIZE = 100 * 1024 * 1024;
  const s3 = await startPrivateS3();
  try {
    const client = minioClientFor(s3);
    await client.makeBucket('bench', s3.region);
    const key = `lu/apps/example/bundles/${randomBytes(32).toString('hex')}.zip`;
    const chunk = randomBytes(1024 * 1024);
    await client.putObject(
      'bench',
      key,
      Readable.from(
        (function* () {
          for (let i = 0; i < 100; i++) yield chunk;
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
    const series: { name: string; child?: Child; url: string; rates: number[]; cpu: number }[] = [
      { name: 'direct S3', url: direct, rates: [], cpu: NaN },
    ];
    const rounds = Number(process.env['BENCH_DL_ROUNDS'] ?? 5);
    try {
      for (const [name, mode] of [
        ['service', 'download'],
        ...(BEFORE_TARGET !== undefined ? [['before', 'download-before']] : []),
      ] as [string, string][]) {
        const child = await startTarget([mode, ...args]);
        series.push({
          name,
          child,
          url: `http://127.0.0.1:${child.port}/bundles/${key}`,
          rates: [],
          cpu: NaN,
        });
      }
      for (const s of series) await timedDownload(s.url); // warm-up
      for (const s of series) await s.child?.mark();
      // Alternating rounds: a load spike from other work on the machine hits every series alike.
      for (let i = 0; i < rounds; i++) {
        for (const s of series) {
          const r = await timedDownload(s.url);
          if (r.bytes !== SIZE) throw new Error('short download');
          s.rates.push(SIZE / r.seconds);
        }
      }
      for (const s of series) if (s.child) s.cpu = await s.child.stop();
    } finally {
      for (const s of series) await s.child?.stop();
    }
    const mib = (x: number): string => (x / 1024 / 1024).toFixed(0);
    const directRates = series[0]!.rates;
    console.log(
      `\n100 MiB download, ${rounds} alternating rounds (medians; client: fetch in this process; on ${cpus().length} cores the S3 server, the service and the client share the CPU)`,
    );
    console.log('series       MiB/s  ratio to direct (per round)             CPU µs/MiB in the service');
    for (const s of series) {
      const ratios = s.rates.map((r, i) => r / directRates[i]!);
      console.log(
        `${s.name.padEnd(10)} ${mib(median(s.rates)).padStart(7)}  ${median(ratios).toFixed(2)} (${ratios.map((r) => r.toFixed(2)).join(', ')})`.padEnd(
          73,
        ) + (s.child ? (s.cpu / (rounds * 100)).toFixed(0) : ''),
      );
    }
    const svc = series[1]!;
    console.log(
      `download ratio service/direct: ${median(svc.rates.map((r, i) => r / directRates[i]!)).toFixed(2)} (median of per-round ratios; goal ≥ 0.8)`,
    );
  } finally {
    await s3.destroy();
  }
}

async function rssBench(): Promise<void> {
  const flags = ['--expose-gc'];
  const empty = JSON.parse(await runChild(['rss', '0', '10'], flags)) as { rss: number; heapUsed: number };
  const loaded = JSON.parse(await runChild(['rss', '1000', '10'], flags)) as {
    apps: number;
    rss: number;
    heapUsed: number;
    indexBytes: number;
  };
  const mib = (x: number): string => (x / 1024 / 1024).toFixed(1);
  console.log(
    `\nRSS with ${loaded.apps} apps × 10 channels (${mib(loaded.indexBytes)} MiB of index JSON): ${mib(loaded.rss)} MiB (heap ${mib(loaded.heapUsed)} MiB)`,
  );
  console.log(
    `RSS of the same process with no app: ${mib(empty.rss)} MiB (heap ${mib(empty.heapUsed)} MiB); cost of the indexes: ${mib(loaded.rss - empty.rss)} MiB`,
  );
}

compile();
const only = process.env['BENCH_ONLY'];
if (!only || only === 'throughput') await throughputBench();
if (!only || only === 'download') await downloadBench();
if (!only || only === 'rss') await rssBench();
