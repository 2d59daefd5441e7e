import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A redis-server of a test's own, on a unix socket in a temp dir (no port to race for). */
export interface RedisServer {
  /** The store URL: `unix:///…/redis.sock`. */
  url: string;
  socket: string;
  pid: number;
  /** A key prefix no other test uses: tests on one server stay independent. */
  freshPrefix(): string;
  /** Stops the server (by its pid) and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

const READY_WITHIN_MS = 10_000;

/**
 * Starts a real `redis-server` (Debian's package; `.ci/run` installs it) with nothing persisted,
 * and resolves once it answers PING. It never touches a Redis the machine may already run: it
 * listens on no TCP port at all, only on its own socket.
 *
 * @example
 *   const redis = await startRedisServer()
 *   const stores = createRedisStores({ url: redis.url, prefix: redis.freshPrefix(), runTtlS: 3600 })
 *   await redis.stop()
 */
export async function startRedisServer(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'runway-redis-'));
  const socket = join(dir, 'redis.sock');
  const child = spawn(
    'redis-server',
    ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await kill(child, exited);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.race([waitForPong(socket, () => child.exitCode !== null), spawnError]);
  } catch (err) {
    await stop();
    throw new Error(`redis-server did not start: ${(err as Error).message}\n${output}`);
  }
  return { url: `unix://${socket}`, socket, pid: child.pid!, freshPrefix: () => `t${randomUUID().slice(0, 8)}:`, stop };
}

/** Polls PING on the socket until +PONG comes back (no fixed sleeps: each try is as soon as the last failed). */
async function waitForPong(socket: string, gone: () => boolean): Promise<void> {
  const deadline = Date.now() + READY_WITHIN_MS;
  for (;;) {
    if (gone()) throw new Error('it exited');
    if (await pingOnce(socket)) return;
    if (Date.now() > deadline) throw new Error(`no PONG within ${READY_WITHIN_MS} ms`);
    // The next try on the next turn of the event loop, after the socket has had a chance to appear.
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function pingOnce(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = connect(socket);
    let reply = '';
    const done = (ok: boolean) => {
      conn.destroy();
      resolve(ok);
    };
    conn.on('connect', () => conn.write('PING\r\n'));
    conn.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    conn.on('error', () => done(false));
  });
}

/** SIGTERM, then SIGKILL if it has not exited within 5 s; resolves once it has exited. */
async function kill(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
