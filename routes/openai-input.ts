import { RunwayError } from '../src/core/errors.js';
import type { Workflow } from '../src/workflows/workflow.js';
import type { ChatCompletionBody, ChatMessageBody } from './openai-schemas.js';

export interface Turn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

function invalid(message: string, pointer: string): RunwayError {
  return new RunwayError('invalid_request', message, { errors: [{ in: 'body', pointer, message }] });
}

/** A message's text: a string, or its `text` parts joined by newlines (other parts are refused). */
function textOf(message: ChatMessageBody, i: number): string {
  const content = message.content;
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  const texts: string[] = [];
  for (const [j, part] of content.entries()) {
    if (part.type !== 'text' || typeof part.text !== 'string') {
      throw invalid(`Only text content parts are supported; this one is "${part.type}"`, `/messages/${i}/content/${j}`);
    }
    texts.push(part.text);
  }
  return texts.join('\n');
}

/**
 * The chat messages as plain turns: `developer` counts as `system`; tool results and assistant
 * tool calls are refused (a workflow runs its own tools; the client's are not part of it).
 */
export function toTurns(messages: readonly ChatMessageBody[]): Turn[] {
  return messages.map((m, i) => {
    if (m.role === 'tool' || m.role === 'function') {
      throw invalid(`Messages with role "${m.role}" are not supported: Runway workflows call their own tools`, `/messages/${i}/role`);
    }
    if (m.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
      throw invalid('Assistant tool_calls are not supported: Runway workflows call their own tools', `/messages/${i}/tool_calls`);
    }
    return { role: m.role === 'developer' ? 'system' : m.role, content: textOf(m, i) };
  });
}

/**
 * What a chat request becomes as the workflow's run input:
 * 1. `{messages: [{role, content}, …]}` when the workflow's input schema accepts it (`chat`,
 *    `tool_agent`: the whole history the client sent, its system messages included);
 * 2. otherwise the text of the last `user` message, when the schema accepts that (`echo`, and any
 *    workflow whose input is a string);
 * 3. otherwise a 400 that says what the workflow wanted.
 */
export function workflowInput(workflow: Workflow, messages: readonly ChatMessageBody[]): unknown {
  const turns = toTurns(messages);
  const asMessages = { messages: turns };
  if (workflow.inputSchema.safeParse(asMessages).success) return asMessages;

  const last = turns.findLastIndex((t) => t.role === 'user');
  if (last === -1) {
    throw invalid(`Model "${workflow.name}" takes the text of the last user message, and there is none`, '/messages');
  }
  const text = turns[last]!.content;
  const parsed = workflow.inputSchema.safeParse(text);
  if (parsed.success) return text;
  const issue = parsed.error.issues[0];
  throw invalid(
    `The last user message does not fit model "${workflow.name}": ${issue?.message ?? 'invalid input'}`,
    `/messages/${last}/content`,
  );
}

/** Refuses the parameters whose silent loss would give a client a wrong answer. */
export function refuseUnsupported(body: ChatCompletionBody): void {
  if (body.n !== undefined && body.n !== null && body.n !== 1) {
    throw invalid('Only n=1 is supported: a run has one answer', '/n');
  }
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    throw invalid('Client-side tools are not supported: Runway workflows call their own tools', '/tools');
  }
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null && choice !== 'none' && choice !== 'auto') {
    throw invalid('tool_choice must be "none" or "auto": Runway workflows call their own tools', '/tool_choice');
  }
  const format = body.response_format?.type;
  if (format !== undefined && format !== 'text') {
    throw invalid(`response_format "${format}" is not supported; only "text"`, '/response_format/type');
  }
  if (body.logprobs === true) throw invalid('logprobs are not supported', '/logprobs');
}
