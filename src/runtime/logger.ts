import type { Logger } from '../core/logger.js';

export type { Logger };



const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/**
 * True when `logger` would write at `level`. Checked before building a per-run child logger, which
 * on the hot path costs more than the line it would (not) write.
 */
export function levelEnabled(logger: Logger, level: keyof typeof LEVELS & string): boolean {
  return (LEVELS[logger.level] ?? Infinity) <= LEVELS[level]!;
}
