import type { z } from 'zod';
import type { RunContext } from '../runtime/run-context.js';

/**
 * A ready-to-run workflow, built from one entry of the config's `workflows` section.
 * `run` must honour `ctx.signal` and report progress through `ctx` (tokens, steps, usage).
 */
export interface Workflow {
  readonly name: string;
  readonly type: string;
  readonly description: string;
  /** Validates a run's `input`; its JSON Schema is what `GET /workflows/:name` shows. */
  readonly inputSchema: z.ZodType;
  /**
   * The run's output, or a promise of it. A workflow with nothing to wait for may return the
   * output itself: the run then ends without waiting a turn of the event loop.
   */
  run(input: unknown, ctx: RunContext): Promise<unknown> | unknown;
}
