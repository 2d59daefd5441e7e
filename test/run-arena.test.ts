import { describe, expect, it, vi } from 'vitest';
import { RunArena, runJson, type SealedRun } from '../src/store/run-arena.js';
import { isTerminalStatus, TERMINAL_STATUSES, zeroUsage, type Run, type RunStatus } from '../src/store/run.js';

const base: Run = {
  id: 'r-1',
  workflow: 'echo',
  user_id: 'alice',
  conversation_id: null,
  status: 'succeeded',
  input: 'hi "there"\n',
  output: 'hi "there"\n',
  error: null,
  usage: zeroUsage(),
  metadata: {},
  created_at: '2026-11-25T12:00:00.000Z',
  started_at: '2026-11-25T12:00:00.001Z',
  finished_at: '2026-11-25T12:00:00.002Z',
  last_event_id: 16,
};

function sealed(over: Partial<SealedRun> = {}): SealedRun {
  return { userId: 'alice', run: base, baseMs: 1795600000000, tokenSteps: ['s1', 's"2'], meta: Uint32Array.of(2, 0, 1, 3, 3, 4_000_000, 0, 20), blob: 'a\nb{"x":"\\n"}\n', ...over };
}

describe('runJson', () => {
  it.each<[string, Run]>([
    ['a plain run', base],
    ['a failed run with an error, metadata and a conversation', { ...base, status: 'failed', output: null, error: { code: 'internal', message: 'x"y' }, metadata: { a: [1, { b: 'é' }] }, conversation_id: 'c\n1' }],
    ['a queued run', { ...base, status: 'queued', output: null, started_at: null, finished_at: null, input: { q: 1 } }],
    ['usage that is not all numbers', { ...base, usage: { prompt_tokens: Number.NaN, completion_tokens: 1, total_tokens: 1 } }],
    ['strings that need escaping in every member', { ...base, id: 'r"1', workflow: 'w\\', user_id: 'u\u0001é', status: 'running', created_at: '\ud800', started_at: 'x"', finished_at: null }],
  ])('writes %s as JSON.stringify does', (_label, run) => {
    expect(runJson(run)).toBe(JSON.stringify(run));
  });
});

describe('isTerminalStatus', () => {
  it('agrees with TERMINAL_STATUSES on every status', () => {
    for (const status of ['queued', 'running', 'succeeded', 'failed', 'cancelled'] satisfies RunStatus[]) {
      expect(isTerminalStatus(status)).toBe(TERMINAL_STATUSES.has(status));
    }
  });
});

