import { isAbortError, RunwayError } from '../../core/errors.js';

/** How a failed LLM or tool step reports its error on the `*_END` event. */
export function describeFailure(err: unknown): { code?: string; message: string } {
  if (err instanceof RunwayError) return { code: err.code, message: err.message };
  if (isAbortError(err)) return { code: 'aborted', message: 'aborted with the run' };
  return { message: err instanceof Error ? err.message : String(err) };
}
