/**
 * The device-facing express app (no listen): Capgo's protocol served from the in-memory release index.
 *
 * Routes (paths configurable): POST {update} (check), POST {update}/manifest_size, POST {stats},
 * POST/PUT/GET/DELETE {channel}, GET/HEAD {bundles}/<object key>, GET /healthz, /readyz, /openapi.json.
 * `/metrics` is served on the admin port only (it is not for devices).
 *
 * Every answer is JSON; non-update answers are `{error, message, kind}`; a request never sees a stack trace.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import proxyaddr from 'proxy-addr';
import { hashIdentifier } from '../observability/hash.js';
import type { Logger } from '../observability/logger.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { CompiledApp, CompiledBundle } from './compiled-index.js';
import {
  isPlainObject,
  parseDeviceInfo,
  parseIdentity,
  RequestError,
  type DeviceInfo,
} from './device-request.js';
import { createDownloadHandler } from './downloads.js';
import type { IndexSnapshot } from './index-cache.js';
import type { UpdateServerMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { decideUpdate, resolveChannel, type Decision, type ErrorAnswer, type UpdatePlan } from './policy.js';
import { TokenBucketLimiter } from './rate-limit.js';
import type { StatsAggregator } from './stats-rollup.js';

/** What the app needs from the index cache (IndexCache implements it; tests may use a static one). */
export interface IndexSource {
  readonly snapshot: IndexSnapshot;
  app(appId: string): CompiledApp | undefined;
  readonly ready: boolean;
  readonly reason: string | undefined;
}

export interface UpdateServerOptions {
  updatePath: string;
  statsPath: string;
  channelPath: string;
  bundlesPath: string;
  /** Base URL devices reach this service at (download URLs are `<publicUrl><bundlesPath>/<key>`). */
  publicUrl: string;
  /** Hand out presigned store URLs instead of URLs of this service. */
  presignDownloads: boolean;
  presignExpirySeconds: number;
  /** Body limit of update and channel calls (bytes). */
  maxBodyBytes: number;
  /** Body limit of stats batches (bytes). */
  maxStatsBodyBytes: number;
  maxStatsEvents: number;
  maxJsonDepth: number;
  /** Requests per minute per device id, and per client address; 0 disables. */
  rateLimitPerDevice: number;
  rateLimitPerAddress: number;
  /** express "trust proxy" (hops, CIDRs or boolean), so the per-address limit sees the client behind an ingress. */
  trustProxy: boolean | number | string;
  retryAfterSeconds: number;
}

export const DEFAULT_UPDATE_SERVER_OPTIONS: UpdateServerOptions = {
  updatePath: '/updates',
  statsPath: '/stats',
  channelPath: '/channel_self',
  bundlesPath: '/bundles',
  publicUrl: 'http://127.0.0.1:8080',
  presignDownloads: false,
  presignExpirySeconds: 3600,
  maxBodyBytes: 64 * 1024,
  maxStatsBodyBytes: 1024 * 1024,
  maxStatsEvents: 500,
  maxJsonDepth: 16,
  rateLimitPerDevice: 120,
  rateLimitPerAddress: 12_000,
  trustProxy: false,
  retryAfterSeconds: 5,
};

export interface UpdateServerDeps {
  indexes: IndexSource;
  store: ObjectStore;
  stats: StatsAggregator;
  metrics: UpdateServerMetrics;
  logger: Logger;
  options?: Partial<UpdateServerOptions>;
  /** Extra readiness condition (false while shutting down). */
  accepting?: () => boolean;
}

type JsonObject = Record<string, unknown>;

const UNKNOWN_APP_LABEL = '_unknown';
const RESET_ANSWER = Buffer.from('{"version":"builtin"}');

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string>,
): void {
  if (res.headersSent) return;
  const payload = Buffer.isBuffer(body)
    ? body
    : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  // writeHead with a plain object (merged over any setHeader done before) is the cheapest path through node:http.
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': payload.length,
    ...headers,
  });
  res.end(payload);
}

