import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeadlineQueue } from '../src/runtime/deadline-queue.js';

describe('DeadlineQueue', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  const queue = () => new DeadlineQueue(() => Date.now());

  it('fires each deadline once its time has passed, across durations, in the order they fall due', () => {
    const q = queue();
    const fired: string[] = [];
    q.add(30, () => fired.push('30'));
    q.add(10, () => fired.push('10a'));
    q.add(20, () => fired.push('20'));
    vi.advanceTimersByTime(5);
    q.add(10, () => fired.push('10b'));
    vi.advanceTimersByTime(4);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['10a']);
    vi.advanceTimersByTime(10);
    expect(fired).toEqual(['10a', '10b', '20']);
    vi.advanceTimersByTime(10);
    expect(fired).toEqual(['10a', '10b', '20', '30']);
    expect(q.pending).toBe(0);
    expect(q.held).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never fires a cancelled deadline, and cancelling twice or after firing changes nothing', () => {
    const q = queue();
    const fired: number[] = [];
    const a = q.add(10, () => fired.push(1));
    const b = q.add(10, () => fired.push(2));
    const c = q.add(10, () => fired.push(3));
    q.cancel(b);
    q.cancel(b);
    expect(q.pending).toBe(2);
    vi.advanceTimersByTime(10);
    expect(fired).toEqual([1, 3]);
    q.cancel(a);
    q.cancel(c);
    q.cancel(undefined);
    expect(q.pending).toBe(0);
  });

  it('arms one timer, however many deadlines are pending', () => {
    const q = queue();
    for (let i = 0; i < 1000; i++) q.add(1000 + (i % 3), () => {});
    expect(vi.getTimerCount()).toBe(1);
    expect(q.pending).toBe(1000);
  });

  it('keeps memory bounded when a long run at the front holds thousands that already ended', () => {
    const q = queue();
    const fired: string[] = [];
    q.add(60_000, () => fired.push('long'));
    for (let i = 0; i < 10_000; i++) q.cancel(q.add(60_000, () => fired.push('short')));
    expect(q.pending).toBe(1);
    // Ended deadlines behind the pending one are compacted away, not kept until it falls due.
    expect(q.held).toBeLessThan(2100);
    const late = q.add(60_000, () => fired.push('late'));
    vi.advanceTimersByTime(60_000);
    expect(fired).toEqual(['long', 'late']);
    q.cancel(late);
    expect(q.held).toBe(0);
  });

  it('serves a deadline added by a firing one, and a callback that throws does not stop the others', () => {
    const q = queue();
    const thrown: Array<() => void> = [];
    vi.stubGlobal('queueMicrotask', (fn: () => void) => thrown.push(fn));
    const fired: string[] = [];
    q.add(10, () => {
      fired.push('first');
      q.add(5, () => fired.push('added'));
      throw new Error('boom');
    });
    q.add(10, () => fired.push('second'));
    vi.advanceTimersByTime(10);
    expect(fired).toEqual(['first', 'second']);
    // The error is rethrown where an uncaught timer error would go.
    expect(thrown).toHaveLength(1);
    expect(() => thrown[0]!()).toThrow('boom');
    vi.advanceTimersByTime(5);
    expect(fired).toEqual(['first', 'second', 'added']);
  });

  it('keeps the process alive while a deadline is pending, and only then', () => {
    vi.useRealTimers();
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const q = new DeadlineQueue();
    const a = q.add(60_000, () => {});
    expect(timers()).toBe(before + 1);
    const b = q.add(60_000, () => {});
    q.cancel(a);
    expect(timers()).toBe(before + 1);
    // Still armed (for a cancelled deadline) but holding nothing up.
    q.cancel(b);
    expect(timers()).toBe(before);
    q.add(60_000, () => {});
    expect(timers()).toBe(before + 1);
    q.close();
    expect(timers()).toBe(before);
  });

  it('fires nothing after close', () => {
    const q = queue();
    const fired: number[] = [];
    q.add(10, () => fired.push(1));
    q.close();
    vi.advanceTimersByTime(100);
    expect(fired).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
