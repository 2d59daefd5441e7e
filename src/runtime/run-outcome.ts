import { RunwayError } from '../core/errors.js';
import { isTerminalStatus, type Run } from '../core/run.js';
import type { AbortCause } from './run-scope.js';
import { QUEUE_TIMEOUT_RETRY_AFTER_S, SHUTDOWN_RETRY_AFTER_S } from './session-manager.js';

/**
 * The error a finished run that did not succeed answers with, wherever a caller waited for it
 * (`POST /runs`, `/v1/chat/completions`): its own error code, `shutting_down` when shutdown
 * cancelled it, `conflict` for any other cancel. Carries the run id and, where a retry can
 * help, `Retry-After`.
 *
 * @example
 *   const run = await handle.result()
 *   if (run.status !== 'succeeded') throw runOutcomeError(run, handle.abortCause)
 */
export function runOutcomeError(run: Run, cause: AbortCause | undefined): RunwayError {
  if (run.status === 'failed' && run.error) {
    const retryAfterS = run.error.code === 'queue_timeout' ? QUEUE_TIMEOUT_RETRY_AFTER_S : undefined;
    return new RunwayError(run.error.code, run.error.message, { runId: run.id, ...(retryAfterS && { retryAfterS }) });
  }
  if (cause === 'shutdown') {
    // An API process that shuts down stops waiting for a run a worker executes: that run goes on.
    const message = isTerminalStatus(run.status)
      ? 'The run was cancelled because the server is shutting down'
      : `The server is shutting down; the run goes on: follow it at /runs/${run.id}`;
    return new RunwayError('shutting_down', message, {
      runId: run.id,
      retryAfterS: SHUTDOWN_RETRY_AFTER_S,
    });
  }
  return new RunwayError('conflict', 'The run was cancelled before it finished', { runId: run.id });
}
