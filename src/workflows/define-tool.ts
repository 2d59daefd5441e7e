import type { z } from 'zod';
import type { RunContext } from '../runtime/run-context.js';

/**
 * A tool an agent can call. Its `input` schema validates the model's arguments before `run` sees
 * them, and its JSON Schema is what the model is shown.
 *
 * @example
 *   export const weather = defineTool({
 *     name: 'weather',
 *     description: 'Current weather for a city',
 *     input: z.object({ city: z.string() }),
 *     async run({ city }, ctx) { return fetchWeather(city, { signal: ctx.signal }) },
 *   })
 */
export interface Tool<I = any, O = unknown> {
  readonly name: string;
  readonly description: string;
  readonly input: z.ZodType<I>;
  run(input: I, ctx: RunContext): Promise<O> | O;
}

export function defineTool<S extends z.ZodType, O>(tool: {
  name: string;
  description: string;
  input: S;
  run(input: z.output<S>, ctx: RunContext): Promise<O> | O;
}): Tool<z.output<S>, O> {
  return tool as Tool<z.output<S>, O>;
}

/**
 * A tool *type* that the config's `tools` section can instantiate: `calculator: {type: calculator}`.
 *
 * @example
 *   defineToolType({ type: 'calculator', configSchema: z.object({}), create: (_cfg, name) => calculatorTool(name) })
 */
export interface ToolType<C = any> {
  readonly type: string;
  readonly configSchema: z.ZodType<C>;
  create(config: C, name: string): Tool;
}

export function defineToolType<S extends z.ZodType>(def: {
  type: string;
  configSchema: S;
  create(config: z.output<S>, name: string): Tool;
}): ToolType<z.output<S>> {
  return def as ToolType<z.output<S>>;
}
