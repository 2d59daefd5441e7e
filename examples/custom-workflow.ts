/**
 * A workflow type of your own, registered through the builder next to the built-ins.
 *
 *   npx tsx examples/custom-workflow.ts
 *
 * `shout` streams its input back upper-cased, one token per word, inside a FUNCTION step; it
 * honours the run's signal (cancel, timeout, shutdown) and needs no network.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { buildApp } from '../src/app.js';
import { defineWorkflow } from '../src/workflows/define-workflow.js';

export const shoutWorkflow = defineWorkflow({
  type: 'shout',
  // Validates the workflow's config entry at boot; a typo stops start-up naming the key.
  configSchema: z
    .object({
      type: z.literal('shout'),
      description: z.string().default('Shouts the input back'),
      delay_ms: z.number().int().min(0).default(10),
    })
    .strict(),
  create: (config, { name }) => ({
    name,
    type: 'shout',
    description: config.description,
    // Validates each run's `input`; GET /workflows/:name shows it as JSON Schema.
    inputSchema: z.string().min(1).max(10_000),
    async run(input, ctx) {
      const text = (input as string).toUpperCase();
      const step = ctx.startStep('FUNCTION', 'shout', { input });
      for (const word of text.split(/(?<=\s)/)) {
        await sleep(config.delay_ms, undefined, { signal: ctx.signal }); // rejects when the run is cancelled
        ctx.token(word, step.step_id);
      }
      step.end({ output: text });
      return text;
    },
  }),
});

async function main(): Promise<void> {
  const app = await buildApp({
    config: { server: { log_level: 'warn' }, workflows: { loud: { type: 'shout', delay_ms: 5 } } },
    registry: { workflowTypes: [shoutWorkflow] },
  });
  const res = await app.inject({ method: 'POST', url: '/runs', payload: { workflow: 'loud', input: 'hello from a custom workflow' } });
  const run = res.json() as { id: string; output: string };
  console.log(res.statusCode, run.output); // 200 HELLO FROM A CUSTOM WORKFLOW

  const stream = await app.inject({ method: 'GET', url: `/runs/${run.id}/stream` });
  console.log(stream.body); // the replayed SSE events: run.queued, run.started, steps, tokens, run.succeeded
  await app.close();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
