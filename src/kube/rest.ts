/**
 * A small REST transport to the API server. client-node supplies configuration and authentication (kubeconfig,
 * in-cluster token files, exec plugins); requests go through node:https with one keep-alive agent, so that every call
 * has a timeout and an AbortSignal, the content type is exactly what we ask for, status subresources are reachable,
 * requests are counted, and tests can sever every connection at once (see docs/adr/0004-kube-runtime.md).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError, type ApiErrorReason, type ResourceType } from './types.js';

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface RestClientOptions {
  /** Default per-request timeout. */
  timeoutMs?: number;
  userAgent?: string;
  /**
   * Called once per request when its outcome is known: the HTTP method (a watch is a GET) and the status code, or
   * `<error>` when no response came (connection failure, timeout, abort), as client-go's request metric labels them.
   */
  onRequest?: (method: string, code: string) => void;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export class RestClient {
  /** Requests sent, by verb (watch requests count as WATCH). */
  readonly requestCounts = new Map<string, number>();
  private readonly server: URL;
  private readonly isHttps: boolean;
  private agent: http.Agent | undefined;
  private readonly timeoutMs: number;
  private readonly userAgent: string;
  private readonly onRequest: ((method: string, code: string) => void) | undefined;

  constructor(
    private readonly kc: KubeConfig,
    opts: RestClientOptions = {},
  ) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
    this.isHttps = this.server.protocol === 'https:';
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.userAgent = opts.userAgent ?? 'liveupdate-operator';
    this.onRequest = opts.onRequest;
  }

  totalRequests(): number {
    let n = 0;
    for (const v of this.requestCounts.values()) n += v;
    return n;
  }

  /** Closes every open connection, including watches (they end with an error and their owners reconnect). */
  destroyConnections(): void {
    const agent = this.agent as (http.Agent & { sockets: NodeJS.Dict<Socket[]> }) | undefined;
    if (!agent) return;
    for (const list of Object.values(agent.sockets)) for (const s of list ?? []) s.destroy();
    for (const list of Object.values(agent.freeSockets)) for (const s of list ?? []) s.destroy();
  }

  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, opts, opts.timeoutMs ?? this.timeoutMs);
    let text: string;
    try {
      text = await readBody(res.response, res.signal);
    } catch (err) {
      if (err instanceof KubeApiError) throw err;
      throw new KubeApiError('Unavailable', 0, `${method} ${path}: ${errorMessage(err)}`, { cause: err });
    } finally {
      res.done();
    }
    const status = res.response.statusCode ?? 0;
    if (status < 200 || status >= 300) throw toApiError(status, text, `${method} ${path}`);
    try {
      return (text ? JSON.parse(text) : {}) as T;
    } catch (err) {
      throw new KubeApiError('ServerError', status, `${method} ${path}: response is not JSON`, {
        cause: err,
      });
    }
  }

  /**
   * Opens a streaming GET (watch) and calls onLine for every line until the server closes the stream (resolves) or
   * the connection fails / the signal aborts (rejects). Only the connection phase has a timeout.
   */
  async stream(
    path: string,
    query: RequestOptions['query'],
    onLine: (line: string) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const res = await this.send('WATCH', path, { ...(query ? { query } : {}), signal }, this.timeoutMs, true);
    const status = res.response.statusCode ?? 0;
    if (status !== 200) {
      const text = await readBody(res.response, res.signal).catch(() => '');
      res.done();
      throw toApiError(status, text, `WATCH ${path}`);
    }
    try {
      await new Promise<void>((resolve, reject) => {
        const response = res.response;
        const lines = createInterface({ input: response, crlfDelay: Infinity });
        lines.on('line', (line) => {
          if (line) onLine(line);
        });
        // readline re-emits input errors: without a listener they would be uncaught
        lines.on('error', reject);
        response.on('error', reject);
        response.on('close', () => {
          if (!response.complete) reject(new Error('watch connection closed before the stream ended'));
          else resolve();
        });
        res.signal.addEventListener('abort', () => reject(asError(res.signal.reason)), { once: true });
      });
    } finally {
      res.done();
    }
  }

  private async send(
    method: string,
    path: string,
    opts: RequestOptions,
    timeoutMs: number,
    streaming = false,
  ): Promise<{ response: http.IncomingMessage; signal: AbortSignal; done: () => void }> {
    this.requestCounts.set(method, (this.requestCounts.get(method) ?? 0) + 1);
    const httpMethod = method === 'WATCH' ? 'GET' : method;
    const ctl = new AbortController();
    const timer = setTimeout(
      () => ctl.abort(new KubeApiError('Timeout', 0, `${method} ${path}: timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    timer.unref();
    const onAbort = (): void => ctl.abort(opts.signal?.reason);
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    try {
      const auth: https.RequestOptions = {};
      await this.kc.applyToHTTPSOptions(auth);
      if (!this.agent) this.agent = this.makeAgent(auth);
      const url = new URL(this.server.href.replace(/\/$/, '') + path);
      for (const [k, v] of Object.entries(opts.query ?? {}))
        if (v !== undefined) url.searchParams.set(k, String(v));
      if (method === 'WATCH') url.searchParams.set('watch', 'true');
      const headers: http.OutgoingHttpHeaders = {
        ...((auth.headers ?? {}) as http.OutgoingHttpHeaders),
        accept: 'application/json',
        'user-agent': this.userAgent,
      };
      let payload: Buffer | undefined;
      if (opts.body !== undefined) {
        payload = Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
        headers['content-type'] = opts.contentType ?? 'application/json';
        headers['content-length'] = payload.length;
      }
      const mod = this.isHttps ? https : http;
      const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = mod.request(url, {
          method: httpMethod,
          headers,
          agent: this.agent,
          signal: ctl.signal,
          ...(auth.auth ? { auth: auth.auth } : {}),
        });
        req.on('response', resolve);
        req.on('error', (err) => reject(ctl.signal.aborted ? asError(ctl.signal.reason) : err));
        req.end(payload);
      });
      // a watch may stay open for minutes: the timeout only covers connecting and the response headers
      if (streaming) clearTimeout(timer);
      this.observe(httpMethod, String(response.statusCode ?? 0));
      return { response, signal: ctl.signal, done };
    } catch (err) {
      done();
      this.observe(httpMethod, '<error>');
      if (err instanceof KubeApiError) throw err;
      throw new KubeApiError('Unavailable', 0, `${method} ${path}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** A metrics hook must never break a request. */
  private observe(method: string, code: string): void {
    try {
      this.onRequest?.(method, code);
    } catch {
      // ignored
    }
  }

  private makeAgent(tls: https.RequestOptions): http.Agent {
    if (!this.isHttps) return new http.Agent({ keepAlive: true });
    return new https.Agent({
      keepAlive: true,
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.cert ? { cert: tls.cert } : {}),
      ...(tls.key ? { key: tls.key } : {}),
      ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {}),
      ...(tls.servername ? { servername: tls.servername } : {}),
    });
  }
}

function readBody(res: http.IncomingMessage, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', (err) => reject(signal.aborted ? asError(signal.reason) : err));
  });
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(typeof reason === 'string' ? reason : 'aborted');
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const REASONS: Record<number, ApiErrorReason> = {
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  409: 'Conflict',
  410: 'Gone',
  422: 'Invalid',
  429: 'TooManyRequests',
  503: 'Unavailable',
  504: 'Timeout',
};

