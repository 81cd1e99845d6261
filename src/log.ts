import { pino, type Logger } from 'pino';
import type { LogLevel } from './config/types.js';

export type { Logger };

/**
 * JSON lines on stdout (pino), one child logger per component with its
 * context (`instance`, `sync`, `table`). Anything under a key named
 * password, or a URL, is replaced before it is written.
 */
export function createLogger(level: LogLevel, destination: NodeJS.WritableStream = process.stdout): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: {
        paths: ['password', '*.password', '*.*.password', 'url', '*.url', '*.*.url', 'database.url', 'config.database.url'],
        censor: '***',
      },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
