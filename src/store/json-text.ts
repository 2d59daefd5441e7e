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

function needsEscape(s: string): boolean {
  if (s.length < 48) {
    // A short loop beats a regular expression call on the short strings tokens usually are.
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return true;
    }
    return false;
  }
  return NEEDS_ESCAPE.test(s);
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
