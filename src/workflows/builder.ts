import { ConfigError, describeIssues } from '../config/load-config.js';
import type { RunwayConfig } from '../config/config-schema.js';
import type { Tool, ToolType } from './define-tool.js';
import type { WorkflowType } from './define-workflow.js';
import { echoWorkflow } from './echo-workflow.js';
import type { Workflow } from './workflow.js';

/** Workflow and tool types known to the builder; code registers its own next to the built-ins. */
export interface BuilderRegistry {
  workflowTypes?: readonly WorkflowType[];
  toolTypes?: readonly ToolType[];
  /** Ready-made tools, usable by name from any workflow's `tools` list. */
  tools?: readonly Tool[];
}

export const BUILTIN_WORKFLOW_TYPES: readonly WorkflowType[] = [echoWorkflow];
export const BUILTIN_TOOL_TYPES: readonly ToolType[] = [];

export interface BuiltWorkflows {
  workflows: ReadonlyMap<string, Workflow>;
  defaultWorkflow: string;
}

/**
 * Turns the config's `tools` and `workflows` sections into ready objects at boot, failing fast with
 * the offending key (`workflows.echo.token_delay_ms: …`).
 *
 * @example
 *   const { workflows, defaultWorkflow } = buildWorkflows(config, { workflowTypes: [shout] })
 */
export function buildWorkflows(config: RunwayConfig, registry: BuilderRegistry = {}): BuiltWorkflows {
  const workflowTypes = byKey([...BUILTIN_WORKFLOW_TYPES, ...(registry.workflowTypes ?? [])], (t) => t.type);
  const toolTypes = byKey([...BUILTIN_TOOL_TYPES, ...(registry.toolTypes ?? [])], (t) => t.type);

  const tools = new Map<string, Tool>();
  for (const tool of registry.tools ?? []) tools.set(tool.name, tool);
  for (const [name, entry] of Object.entries(config.tools)) {
    const type = toolTypes.get(entry.type);
    if (!type) throw unknownType(`tools.${name}.type`, entry.type, toolTypes.keys());
    tools.set(name, type.create(validate(type.configSchema, entry, `tools.${name}`), name));
  }

  const deps = (owner: string) => ({
    llm(name: string): unknown {
      throw new ConfigError(`Invalid configuration:\n  workflows.${owner}.llm: unknown llm "${name}"`);
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

  const defaultWorkflow = config.default_workflow ?? 'echo';
  if (!workflows.has(defaultWorkflow)) {
    throw new ConfigError(
      `Invalid configuration:\n  default_workflow: unknown workflow "${defaultWorkflow}" (known: ${[...workflows.keys()].join(', ')})`,
    );
  }
  return { workflows, defaultWorkflow };
}

function validate<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: any[] } } }, value: unknown, key: string): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new ConfigError(`Invalid configuration:\n${describeIssues(result.error.issues, key)}`);
  return result.data;
}

function unknownType(key: string, type: string, known: Iterable<string>): ConfigError {
  return new ConfigError(`Invalid configuration:\n  ${key}: unknown type "${type}" (known: ${[...known].join(', ')})`);
}

function byKey<T>(items: readonly T[], key: (item: T) => string): Map<string, T> {
  return new Map(items.map((item) => [key(item), item]));
}
