import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { RunwayError } from '../src/core/errors.js';
import { eventJsonParts, type StoredEvent } from '../src/core/events.js';
import { isTerminalStatus } from '../src/core/run.js';
import { wantsEventStream } from '../src/http/accept.js';
import { whenClientGone } from '../src/http/client-gone.js';
import { withPointers } from '../src/http/field-pointers.js';
import { OpenStreams, type StreamPlace } from '../src/http/open-streams.js';
import { type SseStream } from '../src/http/sse.js';
import type { RunHandle } from '../src/runtime/run-handle.js';
import { runOutcomeError } from '../src/runtime/run-outcome.js';
import type { RunOptions, Session } from '../src/runtime/session.js';
import { CreateRunBody, ListRunsQuery, RunPageJson, RunParams, RunRef, StreamQuery } from './schemas.js';

export interface RunRoutesOptions {
  sseKeepaliveMs: number;
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

/**
 * What a stream needs of the run it follows. Read in a function of its own: the Run itself (its
 * input and output can be megabytes) must not stay in the frame of a handler that streams for hours.
 */
async function streamedRun(session: Session, runId: string): Promise<{ id: string; user_id: string; lastEventId: number; finished: boolean }> {
  const run = await session.get(runId);
  return { id: run.id, user_id: run.user_id, lastEventId: run.last_event_id, finished: isTerminalStatus(run.status) };
}

/** The calling user's view of the runtime. */
function sessionOf(app: FastifyInstance, request: FastifyRequest): Session {
  return app.runtime.session({ userId: request.userId, requestId: request.id, log: request.log });
}

const BODY_FIELDS = { workflow: '/workflow', input: '/input', metadata: '/metadata' };

export async function runRoutes(app: FastifyInstance, options: RunRoutesOptions): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const streams = new OpenStreams(app, options.sseKeepaliveMs);

  /** Writes a run's events as SSE frames on this response until the stream or the log ends. */
  function streamEvents(reply: FastifyReply, runId: string, events: (signal: AbortSignal) => AsyncIterable<StoredEvent>, place?: StreamPlace): Promise<void> {
    return streams.open(reply, (sse) => pipeEvents(reply, sse, runId, events(sse.signal)), place);
  }

  async function pipeEvents(reply: FastifyReply, sse: SseStream, runId: string, events: AsyncIterable<StoredEvent>): Promise<void> {
    try {
      for await (const ev of events) {
        if (!(await sse.writeEvent(ev.id, ev.type, eventJsonParts(runId, ev)))) break;
      }
    } catch (err) {
      reply.log.error({ err }, 'event stream failed');
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
    async (request, reply) => {
      const body = request.body;
      const options: RunOptions = {};
      if (body.workflow !== undefined) options.workflow = body.workflow;
      if (body.conversation_id !== undefined) options.conversationId = body.conversation_id;
      if (body.metadata !== undefined) options.metadata = body.metadata;
      if (body.timeout_ms !== undefined) options.timeoutMs = body.timeout_ms;
      const streaming = !body.background && wantsEventStream(request.headers.accept);
      // A stream the cap would refuse must not leave a run behind: its place is taken before the run is made.
      const place = streaming ? streams.reserve(request.userId) : undefined;
      let run: RunHandle;
      try {
        run = await sessionOf(app, request).run(body.input, options);
      } catch (err) {
        place?.release();
        throw withPointers(err, BODY_FIELDS);
      }
      // The run as it is at this instant (usually still queued): its progress is at Location.
      if (body.background) return reply.code(202).header('location', `/runs/${run.id}`).send(run.snapshot());

      const cancelOnDisconnect = body.on_disconnect !== 'continue';
      const unwatch = whenClientGone(reply, () => {
        if (cancelOnDisconnect) void run.cancel('client_disconnected');
      });
      if (streaming) {
        reply.header('location', `/runs/${run.id}`);
        await streamEvents(reply, run.id, (signal) => run.events(0, signal), place);
        return reply;
      }
      const finished = await run.result();
      unwatch();
      if (finished.status !== 'succeeded') throw runOutcomeError(finished, run.abortCause);
      return finished;
    },
  );

  r.get('/runs', { schema: { querystring: ListRunsQuery, response: { 200: RunPageJson } } }, async (request) => {
    const q = request.query;
    const page = await sessionOf(app, request)
      .list({
        limit: q.limit,
        ...(q.status !== undefined && { status: q.status }),
        ...(q.workflow !== undefined && { workflow: q.workflow }),
        ...(q.conversation_id !== undefined && { conversationId: q.conversation_id }),
        ...(q.cursor !== undefined && { cursor: q.cursor }),
      })
      .catch((err: unknown) => {
        throw withPointers(err, { cursor: '/cursor' }, 'querystring');
      });
    return { data: page.data, next_cursor: page.nextCursor };
  });

  r.get('/runs/:id', { schema: { params: RunParams, response: { 200: RunRef } } }, async (request) => sessionOf(app, request).get(request.params.id));

  // No HEAD twin: it would follow the run to its end with every frame thrown away.
  r.get('/runs/:id/stream', { exposeHeadRoute: false, schema: { params: RunParams, querystring: StreamQuery } }, async (request, reply) => {
    const session = sessionOf(app, request);
    const run = await streamedRun(session, request.params.id);
    const after = resumeAfter(request, request.query.after);
    if (after > run.lastEventId && run.finished) {
      throw new RunwayError('invalid_request', `Event ${after} is beyond the run's last event (${run.lastEventId})`, {
        errors: [{ in: 'headers', pointer: '/last-event-id', message: 'Unknown event id' }],
      });
    }
    // The client already has the terminal event: 204 makes a browser EventSource stop reconnecting.
    if (after === run.lastEventId && run.finished) return reply.code(204).send();
    await streamEvents(reply, run.id, (signal) => session.events(run, after, signal));
    return reply;
  });

  r.post('/runs/:id/cancel', { schema: { params: RunParams, response: { 202: RunRef } } }, async (request, reply) => {
    const run = await sessionOf(app, request).cancel(request.params.id);
    return reply.code(202).send(run);
  });
}
