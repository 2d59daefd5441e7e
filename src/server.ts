import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config/load-config.js';
import { createRuntime } from './runtime/create-runtime.js';

/**
 * Process wiring only: config, role, listen, signals, graceful shutdown. `RUNWAY_ROLE=worker`
 * (`npm run worker`) serves no HTTP at all: it executes runs from the shared queue until SIGTERM.
 */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`runway: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }

  if (config.role === 'worker') return runWorker(config);

  const app = await buildApp({ config }).catch((err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`runway: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  });

  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal, grace_ms: config.runtime.shutdown_grace_ms }, 'shutting down');
    try {
      // Drain while still listening, so load balancers see /readyz fail and new runs get a clear 503.
      await app.runtime.shutdown(config.runtime.shutdown_grace_ms);
      await app.close();
      app.log.info('shut down cleanly');
      process.exit(0);
    } catch (err) {
      app.log.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);

  await app.listen({ port: config.server.port, host: config.server.host });
}

/** A worker process: the runtime and its queue worker, no HTTP server. */
async function runWorker(config: ReturnType<typeof loadConfig>): Promise<void> {
  const runtime = await createRuntime({ config });
  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg: 'worker shutting down', signal })}\n`);
    try {
      await runtime.close();
      process.exit(0);
    } catch (err) {
      process.stderr.write(`runway: worker shutdown failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    }
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await runtime.workerReady();
  process.stdout.write(`${JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg: 'worker ready', role: 'worker' })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`runway: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
