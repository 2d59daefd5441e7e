/**
 * Every Redis key and channel the Redis store uses, in one place, under one prefix
 * (`RUNWAY_REDIS_PREFIX`), so two Runway deployments can share one Redis without colliding.
 *
 * A run's keys all carry its id as a hash tag (`{…}`, DESIGN §6): the scripts that touch them
 * touch one slot only and stay valid on Redis Cluster. Ids from outside (run, user and
 * conversation ids) are percent-encoded, so a `{`, `}` or `:` inside one can neither move a key to
 * another slot nor make two different ids one key.
 *
 * @example
 *   const keys = new RedisKeys('runway:')
 *   keys.run('3f…')        // 'runway:run:{3f…}'
 *   keys.events('3f…')     // 'runway:run:{3f…}:events'
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** The run's record: a hash of the Run's fields (each one JSON text) plus the log's bookkeeping. */
  run(runId: string): string {
    return `${this.prefix}run:{${enc(runId)}}`;
  }

  /** The run's events: a stream whose entry ids are `<event id>-0`. */
  events(runId: string): string {
    return `${this.prefix}run:{${enc(runId)}}:events`;
  }

  /** Where the append script announces the events it wrote (a pub/sub channel, not a key). */
  appended(runId: string): string {
    return `${this.prefix}run:{${enc(runId)}}:appended`;
  }

  /** The run's cancel, remembered for a worker that picks the run up later: its reason (a string). */
  cancel(runId: string): string {
    return `${this.prefix}run:{${enc(runId)}}:cancel`;
  }

  /** A user's runs: a sorted set of run ids scored by creation order, what `list` pages over. */
  userRuns(userId: string): string {
    return `${this.prefix}user:${enc(userId)}:runs`;
  }

  /** The creation counter the user indexes are scored by (and list cursors point at). */
  get runSeq(): string {
    return `${this.prefix}run-seq`;
  }

  /** The index member of one (user, conversation) pair: what `conversation()` is built from. */
  conversationMember(userId: string, id: string): string {
    return `${enc(userId)}:${enc(id)}`;
  }

  /** A conversation's header (created_at, updated_at, characters held): a hash. */
  conversation(member: string): string {
    return `${this.conversationPrefix}{${member}}`;
  }

  /** A conversation's messages, oldest first: a list. */
  conversationMessages(member: string): string {
    return `${this.conversationPrefix}{${member}}:messages`;
  }

  /** What `conversation(member)` starts with; the append script builds evicted conversations' keys from it. */
  get conversationPrefix(): string {
    return `${this.prefix}conv:`;
  }

  /** Every conversation, scored by when it was last written: the cap evicts from its low end. */
  get conversationIndex(): string {
    return `${this.prefix}conversations`;
  }

  /** The Bus's channel (cancel messages to whichever process executes a run). */
  get bus(): string {
    return `${this.prefix}bus`;
  }
}

/**
 * Percent-encoding: unambiguous and never a brace. A string with a lone surrogate (which
 * `encodeURIComponent` refuses) is written as `%u` and its JSON text in base64url: `%u` is never
 * part of what `encodeURIComponent` writes, so the two forms cannot meet.
 */
function enc(id: string): string {
  return id.isWellFormed() ? encodeURIComponent(id) : `%u${Buffer.from(JSON.stringify(id)).toString('base64url')}`;
}
