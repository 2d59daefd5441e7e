/**
 * Deletes keys from a Map in batches. V8 (Node 20) shrinks a Map in its runtime when a delete
 * leaves it under a quarter full, so a map holding the few runs in flight, with one added and one
 * deleted per run, was shrunk on nearly every run (seen in profiles). Callers must treat a key
 * given here as gone (mark its value) until the batch is applied.
 *
 * @example
 *   const retired = new DeferredDeletes(active)
 *   session.retired = true
 *   retired.delete(session.run_id)
 */
export class DeferredDeletes<K> {
  private readonly keys: K[] = [];

  constructor(
    private readonly map: Map<K, unknown>,
    private readonly batch = 64,
  ) {}

  delete(key: K): void {
    this.keys.push(key);
    if (this.keys.length < this.batch) return;
    for (const k of this.keys) this.map.delete(k);
    this.keys.length = 0;
  }
}
