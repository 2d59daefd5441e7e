import type { ConversationMessage, ConversationTurn, RunConversation } from '../core/context.js';
import type { ConversationStore } from '../store/conversation-store.js';

export type { ConversationTurn, RunConversation };

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
    const created_at = new Date().toISOString();
    const messages = this.staged.map((t) => ({ ...t, run_id: runId, created_at }));
    this.staged = [];
    await this.store.append(this.userId, this.id, messages);
  }
}
