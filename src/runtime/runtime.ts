import { RunwayError } from '../core/errors.js';
import type { RunContext } from '../core/context.js';
import type { ChatModel } from '../llm/chat-model.js';
import type { Stores } from '../store/stores.js';
import type { Workflow } from '../workflows/workflow.js';
import type { Cluster } from './cluster.js';
import type { RunEventObserver, RunObservers } from './run-observers.js';
import type { Runner } from './runner.js';
import { Session, type SessionOptions } from './session.js';
import type { SessionManager } from './session-manager.js';

export interface RuntimeParts {
  workflows: ReadonlyMap<string, Workflow>;
  defaultWorkflow: string;
  runner: Runner;
  sessions: SessionManager;
  stores: Stores;
  observers: RunObservers;
  /** Models the runtime built and closes. */
  llms?: ReadonlyMap<string, ChatModel>;
  /** How long running runs may finish when the runtime closes. */
  shutdownGraceMs: number;
  /** On Redis: the shared queue and this process's worker (DESIGN §6). */
  cluster?: Cluster;
}

/**
 * Runway as a library: the seed's SessionManager. `session({userId})` gives one user's view, whose
 * `run()` starts runs; the HTTP routes are built on this same API.
 *
 * @example
 *   const runtime = await createRuntime({ config: { workflows: { echo: { type: 'echo' } } } })
 *   const run = await runtime.session({ userId: 'alice' }).run('hello')
 *   console.log((await run.result()).output)
 *   await runtime.close()
 */
export class Runtime {
  private closing: Promise<void> | undefined;

  constructor(private readonly parts: RuntimeParts) {}

  get workflows(): ReadonlyMap<string, Workflow> {
    return this.parts.workflows;
  }

  get defaultWorkflow(): string {
    return this.parts.defaultWorkflow;
  }

  /** The workflow named `name`; `not_found` when there is none. */
  workflow(name: string): Workflow {
    const wf = this.parts.workflows.get(name);
    if (!wf) throw new RunwayError('not_found', `Workflow "${name}" does not exist`);
    return wf;
  }

  /** Admission: permits held, runs waiting, the high-water mark, and permits per user. */
  get sessions(): SessionManager {
    return this.parts.sessions;
  }

  /** The stores behind the runs, for operations and tests; routes go through `session()`. */
  get stores(): Stores {
    return this.parts.stores;
  }

  /** One user's view: runs it starts are that user's; it reads only that user's runs. */
  session(options: SessionOptions): Session {
    return new Session(this.parts, options);
  }

  /** Adds an observer of every run's events (metrics, traces); returns the function that removes it. */
  observe(observer: RunEventObserver): () => void {
    return this.parts.observers.observe(observer);
  }

  /** The context of a run executing in this process (tracing links spans to it). */
  runContext(runId: string): RunContext | undefined {
    return this.parts.runner.local(runId)?.scope;
  }

  /** Runs executing (or waiting to) in this process. */
  get activeRuns(): number {
    return this.parts.runner.activeCount;
  }

  /** Rejects when the store cannot be reached. */
  async ping(): Promise<void> {
    await this.parts.stores.runs.ping();
  }

  get isDraining(): boolean {
    return this.parts.runner.isDraining;
  }

  /** Resolves once this process's queue worker takes runs (at once when it has none). */
  async workerReady(): Promise<void> {
    await this.parts.cluster?.ready();
  }

  /** Stops admitting runs, lets running ones finish within `graceMs`, cancels the rest. */
  async shutdown(graceMs = this.parts.shutdownGraceMs): Promise<void> {
    await Promise.all([this.parts.runner.shutdown(graceMs), this.parts.cluster?.shutdown(graceMs)]);
  }

  /** Shuts down, then closes the stores and the models. Calling it again waits for the first. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await this.shutdown();
      await this.parts.cluster?.close();
      await this.parts.stores.close();
      await Promise.allSettled([...(this.parts.llms?.values() ?? [])].map((model) => model.close()));
    })());
  }
}
