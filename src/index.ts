/**
 * Runway as a library: the same runtime the HTTP service runs (see README, "Embedding Runway").
 *
 * @example
 *   import { createRuntime } from 'runway'
 *   const runtime = await createRuntime()
 *   const run = await runtime.session({ userId: 'alice' }).run('hello')
 *   console.log((await run.result()).output)
 *   await runtime.close()
 */
export { createRuntime, type CreateRuntimeOptions } from './runtime/create-runtime.js';
export type { Runtime } from './runtime/runtime.js';
export type { Session, RunOptions, SessionOptions } from './runtime/session.js';
export type { RunHandle } from './runtime/run-handle.js';
export type { RunEventObserver } from './runtime/run-observers.js';
export { currentRunContext } from './runtime/run-context.js';
export { RunwayError, ERROR_CODES, type ErrorCode } from './core/errors.js';
export type { Run, RunStatus, Usage, RunError } from './core/run.js';
export type { RunEvent, RunEventType } from './core/events.js';
export type { RunContext, StepHandle, StepKind } from './core/context.js';
export { defineWorkflow } from './workflows/define-workflow.js';
export { defineTool } from './workflows/define-tool.js';
export { buildApp, type BuildAppOptions } from './app.js';
export type { Stores } from './store/stores.js';
export { createMemoryStores } from './store/memory/memory-stores.js';
export { createRedisStores, type RedisStoreOptions } from './store/redis/redis-stores.js';
