import { z } from 'zod';
import { ConfigError } from '../../config/load-config.js';
import { isAbortError } from '../../core/errors.js';
import type { ChatMessage, ToolCall, ToolSpec } from '../../llm/chat-model.js';
import type { RunContext } from '../../runtime/run-context.js';
import type { Tool } from '../define-tool.js';

/** What the Chat Completions protocol accepts as a function name. */
const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** A tool's answer is cut to this many characters before it goes back to the model. */
export const MAX_TOOL_RESULT_CHARS = 100_000;

/** A tool call that did not produce a result; its message is what the model is told. */
export class ToolCallError extends Error {
  override readonly name = 'ToolCallError';
}

/**
 * The tools of one agent: their specs as the model is shown them, and the execution of the calls
 * the model asks for. Every call is a TOOL step; the calls of one turn run in parallel. A call
 * that names no known tool, whose arguments are not JSON or fail the tool's schema, that throws
 * or that outlasts `timeoutMs` becomes an error *result* the model reads; only the run's abort
 * ends the turn, and a tool that ignores it is abandoned rather than waited for.
 *
 * @example
 *   const tools = new AgentTools([calculator, clock], 'assistant')
 *   messages.push(...(await tools.run(ctx, result.toolCalls, 30_000)))
 */
export class AgentTools {
  readonly specs: readonly ToolSpec[];
  private readonly byName: ReadonlyMap<string, Tool>;

  /** `owner` is the workflow's name, for configuration errors. */
  constructor(tools: readonly Tool[], owner: string) {
    const byName = new Map<string, Tool>();
    for (const tool of tools) {
      if (!TOOL_NAME.test(tool.name)) {
        throw new ConfigError(
          `Invalid configuration:\n  workflows.${owner}.tools: tool name "${tool.name}" must be 1-64 letters, digits, '_' or '-' (what models accept)`,
        );
      }
      if (byName.has(tool.name)) throw new ConfigError(`Invalid configuration:\n  workflows.${owner}.tools: tool "${tool.name}" is listed twice`);
      byName.set(tool.name, tool);
    }
    this.byName = byName;
    this.specs = tools.map((tool) => ({ name: tool.name, description: tool.description, parameters: parametersOf(tool, owner) }));
  }

  /** Runs the calls in parallel; resolves to one `tool` message per call, in call order. */
  run(ctx: RunContext, calls: readonly ToolCall[], timeoutMs: number): Promise<ChatMessage[]> {
    return Promise.all(calls.map((call) => this.runOne(ctx, call, timeoutMs)));
  }

  private async runOne(ctx: RunContext, call: ToolCall, timeoutMs: number): Promise<ChatMessage> {
    const name = call.function.name;
    let args: unknown;
    let argsProblem: string | undefined;
    try {
      args = JSON.parse(call.function.arguments);
    } catch (err) {
      argsProblem = `the arguments are not valid JSON (${(err as Error).message}); send a JSON object`;
    }
    // The step's name feeds metric labels and span names: a name the model made up must not
    // create a new series per invention, so unknown tools share one name (the asked one is kept).
    const known = this.byName.has(name);
    const step = ctx.startStep('TOOL', known ? name : 'unknown_tool', {
      input: argsProblem === undefined ? args : call.function.arguments,
      extra: known ? { tool_call_id: call.id } : { tool_call_id: call.id, requested_tool: name },
    });
    try {
      const tool = this.byName.get(name);
      if (tool === undefined) {
        throw new ToolCallError(`unknown tool "${name}"; the tools are: ${[...this.byName.keys()].join(', ') || 'none'}`);
      }
      if (argsProblem !== undefined) throw new ToolCallError(argsProblem);
      const parsed = tool.input.safeParse(args);
      if (!parsed.success) throw new ToolCallError(`invalid arguments: ${describeIssues(parsed.error.issues)}`);
      const output = await settle(() => tool.run(parsed.data, ctx), ctx.signal, timeoutMs);
      step.end({ output });
      return { role: 'tool', tool_call_id: call.id, content: clip(render(output)) };
    } catch (err) {
      if (ctx.signal.aborted) {
        step.end({ error: { code: 'aborted', message: 'aborted with the run' } });
        throw isAbortError(err) ? err : ctx.signal.reason;
      }
      const message = err instanceof Error ? err.message : String(err);
      step.end({ error: { message } });
      return { role: 'tool', tool_call_id: call.id, content: clip(JSON.stringify({ error: message })) };
    }
  }
}

/** The tool's arguments as JSON Schema; the protocol wants an object. */
function parametersOf(tool: Tool, owner: string): object {
  const schema = z.toJSONSchema(tool.input, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete schema.$schema;
  if (schema.type !== 'object') {
    throw new ConfigError(`Invalid configuration:\n  workflows.${owner}.tools: tool "${tool.name}" must take an object (z.object) as input`);
  }
  return schema;
}

function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(arguments)'}: ${i.message}`).join('; ');
}

function render(output: unknown): string {
  if (typeof output === 'string') return output;
  return JSON.stringify(output) ?? 'null';
}

function clip(text: string): string {
  return text.length > MAX_TOOL_RESULT_CHARS ? `${text.slice(0, MAX_TOOL_RESULT_CHARS)}…[cut at ${MAX_TOOL_RESULT_CHARS} characters]` : text;
}

/**
 * Settles with `work`, or rejects as soon as the signal aborts or the time is up, whichever is
 * first: a tool that ignores its signal is left behind instead of holding the run.
 */
function settle<T>(work: () => T | Promise<T>, signal: AbortSignal, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      done();
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      done();
      reject(new ToolCallError(`the tool did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve()
      .then(work)
      .then(
        (value) => {
          done();
          resolve(value);
        },
        (err: unknown) => {
          done();
          reject(err);
        },
      );
  });
}
