import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineWorkflow } from './define-workflow.js';

/** Whether a UTF-16 code unit is whitespace as the regular expression class \s defines it. */
function isSpace(c: number): boolean {
  return c <= 0x20
    ? c === 0x20 || (c >= 0x09 && c <= 0x0d)
    : c >= 0xa0 && (c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff);
}

/**
 * Splits text before each word that follows whitespace, so the pieces concatenate back exactly:
 * `'hi  there\n'` → `['hi  ', 'there\n']`. (A scan rather than a lookbehind split: echo is the
 * benchmark workflow, and the regular expression was a visible part of its cost.)
 */
export function splitWords(text: string): string[] {
  const pieces: string[] = [];
  let start = 0;
  // Each unit is classified once, carried to the next position as the one before it.
  let afterSpace = text.length > 0 && isSpace(text.charCodeAt(0));
  for (let i = 1; i < text.length; i++) {
    const space = isSpace(text.charCodeAt(i));
    if (afterSpace && !space) {
      pieces.push(text.slice(start, i));
      start = i;
    }
    afterSpace = space;
  }
  if (start < text.length) pieces.push(text.slice(start));
  return pieces;
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
    run(input, ctx) {
      const text = input as string;
      // The WORKFLOW step around this one already carries the input and the output: repeating
      // them here would store the text twice more per run.
      const step = ctx.startStep('FUNCTION', 'echo');
      const words = splitWords(text);
      const delayMs = config.token_delay_ms;
      if (delayMs === 0) {
        // Nothing to wait for: the output is returned as it is, not as a promise.
        for (let i = 0; i < words.length; i++) ctx.token(words[i]!, step.step_id);
        step.end();
        return text;
      }
      return (async () => {
        for (let i = 0; i < words.length; i++) {
          await sleep(delayMs, undefined, { signal: ctx.signal });
          ctx.token(words[i]!, step.step_id);
        }
        step.end();
        return text;
      })();
    },
  }),
});
