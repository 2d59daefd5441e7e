import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, LevelWithSilentOrString } from 'pino';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * A request's logger (`request.log`) whose pino child is made the first time a line is written
 * through it at an enabled level, or something asks for its bindings.
 *
 * Fastify makes a child logger for every request. pino's `child()` copies formatters and writes
 * the bindings' JSON, ~3.7k instructions a request (callgrind, BENCHMARKS.md), and at the default
 * production levels most requests never write a line with it. It is what Fastify's
 * `FastifyBaseLogger` promises (`level`, the level methods, `silent`, `child`), plus the pino
 * methods a handler may reach for (`isLevelEnabled`, `bindings`, `setBindings`, `flush`).
 *
 * @example
 *   Fastify({ childLoggerFactory: (logger, bindings, opts) => new LazyRequestLogger(logger, bindings, opts) })
 */
export class LazyRequestLogger implements FastifyBaseLogger {
  #made: FastifyBaseLogger | undefined;
  readonly #parent: FastifyBaseLogger;
  readonly #bindings: Bindings;
  readonly #options: ChildLoggerOptions | undefined;

  constructor(parent: FastifyBaseLogger, bindings: Bindings, options?: ChildLoggerOptions) {
    this.#parent = parent;
    this.#bindings = bindings;
    // Fastify passes `{}` when a route sets no logger options; only real ones are handed on.
    let given: ChildLoggerOptions | undefined;
    for (const _ in options) {
      given = options;
      break;
    }
    this.#options = given;
    // Options can change what the child writes or at which level: such a child is made now.
    if (given !== undefined) this.#made = parent.child(bindings, given);
  }

  /** The pino child, made now if it was not yet. */
  get logger(): FastifyBaseLogger {
    return (this.#made ??= this.#options === undefined ? this.#parent.child(this.#bindings) : this.#parent.child(this.#bindings, this.#options));
  }

  get level(): LevelWithSilentOrString {
    return (this.#made ?? this.#parent).level;
  }

  set level(level: LevelWithSilentOrString) {
    this.logger.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return isEnabled(this.#made ?? this.#parent, level);
  }

  fatal(...args: unknown[]): void {
    this.#write('fatal', args);
  }
  error(...args: unknown[]): void {
    this.#write('error', args);
  }
  warn(...args: unknown[]): void {
    this.#write('warn', args);
  }
  info(...args: unknown[]): void {
    this.#write('info', args);
  }
  debug(...args: unknown[]): void {
    this.#write('debug', args);
  }
  trace(...args: unknown[]): void {
    this.#write('trace', args);
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return options === undefined ? this.logger.child(bindings) : this.logger.child(bindings, options);
  }

  bindings(): Bindings {
    return (this.logger as FastifyBaseLogger & { bindings(): Bindings }).bindings();
  }

  setBindings(bindings: Bindings): void {
    (this.logger as FastifyBaseLogger & { setBindings(b: Bindings): void }).setBindings(bindings);
  }

  flush(cb?: (err?: Error) => void): void {
    const target = (this.#made ?? this.#parent) as FastifyBaseLogger & { flush?: (cb?: (err?: Error) => void) => void };
    if (target.flush) target.flush(cb);
    else cb?.();
  }

  #write(level: Level, args: unknown[]): void {
    let target = this.#made;
    if (target === undefined) {
      if (!isEnabled(this.#parent, level)) return;
      target = this.logger;
    }
    (target[level] as (...a: unknown[]) => void).apply(target, args);
  }
}

/** pino's own check when the logger has one (custom levels included), else by the standard order. */
function isEnabled(logger: FastifyBaseLogger, level: string): boolean {
  const check = (logger as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled;
  if (check !== undefined) return check.call(logger, level);
  return (ORDER[logger.level] ?? Infinity) <= (ORDER[level] ?? -Infinity);
}

const ORDER: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
