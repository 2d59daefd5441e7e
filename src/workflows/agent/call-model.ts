// The module's binding, not the global: on Node 20 `globalThis.performance` is an accessor, looked up on every call.
import { performance } from 'node:perf_hooks';
import type { ChatMessage, ChatModel, ChatResult, ToolSpec } from '../../llm/chat-model.js';
import type { RunContext } from '../../runtime/run-context.js';
import { describeFailure } from './describe-failure.js';

export interface CallModelOptions {
  tools?: readonly ToolSpec[];
  temperature?: number | undefined;
  maxTokens?: number | undefined;
}

/**
 * One LLM call as a step of the run: `LLM_START` (model, message count), a `token` event per
 * generated piece tagged with the step's id, `LLM_END` (output, usage, finish reason, duration, and
 * `time_to_first_token_ms` when the model generated text), and the call's usage added to the run's.
 * Aborts with the run's signal.
 *
 * @example
 *   const result = await callModel(ctx, model, messages, { tools: specs })
 */
export async function callModel(ctx: RunContext, model: ChatModel, messages: ChatMessage[], options: CallModelOptions = {}): Promise<ChatResult> {
  const tools = options.tools !== undefined && options.tools.length > 0 ? [...options.tools] : undefined;
  const step = ctx.startStep('LLM', model.name, {
    extra: { model: model.model, message_count: messages.length, ...(tools !== undefined && { tool_count: tools.length }) },
  });
  const startedAt = performance.now();
  let firstTokenAt: number | undefined;
  try {
    const result = await model.chat({
      messages,
      signal: ctx.signal,
      onToken: (delta) => {
        firstTokenAt ??= performance.now();
        ctx.token(delta, step.step_id);
      },
      ...(tools !== undefined && { tools }),
      ...(options.temperature !== undefined && { temperature: options.temperature }),
      ...(options.maxTokens !== undefined && { maxTokens: options.maxTokens }),
    });
    if (result.usage !== null) ctx.addUsage(result.usage);
    step.end({
      output: {
        content: result.content,
        ...(result.toolCalls.length > 0 && {
          tool_calls: result.toolCalls.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments })),
        }),
      },
      ...(result.usage !== null && { usage: result.usage }),
      extra: {
        model: result.model,
        finish_reason: result.finishReason,
        ...(firstTokenAt !== undefined && { time_to_first_token_ms: Math.round((firstTokenAt - startedAt) * 1000) / 1000 }),
      },
    });
    return result;
  } catch (err) {
    step.end({ error: describeFailure(err) });
    throw err;
  }
}
