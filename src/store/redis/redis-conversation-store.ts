import type { Conversation, ConversationMessage, ConversationStore } from '../conversation-store.js';
import type { RedisKeys } from './redis-keys.js';
import type { RunwayRedis } from './redis-scripts.js';

/** The bounds of DESIGN §3, as the memory store takes them. */
export interface RedisConversationOptions {
  /** Messages kept per conversation; the oldest go first. */
  maxMessages: number;
  /** Characters of content kept per conversation; the oldest messages go first (the newest always stays). */
  maxChars: number;
  /** A conversation not written to for this long is forgotten (its keys' TTL, renewed by each write). */
  ttlS: number;
  /** Conversations kept at most, all users together; the least recently written go first. */
  maxConversations: number;
}

/**
 * `ConversationStore` over Redis: per (user, id) a header hash and a list of messages, under a key
 * both ids are part of, so one user can never reach another's conversation of the same id. An
 * append is one script (redis-scripts.ts) that writes, trims to the bounds, renews the TTL and
 * applies the cap, atomically, so two replicas appending to one conversation lose nothing.
 *
 * @example
 *   await conversations.append('alice', 'c1', [{ role: 'user', content: 'Hi', run_id, created_at }])
 *   await conversations.get('alice', 'c1')
 */
export class RedisConversationStore implements ConversationStore {
  constructor(
    private readonly redis: RunwayRedis,
    private readonly keys: RedisKeys,
    private readonly options: RedisConversationOptions,
  ) {}

  async get(userId: string, id: string): Promise<Conversation | undefined> {
    const member = this.keys.conversationMember(userId, id);
    // One transaction: header and messages as of one instant (both keys share a slot).
    const replies = await this.redis.multi().hmget(this.keys.conversation(member), 'created_at', 'updated_at').lrange(this.keys.conversationMessages(member), 0, -1).exec();
    if (replies === null) throw new Error('Redis aborted the conversation read');
    const [[headErr, head], [listErr, entries]] = replies as [[Error | null, (string | null)[]], [Error | null, string[]]];
    if (headErr) throw headErr;
    if (listErr) throw listErr;
    const [createdAt, updatedAt] = head;
    if (createdAt == null || updatedAt == null) return undefined;
    return { id, user_id: userId, messages: entries.map(messageOf), created_at: createdAt, updated_at: updatedAt };
  }

  async append(userId: string, id: string, messages: readonly ConversationMessage[]): Promise<Conversation> {
    const member = this.keys.conversationMember(userId, id);
    const nowMs = Date.now();
    const at = messages.at(-1)?.created_at ?? new Date(nowMs).toISOString();
    const o = this.options;
    const args: (string | number)[] = [o.ttlS * 1000, nowMs, o.maxMessages, o.maxChars, o.maxConversations, member, at, this.keys.conversationPrefix];
    for (const m of messages) {
      // Only the four fields of a message are kept (as the memory store copies them); the length is
      // counted here, in UTF-16 units, since Lua would count bytes.
      args.push(m.content.length, JSON.stringify({ role: m.role, content: m.content, run_id: m.run_id, created_at: m.created_at }));
    }
    const [createdAt, updatedAt, entries] = await this.redis.runwayAppendConversation(this.keys.conversation(member), this.keys.conversationMessages(member), this.keys.conversationIndex, ...args);
    return { id, user_id: userId, messages: entries.map(messageOf), created_at: createdAt, updated_at: updatedAt };
  }

  async delete(userId: string, id: string): Promise<boolean> {
    const member = this.keys.conversationMember(userId, id);
    const [deleted] = await Promise.all([this.redis.del(this.keys.conversation(member), this.keys.conversationMessages(member)), this.redis.zrem(this.keys.conversationIndex, member)]);
    return deleted > 0;
  }
}

/** A list entry is `<content length>\t<message JSON>`. */
function messageOf(entry: string): ConversationMessage {
  return JSON.parse(entry.slice(entry.indexOf('\t') + 1)) as ConversationMessage;
}
