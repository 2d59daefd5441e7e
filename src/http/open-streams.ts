import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { SseStream } from './sse.js';
import { StreamQuota } from './stream-quota.js';

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
 * Streams count against their user's `runtime.max_streams_per_user` (`app.streamQuota`, shared
 * with the app's other OpenStreams): beyond it, `open()` streams nothing and rejects with a
 * `429 rate_limited` (with `Retry-After`) before hijacking, so the error handler answers it as any
 * problem. A route that would start work for the stream (a run) should call `refuseWhenFull`
 * first, so nothing is started that cannot be streamed.
 *
 * @example
 *   const streams = new OpenStreams(app, keepaliveMs)   // registers its preClose hook: create it in the plugin
 *   streams.refuseWhenFull(request.userId)               // throws the 429 before the run is made
 *   await streams.open(reply, async (sse) => { await sse.write(': hello\n\n') })
 */
export class OpenStreams {
  private readonly open_ = new Map<SseStream, Promise<void>>();
  private readonly quota: StreamQuota;

  constructor(
    private readonly app: FastifyInstance,
    private readonly keepaliveMs: number,
  ) {
    // An app not made by buildApp (which decorates the configured quota) has no cap.
    this.quota = app.hasDecorator('streamQuota') ? app.streamQuota : new StreamQuota(0);
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

  /** Throws the `429 rate_limited` `open()` would reject with when `userId` holds as many streams as allowed. */
  refuseWhenFull(userId: string): void {
    const { maxPerUser } = this.quota;
    if (maxPerUser > 0 && this.quota.count(userId) >= maxPerUser) throw this.quota.refusal();
  }

  /**
   * Streams on `reply` with `pipe`; resolves once the stream has ended (whatever ended it). Rejects
   * at once, without touching the reply, when the user (`reply.request.userId`) is at the cap.
   */
  open(reply: FastifyReply, pipe: (sse: SseStream) => Promise<void>): Promise<void> {
    const user = reply.request.userId;
    if (!this.quota.acquire(user)) return Promise.reject(this.quota.refusal());
    let sse: SseStream;
    try {
      reply.hijack();
      sse = new SseStream(reply.raw, replyHeaders(reply), this.keepaliveMs);
      this.app.metrics.trackSse(sse.signal);
    } catch (err) {
      this.quota.release(user);
      throw err;
    }
    const ended = pipe(sse).finally(() => {
      this.open_.delete(sse);
      // Before the response ends: a client that saw its stream end may open another at once.
      this.quota.release(user);
      sse.end();
    });
    this.open_.set(sse, ended);
    return ended;
  }
}
