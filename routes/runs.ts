import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { RunwayError } from '../src/errors.js';
import { OpenStreams } from '../src/http/open-streams.js';
import { sseFrame, type SseStream } from '../src/http/sse.js';
import { runOutcomeError } from '../src/runtime/run-outcome.js';
import type { CreateRunRequest } from '../src/runtime/runtime.js';
import type { Session } from '../src/runtime/session.js';
import type { Run } from '../src/store/run.js';
import { TERMINAL_STATUSES } from '../src/store/run.js';
import { CreateRunBody, ListRunsQuery, RunPageJson, RunParams, RunRef, StreamQuery } from './schemas.js';

export interface RunRoutesOptions {
  sseKeepaliveMs: number;
}

const JSON_TYPE = 'application/json; charset=utf-8';

function wantsEventStream(request: FastifyRequest): boolean {
  const accept = request.headers.accept;
  return accept !== undefined && accept.includes('text/event-stream');
}

/** Parses `Last-Event-ID` (header, wins) or `?after=`; a malformed value is a 400. */
function resumeAfter(request: FastifyRequest, after: string | undefined): number {
  const header = request.headers['last-event-id'];
  if (header === undefined) return after === undefined ? 0 : Number(after);
  if (typeof header !== 'string' || !/^\d{1,15}$/.test(header.trim())) {
    throw new RunwayError('invalid_request', 'Last-Event-ID must be a non-negative integer event id', {
      errors: [{ in: 'headers', pointer: '/last-event-id', message: 'Invalid event id' }],
    });
  }
  return Number(header.trim());
}

