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

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/**
 * True when `logger` would write at `level`. Checked before building a per-run child logger, which
 * on the hot path costs more than the line it would (not) write.
 */
export function levelEnabled(logger: Logger, level: keyof typeof LEVELS & string): boolean {
  return (LEVELS[logger.level] ?? Infinity) <= LEVELS[level]!;
}
