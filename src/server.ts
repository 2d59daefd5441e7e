import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config/load-config.js';

/** Process wiring only: config, listen, signals, graceful shutdown. */
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

main().catch((err: unknown) => {
  process.stderr.write(`runway: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
