/**
 * Turning an update {@link Decision} into the wire answer (CAPGO-PROTOCOL.md §2.2, §2.3): download URLs, the
 * rendered success bodies cached per bundle and variant, error answers, and the unknown-app answer.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from '../observability/logger.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { CompiledApp, CompiledBundle } from './compiled-index.js';
import type { IndexSource, ServicePaths, UpdateServerOptions } from './options.js';
import { isSharedAnswer, type Decision, type ErrorAnswer, type UpdatePlan } from './policy.js';
import type { RequestMetrics } from './request-metrics.js';
import { sendJson } from './respond.js';

type JsonObject = Record<string, unknown>;

const UNKNOWN_APP_LABEL = '_unknown';
/** Retry-After of `app_unavailable`: the index is polled every few seconds, a fix shows up within a minute. */
const APP_UNAVAILABLE_RETRY_SECONDS = 60;

const encodeKey = (key: string): string => key.split('/').map(encodeURIComponent).join('/');

/** Which of the (at most 8) answers of a bundle a plan needs: V2 checksum, delta manifest, notes. */
const variantOf = (plan: UpdatePlan): number =>
  (plan.checksum === plan.bundle.bundle.checksum ? 0 : 1) |
  (plan.includeManifest ? 2 : 0) |
  (plan.includeNotes ? 4 : 0);

interface RenderedAnswer {
  json: Buffer;
  expiresAt: number;
}

export function errorBody(d: ErrorAnswer): JsonObject {
  return { error: d.error, message: d.message, kind: d.kind, ...d.extra };
}

export class Answers {
  private readonly publicBase: string;
  /** Rendered success bodies per bundle and variant; bundles are immutable per index revision. */
  private readonly cache = new WeakMap<CompiledBundle, (RenderedAnswer | undefined)[]>();
  /** Serialized bodies of the decisions that are shared constants (e.g. no_new_version_available). */
  private readonly constantErrors = new WeakMap<ErrorAnswer, Buffer>();

  constructor(
    private readonly options: UpdateServerOptions,
    private readonly paths: ServicePaths,
    private readonly store: ObjectStore,
    private readonly requests: RequestMetrics,
    private readonly logger: Logger,
    private readonly indexes: Pick<IndexSource, 'failure'> = {},
  ) {
    this.publicBase = options.publicUrl.replace(/\/+$/, '');
  }

  /** The URL of an object served by this service. */
  publicUrlFor(key: string): string {
    return `${this.publicBase}${this.paths.bundles}/${encodeKey(key)}`;
  }

  /** Synchronous unless a success answer must be rendered (first time per bundle, or presigning). */
  answer(res: ServerResponse, app: CompiledApp, d: Decision): void | Promise<void> {
    if (d.type === 'error') {
      this.requests.countAnswer(app.appId, d.error);
      sendJson(res, d.status, isSharedAnswer(d) ? this.constantError(d) : errorBody(d));
      return;
    }
    this.requests.countAnswer(app.appId, 'new_version');
    const cached = this.cached(d);
    if (cached) return sendJson(res, 200, cached);
    return this.render(d).then((json) => sendJson(res, 200, json));
  }

  /**
   * The answer for an app with no compiled index: `app_unavailable` (503 + Retry-After) when the root lists it but its
   * index cannot be used — that app only, the detail stays on the admin port — else `app_not_found`.
   */
  unknownApp(res: ServerResponse, appId: string): void {
    if (this.indexes.failure?.(appId) !== undefined) {
      this.requests.countAnswer(appId, 'app_unavailable');
      sendJson(
        res,
        503,
        {
          error: 'app_unavailable',
          message: `App ${appId} cannot be served right now: its release index could not be loaded`,
          kind: 'failed',
        },
        { 'Retry-After': String(APP_UNAVAILABLE_RETRY_SECONDS) },
      );
      return;
    }
    this.requests.countAnswer(UNKNOWN_APP_LABEL, 'app_not_found');
    this.logger.debug({ appId }, 'request for an app this service does not serve');
    sendJson(res, 404, {
      error: 'app_not_found',
      message: `App ${appId} is not served here`,
      kind: 'failed',
    });
  }

  private async urlFor(key: string): Promise<string> {
    if (!this.options.presignDownloads || !this.store.presignGet) return this.publicUrlFor(key);
    return this.store.presignGet(key, this.options.presignExpirySeconds);
  }

  private cached(plan: UpdatePlan): Buffer | undefined {
    const cached = this.cache.get(plan.bundle)?.[variantOf(plan)];
    if (!cached) return undefined;
    return cached.expiresAt === Number.POSITIVE_INFINITY || cached.expiresAt > Date.now()
      ? cached.json
      : undefined;
  }

  private constantError(d: ErrorAnswer): Buffer {
    let json = this.constantErrors.get(d);
    if (!json) {
      json = Buffer.from(JSON.stringify(errorBody(d)));
      this.constantErrors.set(d, json);
    }
    return json;
  }

  private async render(plan: UpdatePlan): Promise<Buffer> {
    const variant = variantOf(plan);
    let perBundle = this.cache.get(plan.bundle);
    const now = Date.now();
    const b = plan.bundle.bundle;
    const body: JsonObject = {
      version: b.version,
      url: await this.urlFor(b.objectKey),
      checksum: plan.checksum,
      // Capgo sends an empty session_key for unencrypted bundles.
      session_key: b.encrypted ? (b.sessionKey ?? '') : '',
    };
    if (plan.includeManifest && b.manifest) {
      body['manifest'] = await Promise.all(
        b.manifest.map(async (f) => ({
          file_name: f.fileName,
          file_hash: f.fileHash,
          download_url: await this.urlFor(f.objectKey),
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
      perBundle = [];
      this.cache.set(plan.bundle, perBundle);
    }
    // Presigned URLs are reused for half their validity; service URLs never expire.
    const ttl = this.options.presignDownloads
      ? (this.options.presignExpirySeconds * 1000) / 2
      : Number.POSITIVE_INFINITY;
    perBundle[variant] = { json: text, expiresAt: now + ttl };
    return text;
  }
}
