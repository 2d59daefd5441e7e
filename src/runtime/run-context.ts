import { AsyncLocalStorage } from 'node:async_hooks';
import type { RunContext } from '../core/context.js';

export type { RunContext, StartStepOptions, StepEnd, StepEventData, StepHandle, StepKind } from '../core/context.js';

const storage = new AsyncLocalStorage<RunContext>();

/** Runs `fn` with `ctx` as the current run context. */
export function withRunContext<T>(ctx: RunContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/** The context of the run executing this code, or undefined outside any run. */
export function currentRunContext(): RunContext | undefined {
  return storage.getStore();
}
