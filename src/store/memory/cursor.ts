import { RunwayError } from '../../core/errors.js';

/** A page cursor: the sequence number of the last run on the page, opaque to clients. */
export function encodeCursor(seq: number): string {
  return Buffer.from(`s:${seq}`).toString('base64url');
}

/** Refuses anything this server did not issue. */
export function decodeCursor(cursor: string): number {
  const match = /^s:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) {
    throw new RunwayError('invalid_request', 'cursor is not one this server issued', {
      issues: [{ field: 'cursor', path: [], message: 'Invalid cursor' }],
    });
  }
  return Number(match[1]);
}
