import { terminalEventType } from '../core/events.js';
import type { RunStatus } from '../core/run.js';
import type { EventLog } from '../store/event-log.js';
import type { RunStore } from '../store/run-store.js';
import { EventIdConflictError, RunEndedError } from '../store/store-errors.js';
import type { QueuedEnd } from './run-queue.js';

const TRIES = 5;

/**
 * Ends a run that nobody is executing (cancelled or timed out while queued, or one whose worker
 * was lost) without a RunRecorder: a compare-and-set of its final status from one of `expect`,
 * then its terminal event. Resolves false when the run was not in one of `expect` (somebody else
 * moved it, and its end is theirs). The status is written first, as a recorder does: from then on
 * nobody else can end the run, and the terminal event follows, its id taken from the log (an event
 * still in flight when the status was read moves it on; the first terminal event wins).
 *
 * @example
 *   await endUnstartedRun({ runs, events }, runId, ['queued'], { status: 'cancelled', reason: 'user' })
 */
export async function endUnstartedRun(
  stores: { runs: RunStore; events: EventLog },
  runId: string,
  expect: readonly RunStatus[],
  end: QueuedEnd,
  attempt?: number,
): Promise<boolean> {
  const run = await stores.runs.get(runId);
  if (run === undefined || !expect.includes(run.status)) return false;
  const time = new Date().toISOString();
  let id = run.last_event_id + 1;
  const patch = { status: end.status, output: null, error: end.status === 'failed' ? end.error : null, finished_at: time, last_event_id: id };
  if (!(await stores.runs.update(runId, patch, [run.status]))) return false;
  const data = JSON.stringify(end.status === 'failed' ? { error: end.error } : { reason: end.reason });
  for (let tries = 1; ; tries++) {
    try {
      await stores.events.append(runId, [{ id, type: terminalEventType(end.status), time, data }], attempt === undefined ? {} : { attempt });
      return true;
    } catch (err) {
      // Another terminal event is in: the run has its one end.
      if (err instanceof RunEndedError) return true;
      if (tries >= TRIES) throw err;
      if (err instanceof EventIdConflictError) id = err.expected;
      else await new Promise((resolve) => setTimeout(resolve, 10 * 4 ** tries));
    }
  }
}
