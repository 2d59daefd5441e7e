import { isTerminalEvent } from '../core/events.js';
import type { Run } from '../core/run.js';
import type { QueuePlace, RunJob, RunQueue } from '../queue/run-queue.js';
import type { Stores } from '../store/stores.js';
import type { Deadline, DeadlineQueue } from './deadline-queue.js';
import { INTERNAL, type RunRecorder } from './run-recorder.js';
import type { RunScope } from './run-scope.js';

export interface RemoteExecutionParts {
  scope: RunScope;
  recorder: RunRecorder;
  /** A shared queue's place: it has `handOver`. */
  place: QueuePlace;
  queue: RunQueue;
  job: RunJob;
  stores: Stores;
  deadlines: DeadlineQueue;
}

/**
 * A run admitted here and executed by a worker of the shared queue (DESIGN §6, `RUNWAY_ROLE=api`):
 * once `run.queued` is written the run is handed to the queue, and its end is read from its own
 * events (followed to the terminal event; the final Run read from the store), so blocking and
 * streaming callers are answered as for a run executing here. An abort of the run here (its client
 * left, a cancel) withdraws it from the queue and cancels it wherever it executes; a run still
 * queued after the queue's timeout is withdrawn and ends `queue_timeout`. Shutdown does not cancel
 * it: this process stops waiting (resolving to the run as the store has it) and the run goes on.
 * `handedOver` settles once the job is in the queue (or the run ended without it), so the caller
 * learns of the run only once the queue counts it; `done` never rejects.
 */
export function executeRemotely(parts: RemoteExecutionParts): { handedOver: Promise<void>; done: Promise<Run | undefined> } {
  let handed!: () => void;
  const handedOver = new Promise<void>((resolve) => (handed = resolve));
  const done = follow(parts, handed);
  void done.finally(handed);
  return { handedOver, done };
}

async function follow(parts: RemoteExecutionParts, handed: () => void): Promise<Run | undefined> {
  const { scope, recorder, place, queue, job, stores } = parts;
  const runId = job.runId;
  await recorder.flushed();
  // `run.queued` could not be written: the run fails here, as a run executing here would.
  if (recorder.writeFailure !== undefined) {
    place.cancel();
    return recorder.finish({ status: 'failed', error: INTERNAL }, scope.usage).catch(() => undefined);
  }
  const withdraw = queue.withdraw?.bind(queue);
  if (withdraw === undefined) throw new Error('A shared queue needs withdraw()');
  const detached = new AbortController();
  let deadline: Deadline | undefined;
  let stop = (): void => {};
  try {
    if (scope.abortCause === undefined) {
      try {
        await place.handOver!(job);
      } catch (err) {
        scope.log.error({ err }, 'run could not be queued');
        await withdraw(runId, { status: 'failed', error: INTERNAL });
      }
    } else {
      // Aborted before it was handed over: it never goes on the queue (withdrawn below).
      place.cancel();
    }
    handed();
    stop = scope.onAbort(() => {
      const cause = scope.abortCause!;
      if (cause === 'shutdown') detached.abort();
      else if (cause !== 'timeout' && cause !== 'store_failed') {
        withdraw(runId, { status: 'cancelled', reason: cause }).catch((err: unknown) => scope.log.warn({ err }, 'run could not be withdrawn'));
      }
    });
    const timeoutMs = place.queueTimeoutMs;
    if (timeoutMs !== undefined) {
      deadline = parts.deadlines.add(timeoutMs, () => {
        deadline = undefined;
        const error = { code: 'queue_timeout' as const, message: `No worker took the run within ${timeoutMs} ms` };
        withdraw(runId, { status: 'failed', error }).catch((err: unknown) => scope.log.warn({ err }, 'run could not be withdrawn'));
      });
    }
    for await (const ev of stores.events.read(runId, recorder.snapshot().last_event_id, { signal: detached.signal })) {
      if (ev.type === 'run.started') {
        parts.deadlines.cancel(deadline);
        deadline = undefined;
      }
      if (isTerminalEvent(ev.type)) break;
    }
    return await stores.runs.get(runId);
  } catch (err) {
    scope.log.warn({ err }, 'the run could not be followed to its end');
    return undefined;
  } finally {
    stop();
    parts.deadlines.cancel(deadline);
  }
}
