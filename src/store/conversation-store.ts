import type { ConversationMessage } from '../core/context.js';

export type { ConversationMessage };

export interface Conversation {
  id: string;
  user_id: string;
  /** Oldest first. */
  messages: ConversationMessage[];
  created_at: string;
  updated_at: string;
}

/**
 * Where conversations live between runs, keyed by (user, conversation id): one user can never read
 * or extend another's, even with the same id. Bounded: messages and characters per conversation,
 * an idle TTL and a cap on conversations. Takes and returns copies.
 *
 * @example
 *   await store.append('alice', 'c1', [{ role: 'user', content: 'Hi', run_id, created_at }])
 *   const conv = await store.get('alice', 'c1')   // undefined for 'bob'
 */
export interface ConversationStore {
  /** The conversation, or undefined when it does not exist (or belongs to someone else). */
  get(userId: string, id: string): Promise<Conversation | undefined>;
  /** Appends messages, creating the conversation when needed, then trims it to its bounds. */
  append(userId: string, id: string, messages: readonly ConversationMessage[]): Promise<Conversation>;
  /** Resolves to false when there was nothing to delete. */
  delete(userId: string, id: string): Promise<boolean>;
}
