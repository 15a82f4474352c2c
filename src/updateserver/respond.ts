/**
 * Writing JSON answers, and mapping every thrown error to one: a device always gets `{error, message, kind}` JSON
 * with a 4xx for bad input, never a stack trace; only unexpected errors are 500 (and logged).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observability/logger.js';
import { RequestError } from './device-request.js';

export function sendJson(
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
  const head = {
    'Content-Type': 'application/json; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': payload.length,
  };
  res.writeHead(status, headers ? Object.assign(head, headers) : head);
  res.end(payload);
}

export function sendError(
  res: ServerResponse,
  status: number,
  error: string,
  message: string,
  headers?: Record<string, string>,
): void {
  sendJson(res, status, { error, message, kind: 'failed' }, headers);
}

/** The answer to any error a route or the body reader threw. */
export function createErrorHandler(
  logger: Logger,
  maxJsonDepth: number,
): (err: unknown, req: IncomingMessage, res: ServerResponse) => void {
  return (err, req, res) => {
    if (err instanceof RequestError) return sendError(res, err.status, err.code, err.message);
    const e = err as { type?: string; status?: number; message?: string };
    switch (e.type) {
      case 'entity.parse.failed':
        return sendError(res, 400, 'invalid_json_parse_body', 'The body is not valid JSON');
      case 'entity.too.deep':
        return sendError(res, 400, 'invalid_json_body', `JSON nested deeper than ${maxJsonDepth} levels`);
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
  };
}
