import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServer } from './support/redis-server.js';
import { startRunway, type RunwayProcess } from './support/runway-process.js';
import { SseParser, toRunEvent, waitFor, type RunEvent } from './support/sse-sockets.js';

// A worker killed with SIGKILL mid-run (DESIGN §6 "Faults"): BullMQ finds its job stalled once the
// lock lapses (1 s here), hands it to the other worker, which does not execute the run again but
// ends it `failed` with `worker_lost`: exactly one terminal event.

let redis: RedisServer;
let dir: string;
let api: RunwayProcess;
let workers: RunwayProcess[] = [];
const alice = { 'x-user-id': 'alice', 'content-type': 'application/json' };

beforeAll(async () => {
  redis = await startRedisServer();
  dir = mkdtempSync(join(tmpdir(), 'runway-lost-'));
  const config = join(dir, 'runway.yaml');
  writeFileSync(config, 'workflows:\n  slow:\n    type: echo\n    token_delay_ms: 300\n');
  const env = {
    RUNWAY_STORE: redis.url,
    RUNWAY_REDIS_PREFIX: redis.freshPrefix(),
    RUNWAY_CONFIG: config,
    RUNWAY_REDIS_LOCK_DURATION_MS: '1000',
    RUNWAY_REDIS_STALLED_INTERVAL_MS: '1000',
    RUNWAY_SHUTDOWN_GRACE_MS: '0',
  };
  const worker = () => startRunway({ ...env, RUNWAY_ROLE: 'worker', RUNWAY_MAX_CONCURRENCY: '1' });
  [api, ...workers] = await Promise.all([startRunway({ ...env, RUNWAY_ROLE: 'api' }), worker(), worker()]);
}, 30_000);

afterAll(async () => {
  await Promise.all([api?.stop(), ...workers.map((w) => w.stop())]);
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function pickUps(p: RunwayProcess, runId: string): Record<string, unknown>[] {
  return p.lines.filter((l) => l.msg === 'run picked up' && l.run_id === runId);
}

async function eventsOf(runId: string): Promise<RunEvent[]> {
  const res = await request(`${api.url}/runs/${runId}/stream`, { headers: { ...alice, accept: 'text/event-stream' } });
  const parser = new SseParser();
  parser.push(await res.body.text());
  return parser.frames.map(toRunEvent);
}

describe('a worker killed mid-run', () => {
  it('its run ends failed worker_lost, once, taken over by the other worker and never executed twice', async () => {
    const res = await request(`${api.url}/runs`, { method: 'POST', headers: alice, body: JSON.stringify({ workflow: 'slow', input: 'a b c d e f g h i j k l m n o p q r s t', background: true }) });
    expect(res.statusCode).toBe(202);
    const id = ((await res.body.json()) as { id: string }).id;
    // Running with its run.started event stored (id 2): the status is written a moment before it.
    await waitFor(async () => {
      const now = (await (await request(`${api.url}/runs/${id}`, { headers: alice })).body.json()) as { status: string; last_event_id: number };
      return now.status === 'running' && now.last_event_id >= 2;
    }, 'the run is running');
    const victim = workers.find((w) => pickUps(w, id).length > 0)!;
    const survivor = workers.find((w) => w !== victim)!;
    expect(victim).toBeDefined();
    victim.child.kill('SIGKILL');
    await waitFor(async () => ((await (await request(`${api.url}/runs/${id}`, { headers: alice })).body.json()) as { status: string }).status === 'failed', 'the run fails', 15_000);
    const run = (await (await request(`${api.url}/runs/${id}`, { headers: alice })).body.json()) as { error: { code: string } };
    expect(run.error.code).toBe('worker_lost');
    expect(pickUps(survivor, id)).toEqual([expect.objectContaining({ attempt: 2 })]);
    const events = await eventsOf(id);
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
    expect(events.filter((e) => e.type === 'run.started')).toHaveLength(1);
    expect(events.filter((e) => ['run.succeeded', 'run.failed', 'run.cancelled'].includes(e.type))).toHaveLength(1);
    expect(events.at(-1)).toMatchObject({ type: 'run.failed', data: { error: { code: 'worker_lost' } } });
  });
});
