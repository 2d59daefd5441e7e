import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createRuntime, RunwayError, type RunEvent } from '../src/index.js';

// The library API as the README's "Embedding Runway" shows it: what an embedder gets is what the
// HTTP service runs.

describe('Runway as a library', () => {
  it('createRuntime → session({userId}) → run(input) → stream() and result(), then close()', async () => {
    const runtime = await createRuntime({ config: { server: { log_level: 'silent' }, workflows: { echo: { type: 'echo', token_delay_ms: 0 } } } });
    try {
      const session = runtime.session({ userId: 'alice' });
      const run = await session.run('hello world', { workflow: 'echo' });
      const events: RunEvent[] = [];
      for await (const event of run.stream()) events.push(event);
      expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
      expect(events.at(-1)).toMatchObject({ type: 'run.succeeded', run_id: run.id, data: { output: 'hello world' } });
      expect(events.filter((e) => e.type === 'token').map((e) => (e.data as { delta: string }).delta)).toEqual(['hello ', 'world']);
      const final = await run.result();
      expect(final).toMatchObject({ id: run.id, user_id: 'alice', status: 'succeeded', output: 'hello world' });
      expect(await session.get(run.id)).toEqual(final);
      expect((await session.list({ limit: 10 })).data.map((r) => r.id)).toEqual([run.id]);
      await expect(runtime.session({ userId: 'bob' }).get(run.id)).rejects.toMatchObject({ code: 'not_found' });
    } finally {
      await runtime.close();
    }
  });

  it('refuses bad input with a domain error that names the field, and cancels through the handle or an AbortSignal', async () => {
    const runtime = await createRuntime({ config: { server: { log_level: 'silent' }, workflows: { slow: { type: 'echo', token_delay_ms: 10_000 } } } });
    try {
      const session = runtime.session({ userId: 'alice' });
      const refused = await session.run(42, { workflow: 'slow' }).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(RunwayError);
      expect(refused).toMatchObject({ code: 'invalid_request', issues: [{ field: 'input', path: [] }] });
      const deep: Record<string, unknown> = {};
      let at = deep;
      for (let i = 0; i < 100; i++) at = (at.next = {}) as Record<string, unknown>;
      await expect(session.run('x', { workflow: 'slow', metadata: deep })).rejects.toMatchObject({ code: 'invalid_request', issues: [{ field: 'metadata' }] });

      const run = await session.run('a b', { workflow: 'slow' });
      expect(await run.cancel()).toMatchObject({ status: 'cancelled' });
      const stop = new AbortController();
      const other = await session.run('a b', { workflow: 'slow', signal: stop.signal });
      stop.abort();
      expect(await other.result()).toMatchObject({ status: 'cancelled' });
      expect(runtime.activeRuns).toBe(0);
    } finally {
      await runtime.close();
    }
  });

  it('the package exports the library entry with its types', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { exports: Record<string, { types: string; default: string }> };
    expect(pkg.exports['.']).toEqual({ types: './dist/src/index.d.ts', default: './dist/src/index.js' });
  });
});