describe('RunArena', () => {
  it('gives back what it was given: the run as a fresh copy, the user, the numbers and the texts', () => {
    const arena = new RunArena();
    const parts = sealed({ userId: 'u\n"1" é' });
    const handle = arena.put(parts)!;
    expect(arena.open(handle)).toEqual(parts);
    expect(arena.run(handle)).toEqual(base);
    expect(arena.run(handle)).not.toBe(base);
    expect(arena.open(handle).userId).toBe('u\n"1" é');
    const empty = sealed({ tokenSteps: undefined, meta: Uint32Array.of(), blob: '' });
    expect(arena.open(arena.put(empty)!)).toEqual(empty);
  });

  it('gives back token step ids of any text, and ids that untyped code passed as numbers, as JSON.stringify kept them', () => {
    const arena = new RunArena();
    for (const tokenSteps of [['s1', 's2', 's3'], ['s\ud800', 'é😀', 'a\\b\u0001'], [7, 's1'] as unknown as string[]]) {
      const parts = sealed({ tokenSteps });
      expect(arena.open(arena.put(parts)!).tokenSteps).toEqual(JSON.parse(JSON.stringify(tokenSteps)));
      // A record too large for the size estimate is counted exactly; its step ids follow the Run all the same.
      const large = sealed({ tokenSteps, run: { ...base, output: 'é'.repeat(200_000) } });
      const opened = arena.open(arena.put(large)!);
      expect(opened.tokenSteps).toEqual(JSON.parse(JSON.stringify(tokenSteps)));
      expect(opened.run).toEqual(large.run);
    }
  });

  it('keeps texts that UTF-8 cannot carry (lone surrogates) exactly', () => {
    const arena = new RunArena();
    for (const blob of ['\ud800', 'a\udc00b', '😀\ud83d', 'plain é 😀']) {
      const parts = sealed({ blob, meta: Uint32Array.of(2, 0, 1, blob.length) });
      expect(arena.open(arena.put(parts)!).blob).toBe(blob);
    }
  });

  it('writes texts it is given apart as the blob they join into, and its lastRunJson is the Run JSON it wrote', () => {
    const arena = new RunArena();
    const cases: Array<[string, string[], Partial<Run>]> = [
      ['ASCII only', ['{"a":1}', 'hello ', 'world'], {}],
      ['non-ASCII in the run and the texts', ['{"x":"é"}', '😀 ', 'ü'], { output: 'é😀' }],
      ['a surrogate pair split across two texts', ['a\ud83d', '\ude00b'].map((t) => JSON.parse(`"${t}"`) as string), {}],
      ['a lone surrogate (written as UTF-16)', ['ok', JSON.parse('"\\ud800"') as string, 'x'], {}],
      ['no texts at all', [], {}],
    ];
    for (const [label, texts, over] of cases) {
      const run = { ...base, ...over };
      const ends = texts.map((_, i) => texts.slice(0, i + 1).join('').length);
      const meta = Uint32Array.from(ends.flatMap((end) => [3, 0, 0, end]));
      const handle = arena.put(sealed({ run, texts, blob: 'ignored', meta }))!;
      const opened = arena.open(handle);
      expect(opened.blob, label).toBe(texts.join(''));
      expect(opened.run, label).toEqual(run);
      expect(opened.tokenSteps, label).toEqual(['s1', 's"2']);
      expect(opened.meta, label).toEqual(meta);
      expect(arena.summary(handle), label).toEqual({ status: run.status, workflow: run.workflow, conversation_id: run.conversation_id });
      expect(arena.lastRunJson, label).toBe(JSON.stringify(run));
    }
  });

  it('drops a buffer once every run in it is freed, and gives an oversized run a buffer of its own', () => {
    const arena = new RunArena();
    const oneMiB = 1 << 20;
    const blob = 'x'.repeat(10_000);
    const handles: number[] = [];
    for (let i = 0; i < 300; i++) handles.push(arena.put(sealed({ blob, meta: Uint32Array.of(2, i, 0, blob.length) }))!);
    expect(arena.bytes).toBeGreaterThanOrEqual(3 * oneMiB);
    const big = 'y'.repeat(3 * oneMiB);
    const bigHandle = arena.put(sealed({ blob: big, meta: Uint32Array.of(2, 0, 0, big.length) }))!;
    expect(arena.open(bigHandle).blob).toBe(big);
    for (const h of handles) arena.free(h);
    // The buffer being written stays (the big run's, just over 3 MiB), and one emptied 1 MiB buffer
    // is kept for reuse; the other small runs' buffers are gone.
    expect(arena.bytes).toBeGreaterThan(4 * oneMiB);
    expect(arena.bytes).toBeLessThan(5 * oneMiB);
    expect(arena.open(bigHandle).blob).toBe(big);
    // Writing goes on into buffers that are dropped once left empty: the one being written and the
    // spare remain.
    arena.free(bigHandle);
    for (let i = 0; i < 300; i++) arena.free(arena.put(sealed({ blob, meta: Uint32Array.of(2, i, 0, blob.length) }))!);
    expect(arena.bytes).toBe(2 * oneMiB);
  });

  it('writes into a reused buffer instead of allocating one per buffer filled', () => {
    const arena = new RunArena();
    const blob = 'x'.repeat(10_000);
    // Runs kept ~100 at a time, as retention keeps them: buffers fill and empty in turn.
    const live: number[] = [];
    const churn = (runs: number) => {
      for (let i = 0; i < runs; i++) {
        live.push(arena.put(sealed({ blob, meta: Uint32Array.of(2, i, 0, blob.length) }))!);
        if (live.length > 100) arena.free(live.shift()!);
      }
    };
    churn(1000);
    const allocations = vi.spyOn(Buffer, 'allocUnsafeSlow');
    try {
      churn(3000);
      // ~30 buffers filled, none allocated: the emptied one was written again each time.
      expect(allocations).not.toHaveBeenCalled();
    } finally {
      allocations.mockRestore();
    }
    for (const h of live) expect(arena.open(h).blob).toBe(blob);
    expect(arena.bytes).toBeLessThanOrEqual(3 << 20);
  });

  it('stays usable when a new buffer cannot be allocated', () => {
    const arena = new RunArena();
    const blob = 'x'.repeat(200_000);
    const first = arena.put(sealed({ blob, meta: Uint32Array.of(2, 0, 0, blob.length) }))!;
    const spy = vi.spyOn(Buffer, 'allocUnsafeSlow').mockImplementationOnce(() => {
      throw new RangeError('Array buffer allocation failed');
    });
    try {
      // Fills the current buffer until the next run needs a new one, which fails once.
      expect(() => {
        for (let i = 0; i < 10; i++) arena.put(sealed({ blob, meta: Uint32Array.of(2, 0, 0, blob.length) }));
      }).toThrow(RangeError);
    } finally {
      spy.mockRestore();
    }
    const next = arena.put(sealed({ blob, meta: Uint32Array.of(2, 0, 0, blob.length) }))!;
    expect(arena.open(next).blob).toBe(blob);
    expect(arena.open(first).blob).toBe(blob);
  });

  it('reads what listings filter on without the rest of the run', () => {
    const arena = new RunArena();
    const handle = arena.put(sealed({ run: { ...base, status: 'failed', workflow: 'w"x', conversation_id: 'c1' } }))!;
    expect(arena.summary(handle)).toEqual({ status: 'failed', workflow: 'w"x', conversation_id: 'c1' });
    expect(arena.summary(arena.put(sealed())!)).toEqual({ status: 'succeeded', workflow: 'echo', conversation_id: null });
  });
});
