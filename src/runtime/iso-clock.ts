/**
 * The time as ISO 8601 text, formatted at most once per millisecond. Every event and most Run
 * fields carry such a stamp, and the runs of a busy process fall many to a millisecond:
 * formatting each one was ~5% of a run's CPU (BENCHMARKS.md). One per runtime, shared by its runs.
 *
 * @example
 *   const clock = new IsoClock()
 *   clock.now()   // '2026-12-04T20:25:01.123Z'
 */
export class IsoClock {
  private lastMs = -1;
  private lastIso = '';

  now(): string {
    const ms = Date.now();
    if (ms !== this.lastMs) {
      this.lastMs = ms;
      this.lastIso = new Date(ms).toISOString();
    }
    return this.lastIso;
  }
}
