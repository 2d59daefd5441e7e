/** How deep client JSON may nest (DESIGN §2): deeper is refused, so no later read can overflow a stack. */
export const MAX_JSON_DEPTH = 64;

/**
 * The path to the first value nested deeper than `max` levels inside `value`, or undefined when it
 * nests no deeper. Iterative: a value nested a million levels deep cannot overflow the stack here.
 *
 * @example
 *   tooDeep({ a: { b: 1 } }, 1)   // ['a']
 */
export function tooDeep(value: unknown, max = MAX_JSON_DEPTH): PropertyKey[] | undefined {
  const stack: [unknown, number, PropertyKey[]][] = [[value, 0, []]];
  while (stack.length > 0) {
    const [v, depth, path] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= max) return path;
    for (const [k, child] of Object.entries(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1, path.length < 8 ? [...path, k] : path]);
    }
  }
  return undefined;
}
