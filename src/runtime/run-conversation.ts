import type { ConversationMessage, ConversationStore } from '../store/conversation-store.js';
import { isoNow } from '../store/iso-clock.js';

/** A message a workflow adds to its conversation. */
export interface ConversationTurn {
  role: ConversationMessage['role'];
  content: string;
}

/**
 * The caller's conversation, as a run with a `conversation_id` sees it through `ctx.conversation`.
 * Keyed by the run's own user, so a workflow cannot reach another user's conversation.
 *
 * @example
 *   const prior = ctx.conversation ? await ctx.conversation.history() : []
 *   // … answer …
 *   ctx.conversation?.append({ role: 'user', content: question }, { role: 'assistant', content: answer })
 */
export interface RunConversation {
  readonly id: string;
  /** The messages of earlier runs, oldest first ([] for a new conversation). */
  history(): Promise<readonly ConversationMessage[]>;
  /** Stages messages; they are written only if the run succeeds. */
  append(...turns: ConversationTurn[]): void;
}

/** The per-run `RunConversation`: reads lazily, writes the staged turns on `commit()`. */
export class ConversationHandle implements RunConversation {
  private staged: ConversationTurn[] = [];
  private loaded: Promise<readonly ConversationMessage[]> | undefined;

  constructor(
    private readonly store: ConversationStore,
    private readonly userId: string,
    readonly id: string,
  ) {}

  history(): Promise<readonly ConversationMessage[]> {
    this.loaded ??= this.store.get(this.userId, this.id).then((conv) => conv?.messages ?? []);
    return this.loaded;
  }

  append(...turns: ConversationTurn[]): void {
    for (const t of turns) this.staged.push({ role: t.role, content: t.content });
  }

  /** Writes what the run staged, stamped with its id. Called once the workflow returned. */
  async commit(runId: string): Promise<void> {
    if (this.staged.length === 0) return;
    const created_at = isoNow();
    const messages = this.staged.map((t) => ({ ...t, run_id: runId, created_at }));
    this.staged = [];
    await this.store.append(this.userId, this.id, messages);
  }
}
