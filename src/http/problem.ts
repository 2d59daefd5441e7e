import { ERROR_CODES, type ErrorCode, type FieldError } from '../core/errors.js';

/** An RFC 9457 problem document, as every error response of Runway carries it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  errors?: FieldError[];
  run_id?: string;
}

export function problem(code: ErrorCode, detail: string, extra: { errors?: FieldError[]; runId?: string } = {}): Problem {
  const { status, title } = ERROR_CODES[code];
  const body: Problem = { type: `urn:runway:problem:${code}`, title, status, detail, code };
  if (extra.errors && extra.errors.length > 0) body.errors = extra.errors;
  if (extra.runId) body.run_id = extra.runId;
  return body;
}
