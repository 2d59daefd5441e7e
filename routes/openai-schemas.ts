import { z } from 'zod';
import { UsageJson } from './schemas.js';

/**
 * Request and response schemas of the OpenAI-compatible facade (`/v1/models`,
 * `/v1/chat/completions`). Requests are zod (validation + OpenAPI); responses are plain JSON Schema
 * for fast-json-stringify (DESIGN §8). Parameters Runway cannot honour but that change nothing a
 * client relies on (temperature, max_tokens, user, seed…) pass through unchecked; the ones whose
 * silent loss would be wrong (n > 1, client tools, JSON response formats) are refused by the route.
 */

/** A content part; only `text` parts are accepted, which the route checks with a clear message. */
const ContentPart = z.object({ type: z.string(), text: z.unknown().optional() }).loose();

export const ChatMessageBody = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
    content: z.union([z.string(), z.array(ContentPart)]).nullable().optional(),
    name: z.string().optional(),
    tool_calls: z.array(z.unknown()).nullable().optional(),
  })
  .loose();
export type ChatMessageBody = z.output<typeof ChatMessageBody>;

export const ChatCompletionBody = z
  .object({
    /** A workflow name. */
    model: z.string().min(1).max(256),
    messages: z.array(ChatMessageBody).min(1).max(1000),
    stream: z.boolean().nullable().optional(),
    stream_options: z.object({ include_usage: z.boolean().nullable().optional() }).loose().nullable().optional(),
    n: z.number().int().min(1).nullable().optional(),
    /** OpenAI's stored-completion metadata; becomes the run's `metadata`. */
    metadata: z.record(z.string().max(64), z.string().max(512)).nullable().optional(),
    tools: z.array(z.unknown()).nullable().optional(),
    tool_choice: z.unknown().optional(),
    response_format: z.object({ type: z.string() }).loose().nullable().optional(),
    logprobs: z.boolean().nullable().optional(),
  })
  .loose();
export type ChatCompletionBody = z.output<typeof ChatCompletionBody>;

export const ModelParams = z.object({ model: z.string().min(1).max(256) });

export const ModelJson = {
  type: 'object',
  properties: {
    id: { type: 'string', description: 'A workflow name' },
    object: { type: 'string', enum: ['model'] },
    created: { type: 'integer', description: 'Unix seconds (when the server started)' },
    owned_by: { type: 'string' },
  },
  required: ['id', 'object', 'created', 'owned_by'],
} as const;

export const ModelListJson = {
  type: 'object',
  properties: {
    object: { type: 'string', enum: ['list'] },
    data: { type: 'array', items: ModelJson },
  },
  required: ['object', 'data'],
} as const;

export const ChatCompletionJson = {
  type: 'object',
  description:
    'With `stream: false`. With `stream: true` the answer is `text/event-stream`: `data: {chat.completion.chunk}` frames, ' +
    'then (with `stream_options.include_usage`) a chunk with `choices: []` and `usage`, then `data: [DONE]`.',
  properties: {
    id: { type: 'string', description: '`chatcmpl-` + the run id' },
    object: { type: 'string', enum: ['chat.completion'] },
    created: { type: 'integer' },
    model: { type: 'string' },
    choices: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          index: { type: 'integer' },
          message: {
            type: 'object',
            properties: {
              role: { type: 'string', enum: ['assistant'] },
              content: { type: ['string', 'null'] },
              refusal: { type: 'null' },
            },
            required: ['role', 'content', 'refusal'],
          },
          logprobs: { type: 'null' },
          finish_reason: { type: 'string', enum: ['stop', 'length', 'content_filter'] },
        },
        required: ['index', 'message', 'logprobs', 'finish_reason'],
      },
    },
    usage: UsageJson,
  },
  required: ['id', 'object', 'created', 'model', 'choices', 'usage'],
} as const;

/**
 * OpenAI's error shape. Open (`additionalProperties`) and without top-level `required`, so a body
 * some other layer sends on these routes (e.g. a problem document) is serialized intact, not cut.
 */
export const OpenAiErrorJson = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: {
        message: { type: 'string' },
        type: { type: 'string' },
        param: { type: ['string', 'null'] },
        code: { type: ['string', 'null'], description: "Runway's stable error code (invalid_request, not_found, …)" },
      },
      additionalProperties: true,
    },
  },
  additionalProperties: true,
} as const;
