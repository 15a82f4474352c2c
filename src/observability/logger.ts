import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/** Field names that must never reach a log line, whatever object is logged. */
const REDACT = [
  'privateKey',
  '*.privateKey',
  'secretKey',
  '*.secretKey',
  'secretAccessKey',
  '*.secretAccessKey',
  'password',
  '*.password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
];

export function createLogger(
  opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? process.env['LIVEUPDATE_LOG_LEVEL'] ?? 'info',
    base: { component: opts.name ?? 'liveupdate' },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return opts.destination ? pino(options, opts.destination as pino.DestinationStream) : pino(options);
}

/** A logger that drops everything, for tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
