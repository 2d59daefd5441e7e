import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { FastifyBaseLogger } from 'fastify';
import { buildApp } from '../src/app.js';
import { LazyRequestLogger } from '../src/http/lazy-request-logger.js';

/** A real pino logger writing its lines into an array. */
function capture(level: string): { log: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const log = pino({ level }, { write: (line: string) => void out.push(line) });
  return { log, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('LazyRequestLogger', () => {
  it('makes no pino child for a request that writes nothing at an enabled level', () => {
    const { log, lines } = capture('warn');
    const child = vi.spyOn(log, 'child');
    const lazy = new LazyRequestLogger(log as unknown as FastifyBaseLogger, { reqId: 'r1' }, {});
    lazy.info('not written');
    lazy.debug({ a: 1 }, 'not written either');
    expect(lazy.level).toBe('warn');
    expect(lazy.isLevelEnabled('info')).toBe(false);
    expect(lazy.isLevelEnabled('error')).toBe(true);
    expect(child).not.toHaveBeenCalled();
    expect(lines()).toEqual([]);
  });

  it('writes lines with its bindings once a level is enabled, through one child made on first use', () => {
    const { log, lines } = capture('info');
    const child = vi.spyOn(log, 'child');
    const lazy = new LazyRequestLogger(log as unknown as FastifyBaseLogger, { reqId: 'r2' }, {});
    lazy.info({ k: 'v' }, 'first');
    lazy.warn('second %s', 'formatted');
    lazy.error(new Error('boom'), 'third');
    expect(child).toHaveBeenCalledTimes(1);
    expect(lines().map((l) => [l.reqId, l.msg, l.level])).toEqual([
      ['r2', 'first', 30],
      ['r2', 'second formatted', 40],
      ['r2', 'third', 50],
    ]);
    expect(lines()[0]!.k).toBe('v');
    expect((lines()[2]!.err as { message: string }).message).toBe('boom');
  });

  it('chains the bindings of its children (a run logs with the request id and its run id)', () => {
    const { log, lines } = capture('info');
    const lazy = new LazyRequestLogger(log as unknown as FastifyBaseLogger, { reqId: 'r3' });
    lazy.child({ run_id: 'run-1' }).info('run finished');
    expect(lines()).toMatchObject([{ reqId: 'r3', run_id: 'run-1', msg: 'run finished' }]);
    expect(lazy.bindings()).toEqual({ reqId: 'r3' });
    lazy.setBindings({ extra: true });
    lazy.info('after');
    expect(lines()[1]).toMatchObject({ reqId: 'r3', extra: true, msg: 'after' });
  });

  it('honours child options (a route-level log level) and a level set on it later', () => {
    const { log, lines } = capture('warn');
    const lazy = new LazyRequestLogger(log as unknown as FastifyBaseLogger, { reqId: 'r4' }, { level: 'debug' });
    expect(lazy.level).toBe('debug');
    lazy.debug('route debug');
    const other = new LazyRequestLogger(log as unknown as FastifyBaseLogger, { reqId: 'r5' }, {});
    other.info('dropped');
    other.level = 'info';
    other.info('kept');
    expect(log.level).toBe('warn');
    expect(lines().map((l) => [l.reqId, l.msg])).toEqual([
      ['r4', 'route debug'],
      ['r5', 'kept'],
    ]);
    const flushed = vi.fn();
    other.flush(flushed);
    expect(flushed).toHaveBeenCalled();
  });
});

describe('request logging through the app', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  it("gives every request a lazy logger, so at the default levels a request that logs nothing costs no pino child", async () => {
    const app = await buildApp({ logger: { level: 'warn' } });
    close = () => app.close();
    app.get('/probe-logger', async (request) => ({ lazy: request.log instanceof LazyRequestLogger }));
    const res = await app.inject({ url: '/probe-logger' });
    expect(res.json()).toEqual({ lazy: true });
  });

  it('at info, every line of a request and of its run carries the request id, and the run lines the run id', async () => {
    const out: string[] = [];
    const app = await buildApp({ logger: { level: 'info', stream: { write: (line: string) => void out.push(line) } } });
    close = () => app.close();
    const res = await app.inject({ method: 'POST', url: '/runs', headers: { 'x-request-id': 'req-lazy-1' }, payload: { input: 'hi' } });
    expect(res.statusCode).toBe(200);
    const runId = res.json<{ id: string }>().id;
    const lines = out.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.reqId === 'req-lazy-1');
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['incoming request', 'run finished', 'request completed']));
    expect(lines.find((l) => l.msg === 'run finished')?.run_id).toBe(runId);
  });
});
