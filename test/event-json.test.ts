import { describe, expect, it } from 'vitest';
import { randomId } from '../src/runtime/random-id.js';
import { numberJson, stepJson, stepText, succeededJson } from '../src/runtime/event-json.js';
import type { StepEventData } from '../src/runtime/step.js';
import { jsonMember, jsonString, jsonStringInner } from '../src/store/json-text.js';
import { splitWords } from '../src/workflows/echo-workflow.js';

// The run path writes event JSON by hand for speed; every text must be byte-identical to what
// JSON.stringify gives, or replayed events would differ from what clients parse elsewhere.

const long = 'word '.repeat(40);
const STRINGS = [
  '',
  'hello',
  'hello ',
  ' with spaces and punctuation: ,.;!?',
  'a"quote',
  'back\\slash',
  'line\nbreak',
  'carriage\rreturn',
  'tab\there',
  '\u0000',
  '\u001f',
  '\u007f',
  '\u2028\u2029',
  'é à ü',
  '日本語',
  '😀',
  '\ud800',
  '\udc00',
  'a\ud800b',
  '\udc00\ud800',
  '</script>',
  long,
  `${long}"`,
  `${long}\\`,
  `${long}\n`,
  `${long}\ud83d`,
  `${long}😀`,
  `${'x'.repeat(47)}"`,
  `${'x'.repeat(48)}"`,
];

describe('jsonString, jsonStringInner', () => {
  it.each(STRINGS.map((s) => [JSON.stringify(s), s]))('writes %s as JSON.stringify does', (_label, s) => {
    expect(jsonString(s)).toBe(JSON.stringify(s));
    // jsonStringInner is what goes between the quotes.
    expect(`"${jsonStringInner(s)}"`).toBe(JSON.stringify(s));
  });

  it('agrees with JSON.stringify on 5,000 random strings of arbitrary UTF-16 code units', () => {
    // A fixed-seed generator: a failure reproduces.
    let seed = 42;
    const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let n = 0; n < 5000; n++) {
      const length = next() % 80;
      let s = '';
      for (let i = 0; i < length; i++) {
        const pick = next() % 4;
        // Mostly ASCII, with controls, surrogates and the rest of the BMP mixed in.
        s += String.fromCharCode(pick === 0 ? next() % 0x10000 : pick === 1 ? 0xd800 + (next() % 0x800) : 0x20 + (next() % 0x60));
      }
      expect(jsonString(s)).toBe(JSON.stringify(s));
      expect(`"${jsonStringInner(s)}"`).toBe(JSON.stringify(s));
    }
  });

  it('escapes a string written right after a plain one of the same length (the last plain string is remembered)', () => {
    for (const length of [16, 47, 48, 200]) {
      const plain = 'p'.repeat(length);
      const variants = ['"', '\\', '\n', '\ud800'].map((c) => plain.slice(0, -1) + c);
      for (const other of variants) {
        expect(jsonString(plain)).toBe(JSON.stringify(plain));
        expect(jsonString(plain)).toBe(JSON.stringify(plain));
        expect(jsonString(other)).toBe(JSON.stringify(other));
        expect(jsonStringInner(other)).toBe(JSON.stringify(other).slice(1, -1));
      }
    }
  });
});

describe('jsonMember', () => {
  it.each([
    ['string', 'x"y'],
    ['number', 1.5],
    ['null', null],
    ['boolean', false],
    ['object', { a: [1, 'two', { three: null }] }],
    ['date', new Date(0)],
  ])('writes a %s as JSON.stringify does', (_label, value) => {
    expect(jsonMember(value)).toBe(JSON.stringify(value));
  });

  it('leaves out what JSON.stringify leaves out of an object', () => {
    expect(jsonMember(undefined)).toBeUndefined();
    expect(jsonMember(() => 1)).toBeUndefined();
    expect(jsonMember(Symbol('s'))).toBeUndefined();
  });

  it('throws what JSON.stringify throws', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(() => jsonMember(cycle)).toThrow(TypeError);
    expect(() => jsonMember(1n)).toThrow(TypeError);
  });
});

