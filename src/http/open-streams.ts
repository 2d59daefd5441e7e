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
 * problem. A route that would start work for the stream (a run) should `reserve` a place
 * first, so nothing is started that cannot be streamed.
 *
 * @example
 *   const streams = new OpenStreams(app, keepaliveMs)   // registers its preClose hook: create it in the plugin
 *   const place = streams.reserve(request.userId)        // throws the 429 before the run is made
 *   await streams.open(reply, async (sse) => { await sse.write(': hello\n\n') }, place)
 */
/** A stream place taken ahead of `open()`; `release()` is idempotent. */
export interface StreamPlace {
  release(): void;
}

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

  /**
   * Takes one of `userId`'s stream places now, or throws the `429 rate_limited` `open()` would
   * reject with. For a route that starts work for the stream (a run) first: concurrent requests
   * cannot all pass a check and then all start work. Hand the place to `open()`, or release it.
   */
  reserve(userId: string): StreamPlace {
    if (!this.quota.acquire(userId)) throw this.quota.refusal();
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.quota.release(userId);
      },
    };
  }

  /**
   * Streams on `reply` with `pipe`; resolves once the stream has ended (whatever ended it). Without
   * a `place` taken beforehand, rejects at once, without touching the reply, when the user
   * (`reply.request.userId`) is at the cap.
   */
  open(reply: FastifyReply, pipe: (sse: SseStream) => Promise<void>, reserved?: StreamPlace): Promise<void> {
    let place: StreamPlace;
    try {
      place = reserved ?? this.reserve(reply.request.userId);
    } catch (err) {
      return Promise.reject(err);
    }
    let sse: SseStream;
    try {
      reply.hijack();
      sse = new SseStream(reply.raw, replyHeaders(reply), this.keepaliveMs);
      this.app.metrics.trackSse(sse.signal);
    } catch (err) {
      place.release();
      throw err;
    }
    const ended = pipe(sse).finally(() => {
      this.open_.delete(sse);
      // Before the response ends: a client that saw its stream end may open another at once.
      place.release();
      sse.end();
    });
    this.open_.set(sse, ended);
    return ended;
  }
}
