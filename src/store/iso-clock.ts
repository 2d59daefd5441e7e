/**
 * `new Date(ms).toISOString()`, remembering the last answer: a busy server formats the same
 * millisecond many times over, and formatting is the costly part (DESIGN §8).
 */
function lastIsoFormatter(): (ms: number) => string {
  let lastMs = 0;
  let lastIso = new Date(0).toISOString();
  return (ms) => {
    if (ms !== lastMs) {
      lastMs = ms;
      lastIso = new Date(ms).toISOString();
    }
    return lastIso;
  };
}

// Two memories, so stamping new events and replaying old ones do not evict each other's.
const stampNow = lastIsoFormatter();

/** The ISO time now, formatted at most once per millisecond. */
export function isoNow(): string {
  return stampNow(Date.now());
}

/** The ISO time of `ms` (events of a run replayed together share their milliseconds). */
export const isoAt = lastIsoFormatter();