export async function runRoutes(app: FastifyInstance, options: RunRoutesOptions): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { runtime } = app;
  const streams = new OpenStreams(app, options.sseKeepaliveMs);

  /** Replays then follows a run's events as SSE on this response; resolves when the stream ends. */
  function streamEvents(reply: FastifyReply, run: Run, after: number, onClientGone?: () => void): Promise<void> {
    return streams.open(reply, (sse) => pipeEvents(reply, sse, run, after, onClientGone));
  }

  async function pipeEvents(reply: FastifyReply, sse: SseStream, run: Run, after: number, onClientGone?: () => void): Promise<void> {
    if (onClientGone) {
      reply.raw.once('close', onClientGone);
      // The client may have left before the listener was attached.
      if (reply.raw.destroyed) onClientGone();
    }
    try {
      for await (const ev of runtime.events(run, after, sse.signal)) {
        const ok = await sse.write(sseFrame({ id: ev.id, event: ev.type, data: ev.json }));
        if (!ok) break;
      }
    } catch (err) {
      reply.log.error({ err, run_id: run.id }, 'event stream failed');
    }
  }

  r.post(
    '/runs',
    {
      schema: {
        body: CreateRunBody,
        response: { 200: RunRef, 202: RunRef },
      },
    },
    // Not async: a run on the embedded store starts synchronously, and the answer is sent from the
    // run's `whenDone` callback (at once when the workflow had nothing to wait for), so the hot path
    // makes no promise (each costs extra on Node 20 once AsyncLocalStorage is in use).
    (request, reply) => {
      const body = request.body;
      const req: CreateRunRequest = { input: body.input, userId: request.userId, requestId: request.id, log: request.log };
      if (body.workflow !== undefined) req.workflow = body.workflow;
      if (body.conversation_id !== undefined) req.conversationId = body.conversation_id;
      if (body.metadata !== undefined) req.metadata = body.metadata;
      if (body.timeout_ms !== undefined) req.timeoutMs = body.timeout_ms;
      const started = runtime.startRun(req);
      // Another store starts runs asynchronously: Fastify waits on the reply (a thenable) until sent.
      if (started instanceof Promise) return started.then((session) => answer(request, reply, session) ?? reply);
      return answer(request, reply, started);
    },
  );

  /** Answers `POST /runs` for a started run: 202, the SSE stream, or the finished Run. */
  function answer(request: FastifyRequest<{ Body: CreateRunBody }>, reply: FastifyReply, session: Session): FastifyReply | Promise<FastifyReply> | undefined {
    const body = request.body;
    const run = session.run;
    if (body.background) {
      return reply.code(202).header('location', `/runs/${run.id}`).send(run);
    }

    const cancelOnDisconnect = body.on_disconnect !== 'continue';
    const onClientGone = () => {
      if (cancelOnDisconnect && !reply.raw.writableFinished) runtime.runner.abortLocal(run.id, 'client_disconnected');
    };

    if (wantsEventStream(request)) {
      reply.header('location', `/runs/${run.id}`);
      return streamEvents(reply, run, 0, onClientGone).then(() => reply);
    }

    // Sent when the run ends (an error goes through the same error handler as a thrown one), from
    // a callback, and nothing is returned: Fastify then waits on no promise. (Returning `reply`
    // would not do: a reply is a thenable, and awaiting one sets up stream-end listeners on every
    // request.) A run that has nothing to wait for has already ended: it is answered at once.
    let watching = false;
    session.whenDone((finished, err) => {
      if (watching) reply.raw.off('close', onClientGone);
      if (finished === undefined || finished.status !== 'succeeded') {
        reply.send(finished === undefined ? err : runOutcomeError(finished, session));
        return;
      }
      // The store has just written this Run's JSON (identical to what the response schema makes of
      // it): sent as it is rather than serialized again.
      const json = runtime.finishedJson(finished);
      if (json === undefined) reply.send(finished);
      else reply.type(JSON_TYPE).send(json);
    });
    if (!session.ended) {
      watching = true;
      reply.raw.once('close', onClientGone);
      // A client that left while the run was being created (its 'close' already fired) is gone too.
      if (reply.raw.destroyed) onClientGone();
    }
    return undefined;
  }

  r.get(
    '/runs',
    { schema: { querystring: ListRunsQuery, response: { 200: RunPageJson } } },
    async (request) => {
      const q = request.query;
      const page = await runtime.listRuns({
        userId: request.userId,
        limit: q.limit,
        ...(q.status !== undefined && { status: q.status }),
        ...(q.workflow !== undefined && { workflow: q.workflow }),
        ...(q.conversation_id !== undefined && { conversationId: q.conversation_id }),
        ...(q.cursor !== undefined && { cursor: q.cursor }),
      });
      return { data: page.data, next_cursor: page.nextCursor };
    },
  );

  r.get('/runs/:id', { schema: { params: RunParams, response: { 200: RunRef } } }, async (request) =>
    runtime.getRun(request.params.id, request.userId),
  );

  // No HEAD twin: it would follow the run to its end with every frame thrown away.
  r.get('/runs/:id/stream', { exposeHeadRoute: false, schema: { params: RunParams, querystring: StreamQuery } }, async (request, reply) => {
    const run = await runtime.getRun(request.params.id, request.userId);
    const after = resumeAfter(request, request.query.after);
    if (after > run.last_event_id && TERMINAL_STATUSES.has(run.status)) {
      throw new RunwayError('invalid_request', `Event ${after} is beyond the run's last event (${run.last_event_id})`, {
        errors: [{ in: 'headers', pointer: '/last-event-id', message: 'Unknown event id' }],
      });
    }
    // The client already has the terminal event: 204 makes a browser EventSource stop reconnecting.
    if (after === run.last_event_id && TERMINAL_STATUSES.has(run.status)) return reply.code(204).send();
    await streamEvents(reply, run, after);
    return reply;
  });

  r.post('/runs/:id/cancel', { schema: { params: RunParams, response: { 202: RunRef } } }, async (request, reply) => {
    const run = await runtime.cancelRun(request.params.id, request.userId);
    return reply.code(202).send(run);
  });
}
