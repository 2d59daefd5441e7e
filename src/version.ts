import { readFileSync } from 'node:fs';

/** Runway's version, from its package.json (found from here in the sources and in the build). */
function packageVersion(): string {
  for (const up of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'runway' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there: try the next
    }
  }
  return '0.0.0';
}

export const RUNWAY_VERSION = packageVersion();
