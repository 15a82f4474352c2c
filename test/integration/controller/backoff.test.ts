// The controller as a real process against the real apiserver: an error never bypasses the work queue's backoff.
// A bundle whose source fails with a message that differs every time (here: HTTP 500, 502, 503, 504 in turn, as an
// error carrying a random temp-dir name did) makes the controller write a new status after every attempt. Its own
// status writes must not re-queue the bundle: the attempts stay within what exponential backoff (5 ms · 2^n) allows
// in the time observed. No timing assertion: the bound is computed from the time that actually passed, and a slower
// machine only lowers the count.
// A refused artifact (not an archive) is fetched once; app changes and a new leader reconcile the bundle without
// fetching it again; a reconcile request does.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  RECONCILE_REQUESTED_AT_ANNOTATION,
  type LiveUpdateBundle,
} from '../../../src/api/v1alpha1/index.js';
import { Stack, type Component } from '../../../scripts/demo/stack.js';
import { cleanupTestResources, newBucket, newNamespace, testEnvironment } from '../../env/fixtures.js';
import { waitFor } from '../kube/helpers.js';
import { manifests } from './harness.js';

const TEST_TIMEOUT_MS = 240_000;
/** How long the failing bundle is watched. */
const OBSERVE_MS = 40_000;
/** Reconciles a correct controller may add beyond the backoff: creation, finalizer, app status changes. */
const EVENT_SLACK = 6;
const BACKOFF_BASE_MS = 5;

/**
 * The artifact source, counting requests per path: `/flaky.zip` answers 500, 502, 503, 504 in turn (each a transient
 * error with its own message), `/refused.zip` a body that is not an archive.
 */
class CountingSource {
  private server: Server | undefined;
  readonly requests = new Map<string, number>();
  private base = '';

  async start(): Promise<void> {
    const codes = [500, 502, 503, 504];
    this.server = createServer((req, res) => {
      const path = req.url ?? '/';
      const n = this.count(path);
      this.requests.set(path, n + 1);
      if (path === '/refused.zip') res.writeHead(200).end('<html>not a zip</html>');
      else res.writeHead(codes[n % codes.length]!).end();
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  url(path: string): string {
    return `${this.base}${path}`;
  }

  count(path: string): number {
    return this.requests.get(path) ?? 0;
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
  let namespace = '';
  const source = new CountingSource();

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'liveupdate-backoff-'));
    namespace = await newNamespace('backoff');
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
  }, TEST_TIMEOUT_MS);

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
      const kube = stack!.kube;
      const started = Date.now();
      await kube.apply(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, 'flaky', {
          version: '1.0.0',
          source: { http: { url: source.url('/flaky.zip') } },
        }),
      );
      await sleep(OBSERVE_MS);
      const attempts = source.count('/flaky.zip');
      const reconcileErrors = await metric(
        stack!.controllerAdminUrl,
        'controller_runtime_reconcile_errors_total',
        'controller="liveupdatebundle"',
      );
      const bound = backoffAttempts(Date.now() - started) + EVENT_SLACK;
      const bundle = await kube.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'flaky' });
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

  it(
    'a refused artifact is not fetched again on app changes or a leader change, only on a reconcile request',
    async () => {
      const kube = stack!.kube;
      const terminalErrors = () =>
        metric(
          stack!.controllerAdminUrl,
          'controller_runtime_terminal_reconcile_errors_total',
          'controller="liveupdatebundle"',
        );
      const stalledAgain = async (before: number) =>
        waitFor('the refused bundle reconciled again', async () => (await terminalErrors()) > before, 60_000);
      await kube.apply(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, 'refused', {
          version: '2.0.0',
          source: { http: { url: source.url('/refused.zip') } },
        }),
      );
      const key = { namespace, name: 'refused' };
      await waitFor('the bundle stalls on the refused artifact', async () => {
        const b = await kube.get<LiveUpdateBundle>(BUNDLE_RESOURCE, key);
        return b.status?.conditions?.find((c) => c.type === 'Stalled' && c.status === 'True');
      });
      expect(source.count('/refused.zip')).toBe(1);

      // app changes: each one enqueues every bundle of the app
      for (const retention of ['25h', '26h', '27h']) {
        const before = await terminalErrors();
        await kube.mergePatch(
          APP_RESOURCE,
          { namespace, name: 'demo' },
          { spec: { statsRetention: retention } },
        );
        await stalledAgain(before);
      }
      expect(source.count('/refused.zip')).toBe(1);

      // a leader change: the new leader reconciles every bundle once
      await controller!.stop(10_000);
      controller = await stack!.startController({ podName: 'backoff-controller-1' });
      await stalledAgain(0);
      expect(source.count('/refused.zip')).toBe(1);

      // a reconcile request fetches it again
      await kube.mergePatch(BUNDLE_RESOURCE, key, {
        metadata: { annotations: { [RECONCILE_REQUESTED_AT_ANNOTATION]: new Date().toISOString() } },
      });
      await waitFor(
        'the artifact fetched again on request',
        () => source.count('/refused.zip') === 2,
        60_000,
      );
    },
    TEST_TIMEOUT_MS,
  );
});
