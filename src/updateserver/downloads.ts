/**
 * Bundle zip and delta-file downloads, streamed from the object store: `Content-Length`, `ETag` (the store's),
 * `Accept-Ranges`, single `Range` → 206 + `Content-Range`, `If-None-Match` → 304, never a redirect (Android's zip
 * download does not follow cross-scheme redirects). Only keys some loaded index references are served, so the
 * bucket cannot be read through the service. Store down → 503 + `Retry-After` (devices retry 5xx later).
 */
import type { Request, Response } from 'express';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../observability/logger.js';
import {
  ObjectNotFoundError,
  type ObjectInfo,
  type ObjectStore,
  type RangeSpec,
} from '../storage/object-store.js';
import type { UpdateServerMetrics } from './metrics.js';

export type RangeResult =
  { type: 'none' } | { type: 'range'; range: Required<RangeSpec> } | { type: 'unsatisfiable' };

/**
 * Parses a `Range` header against a known size. Multiple ranges and syntax we do not understand are ignored (a 200
 * with the whole body is always a correct answer to a Range request).
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { type: 'none' };
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { type: 'none' };
  const first = m[1] ?? '';
  const last = m[2] ?? '';
  if (first === '') {
    // Suffix range: the last N bytes.
    const n = Number(last);
    if (n === 0 || size === 0) return { type: 'unsatisfiable' };
    return { type: 'range', range: { start: Math.max(0, size - n), end: size - 1 } };
  }
  const start = Number(first);
  let end = last === '' ? size - 1 : Number(last);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return { type: 'none' };
  if (start >= size) return { type: 'unsatisfiable' };
  if (end < start) return { type: 'none' };
  end = Math.min(end, size - 1);
  return { type: 'range', range: { start, end } };
}

/** Decodes `/a/b%20c` into an object key, refusing traversal and empty segments. */
export function keyFromPath(path: string): string | undefined {
  const raw = path.replace(/^\/+/, '');
  if (raw === '' || raw.length > 1024) return undefined;
  const parts: string[] = [];
  for (const seg of raw.split('/')) {
    let dec: string;
    try {
      dec = decodeURIComponent(seg);
    } catch {
      return undefined;
    }
    if (dec === '' || dec === '.' || dec === '..' || dec.includes('/') || dec.includes('\0'))
      return undefined;
    parts.push(dec);
  }
  return parts.join('/');
}

function contentTypeOf(key: string): string {
  return key.endsWith('.zip') ? 'application/zip' : 'application/octet-stream';
}

function singleEtag(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const v = header.trim();
  if (v === '' || v === '*' || v.includes(',')) return undefined;
  return v.replace(/^W\//, '').replace(/^"|"$/g, '');
}

function setObjectHeaders(res: Response, key: string, info: ObjectInfo): void {
  res.setHeader('Content-Type', contentTypeOf(key));
  res.setHeader('Accept-Ranges', 'bytes');
  if (info.etag !== '') res.setHeader('ETag', `"${info.etag}"`);
  if (info.lastModified.getTime() > 0) res.setHeader('Last-Modified', info.lastModified.toUTCString());
  // Objects are content-addressed and immutable: a URL always denotes the same bytes.
  res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
}

/**
 * `pipeline(body, res)` for a body that reuses its buffers (see the S3 store's ReleasableBody): each chunk is
 * released once the response socket has taken it. Resolves when the response finished; rejects (after destroying
 * the body) when the body fails or the response closes first.
 */
function writeReleasing(body: Readable, res: Response, release: (chunk: Buffer) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      res.off('drain', onDrain);
      res.off('close', onClose);
      res.off('finish', onFinish);
      if (err) {
        body.destroy();
        reject(err);
      } else resolve();
    };
    const onData = (chunk: Buffer): void => {
      if (!res.write(chunk, (err) => (err ? undefined : release(chunk)))) body.pause();
    };
    const onDrain = (): void => {
      body.resume();
    };
    const onEnd = (): void => {
      res.end();
    };
    const onError = (err: Error): void => finish(err);
    const onFinish = (): void => finish();
    const onClose = (): void => {
      if (!res.writableFinished) finish(new Error('response closed before the body was sent'));
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    res.on('drain', onDrain);
    res.on('close', onClose);
    res.on('finish', onFinish);
  });
}

