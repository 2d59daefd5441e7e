import type { FastifyReply } from 'fastify';

/**
 * Calls `onGone` if the client of `reply` leaves before the response is complete (a blocking or
 * SSE `POST /runs`, a `/v1/chat/completions`: their runs are cancelled then). Returns the function
 * that stops watching, for when the answer is complete. A client that left before this was called
 * (its 'close' already fired) is gone too.
 *
 * @example
 *   const unwatch = whenClientGone(reply, () => run.cancel('client_disconnected'))
 */
export function whenClientGone(reply: FastifyReply, onGone: () => void): () => void {
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) onGone();
  };
  res.once('close', onClose);
  if (res.destroyed) onClose();
  return () => res.off('close', onClose);
}
