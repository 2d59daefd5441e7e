import type { Conversation, ConversationMessage, ConversationStore } from '../conversation-store.js';

export interface MemoryConversationStoreOptions {
  /** Messages kept per conversation; the oldest go first. */
  maxMessages: number;
  /** Characters of content kept per conversation; the oldest messages go first (the newest always stays). */
  maxChars: number;
  /** A conversation not written to for this long is forgotten. */
  ttlS: number;
  /** Conversations kept at most; the least recently written go first. */
  maxConversations: number;
  /** Injectable clock for retention tests. */
  now?: () => number;
}

interface Entry {
  conversation: Conversation;
  chars: number;
  updatedAtMs: number;
}

/**
 * The embedded `ConversationStore`. A Map in least-recently-written order (an append moves its
 * conversation to the end), so expiry and the cap only ever look at the front: no timer, no scan.
 */
export class MemoryConversationStore implements ConversationStore {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;

  constructor(private readonly options: MemoryConversationStoreOptions) {
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  async get(userId: string, id: string): Promise<Conversation | undefined> {
    const key = keyOf(userId, id);
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (this.expired(entry)) {
      this.entries.delete(key);
      return undefined;
    }
    return copy(entry.conversation);
  }

  async append(userId: string, id: string, messages: readonly ConversationMessage[]): Promise<Conversation> {
    const key = keyOf(userId, id);
    const nowMs = this.now();
    let entry = this.entries.get(key);
    if (entry !== undefined && this.expired(entry)) entry = undefined;
    const at = messages.at(-1)?.created_at ?? new Date(nowMs).toISOString();
    if (entry === undefined) {
      entry = { conversation: { id, user_id: userId, messages: [], created_at: at, updated_at: at }, chars: 0, updatedAtMs: nowMs };
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    const conv = entry.conversation;
    for (const m of messages) {
      conv.messages.push({ role: m.role, content: m.content, run_id: m.run_id, created_at: m.created_at });
      entry.chars += m.content.length;
    }
    conv.updated_at = at;
    entry.updatedAtMs = nowMs;
    this.trim(entry);
    this.evict();
    return copy(conv);
  }

  async delete(userId: string, id: string): Promise<boolean> {
    const key = keyOf(userId, id);
    const entry = this.entries.get(key);
    if (entry === undefined) return false;
    this.entries.delete(key);
    return !this.expired(entry);
  }

  close(): void {
    this.entries.clear();
  }

  private expired(entry: Entry): boolean {
    return this.now() - entry.updatedAtMs >= this.options.ttlS * 1000;
  }

  /** Drops the oldest messages beyond the message and character bounds; the newest always stays. */
  private trim(entry: Entry): void {
    const messages = entry.conversation.messages;
    let drop = Math.max(0, messages.length - this.options.maxMessages);
    let chars = entry.chars;
    for (let i = 0; i < drop; i++) chars -= messages[i]!.content.length;
    while (chars > this.options.maxChars && drop < messages.length - 1) chars -= messages[drop++]!.content.length;
    if (drop > 0) messages.splice(0, drop);
    entry.chars = chars;
  }

  /** Expired conversations at the front go, then the least recently written beyond the cap. */
  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size > this.options.maxConversations || this.expired(entry)) this.entries.delete(key);
      else break;
    }
  }
}

/** NUL cannot occur in a user id or a conversation id, so the pair maps to one key unambiguously. */
function keyOf(userId: string, id: string): string {
  return `${userId}\u0000${id}`;
}

function copy(conv: Conversation): Conversation {
  return { ...conv, messages: conv.messages.map((m) => ({ ...m })) };
}
