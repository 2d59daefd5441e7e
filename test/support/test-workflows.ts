import { z } from 'zod';
import type { RunContext } from '../../src/runtime/run-context.js';
import { defineWorkflow } from '../../src/workflows/define-workflow.js';

/** Config schema of a test-only workflow type: just its `type` and an optional description. */
export const testWorkflowConfig = (type: string) =>
  z.object({ type: z.literal(type), description: z.string().default(type) }).strict();

/** Holds its slot until the run's signal aborts (cancel, timeout, disconnect, shutdown). */
export const blockerType = defineWorkflow({
  type: 'blocker',
  configSchema: testWorkflowConfig('blocker'),
  create: (cfg, { name }) => ({
    name,
    type: 'blocker',
    description: cfg.description,
    inputSchema: z.string(),
    run: (_input, ctx) =>
      new Promise((_resolve, reject) => {
        const signal = ctx.signal;
        if (signal.aborted) reject(signal.reason);
        else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      }),
  }),
});

/** A workflow type `type`, taking a string input, whose runs do what `run` does. */
export function testWorkflowType(type: string, run: (input: unknown, ctx: RunContext) => Promise<unknown>) {
  return defineWorkflow({
    type,
    configSchema: testWorkflowConfig(type),
    create: (cfg, { name }) => ({ name, type, description: cfg.description, inputSchema: z.string(), run }),
  });
}

/** A workflow type `type` whose runs throw what `fail()` makes. */
export function throwingType(type: string, fail: () => Error) {
  return testWorkflowType(type, async () => {
    throw fail();
  });
}