function sendError(
  res: ServerResponse,
  status: number,
  error: string,
  message: string,
  headers?: Record<string, string>,
): void {
  sendJson(res, status, { error, message, kind: 'failed' }, headers);
}

/** Refuses JSON nested deeper than `max` before it is parsed (a cheap scan of the raw bytes). */
export function jsonDepthExceeds(buf: Buffer, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** A body error, classified like body-parser's (`type`), so one error handler maps them all. */
class BodyError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Reads a JSON body (object or array only), bounded by `limit` bytes and `maxDepth` nesting, in UTF-8, whatever the
 * Content-Type (devices send application/json with or without charset; Capgo's backend ignores the type too).
 * A small replacement for express.json on the hot path: no charset conversion layer, one buffer, one parse.
 */
export function readJsonBody(
  req: IncomingMessage,
  limit: number,
  maxDepth: number,
  next: (err: Error | undefined, body?: unknown) => void,
): void {
  {
    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding !== 'identity')
      return next(new BodyError(415, 'encoding.unsupported', 'unsupported content encoding'));
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i
      .exec(req.headers['content-type'] ?? '')?.[1]
      ?.toLowerCase();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      return next(new BodyError(415, 'charset.unsupported', 'unsupported charset'));
    }
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit)
      return next(new BodyError(413, 'entity.too.large', 'body too large'));
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      if (err) return next(err);
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      if (size === 0) return next(undefined, {});
      if (jsonDepthExceeds(buf, maxDepth)) return next(new BodyError(400, 'entity.too.deep', 'too deep'));
      let first = 0;
      while (
        first < buf.length &&
        (buf[first] === 0x20 || buf[first] === 0x0a || buf[first] === 0x0d || buf[first] === 0x09)
      )
        first++;
      if (buf[first] !== 0x7b && buf[first] !== 0x5b)
        return next(new BodyError(400, 'entity.parse.failed', 'not an object or array'));
      let body: unknown;
      try {
        body = JSON.parse(buf.toString('utf8'));
      } catch {
        return next(new BodyError(400, 'entity.parse.failed', 'invalid JSON'));
      }
      next(undefined, body);
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) return finish(new BodyError(413, 'entity.too.large', 'body too large'));
      chunks.push(c);
    };
    const onEnd = (): void => finish();
    const onError = (): void => finish(new BodyError(400, 'request.aborted', 'request aborted'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  }
}

/** {@link readJsonBody} as express middleware (sets `req.body`). */
export function jsonBody(limit: number, maxDepth: number): RequestHandler {
  return (req, _res, next) =>
    readJsonBody(req, limit, maxDepth, (err, body) => {
      if (err) return next(err);
      req.body = body;
      next();
    });
}

function normalizePath(p: string): string {
  const withSlash = p.startsWith('/') ? p : `/${p}`;
  return withSlash.length > 1 ? withSlash.replace(/\/+$/, '') : withSlash;
}

/**
 * The express app of the device API. `requestListener` is the same app with the update check — the one hot path,
 * every device calls it at every start and foreground — served without express's per-request overhead (same
 * validation, limits, answers and metrics); give it to `http.createServer`.
 */
export type UpdateServerApp = express.Express & {
  requestListener: (req: IncomingMessage, res: ServerResponse) => void;
};

