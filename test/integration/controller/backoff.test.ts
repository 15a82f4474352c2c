// The controller as a real process against the real apiserver: an error never bypasses the work queue's backoff.
// A bundle whose source fails with a message that differs every time (here: HTTP 500, 502, 503, 504 in turn, as an
// error carrying a random temp-dir name did) makes the controller write a new status after every attempt. Its own
// status writes must not re-queue the bundle: the attempts stay within what exponential backoff (5 ms · 2^n) allows
// in the time observed. No timing assertion: the bound is computed from the time that actually passed, and a slower
// machine only lowers the count.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { APP_RESOURCE, BUNDLE_RESOURCE, type LiveUpdateBundle } from '../../../src/api/v1alpha1/index.js';
import { Stack, type Component } from '../../../scripts/demo/stack.js';
import { cleanupTestResources, newBucket, newNamespace, testEnvironment } from '../../env/fixtures.js';
import { manifests } from './harness.js';

const TEST_TIMEOUT_MS = 240_000;
/** How long the failing bundle is watched. */
const OBSERVE_MS = 40_000;
/** Reconciles a correct controller may add beyond the backoff: creation, finalizer, app status changes. */
const EVENT_SLACK = 6;
const BACKOFF_BASE_MS = 5;

/** A source answering 500, 502, 503, 504 in turn (each a transient error with its own message); counts requests. */
class FlakySource {
  private server: Server | undefined;
  requests = 0;
  url = '';

  async start(): Promise<void> {
    const codes = [500, 502, 503, 504];
    this.server = createServer((_req, res) => {
      res.writeHead(codes[this.requests++ % codes.length]!).end();
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/bundle.zip`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Attempts exponential backoff allows within `elapsedMs`: the n-th retry waits 5 ms · 2^(n-1). */
function backoffAttempts(elapsedMs: number): number {
  return Math.floor(Math.log2(elapsedMs / BACKOFF_BASE_MS + 1)) + 1;
}

async function metric(adminUrl: string, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('backoff is never bypassed (real controller process)', () => {
  let stack: Stack | undefined;
  let controller: Component | undefined;
  let workDir = '';
  const source = new FlakySource();

  afterAll(async () => {
    await controller?.stop(5_000);
    await stack?.stop();
    await source.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
    await cleanupTestResources();
  }, TEST_TIMEOUT_MS);

  it(
    'a source failing with a different message every time is retried with growing backoff, not on every own status write',
    async () => {
      workDir = await mkdtemp(join(tmpdir(), 'liveupdate-backoff-'));
      const namespace = await newNamespace('backoff');
      stack = new Stack({
        env: testEnvironment(),
        logDir: join(workDir, 'logs'),
        namespace,
        bucket: await newBucket('backoff'),
      });
      await stack.installCrds();
      await source.start();
      controller = await stack.startController();
      await stack.kube.apply(APP_RESOURCE, manifests.app(namespace));
      const started = Date.now();
      await stack.kube.apply(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, 'flaky', { version: '1.0.0', source: { http: { url: source.url } } }),
      );
      await sleep(OBSERVE_MS);
      const attempts = source.requests;
      const reconcileErrors = await metric(
        stack.controllerAdminUrl,
        'controller_runtime_reconcile_errors_total',
        'controller="liveupdatebundle"',
      );
      const bound = backoffAttempts(Date.now() - started) + EVENT_SLACK;
      const bundle = await stack.kube.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'flaky' });
      // the source was really tried and failed with changing messages
      expect(attempts).toBeGreaterThan(3);
      expect(JSON.stringify(bundle.status?.conditions)).toMatch(/answered HTTP 50[0-4]/);
      const within = (n: number) => (n <= bound ? 'within bound' : n);
      expect({ bound, attempts: within(attempts), reconcileErrors: within(reconcileErrors) }).toEqual({
        bound,
        attempts: 'within bound',
        reconcileErrors: 'within bound',
      });
    },
    TEST_TIMEOUT_MS,
  );
});
