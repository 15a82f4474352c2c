/**
 * The JSON body reader of the device API: object or array only, bounded size and nesting, UTF-8 whatever the
 * Content-Type (devices send application/json with or without charset; Capgo's backend ignores the type too).
 * A small replacement for express.json on the hot path: no charset conversion layer, one buffer, one parse.
 */
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';

/**
 * Refuses JSON nested deeper than `max` before it is parsed (a cheap scan). On the decoded text or the raw bytes
 * alike: brackets, quotes and backslashes are ASCII, and UTF-8 decoding never turns bytes into ASCII characters
 * nor swallows them (the request path scans the text it parses next, with the string's own searches).
 */
export function jsonDepthExceeds(json: string | Buffer, max: number): boolean {
  const text = typeof json === 'string' ? json : json.toString('utf8');
  // Nesting needs an opening bracket per level: with at most `max` of them (every device body: one '{'), counted
  // with native searches, the character-by-character scan is not needed.
  let brackets = 0;
  for (let i = text.indexOf('{'); i >= 0 && brackets <= max; i = text.indexOf('{', i + 1)) brackets++;
  for (let i = text.indexOf('['); i >= 0 && brackets <= max; i = text.indexOf('[', i + 1)) brackets++;
  if (brackets <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
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
export class BodyError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** What devices send as Content-Type (no charset parsing needed for these). */
const UTF8_JSON_TYPES = new Set(['application/json', 'application/json; charset=utf-8']);

/** Reads a JSON body (object or array only), bounded by `limit` bytes and `maxDepth` nesting. */
export function readJsonBody(
  req: IncomingMessage,
  limit: number,
  maxDepth: number,
  next: (err: Error | undefined, body?: unknown) => void,
): void {
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity')
    return next(new BodyError(415, 'encoding.unsupported', 'unsupported content encoding'));
  const type = req.headers['content-type'];
  if (type === undefined || !UTF8_JSON_TYPES.has(type)) {
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(type ?? '')?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      return next(new BodyError(415, 'charset.unsupported', 'unsupported charset'));
    }
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
    const text = buf.toString('utf8');
    if (jsonDepthExceeds(text, maxDepth)) return next(new BodyError(400, 'entity.too.deep', 'too deep'));
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
      body = JSON.parse(text);
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

/** {@link readJsonBody} as express middleware (sets `req.body`). */
export function jsonBody(limit: number, maxDepth: number): RequestHandler {
  return (req, _res, next) =>
    readJsonBody(req, limit, maxDepth, (err, body) => {
      if (err) return next(err);
      req.body = body;
      next();
    });
}
