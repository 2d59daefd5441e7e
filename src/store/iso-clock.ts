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
