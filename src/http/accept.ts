/**
 * Content negotiation for the routes that can answer either JSON or an SSE stream (`POST /runs`).
 */

/** One media range of an Accept header: `type/subtype` in lower case and its q (0–1). */
interface MediaRange {
  range: string;
  q: number;
}

/** A qvalue per RFC 9110 §12.4.2: `0`, `1`, or up to three decimals. */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/** The header's elements, split on commas outside quoted strings (a parameter may quote a comma). */
function elements(header: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const c = header.charCodeAt(i);
    if (quoted) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) quoted = false;
    } else if (c === 0x22) {
      quoted = true;
    } else if (c === 0x2c /* , */) {
      out.push(header.slice(start, i));
      start = i + 1;
    }
  }
  out.push(header.slice(start));
  return out;
}

/**
 * The header's media ranges with their q. An element that is not `type/subtype`, or whose q is
 * not a valid qvalue, is left out (as if the client had not sent it).
 */
function mediaRanges(header: string): MediaRange[] {
  const out: MediaRange[] = [];
  for (const element of elements(header)) {
    const [head = '', ...params] = element.split(';');
    const range = head.trim().toLowerCase();
    if (!/^[^\s/]+\/[^\s/]+$/.test(range)) continue;
    let q = 1;
    let valid = true;
    for (const param of params) {
      const eq = param.indexOf('=');
      if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue;
      const value = param.slice(eq + 1).trim();
      if (!QVALUE.test(value)) valid = false;
      else q = Number(value);
      // Parameters after q are accept extensions, not media type parameters: the first q counts.
      break;
    }
    if (valid) out.push({ range, q });
  }
  return out;
}

/** The q the most specific range that matches `application/json` gives it (0 when none does). */
function jsonQ(ranges: readonly MediaRange[]): number {
  for (const candidate of ['application/json', 'application/*', '*/*']) {
    const matching = ranges.filter((r) => r.range === candidate);
    if (matching.length > 0) return Math.max(...matching.map((r) => r.q));
  }
  return 0;
}

/**
 * True when the client asked for a Server-Sent Events answer rather than JSON. The rule:
 *
 * - `text/event-stream` must be listed by name (`text/*` and `*\/*` never ask for a stream: JSON is
 *   the default answer) with a q above 0 (the highest q when it is listed more than once);
 * - and that q must be at least the q JSON gets: that of the most specific range matching
 *   `application/json` (`application/json`, else `application/*`, else `*\/*`; 0 when none does).
 *   A tie goes to the stream: `text/event-stream, application/json` streams.
 *
 * Media types are compared case-insensitively, their parameters other than q are ignored, and an
 * element with a malformed q (not 0–1 with at most three decimals) counts as not sent.
 *
 * @example
 *   wantsEventStream('text/event-stream')                          // true
 *   wantsEventStream('text/event-stream;q=0, application/json')    // false: q=0 means "not this"
 *   wantsEventStream('application/json, text/event-stream;q=0.5')  // false: JSON is preferred
 *   wantsEventStream('*\/*')                                        // false
 */
export function wantsEventStream(accept: string | undefined): boolean {
  // The common cases cost one substring search: no header, or one that does not name the stream.
  if (accept === undefined || !accept.toLowerCase().includes('text/event-stream')) return false;
  const ranges = mediaRanges(accept);
  const sse = ranges.filter((r) => r.range === 'text/event-stream');
  if (sse.length === 0) return false;
  const q = Math.max(...sse.map((r) => r.q));
  return q > 0 && q >= jsonQ(ranges);
}
