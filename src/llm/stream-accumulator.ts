import { randomUUID } from 'node:crypto';
import type { ChatResult, ChatUsage, ToolCall } from './chat-model.js';

/**
 * Folds the chunks of a streamed Chat Completion into one `ChatResult`. Servers differ in the
 * details (OpenAI, NIM, vLLM, Ollama, llama.cpp), so it reads only the common fields and treats
 * everything defensively: unknown fields are ignored, `usage` may come on any chunk or never,
 * tool-call fragments are matched by `index` (or by `id` when a server leaves `index` out).
 *
 * @example
 *   const acc = new StreamAccumulator('gpt-4o-mini')
 *   for (const chunk of chunks) { const text = acc.addChunk(chunk); if (text) onToken(text) }
 *   return acc.result()
 */
export class StreamAccumulator {
  private content = '';
  private readonly calls = new Map<number, { id: string; name: string; arguments: string }>();
  private lastCallIndex: number | undefined;
  private finishReason: string | null = null;
  private usage: ChatUsage | null = null;
  private model: string;
  private chunks = 0;

  constructor(fallbackModel: string) {
    this.model = fallbackModel;
  }

  /** How many chunks were folded in so far. */
  get chunkCount(): number {
    return this.chunks;
  }

  /** Folds one `chat.completion.chunk` in; returns the text it added (possibly ''). */
  addChunk(chunk: unknown): string {
    this.chunks++;
    if (!isRecord(chunk)) return '';
    this.readCommon(chunk);
    // n is always 1 here: a choice other than index 0 would be a second, unrelated answer.
    const choice = pickChoice(chunk.choices);
    if (choice === undefined) return '';
    if (typeof choice.finish_reason === 'string') this.finishReason = choice.finish_reason;
    const delta = isRecord(choice.delta) ? choice.delta : undefined;
    if (delta === undefined) return '';
    if (Array.isArray(delta.tool_calls)) delta.tool_calls.forEach((fragment) => this.addToolCallFragment(fragment));
    const text = typeof delta.content === 'string' ? delta.content : '';
    this.content += text;
    return text;
  }

  /**
   * Folds a whole, non-streamed `chat.completion` in (some servers ignore `stream: true`);
   * returns its text.
   */
  addCompletion(completion: unknown): string {
    this.chunks++;
    if (!isRecord(completion)) return '';
    this.readCommon(completion);
    const choice = pickChoice(completion.choices);
    if (choice === undefined) return '';
    if (typeof choice.finish_reason === 'string') this.finishReason = choice.finish_reason;
    const message = isRecord(choice.message) ? choice.message : undefined;
    if (message === undefined) return '';
    if (Array.isArray(message.tool_calls)) message.tool_calls.forEach((call) => this.addToolCallFragment(call));
    const text = typeof message.content === 'string' ? message.content : '';
    this.content += text;
    return text;
  }

  result(): ChatResult {
    const toolCalls: ToolCall[] = [...this.calls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, call]) => ({
        // Some servers omit ids; the conversation still needs one to pair the tool's answer with.
        id: call.id !== '' ? call.id : `call_${randomUUID().replaceAll('-', '')}`,
        type: 'function',
        // A tool without parameters may get no argument text at all; '{}' is what it means.
        function: { name: call.name, arguments: call.arguments !== '' ? call.arguments : '{}' },
      }));
    return { content: this.content, toolCalls, finishReason: this.finishReason, usage: this.usage, model: this.model };
  }

  private readCommon(obj: Record<string, unknown>): void {
    if (typeof obj.model === 'string' && obj.model !== '') this.model = obj.model;
    const usage = readUsage(obj.usage);
    if (usage !== null) this.usage = usage;
  }

  private addToolCallFragment(fragment: unknown): void {
    if (!isRecord(fragment)) return;
    const id = typeof fragment.id === 'string' ? fragment.id : '';
    const index = this.slotFor(fragment.index, id);
    let call = this.calls.get(index);
    if (call === undefined) {
      call = { id: '', name: '', arguments: '' };
      this.calls.set(index, call);
    }
    this.lastCallIndex = index;
    if (id !== '') call.id = id;
    const fn = isRecord(fragment.function) ? fragment.function : undefined;
    if (fn === undefined) return;
    // The name arrives whole (in the first fragment); only the arguments are split.
    if (typeof fn.name === 'string' && fn.name !== '') call.name = fn.name;
    if (typeof fn.arguments === 'string') call.arguments += fn.arguments;
    // A few servers send arguments as an object rather than JSON text.
    else if (isRecord(fn.arguments)) call.arguments += JSON.stringify(fn.arguments);
  }

  /** Which call a fragment continues: its `index`; without one, a new id opens a new call. */
  private slotFor(index: unknown, id: string): number {
    if (typeof index === 'number' && Number.isInteger(index) && index >= 0) return index;
    if (id !== '') {
      for (const [i, call] of this.calls) if (call.id === id) return i;
      return this.calls.size === 0 ? 0 : Math.max(...this.calls.keys()) + 1;
    }
    return this.lastCallIndex ?? 0;
  }
}

function pickChoice(choices: unknown): Record<string, unknown> | undefined {
  if (!Array.isArray(choices)) return undefined;
  const found = choices.find((c) => isRecord(c) && (c.index === 0 || c.index === undefined));
  return isRecord(found) ? found : undefined;
}

function readUsage(value: unknown): ChatUsage | null {
  if (!isRecord(value)) return null;
  const prompt = count(value.prompt_tokens);
  const completion = count(value.completion_tokens);
  const total = count(value.total_tokens);
  if (prompt === undefined && completion === undefined && total === undefined) return null;
  return {
    prompt_tokens: prompt ?? 0,
    completion_tokens: completion ?? 0,
    total_tokens: total ?? (prompt ?? 0) + (completion ?? 0),
  };
}

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
