/** A run id that is already taken (`RunStore.create`). */
export class RunExistsError extends Error {
  override readonly name = 'RunExistsError';
  constructor(readonly runId: string) {
    super(`Run ${runId} already exists`);
  }
}

/** Events whose ids do not continue the log: a second writer, or a lost write. */
export class EventIdConflictError extends Error {
  override readonly name = 'EventIdConflictError';
  constructor(
    readonly runId: string,
    readonly expected: number,
    readonly got: number,
  ) {
    super(`Run ${runId}: expected event ${expected}, got ${got}`);
  }
}

/** An append to a log that has its terminal event already, or no log at all. */
export class RunEndedError extends Error {
  override readonly name = 'RunEndedError';
  constructor(readonly runId: string) {
    super(`Run ${runId} has no open event log`);
  }
}

/** An append fenced off: a later attempt at executing the run has written already (`AppendOptions.attempt`). */
export class StaleWriterError extends Error {
  override readonly name = 'StaleWriterError';
  constructor(
    readonly runId: string,
    readonly attempt: number,
    readonly current: number,
  ) {
    super(`Run ${runId}: attempt ${attempt} is stale, attempt ${current} has written`);
  }
}
