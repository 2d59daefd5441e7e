import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RunwayError } from '../core/errors.js';
import type { LingeringClose } from './lingering-close.js';

/**
 * Client JSON nests at most this deep (DESIGN §2): the root value is level 1, so
 * `{"metadata": {"a": []}}` is three levels. Deeper documents are refused before `JSON.parse`:
 * one nested thousands of levels deep would parse, then overflow the stack of everything that
 * walks it (the response serializer, the store's writers), failing later reads of the runs too.
 */
export const MAX_JSON_DEPTH = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/** The index of the quote that closes the string opening at `open` (`text.length` when none does). */
function stringEnd(text: string, open: number): number {
  // indexOf, not a loop over every character: most of a body is the text inside its strings.
  for (let quote = text.indexOf('"', open + 1); quote !== -1; quote = text.indexOf('"', quote + 1)) {
    // Escaped when an odd number of backslashes precede it.
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote;
  }
  return text.length;
}

/** One JSON Pointer reference token (RFC 6901): `~` and `/` escaped. */
function pointerToken(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * Where the JSON `text` nests deeper than `maxDepth`: the JSON Pointer of the root's member that
 * holds the too-deep part (`/metadata`, or `/3` in a root array), `/` when there is none to name.
 * Undefined when it does not. A single pass over the raw text, without recursion: brackets inside
 * strings (escaped quotes included) do not count. The text need not be valid JSON; `JSON.parse`
 * judges that afterwards.
 *
 * @example
 *   excessNesting('{"a":1,"metadata":[[[1]]]}', 3)   // '/metadata'
 *   excessNesting('{"a":"[[[[[["}', 3)               // undefined
 */
export function excessNesting(text: string, maxDepth: number): string | undefined {
  // Nesting deeper than maxDepth takes more than maxDepth opening brackets.
  if (text.length <= maxDepth) return undefined;
  let depth = 0;
  let rootIsArray = false;
  let expectingKey = false;
  let keyFrom = -1;
  let keyTo = -1;
  let index = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (depth === 1 && expectingKey) {
        keyFrom = i;
        keyTo = end;
        expectingKey = false;
      }
      i = end;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth++;
      if (depth === 1) {
        rootIsArray = c === OPEN_ARRAY;
        expectingKey = !rootIsArray;
      } else if (depth > maxDepth) {
        if (rootIsArray) return `/${index}`;
        return keyFrom === -1 ? '/' : `/${pointerToken(decodeKey(text.slice(keyFrom, keyTo + 1)))}`;
      }
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      // More closing brackets than opening ones: not JSON, and JSON.parse stops there, before any
      // nesting that follows.
      if (--depth < 0) return undefined;
    } else if (c === COMMA && depth === 1) {
      if (rootIsArray) index++;
      else expectingKey = true;
    }
  }
  return undefined;
}

/** A key as its raw JSON string literal, decoded (as it is, unquoted, when it is not a valid literal). */
function decodeKey(literal: string): string {
  try {
    return JSON.parse(literal) as string;
  } catch {
    return literal.replace(/^"|"$/g, '');
  }
}

/** A key refused anywhere in client JSON, and the pointer of the first one found. */
export interface ForbiddenKey {
  key: '__proto__' | 'constructor';
  pointer: string;
}

/**
 * The first key of a parsed body that could poison a prototype once the value is merged into
 * another object: `__proto__` anywhere, and `constructor` holding an object with a `prototype`
 * (a `constructor` key with any other value is ordinary data). Iterative: no stack to overflow.
 */
export function forbiddenKey(value: unknown): ForbiddenKey | undefined {
  const stack: Array<[node: unknown, pointer: string]> = [[value, '']];
  while (stack.length > 0) {
    const [node, pointer] = stack.pop()!;
    if (typeof node !== 'object' || node === null) continue;
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) stack.push([node[i], `${pointer}/${i}`]);
      continue;
    }
    // JSON.parse makes `__proto__` an own data property: Object.keys lists it, reading it is safe.
    for (const key of Object.keys(node)) {
      const child = (node as Record<string, unknown>)[key];
      const at = `${pointer}/${pointerToken(key)}`;
      if (key === '__proto__') return { key, pointer: at };
      if (key === 'constructor' && typeof child === 'object' && child !== null && Object.hasOwn(child, 'prototype')) {
        return { key, pointer: at };
      }
      stack.push([child, at]);
    }
  }
  return undefined;
}

/**
 * True when `text` may hold a forbidden key: it names one literally, or uses a `\u` escape (which
 * could spell one). Most bodies do neither, and skip the walk of `forbiddenKey`.
 */
