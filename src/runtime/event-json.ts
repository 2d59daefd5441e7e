import { jsonMember, jsonString, jsonStringInner } from '../store/json-text.js';
import { usageJson, type Usage } from '../store/run.js';
import type { StepEventData } from './step.js';

// The JSON text of the events every run writes, built without JSON.stringify's per-call cost
// (see json-text.ts), each identical to what `JSON.stringify` gives for the same object.

/** The JSON of the members a step's START and END share: written once per step. */
export interface StepText {
  /** `"step_id":…,"parent_id":…` */
  ids: string;
  /** The step's name, quoted. */
  name: string;
}

/**
 * `StepText` of a step; undefined when its members cannot be written this way (untyped code passed
 * a non-string id or name), and `stepJson` then gives up as it would without it.
 */
export function stepText(stepId: string, parentId: string | null, name: string): StepText | undefined {
  try {
    return { ids: `"step_id":"${jsonStringInner(stepId)}","parent_id":${parentId === null ? 'null' : jsonString(parentId)}`, name: jsonString(name) };
  } catch {
    return undefined;
  }
}

/**
 * `JSON.stringify(step)` for a step event without extra fields, member for member in the same
 * order. `shared` is `stepText(step.step_id, step.parent_id, step.name)` when the caller has it.
 * Undefined when it cannot be written (a cycle, a BigInt): the event log's own JSON.stringify then
 * throws where a failed append is handled.
 */
export function stepJson(step: StepEventData, shared?: StepText): string | undefined {
  try {
    const text = shared ?? stepText(step.step_id, step.parent_id, step.name);
    if (text === undefined) return undefined;
    let json = `{${text.ids},"kind":"${jsonStringInner(step.kind)}","name":${text.name}`;
    const ms = step.duration_ms;
    if (ms !== undefined) json += `,"duration_ms":${numberJson(ms)}`;
    const data = step.data;
    if (data !== undefined) {
      if (data.error !== undefined) json += `,"data":${JSON.stringify(data)}`;
      else {
        const value = jsonMember(data.input !== undefined ? data.input : data.output);
        json += value === undefined ? ',"data":{}' : `,"data":{"${data.input !== undefined ? 'input' : 'output'}":${value}}`;
      }
    }
    if (step.usage !== undefined) json += `,"usage":${JSON.stringify(step.usage)}`;
    return `${json}}`;
  } catch {
    return undefined;
  }
}

/**
 * A number as JSON.stringify writes it. Durations are rounded to thousandths, which V8 writes with
 * its general double-to-text routine (a runtime call); a whole number of thousandths below 2^40
 * has exactly one shortest form, the decimal of its digits, written here from integers instead.
 */
export function numberJson(n: number): string {
  const thousandths = Math.round(n * 1000);
  if (thousandths / 1000 !== n || thousandths < 0 || thousandths >= 2 ** 40 || Object.is(n, -0)) return Number.isFinite(n) ? `${n}` : 'null';
  const whole = Math.floor(thousandths / 1000);
  const frac = thousandths - whole * 1000;
  if (frac === 0) return `${whole}`;
  if (frac % 100 === 0) return `${whole}.${frac / 100}`;
  if (frac % 10 === 0) return `${whole}.${frac < 100 ? '0' : ''}${frac / 10}`;
  return `${whole}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`;
}

/** `JSON.stringify({output, usage})` of a succeeded run, with the common string output quoted directly. */
export function succeededJson(data: { output: unknown; usage: Usage }): string | undefined {
  const output = jsonMember(data.output);
  const usage = usageJson(data.usage);
  return output === undefined ? `{"usage":${usage}}` : `{"output":${output},"usage":${usage}}`;
}
