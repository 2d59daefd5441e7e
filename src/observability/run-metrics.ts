// The module's binding, not the global: on Node 20 `globalThis.performance` is an accessor, looked up on every call.
import { performance } from 'node:perf_hooks';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

import type { RunEventType } from '../core/events.js';
import { TERMINAL_STATUSES, type TerminalStatus } from '../core/run.js';
import type { StepEventData } from '../core/context.js';
import type { AdmissionStats } from '../runtime/session-manager.js';
import { LocalCounter, LocalHistogram, type CounterSeries, type HistogramSeries } from './local-metrics.js';
import type { RunEventObserver } from '../runtime/run-observers.js';

/** Every metric name starts with this. */
export const METRIC_PREFIX = 'runway_';

/** What the gauges read at scrape time (the SessionManager). */
export interface AdmissionSource {
  stats(): AdmissionStats;
  perUserInFlight(): Map<string, number>;
}

export type RejectionCode = 'queue_full' | 'queue_timeout' | 'shutting_down';
const REJECTION_CODES: readonly RejectionCode[] = ['queue_full', 'queue_timeout', 'shutting_down'];
const FINAL_STATUSES = [...TERMINAL_STATUSES] as TerminalStatus[];
type FinalStatus = TerminalStatus;

const RUN_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const WAIT_SECONDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const TTFT_SECONDS = [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30];

/** The series of one workflow, built once: the run path never builds a label set. */
interface WorkflowSeries {
  runs: Record<FinalStatus, CounterSeries>;
  duration: Record<FinalStatus, HistogramSeries>;
  queueWait: HistogramSeries;
}

interface LlmSeries {
  input: CounterSeries;
  output: CounterSeries;
  ttft: HistogramSeries;
}

interface ToolSeries {
  ok: CounterSeries;
  error: CounterSeries;
  aborted: CounterSeries;
}

/** A run between its `run.queued` and its terminal event. */
interface LiveRun {
  series: WorkflowSeries;
  queuedAt: number;
  /** -1 until `run.started`. */
  startedAt: number;
}

/** Node's process metrics are the process's, not an app's: collected once, into their own registry. */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: METRIC_PREFIX });
  }
  return processRegistry;
}

/**
 * Runway's Prometheus metrics, in a registry of their own (an app's, so tests can build many).
 * Runs, steps and admission outcomes are counted from the run events the runner appends (this is a
 * `RunEventObserver`); the admission gauges are read from the SessionManager only when scraped.
 *
 * @example
 *   const metrics = new RunMetrics(sessions, ['echo'])
 *   events.observe(metrics)
 *   const text = await metrics.render()
 */
export class RunMetrics implements RunEventObserver {
  readonly registry = new Registry();
  private readonly runs: LocalCounter;
  private readonly runDuration: LocalHistogram;
  private readonly queueWait: LocalHistogram;
  private readonly rejections: Record<RejectionCode, CounterSeries>;
  private readonly llmTokens: LocalCounter;
  private readonly ttft: LocalHistogram;
  private readonly toolCalls: LocalCounter;
  private openSse = 0;

  private readonly workflows = new Map<string, WorkflowSeries>();
  private readonly llms = new Map<string, LlmSeries>();
  private readonly tools = new Map<string, ToolSeries>();
  /** Runs between `run.queued` and their terminal event. */
  private readonly live = new Map<string, LiveRun>();

  constructor(admission: AdmissionSource, workflowNames: Iterable<string>) {
    const registry = this.registry;
    const registers = [registry];
    const name = (suffix: string) => `${METRIC_PREFIX}${suffix}`;
    this.runs = new LocalCounter(
      name('runs_total'),
      'Runs finished, by workflow and final status (succeeded, failed, cancelled).',
      ['workflow', 'status'],
      registry,
    );
    this.runDuration = new LocalHistogram(
      name('run_duration_seconds'),
      'Time from a run starting (admitted) to its terminal event, by workflow and final status.',
      ['workflow', 'status'],
      RUN_SECONDS,
      registry,
    );
    this.queueWait = new LocalHistogram(
      name('run_queue_wait_seconds'),
      'Time a run waited for a slot, from queued to started, by workflow.',
      ['workflow'],
      WAIT_SECONDS,
      registry,
    );
    new Gauge({
      name: name('runs_in_flight'),
      help: 'Runs holding an admission slot (running) now.',
      registers,
      collect() {
        this.set(admission.stats().inFlight);
      },
    });
    new Gauge({
      name: name('runs_waiting'),
      help: 'Runs waiting in the admission queue now.',
      registers,
      collect() {
        this.set(admission.stats().waiting);
      },
    });
    new Gauge({
      name: name('user_runs_in_flight'),
      help: 'Runs in flight per user, for users holding at least one (tracked when per_user_max_concurrency > 0).',
      labelNames: ['user_id'],
      registers,
      collect() {
        this.reset();
        for (const [user, n] of admission.perUserInFlight()) this.set({ user_id: user }, n);
      },
    });
    const rejections = new LocalCounter(
      name('admission_rejections_total'),
      'Runs refused admission, by code: queue_full (429), queue_timeout and shutting_down (503).',
      ['code'],
      registry,
    );
    this.rejections = Object.fromEntries(REJECTION_CODES.map((code) => [code, rejections.series(code)])) as Record<RejectionCode, CounterSeries>;
    const metrics = this;
    new Gauge({
      name: name('sse_connections'),
      help: 'Server-Sent Events responses open now.',
      registers,
      collect() {
        this.set(metrics.openSse);
      },
    });
    this.llmTokens = new LocalCounter(
      name('llm_tokens_total'),
      'Tokens the LLMs reported, by configured llm and type (input = prompt, output = completion).',
      ['llm', 'type'],
      registry,
    );
    this.ttft = new LocalHistogram(
      name('llm_time_to_first_token_seconds'),
      'Time from an LLM call starting to its first generated text token, by configured llm.',
      ['llm'],
      TTFT_SECONDS,
      registry,
    );
    this.toolCalls = new LocalCounter(name('tool_calls_total'), 'Tool calls, by tool and outcome (ok, error, aborted).', ['tool', 'outcome'], registry);
    // Series exist (at 0) from the start, so rates are defined before the first run.
    for (const workflow of workflowNames) this.workflowSeries(workflow);
  }

