import type { Usage } from '../store/run.js';

/** The intermediate-step kinds of the NeMo Agent Toolkit, without their _START/_END suffix. */
export type StepKind = 'WORKFLOW' | 'LLM' | 'TOOL' | 'FUNCTION' | 'SPAN' | 'CUSTOM';

/** Payload of a `step` event (DESIGN §2). A START and its END share `step_id`. */
export interface StepEventData {
  step_id: string;
  parent_id: string | null;
  kind: `${StepKind}_START` | `${StepKind}_END`;
  name: string;
  data?: { input?: unknown; output?: unknown; error?: unknown };
  usage?: Partial<Usage>;
  duration_ms?: number;
  [extra: string]: unknown;
}

export interface StepEnd {
  output?: unknown;
  error?: unknown;
  usage?: Partial<Usage>;
  /** Extra fields kept on the END event (finish_reason, model…). */
  extra?: Record<string, unknown>;
}

/** A started step; `end()` emits its END event once (later calls are ignored). */
export interface StepHandle {
  readonly step_id: string;
  end(result?: StepEnd): void;
}
