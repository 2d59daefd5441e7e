import { z } from 'zod';
import { intSetting } from '../config/config-schema.js';
import { defineLlmProvider } from './llm-provider.js';
import { OpenAIChatModel } from './openai-chat-model.js';

const httpUrl = z
  .string()
  .url()
  .refine((s) => /^https?:\/\//i.test(s), 'must be an http:// or https:// URL');

const OPENAI_HOST = /(^|\.)openai\.com$/i;

/**
 * `provider: openai`: any server that speaks OpenAI Chat Completions (OpenAI, NVIDIA NIM, vLLM,
 * Ollama, llama.cpp). Keys are snake_case like the rest of the config; unknown keys are refused.
 *
 * @example
 *   llms:
 *     default:
 *       provider: openai
 *       base_url: http://localhost:11434/v1
 *       model: llama3.1
 *       idle_timeout_ms: 60000
 */
export const openaiProvider = defineLlmProvider({
  provider: 'openai',
  configSchema: z
    .object({
      provider: z.literal('openai'),
      /** E.g. `https://api.openai.com/v1`; `/chat/completions` is appended. */
      base_url: httpUrl,
      /** Sent as a Bearer token when not empty; never logged. */
      api_key: z.string().default(''),
      model: z.string().min(1),
      connect_timeout_ms: intSetting(1, 600_000).default(10_000),
      first_byte_timeout_ms: intSetting(1, 3_600_000).default(60_000),
      idle_timeout_ms: intSetting(1, 3_600_000).default(30_000),
      /** Extra attempts on 429/5xx/connection errors, only before the first token. */
      max_retries: intSetting(0, 10).default(2),
      retry_base_ms: intSetting(1, 60_000).default(500),
      retry_max_ms: intSetting(1, 600_000).default(8_000),
      /** Extra request headers (an organisation or project id…). */
      headers: z.record(z.string(), z.string()).default({}),
    })
    .strict(),
  create: (config, name) =>
    new OpenAIChatModel({
      name,
      baseUrl: config.base_url,
      apiKey: config.api_key,
      model: config.model,
      connectTimeoutMs: config.connect_timeout_ms,
      firstByteTimeoutMs: config.first_byte_timeout_ms,
      idleTimeoutMs: config.idle_timeout_ms,
      maxRetries: config.max_retries,
      retryBaseMs: config.retry_base_ms,
      retryMaxMs: config.retry_max_ms,
      headers: config.headers,
    }),
  // OpenAI itself answers 401 to every keyless request; other servers (vLLM, Ollama…) may need none.
  unavailable: (config, name) =>
    config.api_key === '' && OPENAI_HOST.test(new URL(config.base_url).hostname)
      ? `LLM "${name}" is not configured: ${config.base_url} needs an API key. Set OPENAI_API_KEY ` +
        `(or OPENAI_BASE_URL to an OpenAI-compatible server that needs none, e.g. vLLM or Ollama) ` +
        `and restart; in the config file this is llms.${name}.api_key / llms.${name}.base_url.`
      : undefined,
});
