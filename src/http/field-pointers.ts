import type { FieldError, FieldIssue } from '../core/errors.js';
import { RunwayError } from '../core/errors.js';

/** Where each runtime argument came from in a request body, as a JSON pointer (`input` → `/input`). */
export type BodyFields = Readonly<Record<string, string>>;

function escape(token: PropertyKey): string {
  return String(token).replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The runtime's issues as field errors pointing into the request body (or another part of it). */
export function issuesToErrors(issues: readonly FieldIssue[], fields: BodyFields = {}, where: FieldError['in'] = 'body'): FieldError[] {
  return issues.map((issue) => ({
    in: where,
    pointer: (fields[issue.field] ?? `/${escape(issue.field)}`) + issue.path.map((p) => `/${escape(p)}`).join(''),
    message: issue.message,
  }));
}

/**
 * `err` with its issues' JSON pointers into this request, for a route to throw.
 *
 * @example
 *   try { run = await session.run(input) } catch (err) { throw withPointers(err, { workflow: '/model' }) }
 */
export function withPointers(err: unknown, fields: BodyFields, where: FieldError['in'] = 'body'): unknown {
  if (err instanceof RunwayError && err.issues !== undefined && err.errors === undefined) err.errors = issuesToErrors(err.issues, fields, where);
  return err;
}
