import type { LogFn } from 'pino';

/** The slice of pino the runtime logs through (Fastify's request loggers fit it). */
export interface Logger {
  level: string;
  fatal: LogFn;
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  trace: LogFn;
  child(bindings: Record<string, unknown>): Logger;
}
