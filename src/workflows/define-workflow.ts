import type { z } from 'zod';
import type { ChatModel } from '../llm/chat-model.js';
import type { Tool } from './define-tool.js';
import type { Workflow } from './workflow.js';

/** What a workflow type's `create` may use: the already-built models and tools, by config name. */
export interface WorkflowDeps {
  /** Resolves a config `llms` entry; throws naming the key when it does not exist. */
  llm(name: string): ChatModel;
  /** Resolves a config `tools` entry; throws naming the key when it does not exist. */
  tool(name: string): Tool;
}

/**
 * A workflow *type*: validates one config entry and builds a Workflow from it.
 *
 * @example
 *   export const shout = defineWorkflow({
 *     type: 'shout',
 *     configSchema: z.object({ description: z.string().default('Upper-cases the input') }),
 *     create: (cfg, { name }) => ({
 *       name, type: 'shout', description: cfg.description, inputSchema: z.string(),
 *       async run(input) { return String(input).toUpperCase() },
 *     }),
 *   })
 */
export interface WorkflowType<C = any> {
  readonly type: string;
  readonly configSchema: z.ZodType<C>;
  create(config: C, context: { name: string; deps: WorkflowDeps }): Workflow;
}

export function defineWorkflow<S extends z.ZodType>(def: {
  type: string;
  configSchema: S;
  create(config: z.output<S>, context: { name: string; deps: WorkflowDeps }): Workflow;
}): WorkflowType<z.output<S>> {
  return def as WorkflowType<z.output<S>>;
}
