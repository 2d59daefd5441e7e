/**
 * How long to wait before retry number `attempt` (0 for the first retry): exponential growth from
 * `baseMs`, capped at `maxMs`, with "equal jitter" — half the delay is fixed so a retry never
 * fires immediately, half is random so a fleet of clients does not retry in lockstep.
 *
 * @example
 *   backoffDelayMs(0, 500, 8000) // between 250 and 500
 *   backoffDelayMs(3, 500, 8000) // between 2000 and 4000
 */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * The wait a `Retry-After` header asks for, in ms: either delay-seconds (`"2"`) or an HTTP date.
 * Undefined when absent or unparseable, so the caller falls back to its own backoff. A date in the
 * past means "now" (0). Also reads `retry-after-ms`, which OpenAI sends with finer resolution.
 *
 * @example
 *   retryAfterMs({ 'retry-after': '3' }) // 3000
 *   retryAfterMs({ 'retry-after': 'Wed, 21 Oct 2026 07:28:00 GMT' }, Date.now()) // ms until then
 */
export function retryAfterMs(
  headers: Record<string, string | string[] | undefined>,
  now: number = Date.now(),
): number | undefined {
  const ms = first(headers['retry-after-ms']);
  if (ms !== undefined && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return Math.ceil(Number(ms));

  const value = first(headers['retry-after'])?.trim();
  if (value === undefined || value === '') return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  // Only strings that look like an HTTP date: Date.parse alone would accept "1.5" or "-3".
  if (!/[a-z]/i.test(value)) return undefined;
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
