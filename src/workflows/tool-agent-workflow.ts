import { z } from 'zod';
import { intSetting } from '../config/config-schema.js';
import { RunwayError } from '../core/errors.js';
import { agentInputSchema, buildPrompt, inputTurns } from './agent/agent-input.js';
import { llmWorkflowFields } from './agent/agent-config.js';
import { AgentTools } from './agent/agent-tools.js';
import { callModel } from './agent/call-model.js';
import { defineWorkflow } from './define-workflow.js';

const DEFAULT_SYSTEM_PROMPT =
  'You are a helpful assistant. Use the tools you are given whenever they make an answer exact or current; ' +
  'do arithmetic with the calculator rather than in your head.';

/**
 * `tool_agent`: LLM → the tool calls it asks for, in parallel → their results back to the LLM → …
 * until it answers without calling a tool (the run's output) or `max_iterations` LLM calls have all
 * asked for tools (the run fails with `upstream_error`: the model never produced an answer).
 *
 * @example
 *   workflows:
 *     assistant:
 *       type: tool_agent
 *       llm: default
 *       tools: [calculator, clock]
 *       max_iterations: 8
 */
export const toolAgentWorkflow = defineWorkflow({
  type: 'tool_agent',
  configSchema: z
    .object({
      type: z.literal('tool_agent'),
      description: z.string().default('Answers with an LLM that can call tools'),
      ...llmWorkflowFields,
      system_prompt: z.string().max(100_000).default(DEFAULT_SYSTEM_PROMPT),
      /** Keys of the config's `tools` section (or names of tools registered in code). */
      tools: z.array(z.string().min(1)).default([]),
      /** LLM calls at most; each but the last may ask for tools. */
      max_iterations: intSetting(1, 100).default(8),
      /** How long one tool call may take before the model is told it timed out. */
      tool_timeout_ms: intSetting(1, 3_600_000).default(30_000),
    })
    .strict(),
  create: (config, { name, deps }) => {
    const model = deps.llm(config.llm);
    const tools = new AgentTools(
      config.tools.map((t) => deps.tool(t)),
      name,
    );
    return {
      name,
      type: 'tool_agent',
      description: config.description,
      inputSchema: agentInputSchema,
      async run(input, ctx) {
        const turns = inputTurns(input);
        const messages = await buildPrompt(ctx, config.system_prompt, turns);
        for (let iteration = 1; iteration <= config.max_iterations; iteration++) {
          const result = await callModel(ctx, model, messages, {
            tools: tools.specs,
            temperature: config.temperature,
            maxTokens: config.max_tokens,
          });
          if (result.toolCalls.length === 0) {
            ctx.conversation?.append(...turns, { role: 'assistant', content: result.content });
            return result.content;
          }
          messages.push({ role: 'assistant', content: result.content !== '' ? result.content : null, tool_calls: result.toolCalls });
          messages.push(...(await tools.run(ctx, result.toolCalls, config.tool_timeout_ms)));
        }
        throw new RunwayError(
          'upstream_error',
          `The agent stopped after max_iterations (${config.max_iterations}) LLM calls without a final answer: ` +
            `the model kept calling tools. Ask more directly, or raise workflows.${name}.max_iterations.`,
        );
      },
    };
  },
});
