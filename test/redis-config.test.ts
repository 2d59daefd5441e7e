import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load-config.js';

// The settings of the Redis store: RUNWAY_STORE's Redis forms and RUNWAY_REDIS_PREFIX.

let dir: string;
let file: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'runway-redis-config-'));
  file = join(dir, 'runway.yaml');
  writeFileSync(file, '');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const load = (env: Record<string, string>) => loadConfig({ RUNWAY_CONFIG: file, ...env });

function refusal(env: Record<string, string>): string {
  try {
    load(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}

describe('Redis settings', () => {
  it('RUNWAY_STORE takes redis://, rediss:// and unix:// forms; the prefix defaults to runway: and RUNWAY_REDIS_PREFIX sets it', () => {
    for (const store of ['redis://localhost:6379', 'rediss://:pw@cache.example:6380/1', 'unix:///run/redis/redis.sock?db=2']) {
      expect(load({ RUNWAY_STORE: store }).store).toBe(store);
    }
    expect(load({}).redis.prefix).toBe('runway:');
    expect(load({ RUNWAY_REDIS_PREFIX: 'staging:' }).redis.prefix).toBe('staging:');
  });

  it('refuses a store that is neither memory nor Redis, and a prefix with braces (hash tags) or spaces, naming the key and the variable', () => {
    for (const store of ['postgres://db', 'redis:/localhost', 'unix:']) {
      expect(refusal({ RUNWAY_STORE: store })).toMatch(/store.*RUNWAY_STORE/);
    }
    for (const prefix of ['run{way}:', 'a b']) {
      expect(refusal({ RUNWAY_REDIS_PREFIX: prefix })).toMatch(/redis\.prefix.*RUNWAY_REDIS_PREFIX/);
    }
  });
});
