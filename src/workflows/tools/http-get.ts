import { request } from 'undici';
import { z } from 'zod';
import { intSetting } from '../../config/config-schema.js';
import type { RunContext } from '../../runtime/run-context.js';
import { defineTool, defineToolType, type Tool } from '../define-tool.js';
import { allowEntryProblem, UrlAllowList } from './url-allow-list.js';

export interface HttpGetOptions {
  /** URL prefixes and hosts that may be fetched (see UrlAllowList). */
  allow: readonly string[];
  /** Bytes of body returned at most; the rest is cut off and `truncated` set. Default 256 KiB. */
  maxBytes?: number;
  /** For the whole fetch, redirects included. Default 10 s. */
  timeoutMs?: number;
  /** Redirects followed at most, each one checked against the allow-list. Default 3. */
  maxRedirects?: number;
}

export interface HttpGetOutput {
  url: string;
  status: number;
  content_type: string | null;
  /** The body as text (null for binary content). */
  body: string | null;
  truncated: boolean;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const TEXTUAL = /^(text\/|application\/([\w.+-]*\+)?(json|xml)\b|application\/(javascript|x-www-form-urlencoded)\b)/i;

/** A fetch the tool refuses or that failed; its message goes back to the model as the tool's error. */
export class HttpGetError extends Error {
  override readonly name = 'HttpGetError';
}

/**
 * The `http_get` tool: fetches a URL, but only from the configured allow-list, with a size and a
 * time limit, following redirects only while they stay inside the list. Aborts with the run.
 *
 * @example
 *   const get = httpGetTool('web', { allow: ['https://en.wikipedia.org/wiki/'], maxBytes: 65536 })
 *   await get.run({ url: 'https://en.wikipedia.org/wiki/Node.js' }, ctx) // { status: 200, body: '<!DOCTYPE…', … }
 */
export function httpGetTool(name: string, options: HttpGetOptions): Tool<{ url: string }, HttpGetOutput> {
  const allow = new UrlAllowList(options.allow);
  const maxBytes = options.maxBytes ?? 256 * 1024;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxRedirects = options.maxRedirects ?? 3;
  return defineTool({
    name,
    description:
      `Fetches a web page or API response with HTTP GET and returns its status, content type and text ` +
      `(at most ${maxBytes} bytes). Only these URLs may be fetched: ${options.allow.join(', ')}.`,
    input: z.object({ url: z.string().max(4096).describe('The absolute http(s) URL to fetch') }),
    async run({ url }, ctx: RunContext) {
      let target = parseUrl(url);
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = AbortSignal.any([ctx.signal, timeout]);
      try {
        for (let redirects = 0; ; redirects++) {
          if (!allow.allows(target)) {
            throw new HttpGetError(
              `${redirects === 0 ? '' : 'redirected to '}${target.href} is not allowed; allowed: ${options.allow.join(', ')}`,
            );
          }
          const res = await request(target, {
            method: 'GET',
            signal,
            headers: { accept: 'text/*, application/json;q=0.9, */*;q=0.5', 'user-agent': 'runway-http-get/1' },
          });
          const location = header(res.headers.location);
          if (REDIRECTS.has(res.statusCode) && location !== undefined) {
            await res.body.dump();
            if (redirects >= maxRedirects) throw new HttpGetError(`too many redirects (more than ${maxRedirects})`);
            target = parseUrl(location, target);
            continue;
          }
          const contentType = header(res.headers['content-type']) ?? null;
          if (contentType !== null && !TEXTUAL.test(contentType)) {
            await res.body.dump();
            return { url: target.href, status: res.statusCode, content_type: contentType, body: null, truncated: false };
          }
          const { text, truncated } = await readText(res.body, maxBytes);
          return { url: target.href, status: res.statusCode, content_type: contentType, body: text, truncated };
        }
      } catch (err) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        if (timeout.aborted) throw new HttpGetError(`no complete answer from ${target.host} within ${timeoutMs} ms`);
        if (err instanceof HttpGetError) throw err;
        throw new HttpGetError(`fetching ${target.href} failed: ${(err as Error).message}`);
      }
    },
  });
}

function parseUrl(text: string, base?: URL): URL {
  try {
    return new URL(text, base);
  } catch {
    throw new HttpGetError(`${JSON.stringify(text)} is not a valid absolute URL`);
  }
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Reads at most `maxBytes`; a longer body is cut (the connection is dropped, not drained). */
async function readText(body: AsyncIterable<Buffer> & { destroy(): unknown }, maxBytes: number): Promise<{ text: string; truncated: boolean }> {
  const parts: Buffer[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of body) {
    parts.push(chunk);
    size += chunk.length;
    if (size > maxBytes) {
      truncated = true;
      body.destroy();
      break;
    }
  }
  // A character cut in half at the limit decodes to U+FFFD; the model can live with that.
  return { text: new TextDecoder().decode(Buffer.concat(parts).subarray(0, maxBytes)), truncated };
}

/** Lets the config say `web: {type: http_get, allow: [https://api.example.com/], max_bytes: 65536}`. */
export const httpGetToolType = defineToolType({
  type: 'http_get',
  configSchema: z
    .object({
      type: z.literal('http_get'),
      allow: z
        .array(
          z.string().superRefine((entry, ctx) => {
            const problem = allowEntryProblem(entry);
            if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
          }),
        )
        .min(1, 'list at least one URL prefix or host the tool may fetch'),
      max_bytes: intSetting(1, 16 * 1024 * 1024).default(256 * 1024),
      timeout_ms: intSetting(1, 600_000).default(10_000),
      max_redirects: intSetting(0, 20).default(3),
    })
    .strict(),
  create: (config, name) =>
    httpGetTool(name, {
      allow: config.allow,
      maxBytes: config.max_bytes,
      timeoutMs: config.timeout_ms,
      maxRedirects: config.max_redirects,
    }),
});
