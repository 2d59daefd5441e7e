import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { ConfigError, loadConfig } from '../src/config/load-config.js';
import type { RunwayConfig } from '../src/config/config-schema.js';

const ROOT = resolve(import.meta.dirname, '..');

let dir: string;
let fileCounter = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'runway-config-test-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a YAML config to a fresh temp file and returns its path. */
function yamlFile(text: string): string {
  const path = join(dir, `config-${++fileCounter}.yaml`);
  writeFileSync(path, text);
  return path;
}

/** loadConfig with a temp YAML file as RUNWAY_CONFIG. */
function load(text: string, env: Record<string, string | undefined> = {}): RunwayConfig {
  return loadConfig({ RUNWAY_CONFIG: yamlFile(text), ...env });
}

/** Runs `fn`, expects a ConfigError, returns its message. */
function configError(fn: () => unknown): string {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a ConfigError').toBeInstanceOf(ConfigError);
  return (thrown as ConfigError).message;
}

/** Boots the app as the server does (loadConfig, then buildApp); expects a ConfigError. */
async function bootError(env: Record<string, string | undefined>): Promise<string> {
  let thrown: unknown;
  try {
    const config = loadConfig(env);
    const app = await buildApp({ config, logger: false });
    await app.close();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected boot to fail with a ConfigError').toBeInstanceOf(ConfigError);
  return (thrown as ConfigError).message;
}

/** Runs `fn` with the process's working directory set to `cwd` (vitest runs files in forks). */
function inDir<T>(cwd: string, fn: () => T): T {
  const before = process.cwd();
  process.chdir(cwd);
  try {
    return fn();
  } finally {
    process.chdir(before);
  }
}

const DEFAULTS = {
  server: { port: 8080, host: '0.0.0.0', log_level: 'info' },
  runtime: {
    max_concurrency: 8,
    max_queue: 1000,
    queue_timeout_ms: 30_000,
    per_user_max_concurrency: 0,
    run_timeout_ms: 300_000,
    run_ttl_s: 3600,
  },
  store: 'memory',
};

describe('${VAR:-default} interpolation', () => {
  const text = [
    'server:',
    '  host: ${T_HOST:-127.0.0.9}',
    '  log_level: ${T_LEVEL:-warn}',
    'runtime:',
    '  max_queue: ${T_QUEUE:-7}',
    '  queue_timeout_ms: ${T_QTIMEOUT:-1500}',
    'workflows:',
    '  echo:',
    '    type: echo',
    '    description: "pre-${T_WORD:-mid}-post ${T_NODEFAULT}|"',
    '    token_delay_ms: ${T_DELAY:-3}',
  ].join('\n');

  it('unset variables take their default (numbers included); ${VAR} without one becomes empty', () => {
    const c = load(text);
    expect(c.server.host).toBe('127.0.0.9');
    expect(c.server.log_level).toBe('warn');
    expect(c.runtime.max_queue).toBe(7);
    expect(c.runtime.queue_timeout_ms).toBe(1500);
    expect(c.workflows.echo).toMatchObject({ type: 'echo', description: 'pre-mid-post |' });
    expect(Number(c.workflows.echo!.token_delay_ms)).toBe(3);
  });

  it('set variables win over the default, inside larger strings too', () => {
    const c = load(text, { T_HOST: '10.1.2.3', T_LEVEL: 'debug', T_QUEUE: '42', T_WORD: 'X', T_NODEFAULT: 'Y', T_DELAY: '0' });
    expect(c.server.host).toBe('10.1.2.3');
    expect(c.server.log_level).toBe('debug');
    expect(c.runtime.max_queue).toBe(42);
    expect(c.workflows.echo).toMatchObject({ description: 'pre-X-post Y|' });
    expect(Number(c.workflows.echo!.token_delay_ms)).toBe(0);
  });

  it('empty variables count as unset (":-" semantics): the default applies', () => {
    const c = load(text, { T_HOST: '', T_QUEUE: '', T_WORD: '' });
    expect(c.server.host).toBe('127.0.0.9');
    expect(c.runtime.max_queue).toBe(7);
    expect(c.workflows.echo).toMatchObject({ description: 'pre-mid-post |' });
  });

  it('a value from the environment cannot inject YAML', () => {
    const c = load(text, { T_WORD: 'x\nbogus: 1\nruntime: {max_queue: 1}', T_QUEUE: '9' });
    expect(c.workflows.echo!.description).toBe('pre-x\nbogus: 1\nruntime: {max_queue: 1}-post |');
    expect(c.runtime.max_queue).toBe(9);
    expect(c).not.toHaveProperty('bogus');
  });

  it('a key interpolated to nothing is an error naming the key, never a silent 0 (= unlimited)', () => {
    const unset = configError(() => load('runtime:\n  max_concurrency: ${T_UNSET_LIMIT}\n'));
    expect(unset).toContain('runtime.max_concurrency');
    const blank = configError(() => load('runtime:\n  max_queue: " "\n'));
    expect(blank).toContain('runtime.max_queue');
    const nothing = configError(() => load('runtime:\n  max_concurrency:\n'));
    expect(nothing).toContain('runtime.max_concurrency');
    const boolean = configError(() => load('runtime:\n  max_queue: true\n'));
    expect(boolean).toContain('runtime.max_queue');
  });
});

describe('environment overrides (DESIGN §5)', () => {
  const file = [
    'server: {port: 1111, host: 127.0.0.1, log_level: warn}',
    'runtime:',
    '  max_concurrency: 3',
    '  max_queue: 4',
    '  queue_timeout_ms: 5000',
    '  per_user_max_concurrency: 2',
    '  run_timeout_ms: 6000',
    '  run_ttl_s: 70',
    'default_workflow: echo',
    'workflows:',
    '  echo: {type: echo, token_delay_ms: 0}',
    '  other: {type: echo, token_delay_ms: 0}',
  ].join('\n');

  it('the file’s values apply when no variable is set', () => {
    const c = load(file);
    expect(c.server).toMatchObject({ port: 1111, host: '127.0.0.1', log_level: 'warn' });
    expect(c.runtime).toMatchObject({
      max_concurrency: 3,
      max_queue: 4,
      queue_timeout_ms: 5000,
      per_user_max_concurrency: 2,
      run_timeout_ms: 6000,
      run_ttl_s: 70,
    });
    expect(c.default_workflow).toBe('echo');
  });

  it('every §5 variable wins over the file', () => {
    const c = load(file, {
      PORT: '2222',
      HOST: '::1',
      LOG_LEVEL: 'error',
      RUNWAY_DEFAULT_WORKFLOW: 'other',
      RUNWAY_MAX_CONCURRENCY: '5',
      RUNWAY_MAX_QUEUE: '6',
      RUNWAY_QUEUE_TIMEOUT_MS: '700',
      RUNWAY_PER_USER_MAX_CONCURRENCY: '1',
      RUNWAY_RUN_TIMEOUT_MS: '800',
      RUNWAY_RUN_TTL_S: '90',
      RUNWAY_STORE: 'redis://localhost:6379',
    });
    expect(c.server).toMatchObject({ port: 2222, host: '::1', log_level: 'error' });
    expect(c.runtime).toMatchObject({
      max_concurrency: 5,
      max_queue: 6,
      queue_timeout_ms: 700,
      per_user_max_concurrency: 1,
      run_timeout_ms: 800,
      run_ttl_s: 90,
    });
    expect(c.default_workflow).toBe('other');
    expect(c.store).toBe('redis://localhost:6379');
  });

  it('0 is a real value (unlimited / no cap), while an empty variable means unset', () => {
    const zero = load(file, { RUNWAY_MAX_CONCURRENCY: '0', RUNWAY_PER_USER_MAX_CONCURRENCY: '0' });
    expect(zero.runtime).toMatchObject({ max_concurrency: 0, per_user_max_concurrency: 0 });
    const empty = load(file, { RUNWAY_MAX_CONCURRENCY: '', RUNWAY_MAX_QUEUE: '', PORT: '' });
    expect(empty.runtime).toMatchObject({ max_concurrency: 3, max_queue: 4 });
    expect(empty.server.port).toBe(1111);
  });

  it('overrides reach a booted app', async () => {
    const config = load('runtime: {max_concurrency: 4, max_queue: 4}\nworkflows:\n  slow: {type: echo, token_delay_ms: 60000}\n', {
      RUNWAY_MAX_CONCURRENCY: '1',
      RUNWAY_MAX_QUEUE: '0',
      RUNWAY_SHUTDOWN_GRACE_MS: '0',
      LOG_LEVEL: 'silent',
    });
    const app = await buildApp({ config });
    try {
      // With one slot and no queue, a second concurrent run is refused: the override is live.
      const first = await app.inject({ method: 'POST', url: '/runs', payload: { workflow: 'slow', input: 'a b', background: true } });
      expect(first.statusCode).toBe(202);
      expect(app.runtime.sessions.stats().inFlight).toBe(1);
      const second = await app.inject({ method: 'POST', url: '/runs', payload: { input: 'b', background: true } });
      expect(second.statusCode).toBe(429);
    } finally {
      await app.close();
    }
  });
});

describe('defaults and the shipped file', () => {
  let empty: string;
  beforeAll(() => {
    empty = join(dir, 'no-config-here');
    mkdirSync(empty, { recursive: true });
  });

  it('with no file at all: the built-in defaults of DESIGN §5, and the offline echo workflow', () => {
    const c = inDir(empty, () => loadConfig({}));
    expect(c).toMatchObject(DEFAULTS);
    expect(c.default_workflow).toBeUndefined();
    expect(c.workflows.echo).toMatchObject({ type: 'echo' });
  });

  it('with no file, environment overrides still apply', () => {
    const c = inDir(empty, () => loadConfig({ RUNWAY_MAX_CONCURRENCY: '2', PORT: '9999' }));
    expect(c.runtime.max_concurrency).toBe(2);
    expect(c.server.port).toBe(9999);
  });

  it('with no file, RUNWAY_ECHO_DELAY_MS sets the built-in echo’s delay as the shipped file does', () => {
    const c = inDir(empty, () => loadConfig({ RUNWAY_ECHO_DELAY_MS: '0' }));
    expect(Number(c.workflows.echo!.token_delay_ms)).toBe(0);
  });

  it('an empty file means defaults', () => {
    expect(load('')).toMatchObject(DEFAULTS);
    expect(load('# only a comment\n')).toMatchObject(DEFAULTS);
  });

  it('the shipped config/runway.yaml loads with an empty env and boots', async () => {
    const c = inDir(ROOT, () => loadConfig({}));
    expect(c).toMatchObject(DEFAULTS);
    expect(c.workflows.echo).toMatchObject({ type: 'echo' });
    expect(Number(c.workflows.echo!.token_delay_ms)).toBe(20);
    // Same result when it is named explicitly.
    expect(loadConfig({ RUNWAY_CONFIG: join(ROOT, 'config/runway.yaml') })).toEqual(c);
    // Its own ${VAR:-default}s follow the environment.
    const tuned = loadConfig({ RUNWAY_CONFIG: join(ROOT, 'config/runway.yaml'), RUNWAY_ECHO_DELAY_MS: '0' });
    expect(Number(tuned.workflows.echo!.token_delay_ms)).toBe(0);

    const app = await buildApp({ config: { ...c, server: { ...c.server, log_level: 'silent' } } });
    try {
      const res = await app.inject({ method: 'GET', url: '/workflows/echo' });
      expect(res.statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});

describe('bad values stop start-up with a ConfigError naming the key (and the variable)', () => {
  const envCases: Array<[name: string, value: string, key: string]> = [
    ['RUNWAY_MAX_CONCURRENCY', '-1', 'runtime.max_concurrency'],
    ['RUNWAY_MAX_CONCURRENCY', '1.5', 'runtime.max_concurrency'],
    ['RUNWAY_MAX_QUEUE', 'abc', 'runtime.max_queue'],
    ['RUNWAY_QUEUE_TIMEOUT_MS', '0', 'runtime.queue_timeout_ms'],
    ['RUNWAY_PER_USER_MAX_CONCURRENCY', '-3', 'runtime.per_user_max_concurrency'],
    ['RUNWAY_RUN_TIMEOUT_MS', 'forever', 'runtime.run_timeout_ms'],
    ['RUNWAY_RUN_TTL_S', '0', 'runtime.run_ttl_s'],
    ['PORT', '70000', 'server.port'],
    ['LOG_LEVEL', 'loud', 'server.log_level'],
    ['RUNWAY_STORE', 'postgres://db', 'store'],
  ];
  for (const [name, value, key] of envCases) {
    it(`${name}=${value} → names ${key} and ${name}`, () => {
      const message = configError(() => load('runtime: {max_concurrency: 2}\n', { [name]: value }));
      expect(message).toContain(key);
      expect(message).toContain(name);
    });
  }

  it('every bad key is reported at once', () => {
    const message = configError(() => load('', { RUNWAY_MAX_CONCURRENCY: '-1', RUNWAY_MAX_QUEUE: 'abc' }));
    expect(message).toContain('runtime.max_concurrency');
    expect(message).toContain('runtime.max_queue');
  });

  it('a bad value in the file names its key', () => {
    const message = configError(() => load('runtime:\n  max_queue: -5\n'));
    expect(message).toContain('runtime.max_queue');
  });

  it('an unknown top-level key, or a typo inside a section, is named', () => {
    const top = configError(() => load('bogus_section: {a: 1}\n'));
    expect(top).toContain('bogus_section');
    const typo = configError(() => load('runtime:\n  max_concurency: 2\n'));
    expect(typo).toContain('max_concurency');
    expect(typo).toContain('runtime');
  });

  it('an unknown workflow type fails boot naming workflows.<name>.type', async () => {
    const message = await bootError({ RUNWAY_CONFIG: yamlFile('workflows:\n  x: {type: telepathy}\n'), LOG_LEVEL: 'silent' });
    expect(message).toContain('workflows.x.type');
    expect(message).toContain('telepathy');
  });

  it('a bad echo option fails boot naming workflows.echo.token_delay_ms', async () => {
    const message = await bootError({
      RUNWAY_CONFIG: yamlFile('workflows:\n  echo: {type: echo, token_delay_ms: -5}\n'),
      LOG_LEVEL: 'silent',
    });
    expect(message).toContain('workflows.echo.token_delay_ms');
    const unknownOption = await bootError({
      RUNWAY_CONFIG: yamlFile('workflows:\n  echo: {type: echo, token_dealy_ms: 5}\n'),
      LOG_LEVEL: 'silent',
    });
    expect(unknownOption).toContain('token_dealy_ms');
  });

  it('an unknown default_workflow fails naming default_workflow (and RUNWAY_DEFAULT_WORKFLOW when it came from there)', async () => {
    const fromFile = await bootError({ RUNWAY_CONFIG: yamlFile('default_workflow: nope\n'), LOG_LEVEL: 'silent' });
    expect(fromFile).toContain('default_workflow');
    expect(fromFile).toContain('nope');
    const fromEnv = await bootError({ RUNWAY_CONFIG: yamlFile(''), RUNWAY_DEFAULT_WORKFLOW: 'nope', LOG_LEVEL: 'silent' });
    expect(fromEnv).toContain('default_workflow');
    expect(fromEnv).toContain('RUNWAY_DEFAULT_WORKFLOW');
  });

  it('invalid YAML and a non-mapping document name the file', () => {
    const path = yamlFile('runtime: {max_queue: 1\n');
    const broken = configError(() => loadConfig({ RUNWAY_CONFIG: path }));
    expect(broken).toContain(path);
    expect(broken).toMatch(/YAML/);
    const list = yamlFile('- a\n- b\n');
    expect(configError(() => loadConfig({ RUNWAY_CONFIG: list }))).toContain(list);
  });

  it('an explicit RUNWAY_CONFIG that does not exist is an error naming the path and the variable', () => {
    const missing = join(dir, 'does-not-exist.yaml');
    const message = configError(() => loadConfig({ RUNWAY_CONFIG: missing }));
    expect(message).toContain(missing);
    expect(message).toContain('RUNWAY_CONFIG');
  });
});

describe('the real process', () => {
  const children: Array<ReturnType<typeof spawn>> = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  /** Starts `node --import tsx src/server.ts` with a clean Runway environment plus `env`. */
  function runServer(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
    const clean: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v !== undefined && !/^(RUNWAY_|PORT$|HOST$|LOG_LEVEL$|OPENAI_)/.test(k)) clean[k] = v;
    }
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      // Port 0 and loopback: if the process wrongly started, it would not collide with anything.
      env: { ...clean, PORT: '0', HOST: '127.0.0.1', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    return new Promise((resolvePromise, reject) => {
      // A server that wrongly started would never exit: stop it so the test fails instead of hanging.
      const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(guard);
        resolvePromise({ code, stderr });
      });
    });
  }

  it('RUNWAY_MAX_CONCURRENCY=-1 → exits non-zero; stderr names runtime.max_concurrency and RUNWAY_MAX_CONCURRENCY', async () => {
    const { code, stderr } = await runServer({ RUNWAY_MAX_CONCURRENCY: '-1' });
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(stderr).toContain('runtime.max_concurrency');
    expect(stderr).toContain('RUNWAY_MAX_CONCURRENCY');
  });

  it('a workflow of an unknown type → exits non-zero; stderr names workflows.x.type', async () => {
    const { code, stderr } = await runServer({ RUNWAY_CONFIG: yamlFile('workflows:\n  x: {type: telepathy}\n') });
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(stderr).toContain('workflows.x.type');
  });
});
