import { ConfigError, describeIssues } from '../config/load-config.js';
import type { RunwayConfig } from '../config/config-schema.js';
import type { ChatModel } from '../llm/chat-model.js';
import type { LlmProvider } from '../llm/llm-provider.js';
import { openaiProvider } from '../llm/openai-provider.js';
import { UnavailableChatModel } from '../llm/unavailable-chat-model.js';
import { chatWorkflow } from './chat-workflow.js';
import type { Tool, ToolType } from './define-tool.js';
import type { WorkflowDeps, WorkflowType } from './define-workflow.js';
import { echoWorkflow } from './echo-workflow.js';
import { toolAgentWorkflow } from './tool-agent-workflow.js';
import { calculatorToolType } from './tools/calculator.js';
import { currentTimeToolType } from './tools/current-time.js';
import { httpGetToolType } from './tools/http-get.js';
import type { Workflow } from './workflow.js';

/** Workflow, tool and model types known to the builder; code registers its own next to the built-ins. */
export interface BuilderRegistry {
  workflowTypes?: readonly WorkflowType[];
  toolTypes?: readonly ToolType[];
  /** Ready-made tools, usable by name from any workflow's `tools` list. */
  tools?: readonly Tool[];
  /** Extra `llms.<name>.provider` values. */
  llmProviders?: readonly LlmProvider[];
}

export const BUILTIN_WORKFLOW_TYPES: readonly WorkflowType[] = [echoWorkflow, chatWorkflow, toolAgentWorkflow];
export const BUILTIN_TOOL_TYPES: readonly ToolType[] = [calculatorToolType, currentTimeToolType, httpGetToolType];
export const BUILTIN_LLM_PROVIDERS: readonly LlmProvider[] = [openaiProvider];

/** The workflow that becomes the default, when the config names none, if its models can work. */
export const ASSISTANT_WORKFLOW = 'assistant';

export interface BuiltWorkflows {
  workflows: ReadonlyMap<string, Workflow>;
  defaultWorkflow: string;
  /** Every model of the `llms` section; the owner closes them at shutdown. */
  llms: ReadonlyMap<string, ChatModel>;
}

/**
 * Turns the config's `llms`, `tools` and `workflows` sections into ready objects at boot, failing
 * fast with the offending key (`workflows.echo.token_delay_ms: …`, `llms.default.provider: …`).
 *
 * The default workflow is `default_workflow` when set; otherwise `assistant` when it exists and
 * every model it uses is configured (an OpenAI endpoint needs a key), else `echo`.
 *
 * @example
 *   const { workflows, defaultWorkflow, llms } = buildWorkflows(config, { workflowTypes: [shout] })
 */
export function buildWorkflows(config: RunwayConfig, registry: BuilderRegistry = {}): BuiltWorkflows {
  const workflowTypes = byKey([...BUILTIN_WORKFLOW_TYPES, ...(registry.workflowTypes ?? [])], (t) => t.type);
  const toolTypes = byKey([...BUILTIN_TOOL_TYPES, ...(registry.toolTypes ?? [])], (t) => t.type);
  const providers = byKey([...BUILTIN_LLM_PROVIDERS, ...(registry.llmProviders ?? [])], (p) => p.provider);

  const llms = new Map<string, ChatModel>();
  try {
    for (const [name, entry] of Object.entries(config.llms)) {
      const provider = providers.get(entry.provider);
      if (!provider) throw unknownType(`llms.${name}.provider`, entry.provider, providers.keys(), 'provider');
      llms.set(name, createModel(provider, validate(provider.configSchema, entry, `llms.${name}`), name));
    }

    const tools = new Map<string, Tool>();
    for (const tool of registry.tools ?? []) tools.set(tool.name, tool);
    for (const [name, entry] of Object.entries(config.tools)) {
      const type = toolTypes.get(entry.type);
      if (!type) throw unknownType(`tools.${name}.type`, entry.type, toolTypes.keys());
      tools.set(name, type.create(validate(type.configSchema, entry, `tools.${name}`), name));
    }

    /** The models each workflow asked for, to tell whether it can work. */
    const usedLlms = new Map<string, ChatModel[]>();
    const deps = (owner: string): WorkflowDeps => ({
      llm(name: string): ChatModel {
        const model = llms.get(name);
        if (!model) {
          throw new ConfigError(
            `Invalid configuration:\n  workflows.${owner}.llm: unknown llm "${name}" (known: ${[...llms.keys()].join(', ') || 'none; add an llms: section'})`,
          );
        }
        usedLlms.set(owner, [...(usedLlms.get(owner) ?? []), model]);
        return model;
      },
      tool(name: string): Tool {
        const tool = tools.get(name);
        if (!tool) {
          throw new ConfigError(
            `Invalid configuration:\n  workflows.${owner}.tools: unknown tool "${name}" (known: ${[...tools.keys()].join(', ') || 'none'})`,
          );
        }
        return tool;
      },
    });

    const workflows = new Map<string, Workflow>();
    for (const [name, entry] of Object.entries(config.workflows)) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
        throw new ConfigError(`Invalid configuration:\n  workflows.${name}: a workflow name is 1-64 letters, digits, '.', '_' or '-'`);
      }
      const type = workflowTypes.get(entry.type);
      if (!type) throw unknownType(`workflows.${name}.type`, entry.type, workflowTypes.keys());
      workflows.set(name, type.create(validate(type.configSchema, entry, `workflows.${name}`), { name, deps: deps(name) }));
    }

    const assistantWorks =
      workflows.has(ASSISTANT_WORKFLOW) && (usedLlms.get(ASSISTANT_WORKFLOW) ?? []).every((m) => !(m instanceof UnavailableChatModel));
    const defaultWorkflow = config.default_workflow ?? (assistantWorks ? ASSISTANT_WORKFLOW : 'echo');
    if (!workflows.has(defaultWorkflow)) {
      throw new ConfigError(
        `Invalid configuration:\n  default_workflow: unknown workflow "${defaultWorkflow}" (known: ${[...workflows.keys()].join(', ')})`,
      );
    }
    return { workflows, defaultWorkflow, llms };
  } catch (err) {
    // Nothing has connected yet, but the pools are ours to release.
    for (const model of llms.values()) void model.close();
    throw err;
  }
}

function createModel<C>(provider: LlmProvider<C>, config: C, name: string): ChatModel {
  const missing = provider.unavailable?.(config, name);
  if (missing !== undefined) {
    const model = (config as { model?: unknown }).model;
    return new UnavailableChatModel(name, typeof model === 'string' ? model : name, missing);
  }
  try {
    return provider.create(config, name);
  } catch (err) {
    throw new ConfigError(`Invalid configuration:\n  llms.${name}: ${(err as Error).message}`);
  }
}

function validate<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: any[] } } }, value: unknown, key: string): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new ConfigError(`Invalid configuration:\n${describeIssues(result.error.issues, key)}`);
  return result.data;
}

function unknownType(key: string, type: string, known: Iterable<string>, what = 'type'): ConfigError {
  return new ConfigError(`Invalid configuration:\n  ${key}: unknown ${what} "${type}" (known: ${[...known].join(', ')})`);
}

function byKey<T>(items: readonly T[], key: (item: T) => string): Map<string, T> {
  return new Map(items.map((item) => [key(item), item]));
}
