import type { Metric, Registry } from 'prom-client';

/**
 * Counters and histograms for the run path: each label set is a series object built once, whose
 * `inc` / `observe` only adds to plain numbers (no label hashing, no allocation). prom-client's
 * own `labels(...).observe()` hashes the label set and allocates on every call (DESIGN §8: "a few
 * %"). The registry reads these through `get()`, in prom-client's own format, only when scraped.
 */

type Labels = Record<string, string>;

interface SampleValue {
  value: number;
  labels: Labels;
  metricName?: string;
}

/** What prom-client's Registry needs of a metric (it calls `get()` when scraped). */
abstract class LocalMetric<S> {
  readonly aggregator = 'sum';
  protected readonly byKey = new Map<string, S>();

  constructor(
    readonly name: string,
    readonly help: string,
    protected readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  abstract readonly type: 'counter' | 'histogram';
  protected abstract make(labels: Labels): S;
  protected abstract values(series: S): SampleValue[];
  abstract reset(): void;

  /** The series of these label values (in `labelNames` order), created on first use. */
  series(...labelValues: string[]): S {
    const key = labelValues.join('\u0000');
    let series = this.byKey.get(key);
    if (series === undefined) {
      if (labelValues.length !== this.labelNames.length) throw new Error(`${this.name} takes labels ${this.labelNames.join(', ')}`);
      const labels: Labels = {};
      this.labelNames.forEach((name, i) => (labels[name] = labelValues[i]!));
      series = this.make(labels);
      this.byKey.set(key, series);
    }
    return series;
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: SampleValue[] }> {
    const values: SampleValue[] = [];
    for (const series of this.byKey.values()) values.push(...this.values(series));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export class CounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
}

export class LocalCounter extends LocalMetric<CounterSeries> {
  readonly type = 'counter';
  protected make(labels: Labels): CounterSeries {
    return new CounterSeries(labels);
  }
  protected values(series: CounterSeries): SampleValue[] {
    return [{ value: series.value, labels: series.labels }];
  }
  reset(): void {
    for (const series of this.byKey.values()) series.value = 0;
  }
}

export class HistogramSeries {
  /** Observations per bucket (not cumulative), the last one past the largest bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export class LocalHistogram extends LocalMetric<HistogramSeries> {
  readonly type = 'histogram';
  private readonly bounds: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry);
    this.bounds = [...buckets].sort((a, b) => a - b);
  }

  protected make(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }

  protected values(series: HistogramSeries): SampleValue[] {
    const out: SampleValue[] = [];
    let cumulative = 0;
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += series.counts[i]!;
      const le = i < this.bounds.length ? String(this.bounds[i]) : '+Inf';
      out.push({ value: cumulative, labels: { le, ...series.labels }, metricName: `${this.name}_bucket` });
    }
    out.push({ value: series.sum, labels: series.labels, metricName: `${this.name}_sum` });
    out.push({ value: series.count, labels: series.labels, metricName: `${this.name}_count` });
    return out;
  }

  reset(): void {
    for (const series of this.byKey.values()) {
      series.counts.fill(0);
      series.sum = 0;
      series.count = 0;
    }
  }
}
