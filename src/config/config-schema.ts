import { z } from 'zod';
import { ApiKeysSchema, CorsOriginsSchema } from './access-schema.js';

/**
 * An integer setting. Strings of digits (YAML interpolation, env) become numbers; anything else
 * (an empty `${VAR}`, a bare `key:`, `true`) is refused rather than coerced to 0 or 1, since 0
 * means "unlimited" for some keys.
 */
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.preprocess(
    (v) => (typeof v === 'string' && /^\s*[-+]?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v),
    z.number().int().min(min).max(max),
  );

/** The same integer rule for config sections validated elsewhere (LLM providers, tool and workflow types). */
export { int as intSetting };

export const ServerConfigSchema = z
  .object({
    port: int(0, 65535).default(8080),
    host: z.string().min(1).default('0.0.0.0'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Largest accepted request body. */
    body_limit_bytes: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
  })
  .strict();

export const RuntimeConfigSchema = z
  .object({
    /** Runs executing at once; 0 = unlimited. */
    max_concurrency: int(0).default(8),
    /** Runs waiting for a slot; beyond it new runs get 429 queue_full. */
    max_queue: int(0).default(1000),
    queue_timeout_ms: int(1).default(30_000),
    /** Runs one user may execute at once; 0 = no cap. */
    per_user_max_concurrency: int(0).default(0),
    /** Default and upper bound of a run's `timeout_ms`. */
    run_timeout_ms: int(1).default(300_000),
    /** How long finished runs and their events are kept. */
    run_ttl_s: int(1).default(3600),
    /** Finished runs kept in memory at most (oldest evicted first). */
    max_runs: int(1).default(10_000),
    /** Events one run may record (the terminal event is always written). */
    max_events_per_run: int(8).default(10_000),
    /** On SIGTERM, how long running runs may finish before they are cancelled. */
    shutdown_grace_ms: int(0).default(10_000),
    /** Interval of `: keepalive` comments on idle SSE streams. */
    sse_keepalive_ms: int(10).default(15_000),
    /**
     * SSE streams one user may hold open at once (runs and `/v1` streams together); beyond it new
     * streams get 429 rate_limited. 0 = no cap. 32 leaves room for many tabs and followers while
     * bounding what one user (or one leaked client) holds.
     */
    max_streams_per_user: int(0).default(32),
  })
  .strict();

/** Bounds on the conversations kept for `conversation_id` runs (DESIGN §3: keyed by user and id). */
export const ConversationsConfigSchema = z
  .object({
    /** Messages kept per conversation; the oldest are dropped first. */
    max_messages: int(2, 100_000).default(200),
    /** Characters (all message contents together) kept per conversation; the oldest messages are dropped first. */
    max_chars: int(1000).default(200_000),
    /** A conversation not written to for this long is forgotten. */
    ttl_s: int(1).default(7 * 24 * 3600),
    /** Conversations kept at most (all users together); the least recently written go first. */
    max_conversations: int(1).default(10_000),
  })
  .strict();

/** The Redis store's settings (used when `store` names Redis). */
export const RedisConfigSchema = z
  .object({
    /**
     * Put before every key and channel (`RUNWAY_REDIS_PREFIX`), so two deployments can share one
     * Redis without meeting. No braces: they would change the keys' hash tags (Redis Cluster slots).
     */
    prefix: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[^{}\s]+$/, 'must have no braces and no whitespace')
      .default('runway:'),
    /**
     * BullMQ's stall detection (DESIGN §6): a worker holds each run's job under a lock it renews
     * every `lock_duration_ms / 2`; a job whose lock lapsed is found by the next check, every
     * `stalled_interval_ms`, and goes back to the queue. BullMQ's own defaults.
     */
    lock_duration_ms: int(1000).default(30_000),
    stalled_interval_ms: int(1000).default(30_000),
  })
  .strict();

/** What a process does (DESIGN §6): `api` admits runs and serves HTTP, `worker` executes runs, `all` both. */
export const RoleSchema = z.enum(['all', 'api', 'worker']);
export type Role = z.output<typeof RoleSchema>;

/** API keys (`RUNWAY_API_KEYS`, `RUNWAY_API_KEYS_FILE`): with at least one, every non-public route needs a key. */
export const AuthConfigSchema = z.object({ api_keys: ApiKeysSchema.default([]) }).strict();

/** Requests per user and window (`RUNWAY_RATE_LIMIT_*`); health, metrics and docs are not counted. */
export const RateLimitConfigSchema = z
  .object({
    /** Requests one user may make per window; 0 = no limit. */
    max: int(0).default(0),
    window_ms: int(1, 24 * 3600 * 1000).default(60_000),
  })
  .strict();