function mayHoldForbiddenKey(text: string): boolean {
  return text.includes('__proto__') || text.includes('constructor') || text.includes('\\u');
}

/**
 * Parses a JSON body's text: bounded in nesting depth, and refusing prototype-poisoning keys, each
 * with a 400 that says what was refused and where.
 */
export function parseJsonBody(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  // A UTF-8 byte order mark is not JSON, but some clients send one.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.length === 0) {
    throw new RunwayError('invalid_request', "Body cannot be empty when content-type is set to 'application/json'");
  }
  const deep = excessNesting(text, maxDepth);
  if (deep !== undefined) {
    const message = `Nested deeper than ${maxDepth} levels`;
    throw new RunwayError('invalid_request', `The request body is nested deeper than ${maxDepth} levels`, {
      errors: [{ in: 'body', pointer: deep, message }],
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new RunwayError('invalid_request', `Body is not valid JSON: ${(err as Error).message}`);
  }
  const bad = mayHoldForbiddenKey(text) ? forbiddenKey(value) : undefined;
  if (bad !== undefined) {
    const message =
      bad.key === '__proto__' ? 'Keys named "__proto__" are not allowed' : 'A "constructor" key holding a "prototype" key is not allowed';
    throw new RunwayError('invalid_request', `${message} in the request body`, { errors: [{ in: 'body', pointer: bad.pointer, message }] });
  }
  return value;
}

/** True for no content coding at all: an absent header, an empty one, or only `identity`. */
function isIdentity(encoding: string | undefined): boolean {
  if (encoding === undefined) return true;
  return encoding.split(',').every((coding) => {
    const c = coding.trim().toLowerCase();
    return c === '' || c === 'identity';
  });
}

type Done = (err: Error | null, body?: unknown) => void;

/**
 * Reads a JSON body off `payload` (the raw request, or what a preParsing hook made of it) with the
 * route's body limit, then parses it with `parseJsonBody`. A body that will not be read to its end
 * (declared or found too large, or compressed) is refused at once, and its connection lingers
 * (LingeringClose) so the client still gets the answer.
 */
function readJsonBody(request: FastifyRequest, payload: IncomingMessage, lingering: LingeringClose, done: Done): void {
  const refuse = (error: RunwayError): void => {
    lingering.afterAnswer(request.raw);
    done(error);
  };
  const encoding = request.headers['content-encoding'];
  if (!isIdentity(encoding)) {
    const message = `Content-Encoding ${JSON.stringify(encoding)} is not supported`;
    refuse(
      new RunwayError('unsupported_media_type', `${message}: send the JSON body uncompressed`, {
        errors: [{ in: 'headers', pointer: '/content-encoding', message }],
      }),
    );
    return;
  }
  const limit = request.routeOptions.bodyLimit;
  const tooLarge = () => new RunwayError('payload_too_large', `The request body is larger than the server accepts (${limit} bytes)`);
  const header = request.headers['content-length'];
  const declared = header === undefined ? undefined : Number(header);
  if (declared !== undefined && declared > limit) {
    refuse(tooLarge());
    return;
  }

  const chunks: Buffer[] = [];
  let received = 0;
  const stop = (): void => {
    payload.off('data', onData);
    payload.off('end', onEnd);
    payload.off('error', onError);
  };
  function onData(chunk: Buffer | string): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    received += buf.length;
    if (received > limit) {
      stop();
      refuse(tooLarge());
      return;
    }
    chunks.push(buf);
  }
  function onEnd(): void {
    stop();
    if (declared !== undefined && !Number.isNaN(declared) && received !== declared) {
      done(new RunwayError('invalid_request', 'The request body size does not match its Content-Length'));
      return;
    }
    let value: unknown;
    try {
      value = parseJsonBody(Buffer.concat(chunks, received).toString('utf8'));
    } catch (err) {
      done(err as Error);
      return;
    }
    done(null, value);
  }
  function onError(err: Error & { statusCode?: number }): void {
    stop();
    // The client went away or sent a broken body: its fault, whatever the stream says.
    if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400;
    done(err);
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
  payload.resume();
}

/**
 * Replaces Fastify's `application/json` parser, for every route: `readJsonBody` above. Fastify
 * answers a parser's error through the error handler, with `Connection: close`.
 */
export function installJsonBodyParser(app: FastifyInstance, lingering: LingeringClose): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', (request, payload, done) => {
    readJsonBody(request, payload, lingering, done);
  });
}
