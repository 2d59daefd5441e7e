/**
 * Which URLs a tool may fetch. Each entry is either
 * - a URL prefix, `https://api.example.com/v1/`: same scheme, host and port, and a path inside the
 *   prefix's path (segment-wise: `/v1/items` allows `/v1/items/3` and `/v1/items?x=1`, not `/v1/itemsX`), or
 * - a host, `example.com`, `example.com:8443` or `*.example.com` (subdomains only): http or https,
 *   any port unless one is given.
 * URLs with credentials (`user:pass@`) and schemes other than http(s) are never allowed.
 *
 * @example
 *   const allow = new UrlAllowList(['https://api.github.com/repos/', 'en.wikipedia.org'])
 *   allow.allows(new URL('https://en.wikipedia.org/wiki/Node.js'))  // true
 */
export class UrlAllowList {
  private readonly rules: Array<(url: URL) => boolean>;

  constructor(readonly entries: readonly string[]) {
    this.rules = entries.map(compile);
  }

  allows(url: URL): boolean {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    if (url.username !== '' || url.password !== '') return false;
    return this.rules.some((rule) => rule(url));
  }
}

/** Why an allow-list entry is unusable, or undefined when it is fine (for config validation). */
export function allowEntryProblem(entry: string): string | undefined {
  try {
    compile(entry);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

const HOST = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/i;
const IPV6_HOST = /^\[[0-9a-f:.]+\](:\d{1,5})?$/i;

function compile(entry: string): (url: URL) => boolean {
  if (entry.includes('://')) {
    let prefix: URL;
    try {
      prefix = new URL(entry);
    } catch {
      throw new Error(`"${entry}" is not a valid URL`);
    }
    if (prefix.protocol !== 'http:' && prefix.protocol !== 'https:') throw new Error(`"${entry}" must be http:// or https://`);
    if (prefix.username !== '' || prefix.password !== '') throw new Error(`"${entry}" must not contain credentials`);
    if (prefix.search !== '' || prefix.hash !== '') throw new Error(`"${entry}" must not contain a query or fragment`);
    const path = prefix.pathname;
    const under = path.endsWith('/') ? path : `${path}/`;
    return (url) =>
      url.protocol === prefix.protocol &&
      url.host === prefix.host &&
      (path === '/' || url.pathname === path || url.pathname.startsWith(under));
  }
  if (!HOST.test(entry) && !IPV6_HOST.test(entry)) {
    throw new Error(`"${entry}" is neither an http(s) URL prefix nor a host name (example.com, example.com:8443, *.example.com)`);
  }
  // `new URL` normalises the host (case, IDN, IPv4 forms) the same way as the URLs it is checked against.
  const wildcard = entry.startsWith('*.');
  const probe = new URL(`http://${wildcard ? entry.slice(2) : entry}`);
  const hostname = probe.hostname;
  const port = /:\d{1,5}$/.test(entry) ? entry.slice(entry.lastIndexOf(':') + 1) : undefined;
  return (url) => {
    if (port !== undefined && effectivePort(url) !== port) return false;
    return wildcard ? url.hostname.endsWith(`.${hostname}`) : url.hostname === hostname;
  };
}

function effectivePort(url: URL): string {
  return url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80';
}
