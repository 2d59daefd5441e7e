let lastMs = 0;
let lastIso = new Date(0).toISOString();

/**
 * `new Date().toISOString()`, computed at most once per millisecond: a busy server stamps many
 * events within the same millisecond, and formatting the date is the costly part (DESIGN §8).
 */
export function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

let lastAtMs = 0;
let lastAtIso = lastIso;

/** `new Date(ms).toISOString()`, remembering the last answer (events of a run share milliseconds). */
export function isoAt(ms: number): string {
  if (ms !== lastAtMs) {
    lastAtMs = ms;
    lastAtIso = new Date(ms).toISOString();
  }
  return lastAtIso;
}
