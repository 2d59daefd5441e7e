import { z } from 'zod';

/** A user id: safe to log and to use as a key (`X-User-Id`, the user of an API key). */
export const USER_ID_PATTERN = /^[A-Za-z0-9._@:+-]{1,128}$/;

/**
 * An API key: a Bearer token (RFC 6750 `b64token`: letters, digits, `- . _ ~ + /`, trailing `=`),
 * long enough not to be guessed. `:` `,` `#` and spaces cannot occur, so `key:user` lists split safely.
 */
const API_KEY_PATTERN = /^[A-Za-z0-9._~+/-]+=*$/;
const API_KEY_MIN = 16;
const API_KEY_MAX = 512;

export interface ApiKeyEntry {
  key: string;
  user: string;
}

/**
 * `key:user` entries separated by commas or new lines; `#` starts a comment; blank entries are
 * skipped. Issues name an entry by its position and user, never by its key (keys must not reach logs).
 */
function splitEntries(text: string): Array<{ key: string; user: string | undefined }> {
  const out: Array<{ key: string; user: string | undefined }> = [];
  for (const line of text.split(/\r?\n/)) {
    const hash = line.indexOf('#');
    for (const item of (hash === -1 ? line : line.slice(0, hash)).split(',')) {
      const entry = item.trim();
      if (entry === '') continue;
      const colon = entry.indexOf(':');
      out.push(colon === -1 ? { key: entry, user: undefined } : { key: entry.slice(0, colon).trim(), user: entry.slice(colon + 1).trim() });
    }
  }
  return out;
}

/**
 * `auth.api_keys`: a `key:user,key:user` string (`RUNWAY_API_KEYS`, or the lines of
 * `RUNWAY_API_KEYS_FILE`) or a YAML list of `{key, user}`. Empty = auth off.
 */
export const ApiKeysSchema = z
  .union([z.string(), z.array(z.object({ key: z.string(), user: z.string() }).strict())])
  .transform((value, ctx): ApiKeyEntry[] => {
    const raw = typeof value === 'string' ? splitEntries(value) : value;
    const seen = new Map<string, number>();
    const entries: ApiKeyEntry[] = [];
    raw.forEach(({ key, user }, i) => {
      const n = i + 1;
      const fail = (message: string) => ctx.issues.push({ code: 'custom', message: `entry ${n}: ${message}`, input: n });
      if (user === undefined) return fail('expected key:user');
      if (!USER_ID_PATTERN.test(user)) return fail(`user ${JSON.stringify(user.slice(0, 140))} must be 1-128 letters, digits or . _ @ : + -`);
      if (key.length < API_KEY_MIN || key.length > API_KEY_MAX || !API_KEY_PATTERN.test(key)) {
        return fail(
          `the key of user "${user}" must be ${API_KEY_MIN}-${API_KEY_MAX} characters of A-Z a-z 0-9 - . _ ~ + / (then = only), e.g. from \`openssl rand -hex 24\``,
        );
      }
      const first = seen.get(key);
      if (first !== undefined) return fail(`the key of user "${user}" is the same as entry ${first}'s`);
      seen.set(key, n);
      entries.push({ key, user });
    });
    return entries;
  });

/** An allowed browser origin: `*`, or `scheme://host[:port]` exactly as browsers send `Origin`. */
function isOrigin(value: string): boolean {
  if (value === '*') return true;
  // Browsers send exact origins; `*.example.com` patterns would never match one.
  if (value.includes('*')) return false;
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === value;
  } catch {
    return false;
  }
}

/** `cors.origins`: a comma list (`RUNWAY_CORS_ORIGINS`) or a YAML list. Empty = CORS off. */
export const CorsOriginsSchema = z
  .union([z.string(), z.array(z.string())])
  .transform((value, ctx): string[] => {
    const list = (typeof value === 'string' ? value.split(',') : value).map((o) => o.trim()).filter((o) => o !== '');
    for (const origin of list) {
      if (!isOrigin(origin)) {
        ctx.issues.push({
          code: 'custom',
          message: `${JSON.stringify(origin)} is not an origin: use * alone, or scheme://host[:port] without a path, trailing slash or wildcard`,
          input: origin,
        });
      }
    }
    return [...new Set(list)];
  });
