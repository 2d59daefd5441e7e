import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ENV_OVERRIDES, RunwayConfigSchema, type RunwayConfig } from './config-schema.js';

/** A configuration problem found at boot; the message names the offending key. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const DEFAULT_CONFIG_PATH = 'config/runway.yaml';

/** What applies when there is no config file at all. */
const BUILTIN_DOCUMENT = {
  workflows: {
    echo: { type: 'echo', description: 'Streams the input back, word by word', token_delay_ms: '${RUNWAY_ECHO_DELAY_MS:-20}' },
  },
};

type Env = Record<string, string | undefined>;

const INTERPOLATION = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces `${VAR}` and `${VAR:-default}` in every string of an already-parsed YAML document.
 * Done after parsing, not on the raw text, so a value from the environment can never inject YAML.
 */
export function interpolateEnv(value: unknown, env: Env): unknown {
  if (typeof value === 'string') {
    return value.replace(INTERPOLATION, (_m, name: string, fallback: string | undefined) => {
      const v = env[name];
      return v !== undefined && v !== '' ? v : (fallback ?? '');
    });
  }
  if (Array.isArray(value)) return value.map((v) => interpolateEnv(v, env));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateEnv(v, env)]));
  }
  return value;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object') node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

/** Formats zod issues as `key.path: message` lines, naming the env variable a value came from. */
export function describeIssues(issues: readonly z.core.$ZodIssue[], prefix = '', fromEnv = new Map<string, string>()): string {
  return issues
    .map((issue) => {
      const key = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
      const env = fromEnv.get(key);
      return `  ${key || '(root)'}: ${issue.message}${env ? ` (from ${env})` : ''}`;
    })
    .join('\n');
}

/**
 * Validates a raw config object (YAML already parsed and interpolated, env overrides applied).
 * Throws ConfigError naming every bad key.
 */
export function parseConfig(raw: unknown, fromEnv = new Map<string, string>()): RunwayConfig {
  const result = RunwayConfigSchema.safeParse(raw ?? {});
  if (!result.success) {
    throw new ConfigError(`Invalid configuration:\n${describeIssues(result.error.issues, '', fromEnv)}`);
  }
  const config = result.data;
  // The embedded default: `npm start` with no config file still serves the offline echo workflow.
  if (!Object.hasOwn(config.workflows, 'echo')) {
    config.workflows = { echo: { type: 'echo', description: 'Streams the input back, word by word' }, ...config.workflows };
  }
  if (config.role !== 'all' && config.store === 'memory') {
    const env = fromEnv.get('role');
    throw new ConfigError(
      `Invalid configuration:\n  role: ${JSON.stringify(config.role)} needs a shared store (RUNWAY_STORE=redis://…); on the memory store only "all" is valid${env ? ` (from ${env})` : ''}`,
    );
  }
  if (config.default_workflow !== undefined && !Object.hasOwn(config.workflows, config.default_workflow)) {
    const env = fromEnv.get('default_workflow');
    throw new ConfigError(
      `Invalid configuration:\n  default_workflow: unknown workflow ${JSON.stringify(config.default_workflow)} ` +
        `(known: ${Object.keys(config.workflows).join(', ')})${env ? ` (from ${env})` : ''}`,
    );
  }
  return config;
}

/**
 * Loads `RUNWAY_CONFIG` (default `config/runway.yaml`; a missing default file means built-in
 * defaults), interpolates `${VAR:-default}`, applies the environment overrides of DESIGN §5 and
 * validates the result.
 *
 * @example
 *   const config = loadConfig(process.env)   // throws ConfigError: "runtime.max_queue: … (from RUNWAY_MAX_QUEUE)"
 */
export function loadConfig(env: Env = process.env): RunwayConfig {
  const explicit = env.RUNWAY_CONFIG !== undefined && env.RUNWAY_CONFIG !== '';
  const path = explicit ? env.RUNWAY_CONFIG! : DEFAULT_CONFIG_PATH;
  // No file: the built-in echo still honours RUNWAY_ECHO_DELAY_MS, as the shipped file does.
  let raw = interpolateEnv(BUILTIN_DOCUMENT, env) as Record<string, unknown>;
  if (explicit || existsSync(path)) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`Cannot read config file ${path} (RUNWAY_CONFIG): ${(err as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new ConfigError(`Config file ${path} is not valid YAML: ${(err as Error).message}`);
    }
    if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) {
      throw new ConfigError(`Config file ${path} must be a YAML mapping at the top level`);
    }
    raw = (interpolateEnv(doc ?? {}, env) as Record<string, unknown>) ?? {};
  }
  const keys = apiKeysFromEnv(env);
  const fromEnv = new Map<string, string>();
  for (const [name, keyPath] of ENV_OVERRIDES) {
    const value = name === 'RUNWAY_API_KEYS' ? keys?.text : env[name];
    if (value === undefined || value === '') continue;
    setPath(raw, keyPath, value);
    // API keys are secrets: a message may name where they came from, never show them.
    fromEnv.set(keyPath.join('.'), name === 'RUNWAY_API_KEYS' ? keys!.source : `${name}=${JSON.stringify(value)}`);
  }
  const config = parseConfig(raw, fromEnv);
  if (keys && config.auth.api_keys.length === 0) {
    // Asked for auth but named no key: refuse rather than serve without it.
    throw new ConfigError(`Invalid configuration:\n  auth.api_keys: no key:user entry found (from ${keys.source})`);
  }
  return config;
}

/**
 * `RUNWAY_API_KEYS` and the lines of `RUNWAY_API_KEYS_FILE`, together (both may be set), and a
 * label naming where they came from. Undefined when neither is set.
 */
function apiKeysFromEnv(env: Env): { text: string; source: string } | undefined {
  const inline = env.RUNWAY_API_KEYS ?? '';
  const path = env.RUNWAY_API_KEYS_FILE ?? '';
  if (path === '') return inline === '' ? undefined : { text: inline, source: 'RUNWAY_API_KEYS' };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`Invalid configuration:\n  RUNWAY_API_KEYS_FILE: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const file = `RUNWAY_API_KEYS_FILE=${JSON.stringify(path)}`;
  return inline === '' ? { text, source: file } : { text: `${inline}\n${text}`, source: `RUNWAY_API_KEYS and ${file}` };
}
