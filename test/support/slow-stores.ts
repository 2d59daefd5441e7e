import type { Stores } from '../../src/store/stores.js';

/** A macrotask, then a jittered delay of up to `maxMs` (deterministic: a seeded sequence). */
function delayer(maxMs: number, seed: number): () => Promise<void> {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const ms = (x >>> 0) % (maxMs + 1);
    return new Promise((resolve) => (ms === 0 ? setImmediate(resolve) : setTimeout(resolve, ms)));
  };
}

/** Wraps every async method of `target` so it resolves only after `delay()`. */
function slowed<T extends object>(target: T, delay: () => Promise<void>, keep: ReadonlySet<string> = new Set()): T {
  return new Proxy(target, {
    get(obj, key, receiver) {
      const value = Reflect.get(obj, key, receiver) as unknown;
      if (typeof value !== 'function' || typeof key !== 'string' || keep.has(key)) return value;
      return async (...args: unknown[]) => {
        await delay();
        return (value as (...a: unknown[]) => unknown).apply(obj, args);
      };
    },
  });
}

/**
 * Stores whose every call resolves after a macrotask and a jittered delay, so the runtime's async
 * path is the tested path (DESIGN §3: a networked store answers later, in any order across keys).
 * Reads (`events.read`, a generator) are slowed at their start; `bus.subscribe` stays synchronous.
 *
 * @example
 *   const stores = slowStores(createMemoryStores({ runTtlS: 3600, maxRuns: 1000 }), { maxMs: 3 })
 */
export function slowStores<S extends Stores>(inner: S, options: { maxMs?: number; seed?: number } = {}): S {
  const delay = delayer(options.maxMs ?? 3, options.seed ?? 42);
  const events = inner.events;
  return {
    ...inner,
    runs: slowed(inner.runs, delay),
    conversations: slowed(inner.conversations, delay),
    bus: slowed(inner.bus, delay, new Set(['subscribe'])),
    events: {
      append: async (runId: string, evs: Parameters<typeof events.append>[1]) => {
        await delay();
        return events.append(runId, evs);
      },
      async *read(runId: string, afterId: number, opts?: Parameters<typeof events.read>[2]) {
        await delay();
        yield* events.read(runId, afterId, opts);
      },
    },
  } as S;
}
