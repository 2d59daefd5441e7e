import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load-config.js';

describe('RUNWAY_ROLE', () => {
  it('defaults to all, and api or worker need a shared store: on memory boot fails naming the key', () => {
    expect(loadConfig({}).role).toBe('all');
    expect(loadConfig({ RUNWAY_ROLE: 'api', RUNWAY_STORE: 'redis://localhost:6379' }).role).toBe('api');
    expect(() => loadConfig({ RUNWAY_ROLE: 'worker' })).toThrow(ConfigError);
    expect(() => loadConfig({ RUNWAY_ROLE: 'worker' })).toThrow(/role: "worker" needs a shared store.*\(from RUNWAY_ROLE="worker"\)/s);
    expect(() => loadConfig({ RUNWAY_ROLE: 'everything', RUNWAY_STORE: 'redis://localhost:6379' })).toThrow(/role:.*RUNWAY_ROLE/s);
  });
});
