import { z } from 'zod';
import { RUN_STATUSES } from '../src/core/run.js';

/** `POST /runs` body. Unknown fields are refused so a typo does not silently change behaviour. */
export const CreateRunBody = z
  .object({
    workflow: z.string().min(1).max(64).optional(),
    input: z.unknown().refine((v) => v !== undefined, 'Required'),
    conversation_id: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must be 1-128 letters, digits or . _ : -')
      .optional(),
    metadata: z.record(z.string().max(64), z.unknown()).optional(),
    background: z.boolean().optional(),
    timeout_ms: z.number().int().min(1).optional(),
    on_disconnect: z.enum(['cancel', 'continue']).optional(),
  })
  .strict();
export type CreateRunBody = z.output<typeof CreateRunBody>;

export const RunParams = z.object({ id: z.string().min(1).max(128) });

export const StreamQuery = z.object({
  after: z.string().regex(/^\d{1,15}$/, 'must be a non-negative integer').optional(),
});

export const ListRunsQuery = z.object({
  status: z.enum(RUN_STATUSES).optional(),
  workflow: z.string().min(1).max(64).optional(),
  conversation_id: z.string().min(1).max(128).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().min(1).max(200).optional(),
});

export const WorkflowParams = z.object({ name: z.string().min(1).max(64) });

// Responses are plain JSON Schema, compiled by fast-json-stringify: zod's serializer would
// re-validate every response and costs ~30% of throughput (DESIGN §8).
const nullableString = { type: ['string', 'null'] } as const;
/** Token usage, as on a Run and in OpenAI's answers. */
export const UsageJson = {
  type: 'object',
  properties: {
    prompt_tokens: { type: 'integer' },
    completion_tokens: { type: 'integer' },
    total_tokens: { type: 'integer' },
  },
  required: ['prompt_tokens', 'completion_tokens', 'total_tokens'],
} as const;

export const RunJson = {
  $id: 'Run',
  type: 'object',
  properties: {
    id: { type: 'string' },
    workflow: { type: 'string' },
    user_id: { type: 'string' },
    conversation_id: nullableString,
    status: { type: 'string', enum: [...RUN_STATUSES] },
    input: {},
    output: {},
    error: {
      type: ['object', 'null'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      required: ['code', 'message'],
    },
    usage: UsageJson,
    metadata: { type: 'object', additionalProperties: true },
    created_at: { type: 'string' },
    started_at: nullableString,
    finished_at: nullableString,
    last_event_id: { type: 'integer' },
  },
  required: [
    'id',
    'workflow',
    'user_id',
    'conversation_id',
    'status',
    'input',
    'output',
    'error',
    'usage',
    'metadata',
    'created_at',
    'started_at',
    'finished_at',
    'last_event_id',
  ],
} as const;

/** Routes answer with `$ref`s to the shared schemas that `buildApp` registers. */
export const RunRef = { $ref: 'Run#' } as const;

export const RunPageJson = {
  type: 'object',
  properties: {
    data: { type: 'array', items: { $ref: 'Run#' } },
    next_cursor: nullableString,
  },
  required: ['data', 'next_cursor'],
} as const;

export const WorkflowJson = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    description: { type: 'string' },
    type: { type: 'string' },
    input_schema: { type: 'object', additionalProperties: true },
  },
  required: ['name', 'description', 'type', 'input_schema'],
} as const;

export const ProblemJson = {
  type: 'object',
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string' },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        properties: { in: { type: 'string' }, pointer: { type: 'string' }, message: { type: 'string' } },
      },
    },
    run_id: { type: 'string' },
  },
  required: ['type', 'title', 'status', 'detail', 'code'],
} as const;
