import type { FastifyInstance } from 'fastify';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { Run } from '../src/core/run.js';
import { listen, makeApp } from './support/app.js';
import { ConcurrencyProbe, Drip, gateWorkflowType, yielderWorkflowType } from './support/sse-socket-workflows.js';
import { waitFor } from './support/sse-sockets.js';

let app: FastifyInstance | undefined;
let agent: Agent | undefined;

afterEach(async () => {
  await agent?.close();
  agent = undefined;
  await app?.close();
  app = undefined;
});

describe('admission under concurrent HTTP load', () => {
  it('200 concurrent POST /runs of many users against max_concurrency 4: all succeed, never more than 4 at once', async () => {
    const probe = new ConcurrencyProbe();
    app = await makeApp({
      runtime: { max_concurrency: 4, max_queue: 1000, queue_timeout_ms: 15_000 },
      workflows: { yielder: { type: 'yielder', yields: 4 } },
      registry: { workflowTypes: [yielderWorkflowType(probe)] },
    });
    const base = await listen(app);
    agent = new Agent({ connections: 256, pipelining: 0 });

    // Sample the gauges from inside running workflows: the queue must really have formed.
    let maxWaiting = 0;
    let maxInFlight = 0;
    probe.onYield = () => {
      const s = app!.runtime.sessions.stats();
      maxWaiting = Math.max(maxWaiting, s.waiting);
      maxInFlight = Math.max(maxInFlight, s.inFlight);
    };

    const N = 200;
    const results = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const user = `user-${i % 25}`;
        const input = `run ${i} of ${user}`;
        const res = await request(`${base}/runs`, {
          dispatcher: agent,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-user-id': user },
          body: JSON.stringify({ workflow: 'yielder', input }),
        });
        return { user, input, status: res.statusCode, body: (await res.body.json()) as Run };
      }),
    );

    for (const r of results) {
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.status).toBe('succeeded');
      // Each answer is its own run: no cross-talk between users or requests.
      expect(r.body.output).toBe(r.input);
      expect(r.body.user_id).toBe(r.user);
    }
    expect(new Set(results.map((r) => r.body.id)).size).toBe(N);

    const stats = app.runtime.sessions.stats();
    expect(stats.highWater).toBeLessThanOrEqual(4);
    // The cap was actually reached (the test exercised admission, not a trickle).
    expect(stats.highWater).toBe(4);
    expect(maxInFlight).toBeLessThanOrEqual(4);
    expect(maxWaiting).toBeGreaterThan(0);
    // Workflow bodies executing at once, counted inside the workflow itself.
    expect(probe.runs).toBe(N);
    expect(probe.max).toBeLessThanOrEqual(4);
    expect(stats.inFlight).toBe(0);
    expect(stats.waiting).toBe(0);
  });

  it('per-user cap through HTTP: a user with per_user_max_concurrency 1 cannot hold two slots while another user runs', async () => {
    const drip = new Drip();
    app = await makeApp({
      runtime: { max_concurrency: 4, per_user_max_concurrency: 1, queue_timeout_ms: 10_000 },
      workflows: { gate: { type: 'gate' } },
      registry: { workflowTypes: [gateWorkflowType(drip)] },
    });
    const base = await listen(app);
    agent = new Agent({ connections: 8 });
    const post = (user: string, input: string) =>
      request(`${base}/runs`, {
        dispatcher: agent,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-user-id': user },
        body: JSON.stringify({ workflow: 'gate', input }),
      }).then(async (res) => ({ status: res.statusCode, body: (await res.body.json()) as Run }));
    const runsOf = async (user: string) => (await app!.runtime.session({ userId: user }).list({ limit: 10 })).data;

    const a1 = post('user-a', 'a1');
    await waitFor(async () => (await runsOf('user-a')).some((r) => r.status === 'running'), 'a1 runs');
    const a2 = post('user-a', 'a2');
    await waitFor(() => app!.runtime.sessions.stats().waiting === 1, 'a2 waits for user-a’s slot');
    const b1 = post('user-b', 'b1');
    await waitFor(async () => (await runsOf('user-b')).some((r) => r.status === 'running'), 'b1 runs');

    // Free global slots exist (2 of 4 held), yet user-a's second run still waits.
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 2, waiting: 1 });
    expect(Object.fromEntries(app.runtime.sessions.perUserInFlight())).toEqual({ 'user-a': 1, 'user-b': 1 });
    const aRuns = await runsOf('user-a');
    expect(aRuns.map((r) => `${r.input}:${r.status}`).sort()).toEqual(['a1:running', 'a2:queued']);

    drip.release();
    const answers = await Promise.all([a1, a2, b1]);
    expect(answers.map((r) => [r.status, r.body.output])).toEqual([
      [200, 'a1'],
      [200, 'a2'],
      [200, 'b1'],
    ]);
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 2 });
  });
});
