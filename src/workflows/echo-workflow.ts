import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineWorkflow } from './define-workflow.js';

/** Splits text before each word that follows whitespace, so the pieces concatenate back exactly. */
export function splitWords(text: string): string[] {
  return text.split(/(?<=\s)(?=\S)/).filter((piece) => piece !== '');
}

/**
 * `echo`: streams the input back word by word, one `token` event per word inside a FUNCTION step.
 * Needs no network, so the service works offline; `token_delay_ms: 0` makes it a pure measure of
 * the runtime's own overhead.
 */
export const echoWorkflow = defineWorkflow({
  type: 'echo',
  configSchema: z
    .object({
      type: z.literal('echo'),
      description: z.string().default('Streams the input back, word by word'),
      token_delay_ms: z.coerce.number().int().min(0).max(60_000).default(20),
    })
    .strict(),
  create: (config, { name }) => ({
    name,
    type: 'echo',
    description: config.description,
    inputSchema: z.string().max(1_000_000).describe('Text to stream back'),
    async run(input, ctx) {
      const text = input as string;
      // The WORKFLOW step around this one already carries the input and the output: repeating
      // them here would store the text twice more per run.
      const step = ctx.startStep('FUNCTION', 'echo');
      for (const word of splitWords(text)) {
        if (config.token_delay_ms > 0) await sleep(config.token_delay_ms, undefined, { signal: ctx.signal });
        ctx.token(word, step.step_id);
      }
      step.end();
      return text;
    },
  }),
});