/** Maps an API response to a KubeApiError, keeping the server's Status message (which names the failing field). */
export function toApiError(status: number, body: string, what: string): KubeApiError {
  let message = body.slice(0, 2000);
  let statusReason: string | undefined;
  try {
    const parsed = JSON.parse(body) as { kind?: string; message?: string; reason?: string };
    if (parsed.kind === 'Status') {
      message = parsed.message ?? message;
      statusReason = parsed.reason;
    }
  } catch {
    // not JSON: keep the raw (bounded) text
  }
  let reason: ApiErrorReason = REASONS[status] ?? (status >= 500 ? 'ServerError' : 'Invalid');
  if (status === 409 && statusReason === 'AlreadyExists') reason = 'AlreadyExists';
  if (status === 400 && statusReason === 'BadRequest') reason = 'Invalid';
  if (status === 500 && statusReason === 'Timeout') reason = 'Timeout';
  return new KubeApiError(reason, status, `${what}: ${message}`);
}

/** Transient failures a caller should retry with backoff. */
export function isRetryable(err: unknown): boolean {
  return (
    err instanceof KubeApiError &&
    ['Conflict', 'TooManyRequests', 'ServerError', 'Timeout', 'Unavailable'].includes(err.reason)
  );
}

/** The collection path of a resource type: /api/v1/namespaces/ns/configmaps, /apis/g/v/plural. */
export function collectionPath(type: ResourceType, namespace?: string): string {
  const base = type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
  return type.namespaced && namespace
    ? `${base}/namespaces/${encodeURIComponent(namespace)}/${type.plural}`
    : `${base}/${type.plural}`;
}

export function objectPath(
  type: ResourceType,
  key: { namespace?: string; name: string },
  subresource?: string,
): string {
  if (type.namespaced && !key.namespace) throw new Error(`${type.kind} ${key.name}: namespace required`);
  const path = `${collectionPath(type, key.namespace)}/${encodeURIComponent(key.name)}`;
  return subresource ? `${path}/${subresource}` : path;
}

export function apiVersionOf(type: ResourceType): string {
  return type.group === '' ? type.version : `${type.group}/${type.version}`;
}
