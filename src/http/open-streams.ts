import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { SseStream } from './sse.js';

/**
 * On close, after the runtime has drained (every run has its terminal event), how long open
 * streams may take to deliver their last events before readers that stopped reading are cut.
 */
const FLUSH_ON_CLOSE_MS = 1000;

/** Headers a hijacked response must carry by hand: what hooks set on the reply so far (CORS, request id…). */
function replyHeaders(reply: FastifyReply): Record<string, string | number | string[]> {
  const out: Record<string, string | number | string[]> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) out[name] = value;
  return out;
}

/**
 * The SSE streams a route plugin has open. `open()` hijacks a reply, starts its stream and runs
 * `pipe` on it; when the app closes, streams get a moment to flush, then readers that stopped
 * reading are cut, so a stalled client can never hold a closing server open.
 *
 * @example
 *   const streams = new OpenStreams(app, keepaliveMs)   // registers its preClose hook: create it in the plugin
 *   await streams.open(reply, async (sse) => { await sse.write(': hello\n\n') })
 */
export class OpenStreams {
  private readonly open_ = new Map<SseStream, Promise<void>>();

  constructor(
    private readonly app: FastifyInstance,
    private readonly keepaliveMs: number,
  ) {
    // Registered in the route plugin's own context, so it runs after the runtime's (which drains the runs).
    app.addHook('preClose', async () => {
      if (this.open_.size === 0) return;
      const flushed = new AbortController();
      await Promise.race([
        Promise.allSettled(this.open_.values()),
        sleep(FLUSH_ON_CLOSE_MS, undefined, { signal: flushed.signal }).catch(() => {}),
      ]);
      flushed.abort();
      for (const sse of this.open_.keys()) sse.destroy();
    });
  }

  /** Streams on `reply` with `pipe`; resolves once the stream has ended (whatever ended it). */
  open(reply: FastifyReply, pipe: (sse: SseStream) => Promise<void>): Promise<void> {
    reply.hijack();
    const sse = new SseStream(reply.raw, replyHeaders(reply), this.keepaliveMs);
    this.app.metrics.trackSse(sse.signal);
    const ended = pipe(sse).finally(() => {
      this.open_.delete(sse);
      sse.end();
    });
    this.open_.set(sse, ended);
    return ended;
  }
}
