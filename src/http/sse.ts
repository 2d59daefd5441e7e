import type { ServerResponse } from 'node:http';

const LINE_BREAK = /[\r\n]/;
/** The largest piece of an event written at once (UTF-16 units). */
const PIECE = 16 * 1024;

/**
 * Formats one Server-Sent Events frame. `event` and `id` must not contain CR or LF (they would end
 * the field early and let a value forge frames); `data` may, and is split into `data:` lines.
 *
 * @example
 *   sseFrame({ id: 7, event: 'token', data: '{"delta":"Hel"}' })  // "id: 7\nevent: token\ndata: {…}\n\n"
 */
export function sseFrame(frame: { id?: string | number; event?: string; data: string }): string {
  let out = '';
  if (frame.id !== undefined) {
    const id = String(frame.id);
    if (LINE_BREAK.test(id)) throw new TypeError('SSE id must not contain CR or LF');
    out += `id: ${id}\n`;
  }
  if (frame.event !== undefined) {
    if (LINE_BREAK.test(frame.event)) throw new TypeError('SSE event must not contain CR or LF');
    out += `event: ${frame.event}\n`;
  }
  out += LINE_BREAK.test(frame.data) ? `data: ${frame.data.split(/\r\n|\r|\n/).join('\ndata: ')}\n\n` : `data: ${frame.data}\n\n`;
  return out;
}

export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
} as const;

/**
 * One open SSE response on a raw Node response: writes await `drain` (a slow reader holds back its
 * own producer instead of growing server memory), an idle stream gets `: keepalive` comments, and
 * everything stops when the client goes away (`signal` aborts).
 */
export class SseStream {
  private readonly controller = new AbortController();
  private readonly keepalive: NodeJS.Timeout | undefined;
  private wroteSinceTick = false;
  private waitingForDrain = false;

  constructor(
    private readonly res: ServerResponse,
    headers: Record<string, string | number | string[]>,
    keepaliveMs: number,
  ) {
    res.once('close', () => this.onClose());
    // The client left before the stream began (its 'close' has already fired): nothing to stream.
    if (res.destroyed) {
      this.controller.abort();
      return;
    }
    res.writeHead(200, { ...headers, ...SSE_HEADERS });
    // Send the headers now so clients see the stream open before the first event.
    res.flushHeaders();
    this.keepalive = setInterval(() => {
      if (!this.wroteSinceTick && !this.waitingForDrain) this.write(': keepalive\n\n');
      this.wroteSinceTick = false;
    }, keepaliveMs);
    this.keepalive.unref();
  }

  /** Aborts when the client has gone or the stream was ended. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get closed(): boolean {
    return this.controller.signal.aborted;
  }

  /**
   * Writes one event frame (`id:`, `event:`, `data:` of JSON text that holds no line break, as
   * JSON.stringify writes it, given in parts). A large part goes out in pieces, each after the last
   * has drained, so a reader that stopped reading holds at most one piece in server memory beyond
   * the event itself, never a second copy of the event joined to its envelope.
   */
  async writeEvent(id: number, event: string, parts: readonly string[]): Promise<boolean> {
    const size = parts.reduce((n, p) => n + p.length, 0);
    if (size <= PIECE || parts.some((p) => LINE_BREAK.test(p))) return this.write(sseFrame({ id, event, data: parts.join('') }));
    if (!(await this.write(`id: ${id}\nevent: ${event}\ndata: `))) return false;
    for (const part of parts) {
      for (let at = 0; at < part.length; ) {
        let end = Math.min(at + PIECE, part.length);
        // Never between the halves of a surrogate pair: each piece is encoded to UTF-8 on its own.
        const last = part.charCodeAt(end - 1);
        if (end < part.length && last >= 0xd800 && last <= 0xdbff) end--;
        if (!(await this.write(part.slice(at, end)))) return false;
        at = end;
      }
    }
    return this.write('\n\n');
  }

  /** Resolves true once `chunk` is handed to the socket, false when the client is gone. */
  write(chunk: string): Promise<boolean> | boolean {
    if (this.closed) return false;
    this.wroteSinceTick = true;
    if (this.res.write(chunk)) return true;
    this.waitingForDrain = true;
    return new Promise<boolean>((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.signal.removeEventListener('abort', done);
        this.waitingForDrain = false;
        resolve(!this.closed);
      };
      this.res.on('drain', done);
      this.signal.addEventListener('abort', done, { once: true });
    });
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
    this.onClose();
  }

  /** Cuts the connection (a reader that stopped reading must not hold a closing server open). */
  destroy(): void {
    this.res.destroy();
    this.onClose();
  }

  private onClose(): void {
    clearInterval(this.keepalive);
    if (!this.controller.signal.aborted) this.controller.abort();
  }
}
