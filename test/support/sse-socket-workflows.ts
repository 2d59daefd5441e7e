import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineWorkflow } from '../../src/workflows/define-workflow.js';

/**
 * Test-controlled workflow types for the socket tests (SSE, disconnect, load, shutdown). The state
 * they wait on belongs to the test that builds them, never to module scope.
 */

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? Object.assign(new Error('aborted'), { name: 'AbortError' });
}

/** Credits the test hands out; each `take` waits for one (or for the run's abort). */
export class Drip {
  private credits = 0;
  private open = false;
  private readonly waiters: Array<() => void> = [];

  /** Lets `n` more takes through. */
  allow(n: number): void {
    this.credits += n;
    this.wake();
  }

  /** Lets every take through from now on. */
  release(): void {
    this.open = true;
    this.wake();
  }

  take(signal: AbortSignal): Promise<void> {
    if (this.open) return Promise.resolve();
    if (this.credits > 0) {
      this.credits--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(abortReason(signal));
      const onAbort = () => {
        const i = this.waiters.indexOf(go);
        if (i !== -1) this.waiters.splice(i, 1);
        reject(abortReason(signal));
      };
      const go = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(go);
    });
  }

  private wake(): void {
    while (this.waiters.length > 0 && (this.open || this.credits > 0)) {
      if (!this.open) this.credits--;
      this.waiters.shift()!();
    }
  }
}

/**
 * `gate`: waits until the test releases its Drip (or the run aborts), then returns its input.
 * With `tokens: n`, it emits token `t<i> ` and takes a credit before each of n tokens instead.
 */
export function gateWorkflowType(drip: Drip) {
  return defineWorkflow({
    type: 'gate',
    configSchema: z.object({ type: z.literal('gate'), tokens: z.number().int().min(0).default(0) }).strict(),
    create: (config, { name }) => ({
      name,
      type: 'gate',
      description: 'Waits for the test',
      inputSchema: z.string(),
      async run(input, ctx) {
        const step = ctx.startStep('FUNCTION', 'gate');
        if (config.tokens === 0) {
          await drip.take(ctx.signal);
          ctx.token(String(input), step.step_id);
          step.end({ output: input });
          return input;
        }
        let out = '';
        for (let i = 1; i <= config.tokens; i++) {
          await drip.take(ctx.signal);
          const delta = `t${i} `;
          out += delta;
          ctx.token(delta, step.step_id);
        }
        step.end({ output: out });
        return out;
      },
    }),
  });
}

/**
 * `flood`: optionally waits for the Drip, then emits `tokens` token events of `size` characters
 * each, yielding to the event loop now and then. Output: a short summary (not the text).
 */
export function floodWorkflowType(drip: Drip) {
  return defineWorkflow({
    type: 'flood',
    configSchema: z
      .object({ type: z.literal('flood'), tokens: z.number().int().min(1), size: z.number().int().min(1), gated: z.boolean().default(true) })
      .strict(),
    create: (config, { name }) => ({
      name,
      type: 'flood',
      description: 'Emits a lot of output',
      inputSchema: z.string(),
      async run(_input, ctx) {
        if (config.gated) await drip.take(ctx.signal);
        const step = ctx.startStep('FUNCTION', 'flood');
        const chunk = 'x'.repeat(config.size);
        for (let i = 0; i < config.tokens; i++) {
          ctx.token(chunk, step.step_id);
          if (i % 50 === 49) await yieldToLoop(undefined, { signal: ctx.signal });
        }
        step.end({});
        return `${config.tokens}x${config.size}`;
      },
    }),
  });
}

/** Counts workflow bodies executing at once, across every run of one app. */
export class ConcurrencyProbe {
  current = 0;
  max = 0;
  runs = 0;
  /** Called at every yield of every run (tests sample gauges here). */
  onYield: (() => void) | undefined;
}

/** `yielder`: awaits a few timer turns (so runs overlap), then returns its input. */
export function yielderWorkflowType(probe: ConcurrencyProbe) {
  return defineWorkflow({
    type: 'yielder',
    configSchema: z.object({ type: z.literal('yielder'), yields: z.number().int().min(1).default(3) }).strict(),
    create: (config, { name }) => ({
      name,
      type: 'yielder',
      description: 'Yields a few times',
      inputSchema: z.string(),
      async run(input, ctx) {
        probe.current++;
        probe.runs++;
        if (probe.current > probe.max) probe.max = probe.current;
        try {
          const step = ctx.startStep('FUNCTION', 'yield');
          for (let i = 0; i < config.yields; i++) {
            await sleep(1, undefined, { signal: ctx.signal });
            probe.onYield?.();
            if (i === 0) ctx.token(String(input), step.step_id);
          }
          step.end({ output: input });
          return input;
        } finally {
          probe.current--;
        }
      },
    }),
  });
}