  /** The Prometheus text of this app's metrics and the process's. */
  async render(): Promise<string> {
    const [own, process] = await Promise.all([this.registry.metrics(), processMetrics().metrics()]);
    return own + process;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** A run refused before it was created (queue_full, shutting_down). */
  rejected(code: RejectionCode): void {
    this.rejections[code].inc();
  }

  /** Counts an SSE response as open until `closed` (its stream's signal) aborts. */
  trackSse(closed: AbortSignal): void {
    if (closed.aborted) return;
    this.openSse++;
    closed.addEventListener('abort', this.onSseClosed, { once: true });
  }

  private readonly onSseClosed = (): void => {
    this.openSse--;
  };

  /** The steps counted: LLM calls (tokens, time to first token) and tool calls. */
  readonly stepKinds: ReadonlySet<string> = new Set(['LLM_END', 'TOOL_END']);

  onRunEvent(runId: string, type: Exclude<RunEventType, 'token'>, data: unknown): void {
    switch (type) {
      case 'step':
        this.onStep(data as StepEventData);
        return;
      case 'run.queued':
        this.live.set(runId, {
          series: this.workflowSeries((data as { workflow: string }).workflow),
          queuedAt: performance.now(),
          startedAt: -1,
        });
        return;
      case 'run.started': {
        const run = this.live.get(runId);
        if (run === undefined) return;
        run.startedAt = performance.now();
        run.series.queueWait.observe((run.startedAt - run.queuedAt) / 1000);
        return;
      }
      case 'run.succeeded':
        this.onFinished(runId, 'succeeded');
        return;
      case 'run.cancelled':
        this.onFinished(runId, 'cancelled');
        return;
      case 'run.failed':
        this.onFinished(runId, 'failed');
        if ((data as { error?: { code?: string } } | undefined)?.error?.code === 'queue_timeout') this.rejections.queue_timeout.inc();
        return;
    }
  }

  private onFinished(runId: string, status: FinalStatus): void {
    const run = this.live.get(runId);
    if (run === undefined) return;
    this.live.delete(runId);
    run.series.runs[status].inc();
    if (run.startedAt >= 0) run.series.duration[status].observe((performance.now() - run.startedAt) / 1000);
  }

  private onStep(step: StepEventData): void {
    if (step.kind === 'LLM_END') {
      const llm = this.llmSeries(step.name);
      const usage = step.usage;
      if (usage !== undefined) {
        if (usage.prompt_tokens) llm.input.inc(usage.prompt_tokens);
        if (usage.completion_tokens) llm.output.inc(usage.completion_tokens);
      }
      const ttftMs = step.time_to_first_token_ms;
      if (typeof ttftMs === 'number') llm.ttft.observe(ttftMs / 1000);
    } else if (step.kind === 'TOOL_END') {
      const tool = this.toolSeries(step.name);
      const error = step.data?.error as { code?: unknown } | undefined;
      (error === undefined ? tool.ok : error.code === 'aborted' ? tool.aborted : tool.error).inc();
    }
  }

  private workflowSeries(workflow: string): WorkflowSeries {
    let series = this.workflows.get(workflow);
    if (series === undefined) {
      const byStatus = <T>(make: (status: FinalStatus) => T) =>
        Object.fromEntries(FINAL_STATUSES.map((status) => [status, make(status)])) as Record<FinalStatus, T>;
      series = {
        runs: byStatus((status) => this.runs.series(workflow, status)),
        duration: byStatus((status) => this.runDuration.series(workflow, status)),
        queueWait: this.queueWait.series(workflow),
      };
      this.workflows.set(workflow, series);
    }
    return series;
  }

  private llmSeries(llm: string): LlmSeries {
    let series = this.llms.get(llm);
    if (series === undefined) {
      series = { input: this.llmTokens.series(llm, 'input'), output: this.llmTokens.series(llm, 'output'), ttft: this.ttft.series(llm) };
      this.llms.set(llm, series);
    }
    return series;
  }

  private toolSeries(tool: string): ToolSeries {
    let series = this.tools.get(tool);
    if (series === undefined) {
      series = {
        ok: this.toolCalls.series(tool, 'ok'),
        error: this.toolCalls.series(tool, 'error'),
        aborted: this.toolCalls.series(tool, 'aborted'),
      };
      this.tools.set(tool, series);
    }
    return series;
  }
}
