import type { QueuePlace, RunQueue } from './run-queue.js';

/** This process's admission (the runtime's SessionManager): permits, a bounded wait, a per-user cap. */
export interface LocalAdmission {
  reserve(userId: string): QueuePlace;
  beginDrain(): void;
}

/**
 * The embedded queue: runs wait for a permit of this process's SessionManager and execute here.
 *
 * @example
 *   const queue = new InProcessQueue(new SessionManager({ maxConcurrency: 8, maxQueue: 1000, … }))
 */
export class InProcessQueue implements RunQueue {
  constructor(private readonly sessions: LocalAdmission) {}

  async reserve(userId: string): Promise<QueuePlace> {
    return this.sessions.reserve(userId);
  }

  drain(): void {
    this.sessions.beginDrain();
  }
}
