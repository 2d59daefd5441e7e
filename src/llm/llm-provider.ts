import type { z } from 'zod';
import type { ChatModel } from './chat-model.js';

/**
 * A model *provider* the config's `llms` section can name: `default: {provider: openai, …}`.
 * The builder validates the entry with `configSchema` (failing fast with the offending key) and
 * builds one `ChatModel` per entry at boot.
 *
 * @example
 *   export const echoProvider = defineLlmProvider({
 *     provider: 'my-server',
 *     configSchema: z.object({ provider: z.literal('my-server'), url: z.string().url() }).strict(),
 *     create: (cfg, name) => new MyServerChatModel(name, cfg.url),
 *   })
 */
export interface LlmProvider<C = any> {
  readonly provider: string;
  readonly configSchema: z.ZodType<C>;
  create(config: C, name: string): ChatModel;
  /**
   * Why a valid entry still cannot work (no API key for a host that needs one…), as a message
   * telling the operator what to set; undefined when it can. The builder then installs a model
   * that fails every call with that message instead of trying the network.
   */
  unavailable?(config: C, name: string): string | undefined;
}

export function defineLlmProvider<S extends z.ZodType>(def: {
  provider: string;
  configSchema: S;
  create(config: z.output<S>, name: string): ChatModel;
  unavailable?(config: z.output<S>, name: string): string | undefined;
}): LlmProvider<z.output<S>> {
  return def as LlmProvider<z.output<S>>;
}