export function createUpdateServer(deps: UpdateServerDeps): UpdateServerApp {
  const o: UpdateServerOptions = { ...DEFAULT_UPDATE_SERVER_OPTIONS, ...deps.options };
  const paths = {
    update: normalizePath(o.updatePath),
    stats: normalizePath(o.statsPath),
    channel: normalizePath(o.channelPath),
    bundles: normalizePath(o.bundlesPath),
  };
  const publicBase = o.publicUrl.replace(/\/+$/, '');
  const { indexes, metrics, logger } = deps;
  const deviceLimiter = new TokenBucketLimiter({ perMinute: o.rateLimitPerDevice });
  const addressLimiter = new TokenBucketLimiter({ perMinute: o.rateLimitPerAddress });

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', o.trustProxy);
  app.set('query parser', 'simple');

  const json = (limit: number): RequestHandler => jsonBody(limit, o.maxJsonDepth);
  const smallJson = json(o.maxBodyBytes);
  const statsJson = json(o.maxStatsBodyBytes);

  function tooMany(res: ServerResponse, scope: 'device' | 'address', retryAfter: number): void {
    metrics.rateLimited.inc({ scope });
    sendJson(
      res,
      429,
      { error: 'too_many_requests', message: 'Too many requests, retry later', kind: 'failed' },
      { 'Retry-After': String(retryAfter) },
    );
  }

  const trustFn = app.get('trust proxy fn') as (addr: string, i: number) => boolean;
  /** The client address, through trusted proxies only (what express's req.ip computes). */
  const clientAddress = (req: IncomingMessage): string =>
    (o.trustProxy === false ? req.socket.remoteAddress : proxyaddr(req, trustFn)) ?? 'unknown';
  const admitAddress = (req: IncomingMessage, res: ServerResponse): boolean => {
    const a = addressLimiter.take(clientAddress(req));
    if (a.allowed) return true;
    tooMany(res, 'address', a.retryAfterSeconds);
    return false;
  };
  const limitAddress: RequestHandler = (req, res, next) => {
    if (admitAddress(req, res)) next();
  };

  /** Returns false (and answers 429) when the device is over its budget. */
  function admitDevice(res: ServerResponse, deviceId: string): boolean {
    const a = deviceLimiter.take(deviceId);
    if (a.allowed) return true;
    tooMany(res, 'device', a.retryAfterSeconds);
    return false;
  }

  // Metric children cached by label values: prom-client hashes label objects on every call otherwise. Two-level
  // maps (route, then numeric code) so the hot path builds no key string.
  const requestCounters = new Map<string, Map<number, { inc(): void }>>();
  const durations = new Map<string, { observe(v: number): void }>();
  function record(route: string, code: number, seconds: number): void {
    let byCode = requestCounters.get(route);
    if (!byCode) {
      byCode = new Map();
      requestCounters.set(route, byCode);
    }
    let counter = byCode.get(code);
    if (!counter) {
      counter = metrics.requests.labels({ route, code: String(code) });
      byCode.set(code, counter);
    }
    counter.inc();
    let duration = durations.get(route);
    if (!duration) {
      duration = metrics.requestDuration.labels({ route });
      durations.set(route, duration);
    }
    duration.observe(seconds);
  }

  function observe(route: string, res: ServerResponse): void {
    const start = performance.now();
    res.once('finish', () => record(route, res.statusCode, (performance.now() - start) / 1000));
  }

  /** Bounded: app ids come from loaded indexes (or `_unknown`), answers from a fixed set of codes. */
  const answerCounters = new Map<string, Map<string, { inc(): void }>>();
  let answerCounterCount = 0;
  function countAnswer(app: string, answer: string): void {
    let byAnswer = answerCounters.get(app);
    let c = byAnswer?.get(answer);
    if (!c) {
      if (answerCounterCount > 50_000) {
        answerCounters.clear();
        answerCounterCount = 0;
        byAnswer = undefined;
      }
      if (!byAnswer) {
        byAnswer = new Map();
        answerCounters.set(app, byAnswer);
      }
      c = metrics.updateAnswers.labels({ app, answer });
      byAnswer.set(answer, c);
      answerCounterCount++;
    }
    c.inc();
  }

  function timed(
    route: string,
    handler: (req: Request, res: Response) => void | Promise<void>,
  ): RequestHandler {
    return async (req, res, next) => {
      observe(route, res);
      try {
        await handler(req, res);
      } catch (err) {
        next(err);
      }
    };
  }

  function unknownApp(res: ServerResponse, appId: string): void {
    countAnswer(UNKNOWN_APP_LABEL, 'app_not_found');
    logger.debug({ appId }, 'request for an app this service does not serve');
    sendJson(res, 404, {
      error: 'app_not_found',
      message: `App ${appId} is not served here`,
      kind: 'failed',
    });
  }

  // ---- download URLs and cached success answers ------------------------------------------------------------
  const encodeKey = (key: string): string => key.split('/').map(encodeURIComponent).join('/');
  const publicUrlFor = (key: string): string => `${publicBase}${paths.bundles}/${encodeKey(key)}`;
  /** Rendered success bodies per bundle and variant; bundles are immutable per index revision. */
  const answerCache = new WeakMap<CompiledBundle, Map<string, { json: Buffer; expiresAt: number }>>();

  async function urlFor(key: string): Promise<string> {
    if (!o.presignDownloads || !deps.store.presignGet) return publicUrlFor(key);
    return deps.store.presignGet(key, o.presignExpirySeconds);
  }

  const variantOf = (plan: UpdatePlan): string =>
    `${plan.checksum === plan.bundle.bundle.checksum ? 'v3' : 'v2'}|${plan.includeManifest ? 'm' : ''}|${plan.includeNotes ? 'n' : ''}`;

  function cachedAnswer(plan: UpdatePlan): Buffer | undefined {
    const cached = answerCache.get(plan.bundle)?.get(variantOf(plan));
    return cached && cached.expiresAt > Date.now() ? cached.json : undefined;
  }

  async function renderUpdate(plan: UpdatePlan): Promise<Buffer> {
    const variant = variantOf(plan);
    let perBundle = answerCache.get(plan.bundle);
    const now = Date.now();
    const b = plan.bundle.bundle;
    const body: JsonObject = {
      version: b.version,
      url: await urlFor(b.objectKey),
      checksum: plan.checksum,
      // Capgo sends an empty session_key for unencrypted bundles.
      session_key: b.encrypted ? (b.sessionKey ?? '') : '',
    };
    if (plan.includeManifest && b.manifest) {
      body['manifest'] = await Promise.all(
        b.manifest.map(async (f) => ({
          file_name: f.fileName,
          file_hash: f.fileHash,
          download_url: await urlFor(f.objectKey),
        })),
      );
    }
    if (plan.includeNotes) {
      if (b.comment !== undefined && b.comment !== '') body['comment'] = b.comment;
      if (b.link !== undefined && b.link !== '') body['link'] = b.link;
    }
    if (b.breaking === true) body['breaking'] = true;
    const text = Buffer.from(JSON.stringify(body));
    if (!perBundle) {
      perBundle = new Map();
      answerCache.set(plan.bundle, perBundle);
    }
    // Presigned URLs are reused for half their validity; service URLs never expire.
    const ttl = o.presignDownloads ? (o.presignExpirySeconds * 1000) / 2 : Number.POSITIVE_INFINITY;
    perBundle.set(variant, { json: text, expiresAt: now + ttl });
    return text;
  }

  function errorBody(d: ErrorAnswer): JsonObject {
    return { error: d.error, message: d.message, kind: d.kind, ...d.extra };
  }

  /** Synchronous unless a success answer must be rendered (first time per bundle, or presigning). */
  function answer(res: ServerResponse, app: CompiledApp, d: Decision): void | Promise<void> {
    if (d.type === 'error') {
      countAnswer(app.appId, d.error);
      sendJson(res, d.status, errorBody(d));
      return;
    }
    if (d.type === 'reset') {
      countAnswer(app.appId, 'builtin');
      sendJson(res, 200, RESET_ANSWER);
      return;
    }
    countAnswer(app.appId, 'new_version');
    const cached = cachedAnswer(d);
    if (cached) return sendJson(res, 200, cached);
    return renderUpdate(d).then((json) => sendJson(res, 200, json));
  }

  // ---- ops ------------------------------------------------------------------------------------------------
  app.get('/healthz', (_req, res) => sendJson(res, 200, { status: 'ok' }));
  app.get('/readyz', (_req, res) => {
    const accepting = deps.accepting?.() ?? true;
    if (indexes.ready && accepting)
      sendJson(res, 200, { status: 'ok', ...(indexes.reason ? { degraded: indexes.reason } : {}) });
    else
      sendJson(res, 503, {
        status: 'not_ready',
        reason: accepting ? (indexes.reason ?? 'release index not loaded yet') : 'shutting down',
      });
  });
  const openapi = JSON.stringify(openApiDocument(paths));
  app.get('/openapi.json', (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.status(200).type('application/json').end(openapi);
  });

  // ---- downloads (no request-count limit: a delta install fetches thousands of files in parallel) ---------------
  const download = createDownloadHandler({
    store: deps.store,
    objects: () => indexes.snapshot.objects,
    logger,
    metrics,
    retryAfterSeconds: o.retryAfterSeconds,
    sendError,
  });
  app.use(paths.bundles, timed('bundles', download));

  // ---- update check -------------------------------------------------------------------------------------------
  function updateCheck(body: unknown, res: ServerResponse): void | Promise<void> {
    const info = parseDeviceInfo(body);
    if (!admitDevice(res, info.deviceId)) return;
    const app = indexes.app(info.appId);
    if (!app) return unknownApp(res, info.appId);
    const decision = decideUpdate(app, info);
    if (logger.isLevelEnabled('debug')) {
      logger.debug(
        {
          device: hashIdentifier(info.deviceId),
          app: app.appId,
          answer: decision.type === 'error' ? decision.error : decision.type,
        },
        'update check',
      );
    }
    return answer(res, app, decision);
  }

  app.post(
    `${paths.update}/manifest_size`,
    limitAddress,
    smallJson,
    timed('manifest_size', (req, res) => {
      const info = parseDeviceInfo(req.body);
      if (!admitDevice(res, info.deviceId)) return;
      const app = indexes.app(info.appId);
      if (!app) return unknownApp(res, info.appId);
      const body = req.body as JsonObject;
      const version = body['version'];
      const manifest = body['manifest'];
      if (typeof version !== 'string' || version.length > 256)
        throw new RequestError(400, 'invalid_json_body', 'version must be a string');
      if (!Array.isArray(manifest) || manifest.length > 10_000) {
        throw new RequestError(
          400,
          'invalid_json_body',
          'manifest must be an array of at most 10000 entries',
        );
      }
      const bundle = Object.values(app.index.bundles).find((b) => b.version === version);
      const byName = new Map((bundle?.manifest ?? []).map((f) => [f.fileName, f]));
      let totalSize = 0;
      let known = 0;
      const files = manifest.map((raw) => {
        const e = isPlainObject(raw) ? raw : {};
        const fileName = typeof e['file_name'] === 'string' ? e['file_name'] : '';
        const fileHash = typeof e['file_hash'] === 'string' ? e['file_hash'] : '';
        const entry = byName.get(fileName);
        const out: JsonObject = {
          file_name: fileName,
          file_hash: fileHash,
          download_url: entry ? publicUrlFor(entry.objectKey) : '',
        };
        if (entry && (fileHash === '' || fileHash.toLowerCase() === entry.fileHash.toLowerCase())) {
          out['size'] = entry.size;
          totalSize += entry.size;
          known++;
        } else {
          out['error'] = bundle ? 'file_not_found' : 'version_not_found';
        }
        return out;
      });
      sendJson(res, 200, { totalSize, knownFiles: known, unknownFiles: files.length - known, files });
    }),
  );

  app.post(
    paths.update,
    limitAddress,
    smallJson,
    timed('updates', (req, res) => updateCheck(req.body, res)),
  );

  // ---- stats ------------------------------------------------------------------------------------------------
  app.post(
    paths.stats,
    limitAddress,
    statsJson,
    timed('stats', (req, res) => {
      const body: unknown = req.body;
      if (body === undefined)
        throw new RequestError(400, 'invalid_json_body', 'the body must be a JSON object or array');
      const events: unknown[] = Array.isArray(body) ? body : [body];
      if (events.length > o.maxStatsEvents) {
        throw new RequestError(400, 'too_many_events', `at most ${o.maxStatsEvents} events per request`);
      }
      let admitted = false;
      for (const ev of events) {
        if (!isPlainObject(ev)) {
          metrics.statsDropped.inc({ reason: 'invalid' });
          continue;
        }
        let id: { deviceId: string; appId: string };
        try {
          id = parseIdentity(ev);
        } catch {
          metrics.statsDropped.inc({ reason: 'invalid' });
          continue;
        }
        if (!admitted) {
          if (!admitDevice(res, id.deviceId)) return;
          admitted = true;
        }
        const app = indexes.app(id.appId);
        if (!app) {
          metrics.statsDropped.inc({ reason: 'unknown_app' });
          continue;
        }
        const action = ev['action'];
        const versionName = ev['version_name'];
        if (typeof action !== 'string' || typeof versionName !== 'string') {
          metrics.statsDropped.inc({ reason: 'invalid' });
          continue;
        }
        const platform = ev['platform'];
        const { channel } = resolveChannel(app, {
          deviceId: id.deviceId,
          customId: typeof ev['custom_id'] === 'string' ? ev['custom_id'] : '',
          defaultChannel: typeof ev['defaultChannel'] === 'string' ? ev['defaultChannel'] : '',
          platform:
            platform === 'ios' || platform === 'android' || platform === 'electron'
              ? platform
              : ('none' as DeviceInfo['platform']),
        });
        deps.stats.record(app, channel.channel.name, versionName, action);
      }
      sendJson(res, 200, '{"status":"ok"}');
    }),
  );

  // ---- channel self-assignment --------------------------------------------------------------------------------
  const channelNotFound = (res: Response, name: string): void =>
    sendJson(res, 200, {
      error: 'channel_not_found',
      message: `Channel ${name} does not exist`,
      kind: 'failed',
    });

  app.post(
    paths.channel,
    limitAddress,
    smallJson,
    timed('channel_set', (req, res) => {
      const info = parseDeviceInfo(req.body);
      if (!admitDevice(res, info.deviceId)) return;
      const wanted = (req.body as JsonObject)['channel'];
      if (wanted === undefined || wanted === null || wanted === '') {
        throw new RequestError(400, 'missing_channel', 'channel is required');
      }
      if (typeof wanted !== 'string' || wanted.length > 256)
        throw new RequestError(400, 'invalid_json_body', 'channel must be a string');
      const app = indexes.app(info.appId);
      if (!app) return unknownApp(res, info.appId);
      const resolved = resolveChannel(app, { ...info, defaultChannel: '' });
      if (resolved.via === 'pinned' && resolved.channel.channel.name !== wanted) {
        return sendJson(res, 200, {
          error: 'cannot_override',
          message: 'This device is pinned to a channel by the app owner',
          kind: 'failed',
        });
      }
      const ch = app.channels.get(wanted);
      if (!ch) return channelNotFound(res, wanted);
      const isDefault = ch === app.defaultChannel;
      if (!isDefault && !ch.channel.policy.allowDeviceSelfSet) {
        return sendJson(res, 200, {
          error: 'channel_self_set_not_allowed',
          message: `Channel ${wanted} does not allow devices to select it`,
          kind: 'failed',
        });
      }
      if (!ch.channel.policy.platforms.includes(info.platform)) {
        return sendJson(res, 200, {
          error: 'channel_self_set_not_allowed',
          message: `Channel ${wanted} is not available on ${info.platform}`,
          kind: 'failed',
        });
      }
      sendJson(res, 200, { status: 'ok', allowSet: true });
    }),
  );

  app.put(
    paths.channel,
    limitAddress,
    smallJson,
    timed('channel_get', (req, res) => {
      const info = parseDeviceInfo(req.body);
      if (!admitDevice(res, info.deviceId)) return;
      const app = indexes.app(info.appId);
      if (!app) return unknownApp(res, info.appId);
      const r = resolveChannel(app, info);
      const anySelfSet = [...app.channels.values()].some((c) => c.channel.policy.allowDeviceSelfSet);
      sendJson(res, 200, {
        channel: r.channel.channel.name,
        status: r.via === 'default' ? 'default' : 'override',
        allowSet: r.via !== 'pinned' && anySelfSet,
      });
    }),
  );

  app.get(
    paths.channel,
    limitAddress,
    timed('channel_list', (req, res) => {
      const query = req.query as JsonObject;
      const id = parseIdentity(query);
      if (!admitDevice(res, id.deviceId)) return;
      const app = indexes.app(id.appId);
      if (!app) return unknownApp(res, id.appId);
      const platform = query['platform'];
      const list = [...app.channels.values()]
        .filter((c) => c.channel.policy.allowDeviceSelfSet)
        .filter(
          (c) =>
            typeof platform !== 'string' ||
            c.channel.policy.platforms.includes(platform as DeviceInfo['platform']),
        )
        .map((c) => ({
          id: c.channel.id,
          name: c.channel.name,
          public: c === app.defaultChannel,
          allow_self_set: true,
        }));
      sendJson(res, 200, list);
    }),
  );

  app.delete(
    paths.channel,
    limitAddress,
    timed('channel_unset', (req, res) => {
      const id = parseIdentity(req.query);
      if (!admitDevice(res, id.deviceId)) return;
      const app = indexes.app(id.appId);
      if (!app) return unknownApp(res, id.appId);
      const customId = (req.query as JsonObject)['custom_id'];
      const r = resolveChannel(app, {
        deviceId: id.deviceId,
        customId: typeof customId === 'string' ? customId : '',
        defaultChannel: '',
        platform: 'android',
      });
      if (r.via === 'pinned') {
        return sendJson(res, 200, {
          error: 'cannot_override',
          message: 'This device is pinned to a channel by the app owner',
          kind: 'failed',
        });
      }
      // Self-selected channels live on the device (sent back as defaultChannel): nothing to delete here.
      sendJson(res, 200, { status: 'ok' });
    }),
  );

  // ---- fallbacks ----------------------------------------------------------------------------------------------
  app.use((_req, res) => sendError(res, 404, 'not_found', 'No such endpoint'));

  function handleError(err: unknown, req: IncomingMessage, res: ServerResponse): void {
    if (err instanceof RequestError) return sendError(res, err.status, err.code, err.message);
    const e = err as { type?: string; status?: number; message?: string };
    switch (e.type) {
      case 'entity.parse.failed':
        return sendError(res, 400, 'invalid_json_parse_body', 'The body is not valid JSON');
      case 'entity.too.deep':
        return sendError(res, 400, 'invalid_json_body', `JSON nested deeper than ${o.maxJsonDepth} levels`);
      case 'entity.too.large':
        // The rest of the body is not read: close the connection after answering.
        res.setHeader('Connection', 'close');
        return sendError(res, 413, 'payload_too_large', 'The body is too large');
      case 'encoding.unsupported':
      case 'charset.unsupported':
        return sendError(res, 415, 'unsupported_encoding', 'Unsupported body encoding');
      case 'request.aborted':
      case 'request.size.invalid':
      case 'stream.encoding.set':
        return sendError(res, 400, 'invalid_request', 'The request body could not be read');
      default:
        break;
    }
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      return sendError(res, e.status, 'invalid_request', 'The request could not be handled');
    }
    logger.error(
      {
        err: e.message ?? String(err),
        method: req.method,
        path: (req.url ?? '').split('?')[0]!.slice(0, 100),
      },
      'request failed',
    );
    sendError(res, 500, 'internal_error', 'Internal error');
  }

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => handleError(err, req, res));

  const updatePaths = new Set([paths.update, `${paths.update}/`]);
  const requestListener = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    if (req.method !== 'POST' || !updatePaths.has(q < 0 ? url : url.slice(0, q))) {
      app(req, res);
      return;
    }
    // Metrics are recorded when the answer is handed to the socket (no 'finish' listener on the hot path).
    const start = performance.now();
    const done = (): void => record('updates', res.statusCode, (performance.now() - start) / 1000);
    const fail = (e: unknown): void => {
      handleError(e, req, res);
      done();
    };
    if (!admitAddress(req, res)) return done();
    readJsonBody(req, o.maxBodyBytes, o.maxJsonDepth, (err, body) => {
      if (err) return fail(err);
      let pending: void | Promise<void>;
      try {
        pending = updateCheck(body, res);
      } catch (e) {
        return fail(e);
      }
      if (pending) pending.then(done, fail);
      else done();
    });
  };

  return Object.assign(app, { requestListener });
}
