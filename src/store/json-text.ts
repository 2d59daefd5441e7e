/**
 * JSON text for the run path's commonest values, without `JSON.stringify`.
 *
 * On Node 20 every `JSON.stringify` call goes through V8's generic serializer (a C++ runtime call
 * with a string builder of its own): about 2,000 instructions even for a one-word string, and a
 * run of `echo` made ~25 such calls, a quarter of the runtime's instructions (measured with
 * callgrind, see BENCHMARKS.md). Strings with nothing to escape, the overwhelming case for token
 * deltas and step names, are quoted directly; anything else goes to `JSON.stringify`, so the
 * output is always exactly what `JSON.stringify` would give.
 */

/** Anything `JSON.stringify` escapes in a string: `"`, `\`, C0 controls, and surrogates (lone ones are escaped, pairs are not: let it decide). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * The JSON text of a string, identical to `JSON.stringify(s)`.
 *
 * @example
 *   jsonString('hi "you"')   // '"hi \\"you\\""'
 */
export function jsonString(s: string): string {
  return needsEscape(s) ? JSON.stringify(s) : `"${s}"`;
}

/**
 * What `jsonString(s)` writes between its quotes: `s` itself when nothing in it needs escaping,
 * the common case. For templates that write the quotes themselves (`"id":"${…}"`), which spares
 * the two concatenations of a quoted copy per string.
 *
 * @example
 *   `{"name":"${jsonStringInner(name)}"}`   // === JSON.stringify({ name })
 */
export function jsonStringInner(s: string): string {
  return needsEscape(s) ? JSON.stringify(s).slice(1, -1) : s;
}

/**
 * The last string (of 16 units or more) found to need no escaping. A run writes its input and
 * output several times (its WORKFLOW steps, its terminal event, the Run's JSON), often the very
 * same string one after the other (echo's output is its input): checked again, that is one
 * comparison instead of a scan.
 */
let lastPlain = '';

function needsEscape(s: string): boolean {
  const n = s.length;
  if (n >= 16 && s === lastPlain) return false;
  if (n < 48) {
    // A short loop beats a regular expression call on the short strings tokens usually are.
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return true;
    }
  } else if (NEEDS_ESCAPE.test(s)) {
    return true;
  }
  // Not remembered when huge: it would hold a megabyte input alive until the next one.
  if (n >= 16 && n <= 65_536) lastPlain = s;
  return false;
}

/**
 * The JSON text of a value as a member of an object: what `JSON.stringify({k: value})` puts after
 * `"k":`, or undefined when it would leave the member out (undefined, functions, symbols). Throws
 * what `JSON.stringify` throws (cycles, BigInt). (A `toJSON` method sees the key `""` here, not
 * `"k"`; none of the values a run records depends on it.)
 */
export function jsonMember(value: unknown): string | undefined {
  return typeof value === 'string' ? jsonString(value) : JSON.stringify(value);
}
