/**
 * The one seam between workflows and language models. Workflows only ever see `ChatModel`; the
 * OpenAI-compatible client, a dev model or a test double all sit behind it.
 *
 * @example
 *   const result = await model.chat({
 *     messages: [{ role: 'user', content: 'Hi' }],
 *     signal: ctx.signal,
 *     onToken: (delta) => ctx.token(delta, step.step_id),
 *   })
 *   if (result.toolCalls.length > 0) { ...run the tools, append their results, call chat() again }
 */

/** One message of a Chat Completions conversation, in the protocol's own shape. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string | null;
  /** On assistant messages that asked for tools. */
  tool_calls?: ToolCall[];
  /** On tool messages: the `id` of the call this answers. */
  tool_call_id?: string;
  name?: string;
}

/** A fully reassembled tool call; `arguments` is the model's JSON text, not yet parsed or trusted. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A tool as the model is shown it. */
export interface ToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the arguments object. */
  parameters: object;
}

export interface ChatRequest {
  messages: ChatMessage[];
  tools?: ToolSpec[];
  /** Aborting rejects `chat()` with an AbortError and closes the upstream connection at once. */
  signal: AbortSignal;
  /** Called with each piece of generated text, in order. Once called, the request is never retried. */
  onToken?: (delta: string) => void;
  temperature?: number;
  maxTokens?: number;
}

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatResult {
  /** The whole generated text: the concatenation of every `onToken` delta. */
  content: string;
  /** In the order the model emitted them (by stream `index`). */
  toolCalls: ToolCall[];
  /** `stop`, `length`, `tool_calls`, … as the upstream reported it; null if it never said. */
  finishReason: string | null;
  /** Null when the upstream did not report usage. */
  usage: ChatUsage | null;
  /** The model that answered, as the upstream named it (falls back to the configured model). */
  model: string;
}

export interface ChatModel {
  /** The configured name (the key under `llms:`), used in logs and error messages. */
  readonly name: string;
  /** The model id sent upstream. */
  readonly model: string;
  /** Rejects with `RunwayError('upstream_error')` on upstream failure, or an AbortError when `signal` aborts. */
  chat(req: ChatRequest): Promise<ChatResult>;
  /** Releases connections; in-flight requests finish first. Idempotent. */
  close(): Promise<void>;
}
