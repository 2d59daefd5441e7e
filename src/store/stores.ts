import type { Bus } from './bus.js';
import type { ConversationStore } from './conversation-store.js';
import type { EventLog } from './event-log.js';
import type { RunStore } from './run-store.js';

/** One backend's four stores, as the runtime takes them; `close()` releases what they hold. */
export interface Stores {
  runs: RunStore;
  events: EventLog;
  conversations: ConversationStore;
  bus: Bus;
  close(): Promise<void>;
}
