export type { ChatMessage, ChatModel, ChatRequest, ChatResult, ChatUsage, ToolCall, ToolSpec } from './chat-model.js';
export { OpenAIChatModel, type OpenAIChatModelConfig, type RetryEvent } from './openai-chat-model.js';
export { UpstreamError } from './upstream-error.js';
export { backoffDelayMs, retryAfterMs } from './backoff.js';
export { defineLlmProvider, type LlmProvider } from './llm-provider.js';
export { openaiProvider } from './openai-provider.js';
export { UnavailableChatModel } from './unavailable-chat-model.js';
