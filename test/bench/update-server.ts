/**
 * Update-service benchmark (`npm run bench -- update-server`), baselines measured in the same run:
 *   1. POST /updates with realistic §2.1 bodies over 100,000 device ids, 256 connections (autocannon), against a
 *      bare node:http server answering a fixed JSON of the same size: throughput ratio (goal ≥ 0.7), p99 (≤ 5 ms).
 *   2. Download of a 100 MiB bundle through the service vs a direct (presigned) GET from the S3 server (versitygw of
 *      its own): throughput ratio (goal ≥ 0.8).
 *   3. RSS with 1,000 apps × 10 channels loaded, against the same process with no app.
 * Servers run in child processes on 127.0.0.1; the load generator runs here. Figures only, no assertions.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Client } from 'minio';
import { S3ObjectStore } from '../../src/storage/s3-store.js';
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
const CONNECTIONS = 256;
const DEVICES = 100_000;

interface Child {
  port: number;
  proc: ChildProcess;
  /** Marks the start of the measured phase (CPU counted from here). */
  mark(): Promise<void>;
  /** Resolves with the CPU microseconds the child used since the mark (or since it was ready). */
  stop(): Promise<number>;
}

function startTarget(args: string[], nodeFlags: string[] = []): Promise<Child> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...nodeFlags, TARGET, ...args], {
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

async function throughputBench(): Promise<void> {
  const bodies = deviceBodies();
  const modes = (process.env['BENCH_MODES'] ?? 'bare,service').split(',');
  const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);
  // Both servers stay up and are measured in alternation, so a load spike from other work on the machine hits both.
  const children = new Map<string, Child>();
  const segments = new Map<string, autocannon.Result[]>();
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
  } finally {
    for (const [mode, child] of children) cpu.set(mode, await child.stop());
  }
  const median = (xs: number[]): number => {
    const v = [...xs].sort((x, y) => x - y);
    return v[Math.floor(v.length / 2)]!;
  };
  console.log(
    `\nPOST /updates, ${CONNECTIONS} connections, ${rounds} alternating rounds of ${DURATION} s, ${DEVICES} device ids (medians over rounds)`,
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
  console.log(
    `CPU-bound throughput ratio (bare CPU ÷ service CPU per request): ${(bare.cpuPerRequest / svc.cpuPerRequest).toFixed(2)}`,
  );
  console.log(`p99 latency of the service at ${CONNECTIONS} connections: ${svc.p99} ms (goal ≤ 5 ms)`);
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
    const client = new Client({
      endPoint: '127.0.0.1',
      port: s3.port,
      useSSL: false,
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      region: s3.region,
      pathStyle: true,
    });
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
    const child = await startTarget([
      'download',
      s3.endpoint,
      'bench',
      key,
      String(SIZE),
      s3.accessKey,
      s3.secretKey,
    ]);
    try {
      const via = `http://127.0.0.1:${child.port}/bundles/${key}`;
      await timedDownload(direct);
      await timedDownload(via);
      await child.mark();
      const d: number[] = [];
      const v: number[] = [];
      for (let i = 0; i < 3; i++) {
        const a = await timedDownload(direct);
        const b = await timedDownload(via);
        if (a.bytes !== SIZE || b.bytes !== SIZE) throw new Error('short download');
        d.push(SIZE / a.seconds);
        v.push(SIZE / b.seconds);
      }
      const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[1]!;
      const mib = (x: number): string => (x / 1024 / 1024).toFixed(0);
      console.log(
        `\n100 MiB download (median of 3): direct S3 ${mib(median(d))} MiB/s, through the service ${mib(median(v))} MiB/s`,
      );
      console.log(`download ratio service/direct: ${(median(v) / median(d)).toFixed(2)} (goal ≥ 0.8)`);
      const cpu = await child.stop();
      console.log(
        `service CPU per MiB streamed: ${(cpu / (3 * 100)).toFixed(0)} µs (i.e. one core streams ~${((3 * 100 * 1e6) / cpu).toFixed(0)} MiB/s); ` +
          `on ${cpus().length} cores the S3 server, the service and the client share the CPU`,
      );
    } finally {
      await child.stop();
    }
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
