import { jsonMember, jsonString, jsonStringInner } from '../store/json-text.js';
import { usageJson, type Usage } from '../store/run.js';
import type { StepEventData } from './step.js';

// The JSON text of the events every run writes, built without JSON.stringify's per-call cost
// (see json-text.ts), each identical to what `JSON.stringify` gives for the same object.

/**
 * `JSON.stringify(step)` for a step event without extra fields, member for member in the same
 * order. Undefined when it cannot be written (a cycle, a BigInt): the event log's own
 * JSON.stringify then throws where a failed append is handled.
 */
export function stepJson(step: StepEventData): string | undefined {
  try {
    let json = `{"step_id":"${jsonStringInner(step.step_id)}","parent_id":${step.parent_id === null ? 'null' : jsonString(step.parent_id)},"kind":"${jsonStringInner(step.kind)}","name":"${jsonStringInner(step.name)}"`;
    const ms = step.duration_ms;
    if (ms !== undefined) json += `,"duration_ms":${Number.isFinite(ms) ? ms : 'null'}`;
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

/** `JSON.stringify({output, usage})` of a succeeded run, with the common string output quoted directly. */
export function succeededJson(data: { output: unknown; usage: Usage }): string | undefined {
  const output = jsonMember(data.output);
  const usage = usageJson(data.usage);
  return output === undefined ? `{"usage":${usage}}` : `{"output":${output},"usage":${usage}}`;
}