export interface DownloadDeps {
  store: ObjectStore;
  objects: () => ReadonlyMap<string, number>;
  logger: Logger;
  metrics: UpdateServerMetrics;
  retryAfterSeconds: number;
  sendError: (
    res: Response,
    status: number,
    error: string,
    message: string,
    headers?: Record<string, string>,
  ) => void;
}

export function createDownloadHandler(deps: DownloadDeps) {
  return async function download(req: Request, res: Response): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      deps.sendError(res, 405, 'method_not_allowed', 'Use GET or HEAD');
      return;
    }
    const key = keyFromPath(req.path);
    const size = key === undefined ? undefined : deps.objects().get(key);
    if (key === undefined || size === undefined) {
      deps.sendError(res, 404, 'not_found', 'No such bundle or file');
      return;
    }
    const ac = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) ac.abort(new Error('client went away'));
    };
    res.on('close', onClose);
    try {
      if (req.method === 'HEAD') {
        const info = await deps.store.stat(key, ac.signal);
        setObjectHeaders(res, key, info);
        res.setHeader('Content-Length', String(info.size));
        res.status(200).end();
        return;
      }
      // If-Range with a validator we cannot check up front: serve the whole object (always correct).
      const range =
        req.headers['if-range'] !== undefined
          ? ({ type: 'none' } as const)
          : parseRange(req.headers.range, size);
      if (range.type === 'unsatisfiable') {
        res.setHeader('Content-Range', `bytes */${size}`);
        deps.sendError(res, 416, 'range_not_satisfiable', `The object has ${size} bytes`);
        return;
      }
      const inm = singleEtag(req.headers['if-none-match']);
      const result = await deps.store.get(key, {
        ...(range.type === 'range' ? { range: range.range } : {}),
        ...(inm !== undefined ? { ifNoneMatch: inm } : {}),
        expectedSize: size,
        signal: ac.signal,
      });
      if (result === null) {
        res.setHeader('ETag', `"${inm ?? ''}"`);
        res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
        res.status(304).end();
        return;
      }
      const { info, body } = result;
      setObjectHeaders(res, key, info);
      if (range.type === 'range') {
        const end = Math.min(range.range.end, info.size - 1);
        res.setHeader('Content-Range', `bytes ${range.range.start}-${end}/${info.size}`);
        res.setHeader('Content-Length', String(end - range.range.start + 1));
        res.status(206);
      } else {
        res.setHeader('Content-Length', String(info.size));
        res.status(200);
      }
      if (info.size !== size) {
        deps.logger.warn(
          { key, indexSize: size, storedSize: info.size },
          'stored object size differs from the index',
        );
      }
      const length = Number(res.getHeader('Content-Length'));
      try {
        const release = (body as { release?: (chunk: Buffer) => void }).release;
        if (typeof release === 'function')
          await writeReleasing(body, res, (chunk) => release.call(body, chunk));
        else await pipeline(body, res);
        deps.metrics.downloadBytes.inc(length);
      } catch (err) {
        // Mid-stream failure or client abort: the device sees a short body and resumes with Range.
        if (!ac.signal.aborted) {
          deps.logger.warn(
            { key, err: err instanceof Error ? err.message : String(err) },
            'download interrupted',
          );
        }
        res.destroy();
      }
    } catch (err) {
      if (ac.signal.aborted) {
        res.destroy();
        return;
      }
      if (err instanceof ObjectNotFoundError) {
        deps.logger.error({ key }, 'an object the index references is missing from the store');
        deps.sendError(res, 404, 'not_found', 'No such bundle or file');
        return;
      }
      if (err instanceof RangeError) {
        res.setHeader('Content-Range', `bytes */${size}`);
        deps.sendError(res, 416, 'range_not_satisfiable', 'Range not satisfiable');
        return;
      }
      deps.logger.warn(
        { key, err: err instanceof Error ? err.message : String(err) },
        'object store unavailable for a download',
      );
      deps.sendError(res, 503, 'storage_unavailable', 'Downloads are temporarily unavailable, retry later', {
        'Retry-After': String(deps.retryAfterSeconds),
      });
    } finally {
      res.off('close', onClose);
    }
  };
}
