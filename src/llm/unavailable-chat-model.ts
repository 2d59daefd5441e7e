import type { ChatModel, ChatRequest, ChatResult } from './chat-model.js';
import { UpstreamError } from './upstream-error.js';

/**
 * Stands in for a configured model that cannot work as configured (e.g. OpenAI without an API
 * key): every call fails at once with `upstream_error` and a message saying what to set, without
 * touching the network. Lets the shipped config boot offline with the LLM workflows listed.
 *
 * @example
 *   new UnavailableChatModel('default', 'gpt-4o-mini', 'set OPENAI_API_KEY')
 */
export class UnavailableChatModel implements ChatModel {
  constructor(
    readonly name: string,
    readonly model: string,
    /** What is missing and what to set. */
    readonly reason: string,
  ) {}

  async chat(_req: ChatRequest): Promise<ChatResult> {
    throw new UpstreamError(this.reason);
  }

  async close(): Promise<void> {}
}
