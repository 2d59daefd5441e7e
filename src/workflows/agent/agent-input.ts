import { z } from 'zod';
import type { ChatMessage } from '../../llm/chat-model.js';
import type { RunContext } from '../../runtime/run-context.js';
import type { ConversationTurn } from '../../runtime/run-conversation.js';

const MAX_MESSAGE_CHARS = 200_000;

const InputMessage = z
  .object({
    role: z.enum(['system', 'user', 'assistant']),
    content: z.string().max(MAX_MESSAGE_CHARS),
  })
  .strict();

/**
 * What `chat` and `tool_agent` accept as a run's `input`: the user's message, or several messages
 * (e.g. a history the client keeps itself) as `{messages: [{role, content}, …]}`.
 */
export const agentInputSchema = z.union([
  z.string().min(1).max(MAX_MESSAGE_CHARS).describe("The user's message"),
  z
    .object({ messages: z.array(InputMessage).min(1).max(1000) })
    .strict()
    .describe('Messages to add to the conversation, oldest first'),
]);

export type AgentInput = z.output<typeof agentInputSchema>;

/** The input as conversation turns. */
export function inputTurns(input: unknown): ConversationTurn[] {
  const parsed = input as AgentInput;
  return typeof parsed === 'string' ? [{ role: 'user', content: parsed }] : parsed.messages.map((m) => ({ ...m }));
}

/**
 * The prompt of a run: the configured system prompt, then the conversation's earlier messages
 * (when the run has a `conversation_id`), then the input.
 */
export async function buildPrompt(ctx: RunContext, systemPrompt: string | undefined, turns: readonly ConversationTurn[]): Promise<ChatMessage[]> {
  const messages: ChatMessage[] = [];
  if (systemPrompt !== undefined && systemPrompt !== '') messages.push({ role: 'system', content: systemPrompt });
  if (ctx.conversation !== undefined) {
    for (const m of await ctx.conversation.history()) messages.push({ role: m.role, content: m.content });
  }
  for (const t of turns) messages.push({ role: t.role, content: t.content });
  return messages;
}
