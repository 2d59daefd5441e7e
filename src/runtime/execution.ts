import type { StepHandle } from '../core/context.js';
import type { Run } from '../core/run.js';
import { isAbortError, RunwayError } from '../core/errors.js';
import type { QueuePlace, Permit } from '../queue/run-queue.js';
import type { Workflow } from '../workflows/workflow.js';
import type { Deadline, DeadlineQueue } from './deadline-queue.js';
import { levelEnabled } from './logger.js';
import { withRunContext } from './run-context.js';
import { INTERNAL, type Outcome, type RunRecorder } from './run-recorder.js';
import { RunAbortedError, type RunScope } from './run-scope.js';

export interface ExecutionParts {
  scope: RunScope;
  recorder: RunRecorder;
  workflow: Workflow;
  input: unknown;
  place: QueuePlace;
  timeoutMs: number;
  deadlines: DeadlineQueue;
}

/**
 * One run from its place in the queue to its terminal event, over the core transition table:
 * queued → running (a compare-and-set) → the workflow, raced against the run's abort → succeeded |
 * failed | cancelled (a compare-and-set, then the terminal event). The permit is released exactly
 * once, after the terminal event is written. Never rejects: every way out is an outcome.
 */
export async function execute(parts: ExecutionParts): Promise<Run | undefined> {
  const { scope, recorder } = parts;
  let permit: Permit | undefined;
  try {
    const outcome = await attempt(parts, (granted) => (permit = granted));
    return outcome === undefined ? undefined : await recorder.finish(outcome, scope.usage);
  } catch (err) {
    // Only a store that could not take the final status or terminal event gets here.
    scope.log.error({ err }, 'run could not be finished');
    return undefined;
  } finally {
    permit?.release();
  }
}

/** The try part of a run; undefined when somebody else moved it and owns its end. */
async function attempt(parts: ExecutionParts, onPermit: (permit: Permit) => void): Promise<Outcome | undefined> {
  const { scope, recorder, workflow, input } = parts;
  let root: StepHandle | undefined;
  let deadline: Deadline | undefined;
  try {
    onPermit(await parts.place.start((fn) => scope.onAbort(() => fn(new RunAbortedError(scope.abortCause!)))));
    if (scope.abortCause !== undefined) throw new RunAbortedError(scope.abortCause);
    if (!(await recorder.transition('running', { started_at: recorder.now() }))) return undefined;
    // Cancelled while the transition was being written: the workflow is never started.
    if (scope.abortCause !== undefined) throw new RunAbortedError(scope.abortCause);
    recorder.emit('run.started', undefined);
    deadline = parts.deadlines.add(parts.timeoutMs, () => scope.abort('timeout'));
    root = scope.startWorkflowStep(input);
    const returned = await untilAborted(scope, withRunContext(scope, () => workflow.run(input, scope)));
    if (scope.abortCause !== undefined) throw new RunAbortedError(scope.abortCause);
    // A workflow that returns nothing succeeded with no output: `null`, as the Run schema has it.
    const output = returned === undefined ? null : returned;
    root.end({ output });
    if (scope.conversation !== undefined) {
      // Only a run that succeeds adds to its conversation: every event written first, the last included.
      await recorder.flushed();
      if (recorder.writeFailure !== undefined) throw recorder.writeFailure;
      await scope.conversation.commit(scope.run_id);
    }
    return { status: 'succeeded', output };
  } catch (err) {
    const outcome = classify(scope, recorder, err);
    root?.end(outcome.status === 'failed' ? { error: outcome.error } : {});
    return outcome;
  } finally {
    parts.deadlines.cancel(deadline);
  }
}

/**
 * The workflow's result, unless the run aborts first: a workflow or tool that ignores its signal
 * is abandoned at abort time instead of holding the run (and its permit) open. An output returned
 * directly (nothing to wait for) is the result as it is.
 */
function untilAborted(scope: RunScope, returned: unknown): unknown {
  if (!isThenable(returned)) return returned;
  return new Promise((resolve, reject) => {
    // One microtask later: what the workflow does on its own abort (a tool's TOOL_END) is recorded first.
    const stop = scope.onAbort(() => queueMicrotask(() => reject(new RunAbortedError(scope.abortCause!))));
    Promise.resolve(returned).then(
      (value) => {
        stop();
        resolve(value);
      },
      (err: unknown) => {
        stop();
        reject(err);
      },
    );
  });
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

/** What ended a run that did not return: its failure, or its cancellation. */
function classify(scope: RunScope, recorder: RunRecorder, err: unknown): Outcome {
  const cause = scope.abortCause;
  if (recorder.writeFailure !== undefined) {
    // The recorder turns this into the failure it logged.
    return { status: 'failed', error: INTERNAL };
  }
  if (cause === 'timeout') return { status: 'failed', error: { code: 'run_timeout', message: 'The run exceeded its time limit' } };
  if (cause !== undefined && cause !== 'store_failed') {
    if (levelEnabled(scope.log, 'info')) scope.log.info({ reason: cause }, 'run cancelled');
    return { status: 'cancelled', reason: cause };
  }
  if (err instanceof RunwayError) {
    if (err.status >= 500) scope.log.warn({ err }, 'run failed');
    else scope.log.info({ code: err.code, message: err.message }, 'run failed');
    return { status: 'failed', error: { code: err.code, message: err.message } };
  }
  if (isAbortError(err)) scope.log.info({ err }, 'run failed: an operation was aborted');
  else scope.log.error({ err }, 'run failed with an unexpected error');
  return { status: 'failed', error: INTERNAL };
}
