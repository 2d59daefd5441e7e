import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { RunwayError } from '../src/core/errors.js';
import { OpenStreams, type StreamPlace } from '../src/http/open-streams.js';
import { whenClientGone } from '../src/http/client-gone.js';
import { withPointers } from '../src/http/field-pointers.js';
import type { SseStream } from '../src/http/sse.js';
import type { RunHandle } from '../src/runtime/run-handle.js';
import { runOutcomeError } from '../src/runtime/run-outcome.js';
import type { Usage } from '../src/core/run.js';
import { installOpenAiErrors, openAiError } from './openai-errors.js';
import { refuseUnsupported, workflowInput } from './openai-input.js';
import { ChatCompletionBody, ChatCompletionJson, ModelJson, ModelListJson, ModelParams, OpenAiErrorJson } from './openai-schemas.js';

export interface OpenAiRoutesOptions {
  sseKeepaliveMs: number;
}

const ERROR_RESPONSES = { '4xx': OpenAiErrorJson, '5xx': OpenAiErrorJson } as const;

/** The OpenAI finish reasons a run can end with; anything else an upstream reports reads as `stop`. */
type FinishReason = 'stop' | 'length' | 'content_filter';

function finishReason(upstream: string | null): FinishReason {
  return upstream === 'length' || upstream === 'content_filter' ? upstream : 'stop';
}

/** The finish reason of an `LLM_END` step event (its data JSON), or null for any other step. */
function llmFinish(dataJson: string): string | null {
  // Cheap test first: most step events are not LLM_END.
  if (!dataJson.includes('"LLM_END"')) return null;
  const data = JSON.parse(dataJson) as { kind?: unknown; finish_reason?: unknown };
  return data.kind === 'LLM_END' && typeof data.finish_reason === 'string' ? data.finish_reason : null;
}

/** The assistant message: the run's output as text (non-string outputs as JSON). */
function contentOf(output: unknown): string {
  return typeof output === 'string' ? output : output === undefined || output === null ? '' : JSON.stringify(output);
}

/**
 * The OpenAI-compatible facade: `GET /v1/models` lists the workflows as models and
 * `POST /v1/chat/completions` runs the workflow named by `model`, answering as OpenAI does (JSON,
 * or `chat.completion.chunk` SSE frames and `data: [DONE]`). A run made here is an ordinary run
 * (`X-Runway-Run-Id` names it): listed, streamable and cancellable under `/runs`; a client that
 * leaves cancels it. Errors on `/v1/*` are `{error: {message, type, param, code}}`.
 */
export async function openAiRoutes(app: FastifyInstance, options: OpenAiRoutesOptions): Promise<void> {
  await app.register(v1Routes, { ...options, prefix: '/v1' });
}

