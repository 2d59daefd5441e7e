import type { Redis } from 'ioredis';

/** What listens on a channel of the shared subscriber. */
export interface ChannelListener {
  /** A message published on the channel. */
  message(payload: Buffer): void;
  /**
   * The subscription was lost (the connection dropped, or was killed) and is back: whatever was
   * published in between is gone, so the listener reads what it missed from where it is kept.
   */
  resync(): void;
}

interface Channel {
  listeners: Set<ChannelListener>;
  /** The SUBSCRIBE, settled once Redis has confirmed it. */
  subscribed: Promise<unknown>;
}

/**
 * The process's one subscriber connection, shared by every follower and the bus: connections to
 * Redis do not grow with followers (DESIGN §6). A channel is subscribed while it has listeners.
 *
 * ioredis's own resubscription is off: after a reconnect this class subscribes every channel
 * again itself and only then tells the listeners to resync, so a listener never reads what it
 * missed before the subscription that brings it what comes next is in place (no gap between the
 * two), and duplicates are the listener's to drop, by id.
 *
 * @example
 *   const sub = new SharedSubscriber(new Redis(url, { autoResubscribe: false }))
 *   const off = await sub.listen('runway:bus', { message: (m) => …, resync: () => {} })
 *   off()
 */
export class SharedSubscriber {
  private readonly channels = new Map<string, Channel>();
  private connections = 0;

  constructor(private readonly client: Redis) {
    client.on('messageBuffer', (channel: Buffer, payload: Buffer) => this.dispatch(channel.toString(), payload));
    client.on('ready', () => {
      if (this.connections++ > 0) void this.resubscribe();
    });
  }

  /**
   * Adds a listener; resolves, with the function that removes it, once Redis has confirmed the
   * subscription: from then on nothing published on the channel is missed while connected.
   */
  async listen(name: string, listener: ChannelListener): Promise<() => void> {
    let channel = this.channels.get(name);
    if (channel === undefined) {
      channel = { listeners: new Set(), subscribed: this.client.subscribe(name) };
      this.channels.set(name, channel);
    }
    channel.listeners.add(listener);
    const off = () => this.unlisten(name, listener);
    try {
      await channel.subscribed;
    } catch (err) {
      off();
      throw err;
    }
    return off;
  }

  /** Channels subscribed now (tests check a follower that left is no longer listening). */
  get size(): number {
    return this.channels.size;
  }

  private unlisten(name: string, listener: ChannelListener): void {
    const channel = this.channels.get(name);
    if (channel === undefined || !channel.listeners.delete(listener) || channel.listeners.size > 0) return;
    this.channels.delete(name);
    // A connection that is down has lost the subscription anyway.
    this.client.unsubscribe(name).catch(() => {});
  }

  private dispatch(name: string, payload: Buffer): void {
    const channel = this.channels.get(name);
    if (channel === undefined) return;
    for (const listener of channel.listeners) {
      try {
        listener.message(payload);
      } catch {
        // One listener's fault must not keep the message from the others.
      }
    }
  }

  private async resubscribe(): Promise<void> {
    const names = [...this.channels.keys()];
    if (names.length === 0) return;
    try {
      await this.client.subscribe(...names);
    } catch {
      // The connection went again: its next 'ready' subscribes again.
      return;
    }
    for (const name of names) {
      for (const listener of this.channels.get(name)?.listeners ?? []) {
        try {
          listener.resync();
        } catch {
          // As for messages.
        }
      }
    }
  }
}
