// The baseline: a bare Fastify route that parses the same body and answers a Run-sized JSON, with
// the same logger settings as Runway. Whatever Runway costs beyond this is the run path's own.
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'warn' } });
app.post('/runs', async (request) => {
  const body = request.body as { input: unknown };
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    workflow: 'echo',
    user_id: 'anonymous',
    conversation_id: null,
    status: 'succeeded',
    input: body.input,
    output: body.input,
    error: null,
    usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    metadata: {},
    created_at: now,
    started_at: now,
    finished_at: now,
    last_event_id: 9,
  };
});
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
