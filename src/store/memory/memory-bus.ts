import type { Bus, BusMessage } from '../bus.js';

/** The Bus of one process: every subscriber of this process hears every message. */
export class MemoryBus implements Bus {
  private readonly handlers = new Set<(message: BusMessage) => void>();

  async publish(message: BusMessage): Promise<void> {
    for (const handler of [...this.handlers]) {
      try {
        handler({ ...message });
      } catch {
        // A subscriber's fault must not keep the message from the others.
      }
    }
  }

  subscribe(handler: (message: BusMessage) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }
}
