import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** A Runway server process started by a test (`node --import tsx src/server.ts`), its JSON log lines collected. */
export interface RunwayProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:<port>` for `api` and `all`; undefined for a worker (it serves no HTTP). */
  url: string | undefined;
  /** Every JSON line it has logged so far. */
  lines: Record<string, unknown>[];
  /** Stdout and stderr as they came (for a failure's message). */
  output(): string;
  /** SIGTERM, then SIGKILL after 5 s; resolves once it has exited. Safe to call twice. */
  stop(): Promise<void>;
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const READY_WITHIN_MS = 20_000;

/**
 * Starts `src/server.ts` with `env` on top of a clean environment of its own (PORT 0 on 127.0.0.1,
 * log level info) and resolves once it is ready: listening (its port read from Fastify's
 * "Server listening" line) or, for a worker, once it logged "worker ready".
 *
 * @example
 *   const api = await startRunway({ RUNWAY_ROLE: 'api', RUNWAY_STORE: redis.url })
 */
export async function startRunway(env: Record<string, string>): Promise<RunwayProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  let partial = '';
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  const onChunk = (chunk: Buffer) => {
    text += chunk.toString();
    partial += chunk.toString();
    let nl: number;
    while ((nl = partial.indexOf('\n')) !== -1) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // Not a log line.
      }
    }
    for (const wake of [...waiters]) wake();
  };
  child.stdout!.on('data', onChunk);
  child.stderr!.on('data', onChunk);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  const ready = new Promise<string | undefined>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`runway did not get ready within ${READY_WITHIN_MS} ms:\n${text}`)), READY_WITHIN_MS);
    const check = () => {
      for (const line of lines) {
        const msg = String(line.msg ?? '');
        const listening = /^Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(msg);
        if (listening || msg === 'worker ready') {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(listening?.[1]);
          return;
        }
      }
      if (child.exitCode !== null) {
        clearTimeout(timer);
        reject(new Error(`runway exited with ${child.exitCode}:\n${text}`));
      }
    };
    waiters.add(check);
    child.once('exit', check);
  });
  try {
    const url = await ready;
    return { child, url, lines, output: () => text, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
