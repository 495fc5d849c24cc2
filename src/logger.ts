import { pino, type Logger } from 'pino';

/** Credentials never reach the logs, whichever object carries the headers. */
export const LOG_REDACT_PATHS = [
  'req.headers.authorization',
  'request.headers.authorization',
  'headers.authorization',
  'req.headers.cookie',
  'headers.cookie',
];

/** JSON lines; pretty output only when stdout is a terminal. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: { paths: LOG_REDACT_PATHS, censor: '[redacted]' },
    ...(process.stdout.isTTY
      ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:standard' } } }
      : {}),
  });
}
