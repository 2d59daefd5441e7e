import { z } from 'zod';
import { intSetting } from '../../config/config-schema.js';

/** A decimal setting; numeric strings (from `${VAR}` interpolation) become numbers. */
const decimal = (min: number, max: number) =>
  z.preprocess((v) => (typeof v === 'string' && /^\s*[-+]?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v), z.number().min(min).max(max));

/** Config keys shared by the LLM workflow types (`chat`, `tool_agent`). */
export const llmWorkflowFields = {
  /** A key of the config's `llms` section. */
  llm: z.string().min(1).default('default'),
  system_prompt: z.string().max(100_000).optional(),
  temperature: decimal(0, 2).optional(),
  max_tokens: intSetting(1, 1_000_000).optional(),
};