/** Browser origins allowed to call the API (`RUNWAY_CORS_ORIGINS`); empty = CORS off. */
export const CorsConfigSchema = z.object({ origins: CorsOriginsSchema.default([]) }).strict();

/** One workflow entry: `type` picks the workflow type; the rest is validated by that type. */
const WorkflowEntrySchema = z.object({ type: z.string().min(1) }).passthrough();
const LlmEntrySchema = z.object({ provider: z.string().min(1) }).passthrough();
const ToolEntrySchema = z.object({ type: z.string().min(1) }).passthrough();

export const RunwayConfigSchema = z
  .object({
    server: ServerConfigSchema.default(ServerConfigSchema.parse({})),
    /** `api` and `worker` need a shared store (Redis): on the memory store only `all` is valid. */
    role: RoleSchema.default('all'),
    runtime: RuntimeConfigSchema.default(RuntimeConfigSchema.parse({})),
    /** Workflow used when a run names none. Unset: `assistant` when an LLM is configured, else `echo`. */
    default_workflow: z.string().min(1).optional(),
    /** `memory`, or Redis: a `redis://` or `rediss://` (TLS) URL, or `unix:///path/to/redis.sock`. */
    store: z
      .string()
      .refine((s) => s === 'memory' || (/^(rediss?|unix):\/\/./.test(s) && URL.canParse(s)), 'must be "memory", a redis:// or rediss:// URL, or unix:///path/to/redis.sock')
      .default('memory'),
    redis: RedisConfigSchema.default(RedisConfigSchema.parse({})),
    conversations: ConversationsConfigSchema.default(ConversationsConfigSchema.parse({})),
    auth: AuthConfigSchema.default({ api_keys: [] }),
    rate_limit: RateLimitConfigSchema.default(RateLimitConfigSchema.parse({})),
    cors: CorsConfigSchema.default({ origins: [] }),
    llms: z.record(z.string(), LlmEntrySchema).default({}),
    tools: z.record(z.string(), ToolEntrySchema).default({}),
    workflows: z.record(z.string(), WorkflowEntrySchema).default({}),
  })
  .strict();

export type RunwayConfig = z.output<typeof RunwayConfigSchema>;
export type RuntimeConfig = RunwayConfig['runtime'];
export type ServerConfig = RunwayConfig['server'];
export type ConversationsConfig = RunwayConfig['conversations'];

/** Environment variables of DESIGN §5 and the config key each one overrides. */
export const ENV_OVERRIDES: ReadonlyArray<readonly [env: string, path: readonly string[]]> = [
  ['PORT', ['server', 'port']],
  ['HOST', ['server', 'host']],
  ['LOG_LEVEL', ['server', 'log_level']],
  ['RUNWAY_BODY_LIMIT_BYTES', ['server', 'body_limit_bytes']],
  ['RUNWAY_DEFAULT_WORKFLOW', ['default_workflow']],
  ['RUNWAY_MAX_CONCURRENCY', ['runtime', 'max_concurrency']],
  ['RUNWAY_MAX_QUEUE', ['runtime', 'max_queue']],
  ['RUNWAY_QUEUE_TIMEOUT_MS', ['runtime', 'queue_timeout_ms']],
  ['RUNWAY_PER_USER_MAX_CONCURRENCY', ['runtime', 'per_user_max_concurrency']],
  ['RUNWAY_RUN_TIMEOUT_MS', ['runtime', 'run_timeout_ms']],
  ['RUNWAY_RUN_TTL_S', ['runtime', 'run_ttl_s']],
  ['RUNWAY_MAX_RUNS', ['runtime', 'max_runs']],
  ['RUNWAY_MAX_EVENTS_PER_RUN', ['runtime', 'max_events_per_run']],
  ['RUNWAY_SHUTDOWN_GRACE_MS', ['runtime', 'shutdown_grace_ms']],
  ['RUNWAY_SSE_KEEPALIVE_MS', ['runtime', 'sse_keepalive_ms']],
  ['RUNWAY_MAX_STREAMS_PER_USER', ['runtime', 'max_streams_per_user']],
  ['RUNWAY_STORE', ['store']],
  ['RUNWAY_REDIS_PREFIX', ['redis', 'prefix']],
  ['RUNWAY_REDIS_LOCK_DURATION_MS', ['redis', 'lock_duration_ms']],
  ['RUNWAY_REDIS_STALLED_INTERVAL_MS', ['redis', 'stalled_interval_ms']],
  ['RUNWAY_ROLE', ['role']],
  ['RUNWAY_API_KEYS', ['auth', 'api_keys']],
  ['RUNWAY_RATE_LIMIT_MAX', ['rate_limit', 'max']],
  ['RUNWAY_RATE_LIMIT_WINDOW_MS', ['rate_limit', 'window_ms']],
  ['RUNWAY_CORS_ORIGINS', ['cors', 'origins']],
];
