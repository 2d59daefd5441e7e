import { describe, expect, it } from 'vitest';
import { runOutcomeError } from '../src/runtime/run-outcome.js';
import { makeRun } from './support/runtime-test-kit.js';

describe('runOutcomeError', () => {
  it('a run shutdown cancelled answers shutting_down saying it was cancelled', () => {
    const err = runOutcomeError(makeRun({ status: 'cancelled' }), 'shutdown');
    expect(err.code).toBe('shutting_down');
    expect(err.message).toMatch(/was cancelled/);
  });

  it('a run still executing elsewhere when its API process shuts down is not said to be cancelled', () => {
    const run = makeRun({ status: 'running' });
    const err = runOutcomeError(run, 'shutdown');
    expect(err.code).toBe('shutting_down');
    expect(err.message).not.toMatch(/cancel/);
    expect(err.message).toContain(`/runs/${run.id}`);
  });
});