describe('stepJson', () => {
  // Members in the order the Session creates them: step_id, parent_id, kind, name, then the rest.
  const base = { step_id: 's1', parent_id: 's0' as string | null, kind: 'FUNCTION_START' as StepEventData['kind'], name: 'echo' };
  const steps: Array<[string, StepEventData]> = [
    ['a START without input', { ...base, kind: 'FUNCTION_START' }],
    ['the WORKFLOW START (no parent) with a string input', { ...base, step_id: 's0', parent_id: null, kind: 'WORKFLOW_START', data: { input: 'hi "there"\n' } }],
    ['a START with an object input', { ...base, kind: 'TOOL_START', name: 'calc"ulator', data: { input: { expression: '1+1', nested: [1, null] } } }],
    ['a START with a numeric input', { ...base, kind: 'TOOL_START', data: { input: 42 } }],
    ['a START whose input JSON leaves out', { ...base, kind: 'TOOL_START', data: { input: () => 1 } }],
    ['an END without data', { ...base, kind: 'FUNCTION_END', duration_ms: 0.125 }],
    ['an END with a string output', { ...base, kind: 'WORKFLOW_END', duration_ms: 12, data: { output: 'done 😀' } }],
    ['an END with an object output', { ...base, kind: 'TOOL_END', duration_ms: 3.5, data: { output: { result: 2 } } }],
    ['an END with an error', { ...base, kind: 'TOOL_END', duration_ms: 1, data: { error: { code: 'tool_error', message: 'bad "input"' } } }],
    ['an LLM END with usage', { ...base, kind: 'LLM_END', duration_ms: 7, data: { output: 'text' }, usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } }],
    ['an END with a non-finite duration', { ...base, kind: 'FUNCTION_END', duration_ms: Number.NaN }],
    ['a parent id that needs escaping', { ...base, parent_id: 'p"\\', kind: 'CUSTOM_START' }],
  ];

  it.each(steps)('writes %s as JSON.stringify does', (_label, step) => {
    expect(stepJson(step)).toBe(JSON.stringify(step));
    // With the ids and name written once for the step's START and END, as the Session does.
    expect(stepJson(step, stepText(step.step_id, step.parent_id, step.name))).toBe(JSON.stringify(step));
  });

  it('writes durations as JSON.stringify does: thousandths, whole numbers, and the values that are neither', () => {
    const durations = [0, 0.001, 0.01, 0.1, 0.023, 0.05, 0.12, 0.305, 1, 12.5, 999.999, 1000, 86_400_000.001, 2 ** 40 / 1000, 1e12, 1e21, 1 / 3, 1e-7, -1.5, -0, Number.NaN, Number.POSITIVE_INFINITY];
    for (let k = 0; k < 20_000; k++) durations.push(k / 1000, Math.round(Math.random() * 1e9) / 1000);
    for (const ms of durations) {
      expect(numberJson(ms)).toBe(JSON.stringify(ms));
      const step = { ...base, kind: 'FUNCTION_END' as const, duration_ms: ms };
      expect(stepJson(step)).toBe(JSON.stringify(step));
    }
  });

  it('gives up (undefined) on what JSON.stringify cannot write, so the append fails where failures are handled', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(stepJson({ ...base, kind: 'TOOL_START', data: { input: cycle } })).toBeUndefined();
    expect(stepJson({ ...base, kind: 'TOOL_END', duration_ms: 1, data: { output: 1n } })).toBeUndefined();
  });
});

describe('succeededJson', () => {
  const usage = { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 };
  it.each([
    ['a string output', { output: 'the "answer"\n', usage }],
    ['an object output', { output: { a: [1, 2] }, usage }],
    ['an undefined output', { output: undefined, usage }],
    ['a null output', { output: null, usage }],
    ['usage that is not all numbers', { output: 'x', usage: { ...usage, total_tokens: Number.POSITIVE_INFINITY } }],
  ])('writes %s as JSON.stringify does', (_label, data) => {
    expect(succeededJson(data)).toBe(JSON.stringify(data));
  });
});

describe('randomId', () => {
  it('gives version-4 UUIDs, all distinct, across many refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const id = randomId();
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      seen.add(id);
    }
    expect(seen.size).toBe(5000);
  });

  it('puts random digits in every free position (each of the 16 shows up in each)', () => {
    const digits = Array.from({ length: 36 }, () => new Set<string>());
    for (let i = 0; i < 3000; i++) [...randomId()].forEach((c, at) => digits[at]!.add(c));
    const fixed = new Map([[8, '-'], [13, '-'], [14, '4'], [18, '-'], [23, '-']]);
    digits.forEach((seen, at) => {
      if (fixed.has(at)) expect([...seen]).toEqual([fixed.get(at)]);
      else if (at === 19) expect([...seen].sort()).toEqual(['8', '9', 'a', 'b']);
      else expect(seen.size).toBe(16);
    });
  });
});

describe('splitWords (echo)', () => {
  const lookbehind = (text: string) => text.split(/(?<=\s)(?=\S)/).filter((piece) => piece !== '');
  it.each([
    '',
    'one',
    'hello from the benchmark, one word at a time',
    '  leading and trailing  ',
    'tabs\tand\nnew\r\nlines',
    'no\u00a0break\u2003em\u3000ideographic\ufeffbom',
    '\u2028line\u2029para',
    '😀 emoji 😀',
    '   ',
  ])('splits %j as the lookbehind regular expression does, and the pieces concatenate back', (text) => {
    expect(splitWords(text)).toEqual(lookbehind(text));
    expect(splitWords(text).join('')).toBe(text);
  });

  it('agrees with the regular expression on every code unit as a separator', () => {
    for (let c = 0; c < 0x10000; c++) {
      const text = `a${String.fromCharCode(c)}b`;
      expect(splitWords(text)).toEqual(lookbehind(text));
    }
  });
});

