import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';

export interface LingerLimits {
  /** Bytes of the refused request read and thrown away at most, after which the connection is cut. */
  maxBytes: number;
  /** How long the connection is kept at most for the client to finish sending and read the answer. */
  maxMs: number;
}

/** A few MB, or a few seconds, whichever comes first: what nginx's lingering close bounds too. */
export const DEFAULT_LINGER: LingerLimits = { maxBytes: 8 * 1024 * 1024, maxMs: 5_000 };

/**
 * Lingering close for connections answered before their request was read to its end (a body over
 * the size limit, a compressed body, a request Node's parser refused).
 *
 * Closing such a socket at once, as Node does after a `Connection: close` answer, resets the
 * connection while the client is still sending: the client's kernel then drops the answer it had
 * received but not yet read, and the client sees ECONNRESET or EPIPE instead of the 413. Instead,
 * like nginx's `lingering_close`, the answer is sent, the write side is shut (FIN), and what the
 * client still sends is read and thrown away until it closes its side, `maxBytes` have been
 * discarded, or `maxMs` have passed; only then is the socket destroyed.
 *
 * One per app: it knows the connections lingering so the app's close does not wait for them.
 *
 * @example
 *   const lingering = new LingeringClose()
 *   lingering.afterAnswer(request.raw)          // before answering 413 without reading the body
 *   lingering.closeWith(socket, rawHttpAnswer)  // a raw answer on a socket no request owns (clientError)
 */
export class LingeringClose {
  /** Lingering sockets, each with the `bytesRead` at which it is cut. */
  private readonly sockets = new Map<Socket, number>();

  constructor(private readonly limits: LingerLimits = DEFAULT_LINGER) {}

  /**
   * For a request about to be answered (with `Connection: close`) before its body was read: keeps
   * reading the body (discarding it, up to `maxBytes`), and makes the socket linger instead of
   * being destroyed once the answer is written.
   */
  afterAnswer(req: IncomingMessage): void {
    const socket = req.socket;
    // Injected requests (light-my-request) have no real socket: only the body is drained.
    const real = socket instanceof Socket;
    let discarded = 0;
    const discard = (chunk: Buffer | string): void => {
      discarded += chunk.length;
      if (real && discarded > this.limits.maxBytes) socket.destroy();
    };
    // A 'data' listener keeps the body flowing (and Node from pausing the socket on a full buffer).
    req.on('data', discard);
    req.resume();
    if (!real || !this.track(socket)) return;
    socket.once('close', () => req.off('data', discard));
    // Node's HTTP server ends a `Connection: close` answer's socket with `destroySoon()`: FIN once
    // written, then destroy, with the client's bytes still arriving. For this socket only, the
    // destroy is left to the lingering bounds (Node itself falls back to `end()` for sockets
    // without `destroySoon`).
    socket.destroySoon = function lingeringDestroySoon(this: Socket) {
      this.end();
    };
  }

  /**
   * Writes `answer` (a whole raw HTTP response) on a socket no request owns (Node's `clientError`),
   * shuts the write side and lingers.
   */
  closeWith(socket: Socket, answer: string): void {
    if (this.sockets.has(socket) || !this.track(socket)) return;
    socket.end(answer);
    // Node's parser stops at its error: read on, so the client's bytes are taken off the wire.
    socket.resume();
  }

  /** Destroys every lingering connection now (the app is closing: their answers are written). */
  destroyAll(): void {
    for (const socket of this.sockets.keys()) socket.destroy();
    this.sockets.clear();
  }

  /** True while `socket` lingers. */
  has(socket: Socket): boolean {
    return this.sockets.has(socket);
  }

  /** Cuts a lingering `socket` that has read more than its budget (for callers that see it read). */
  checkBudget(socket: Socket): void {
    const budget = this.sockets.get(socket);
    if (budget !== undefined && socket.bytesRead > budget) socket.destroy();
  }

  /** Starts the deadline and the byte budget for `socket`; false when it is already gone. */
  private track(socket: Socket): boolean {
    if (socket.destroyed) return false;
    if (this.sockets.has(socket)) return true;
    this.sockets.set(socket, socket.bytesRead + this.limits.maxBytes);
    const deadline = setTimeout(() => socket.destroy(), this.limits.maxMs);
    deadline.unref();
    socket.once('close', () => {
      clearTimeout(deadline);
      this.sockets.delete(socket);
    });
    return true;
  }
}
