import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A unix-socket proxy in front of a redis-server that can lose one reply: once armed, the next
 * connection to send a command has that command reach Redis (which executes it) while its reply is
 * dropped and the connection cut. That is what a network fault does to a client at the worst
 * moment: the write happened, the client never heard, and it sends the command again.
 *
 * @example
 *   const proxy = await startCuttingProxy(redis.socket)
 *   proxy.loseNextReply()
 *   await store.update(…)   // executed, reply lost, resent by ioredis on its new connection
 */
export interface CuttingProxy {
  url: string;
  /** Arms the proxy for one lost reply. */
  loseNextReply(): void;
  /** Replies lost so far. */
  readonly lost: number;
  close(): Promise<void>;
}

export async function startCuttingProxy(targetSocket: string): Promise<CuttingProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'runway-proxy-'));
  const path = join(dir, 'proxy.sock');
  let armed = false;
  let lost = 0;
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetSocket);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    let victim = false;
    const cut = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk) => {
      // The first connection to speak after arming is the one whose reply gets lost.
      if (armed) {
        armed = false;
        victim = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (victim) {
        lost++;
        cut();
        return;
      }
      client.write(chunk);
    });
    client.on('error', cut);
    upstream.on('error', cut);
    client.on('close', cut);
    upstream.on('close', cut);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    url: `unix://${path}`,
    loseNextReply: () => {
      armed = true;
    },
    get lost() {
      return lost;
    },
    close: async () => {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
