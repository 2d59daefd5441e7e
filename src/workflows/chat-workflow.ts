import { z } from 'zod';
import { agentInputSchema, buildPrompt, inputTurns } from './agent/agent-input.js';
import { llmWorkflowFields } from './agent/agent-config.js';
import { callModel } from './agent/call-model.js';
import { defineWorkflow } from './define-workflow.js';

/**
 * `chat`: one streamed LLM answer to the system prompt, the conversation's earlier messages (with
 * a `conversation_id`) and the input. The answer is the run's output; its tokens stream as they come.
 *
 * @example
 *   workflows:
 *     haiku:
 *       type: chat
 *       llm: default
 *       system_prompt: Answer in one haiku.
 */
export const chatWorkflow = defineWorkflow({
  type: 'chat',
  configSchema: z
    .object({
      type: z.literal('chat'),
      description: z.string().default('Chats with an LLM'),
      ...llmWorkflowFields,
    })
    .strict(),
  create: (config, { name, deps }) => {
    const model = deps.llm(config.llm);
    return {
      name,
      type: 'chat',
      description: config.description,
      inputSchema: agentInputSchema,
      async run(input, ctx) {
        const turns = inputTurns(input);
        const messages = await buildPrompt(ctx, config.system_prompt, turns);
        const result = await callModel(ctx, model, messages, { temperature: config.temperature, maxTokens: config.max_tokens });
        ctx.conversation?.append(...turns, { role: 'assistant', content: result.content });
        return result.content;
      },
    };
  },
});
