/**
 * `liveupdate-operator update-server`: builds the update service from its configuration and runs it until the
 * signal aborts, then shuts down gracefully: readiness fails first (so endpoints drop the pod) and every answer closes
 * its keep-alive connection (clients reconnect to a ready replica), the listener stops accepting after the shutdown
 * delay, in-flight requests (downloads) drain up to the timeout, and the stats
 * counters are flushed one last time. No Kubernetes API access and no private key in this process.
 */
import http from 'node:http';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { configOrExit } from '../config/common.js';
import {
  UPDATE_SERVER_OPTIONS,
  parseUpdateServerConfig,
  type UpdateServerConfig,
} from '../config/update-server.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { AdminServer } from '../observability/admin-server.js';
import { createRegistry } from '../observability/metrics.js';
import { StorageLayout } from '../storage/layout.js';
import { S3ObjectStore, readCaFile } from '../storage/s3-store.js';
import { createUpdateServer } from './app.js';
import { ChannelOverrides } from './channel-overrides.js';
import { IndexCache } from './index-cache.js';
import { UpdateServerMetrics } from './metrics.js';
import { StatsAggregator, StatsRollupWriter } from './stats-rollup.js';

async function listen(server: http.Server, addr: { host: string; port: number }): Promise<void> {
  server.listen(addr.port, addr.host);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([err]) => {
      throw err as Error;
    }),
  ]);
}

function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

export async function run(argv: string[], signal: AbortSignal): Promise<number> {
  const parsed = configOrExit('update-server', UPDATE_SERVER_OPTIONS, parseUpdateServerConfig, argv);
  if ('exit' in parsed) return parsed.exit;
  const { config } = parsed;
  const logger = createLogger({ level: config.logLevel, name: 'update-server' });
  try {
    return await serve(config, logger, signal);
  } catch (err) {
    logger.fatal({ err: err instanceof Error ? err.message : String(err) }, 'update server failed');
    return 1;
  }
}

export async function serve(
  config: UpdateServerConfig,
  logger: Logger,
  signal: AbortSignal,
): Promise<number> {
  const registry = createRegistry();
  const metrics = new UpdateServerMetrics(registry);
  const store = new S3ObjectStore({
    endpoint: config.s3.endpoint.toString(),
    bucket: config.s3.bucket,
    region: config.s3.region,
    pathStyle: config.s3.pathStyle,
    timeoutMs: config.s3TimeoutSeconds * 1000,
    ...(config.s3.accessKeyId !== undefined ? { accessKeyId: config.s3.accessKeyId } : {}),
    ...(config.s3.secretAccessKey !== undefined ? { secretAccessKey: config.s3.secretAccessKey } : {}),
    ...(config.s3.caFile !== undefined ? { ca: readCaFile(config.s3.caFile) } : {}),
    ...(config.presignEndpoint !== undefined ? { presignEndpoint: config.presignEndpoint.toString() } : {}),
  });
  const layout = new StorageLayout(config.s3.prefix);
  const cache = new IndexCache({ store, layout, logger, metrics, pollSeconds: config.indexPollSeconds });
  const stats = new StatsAggregator({
    replica: config.replicaName,
    metrics,
    windowSeconds: config.statsWindowSeconds,
  });
  const writer = new StatsRollupWriter({
    aggregator: stats,
    store,
    layout,
    replica: config.replicaName,
    logger,
    metrics,
    flushSeconds: config.statsFlushSeconds,
  });
  let accepting = true;
  const app = createUpdateServer({
    indexes: cache,
    store,
    stats,
    metrics,
    logger,
    overrides: new ChannelOverrides({ store, layout, logger }),
    accepting: () => accepting,
    options: {
      updatePath: config.updatePath,
      statsPath: config.statsPath,
      channelPath: config.channelPath,
      publicUrl: config.publicUrl.toString(),
      presignDownloads: config.presignDownloads,
      presignExpirySeconds: config.presignExpirySeconds,
      maxStatsBodyBytes: config.maxStatsBodyBytes,
      rateLimitPerDevice: config.rateLimitPerDevice,
      rateLimitPerAddress: config.rateLimitPerAddress,
      trustProxy: config.trustProxy,
    },
  });
  const server = http.createServer((req, res) => {
    // Draining: a keep-alive client would stay on this replica after its endpoint is gone and fail when the
    // connection is finally closed; `Connection: close` sends its next request through the Service to a ready one.
    if (!accepting) res.setHeader('Connection', 'close');
    app.requestListener(req, res);
  });
  // Longer than typical load-balancer idle timeouts, so the proxy closes first; bounded header/request time.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 20_000;
  // Time to receive a whole request (not to send the answer: long downloads are unaffected).
  server.requestTimeout = 30_000;
  const admin = new AdminServer({
    host: config.adminAddr.host,
    port: config.adminAddr.port,
    registry,
    log: logger,
    readiness: [
      {
        // Ready once the root was read; an app without a usable index fails alone (ADR 0008) and shows here.
        name: 'release-index',
        check: () => ({ ok: cache.ready, ...(cache.reason !== undefined ? { reason: cache.reason } : {}) }),
      },
    ],
  });

  const background = new AbortController();
  const polling = cache.run(background.signal);
  const flushing = writer.run(background.signal);
  try {
    await admin.start();
    await listen(server, config.listenAddr);
  } catch (err) {
    background.abort();
    await Promise.allSettled([polling, flushing]);
    await admin.close();
    throw err;
  }
  logger.info(
    {
      listen: `${config.listenAddr.host}:${config.listenAddr.port}`,
      admin: `${config.adminAddr.host}:${config.adminAddr.port}`,
      replica: config.replicaName,
    },
    'update server listening',
  );

  if (!signal.aborted) await once(signal, 'abort');
  accepting = false;
  admin.markShuttingDown();
  logger.info({ delaySeconds: config.shutdownDelaySeconds }, 'shutting down: readiness off, draining');
  await sleep(config.shutdownDelaySeconds * 1000);
  const closed = close(server);
  server.closeIdleConnections();
  const timedOut = await Promise.race([
    closed.then(() => false),
    sleep(config.shutdownTimeoutSeconds * 1000).then(() => true),
  ]);
  if (timedOut) {
    logger.warn('drain timeout: closing remaining connections');
    server.closeAllConnections();
    await closed;
  }
  background.abort();
  await Promise.allSettled([polling, flushing]);
  await admin.close();
  store.close();
  logger.info('update server stopped');
  return 0;
}