async function v1Routes(app: FastifyInstance, options: OpenAiRoutesOptions): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { runtime } = app;
  installOpenAiErrors(app);

  const bootS = Math.floor(Date.now() / 1000);
  const models = [...runtime.workflows.keys()].map((id) => ({ id, object: 'model', created: bootS, owned_by: 'runway' }));
  const modelList = { object: 'list', data: models };
  const modelById = new Map(models.map((m) => [m.id, m]));

  function modelNotFound(model: string, where: 'body' | 'params'): RunwayError {
    const message = `The model "${model}" does not exist: it must be a workflow name (GET /v1/models lists them)`;
    return new RunwayError('not_found', message, { errors: [{ in: where, pointer: '/model', message }] });
  }

  const streams = new OpenStreams(app, options.sseKeepaliveMs);

  r.get('/models', { schema: { response: { 200: ModelListJson, ...ERROR_RESPONSES } } }, async () => modelList);

  r.get('/models/:model', { schema: { params: ModelParams, response: { 200: ModelJson, ...ERROR_RESPONSES } } }, async (request) => {
    const model = modelById.get(request.params.model);
    if (!model) throw modelNotFound(request.params.model, 'params');
    return model;
  });

  r.post(
    '/chat/completions',
    { schema: { body: ChatCompletionBody, response: { 200: ChatCompletionJson, ...ERROR_RESPONSES } } },
    async (request, reply) => {
      const body = request.body;
      const workflow = runtime.workflows.get(body.model);
      if (!workflow) throw modelNotFound(body.model, 'body');
      refuseUnsupported(body);
      const input = workflowInput(workflow, body.messages);
      // A stream the cap would refuse must not leave a run behind: its place is taken before the run is made.
      const place = body.stream === true ? streams.reserve(request.userId) : undefined;
      const session = runtime.session({ userId: request.userId, requestId: request.id, log: request.log });
      const handle = await session
        .run(input, { workflow: workflow.name, ...(body.metadata && { metadata: body.metadata }) })
        .catch((err: unknown) => {
          place?.release();
          throw withPointers(err, { workflow: '/model', input: '/messages', metadata: '/metadata' });
        });
      const run = handle.created;
      reply.header('x-runway-run-id', run.id);

      // Like a blocking POST /runs: a client that leaves before the answer is complete cancels the run.
      const unwatch = whenClientGone(reply, () => void handle.cancel('client_disconnected'));

      if (body.stream === true) {
        await streamCompletion(request, reply, handle, body.stream_options?.include_usage === true, place);
        return reply;
      }
      const finished = await handle.result();
      unwatch();
      if (finished.status !== 'succeeded') throw runOutcomeError(finished, handle.abortCause);
      return {
        id: `chatcmpl-${run.id}`,
        object: 'chat.completion',
        created: Math.floor(Date.parse(run.created_at) / 1000),
        model: run.workflow,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: contentOf(finished.output), refusal: null },
            logprobs: null,
            finish_reason: await lastFinishReason(handle),
          },
        ],
        usage: finished.usage,
      };
    },
  );

  /** The finish reason of the run's last LLM call (replayed from its log); `stop` without one. */
  async function lastFinishReason(handle: RunHandle): Promise<FinishReason> {
    let reason: string | null = null;
    for await (const ev of handle.replay()) {
      if (ev.type === 'step') reason = llmFinish(ev.data) ?? reason;
    }
    return finishReason(reason);
  }

  /**
   * Follows the run's event log as `chat.completion.chunk` frames: the role first, a content delta
   * per `token` event, the finish reason, the usage chunk when asked, then `[DONE]`. A run that
   * fails or is cancelled meanwhile ends the stream with an `{error}` frame, as OpenAI's does.
   */
  function streamCompletion(request: FastifyRequest, reply: FastifyReply, handle: RunHandle, includeUsage: boolean, place?: StreamPlace): Promise<void> {
    return streams.open(reply, (sse) => pipeChunks(request, sse, handle, includeUsage), place);
  }

  async function pipeChunks(request: FastifyRequest, sse: SseStream, handle: RunHandle, includeUsage: boolean): Promise<void> {
    const run = handle.created;
    // Every chunk shares its envelope: built once, the per-token work is one JSON.stringify of the delta.
    const head =
      `data: {"id":${JSON.stringify(`chatcmpl-${run.id}`)},"object":"chat.completion.chunk",` +
      `"created":${Math.floor(Date.parse(run.created_at) / 1000)},"model":${JSON.stringify(run.workflow)},"choices":[`;
    const tail = includeUsage ? '],"usage":null}\n\n' : ']}\n\n';
    const choice = (delta: string, finish: string | null) =>
      `${head}{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}${tail}`;

    let reason: string | null = null;
    try {
      if (!(await sse.write(choice('{"role":"assistant","content":""}', null)))) return;
      for await (const ev of handle.events(0, sse.signal)) {
        let frame: string;
        if (ev.type === 'token') {
          const delta = (JSON.parse(ev.data) as { delta: string }).delta;
          if (delta === '') continue;
          frame = choice(`{"content":${JSON.stringify(delta)}}`, null);
        } else if (ev.type === 'step') {
          reason = llmFinish(ev.data) ?? reason;
          continue;
        } else if (ev.type === 'run.succeeded') {
          frame = choice('{}', finishReason(reason));
          if (includeUsage) {
            const usage = (JSON.parse(ev.data) as { usage: Usage }).usage;
            frame += `${head}${tail.replace('"usage":null', `"usage":${JSON.stringify(usage)}`)}`;
          }
          frame += 'data: [DONE]\n\n';
        } else if (ev.type === 'run.failed' || ev.type === 'run.cancelled') {
          // The terminal event is written once the record is final: the run as it ended says why.
          const finished = await handle.result();
          frame = `data: ${JSON.stringify(openAiError(runOutcomeError(finished, handle.abortCause)))}\n\n`;
        } else {
          continue;
        }
        if (!(await sse.write(frame))) break;
      }
    } catch (err) {
      request.log.error({ err, run_id: run.id }, 'chat completion stream failed');
    }
  }
}
