/**
 * Counters, gauges and histograms for the per-request path, exposed through a prom-client Registry.
 *
 * Why not prom-client's own: its `labels(...)` child re-validates the label object and re-hashes it on EVERY
 * `inc()` / `observe()` (histogram.js `observe` → validateLabel + hashObject), which bench/extproc measured at
 * ≈2 µs per update — several per request, more than the scheduler itself. Here the label set is validated and
 * hashed once, when a child is first asked for; a child's update is a bucket search and two additions.
 *
 * The exposition is prom-client's: each metric implements the `get()` contract the Registry formats, so names,
 * label order, `le` values, `_bucket`/`_sum`/`_count` and HELP/TYPE lines come out byte-for-byte as they did.
 */
import type { Registry } from "prom-client";

type Labels<L extends string> = Partial<Record<L, string | number>>;

export interface HotMetricConfig<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
  readonly registers?: readonly Registry[];
}

export interface HotHistogramConfig<L extends string> extends HotMetricConfig<L> {
  /** Upper bounds, strictly increasing; +Inf is implicit. */
  readonly buckets: readonly number[];
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  /** Labels printed after `labels` (prom-client's histogram puts `le` first, then these). */
  sharedLabels?: Record<string, string>;
  metricName?: string;
}

/** What prom-client's Registry reads from a metric. */
interface MetricSnapshot {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  values: MetricValue[];
  aggregator: "sum";
}

const NO_LABELS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** Shared child bookkeeping: one child per distinct label-value tuple, found by a joined key. */
/** What every child can do: say whether it has been updated since creation or reset, and be zeroed. */
interface Child {
  touched: boolean;
  clear(): void;
}

abstract class HotMetric<L extends string, C extends Child> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly aggregator = "sum" as const;
  protected readonly children = new Map<string, { labels: Record<string, string>; child: C }>();

  constructor(config: HotMetricConfig<L>) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(config.name)) throw new TypeError(`invalid metric name "${config.name}"`);
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames ?? [];
    for (const r of config.registers ?? []) {
      // The Registry only calls name/help/type/get()/aggregator; its TS type names prom-client's classes.
      r.registerMetric(this as unknown as Parameters<Registry["registerMetric"]>[0]);
    }
  }

  protected abstract create(): C;

  #unlabelled: C | undefined;

  /** The child for a label set; validated and cached on first use, so keep the returned object on hot paths. */
  labels(labels: Labels<L>): C {
    const names = this.labelNames;
    if (names.length === 0 && this.#unlabelled !== undefined) return this.#unlabelled;
    const key = this.#key(labels);
    const hit = this.children.get(key);
    if (hit !== undefined) return hit.child;
    const clean: Record<string, string> = {};
    for (const k of Object.keys(labels)) {
      if (!names.includes(k as L)) throw new TypeError(`metric ${this.name}: unknown label "${k}"`);
    }
    for (const n of names) {
      const v = labels[n];
      if (v !== undefined) clean[n] = String(v);
    }
    const child = this.create();
    this.children.set(key, { labels: names.length === 0 ? NO_LABELS : clean, child });
    if (names.length === 0) this.#unlabelled = child;
    return child;
  }

  /** Drops one series (absent: nothing happens); a cached child of it stops counting. O(labels), not O(series). */
  remove(labels: Labels<L>): void {
    const names = this.labelNames;
    for (const k of Object.keys(labels)) {
      if (!names.includes(k as L)) throw new TypeError(`metric ${this.name}: unknown label "${k}"`);
    }
    if (names.length === 0) this.#unlabelled = undefined;
    this.children.delete(this.#key(labels));
  }

  /** The children map's key: the label values in labelNames order, NUL-separated. */
  #key(labels: Labels<L>): string {
    const names = this.labelNames;
    let key = "";
    for (let i = 0; i < names.length; i++) {
      const v = labels[names[i]!];
      key += i === 0 ? String(v ?? "") : `\u0000${v ?? ""}`;
    }
    return key;
  }

  /** Drops the series whose labels match: they leave the exposition and their cached children stop counting. */
  removeWhere(match: (labels: Readonly<Record<string, string>>) => boolean): void {
    for (const [key, entry] of this.children) if (match(entry.labels)) this.children.delete(key);
  }

  /**
   * prom-client's reset(): every series disappears until updated again. Children are zeroed rather than dropped,
   * because callers keep them (that is the point) and their later updates must still count.
   */
  reset(): void {
    for (const { child } of this.children.values()) child.clear();
    // prom-client re-creates a label-less counter or gauge at 0 on reset (a histogram stays absent).
    if (this.labelNames.length === 0 && this.type !== "histogram") this.exportUnlabelled();
  }

  abstract readonly type: "counter" | "gauge" | "histogram";

  /**
   * As prom-client: a metric without labels is exported (at zero) from the start, so dashboards and `rate()` see
   * the series before the first update. Subclasses call this at the end of their constructor.
   */
  protected exportUnlabelled(): void {
    if (this.labelNames.length === 0) this.labels({}).touched = true;
  }

  /** Series that have been updated at least once: as prom-client, a child that was only asked for is not exported. */
  protected *touched(): Generator<{ labels: Record<string, string>; child: C }> {
    for (const entry of this.children.values()) if (entry.child.touched) yield entry;
  }
}

/** True for the metrics of this module (they can drop series by a label predicate). */
export function isHotMetric(
  m: unknown,
): m is { removeWhere(match: (labels: Readonly<Record<string, string>>) => boolean): void } {
  return m instanceof HotMetric;
}

/** A counter's or gauge's series: one number. */
abstract class ScalarChild {
  value = 0;
  touched = false;
  clear(): void {
    this.value = 0;
    this.touched = false;
  }
}

/** Counters and gauges export the same shape: one sample per touched series. */
abstract class ScalarMetric<L extends string, C extends ScalarChild> extends HotMetric<L, C> {
  constructor(config: HotMetricConfig<L>) {
    super(config);
    this.exportUnlabelled();
  }

  async get(): Promise<MetricSnapshot> {
    const values: MetricValue[] = [];
    for (const { labels, child } of this.touched()) values.push({ value: child.value, labels });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

export class HotCounterChild extends ScalarChild {
  inc(by = 1): void {
    if (!(by >= 0)) throw new TypeError(`counter increment must be a non-negative number, got ${by}`);
    this.value += by;
    this.touched = true;
  }
}

export class HotCounter<L extends string = string> extends ScalarMetric<L, HotCounterChild> {
  readonly type = "counter" as const;

  protected create(): HotCounterChild {
    return new HotCounterChild();
  }

  /** `inc()`, `inc(by)`, `inc(labels)` or `inc(labels, by)`, as prom-client. */
  inc(labelsOrBy?: Labels<L> | number, by?: number): void {
    if (typeof labelsOrBy === "object") this.labels(labelsOrBy).inc(by);
    else this.labels({}).inc(labelsOrBy);
  }
}

export class HotGaugeChild extends ScalarChild {
  inc(by = 1): void {
    this.value += by;
    this.touched = true;
  }
  dec(by = 1): void {
    this.value -= by;
    this.touched = true;
  }
  set(value: number): void {
    this.value = value;
    this.touched = true;
  }
}

export class HotGauge<L extends string = string> extends ScalarMetric<L, HotGaugeChild> {
  readonly type = "gauge" as const;

  protected create(): HotGaugeChild {
    return new HotGaugeChild();
  }

  inc(labelsOrBy?: Labels<L> | number, by?: number): void {
    if (typeof labelsOrBy === "object") this.labels(labelsOrBy).inc(by);
    else this.labels({}).inc(labelsOrBy);
  }

  dec(labelsOrBy?: Labels<L> | number, by?: number): void {
    if (typeof labelsOrBy === "object") this.labels(labelsOrBy).dec(by);
    else this.labels({}).dec(labelsOrBy);
  }

  set(labelsOrValue: Labels<L> | number, value?: number): void {
    if (typeof labelsOrValue === "object") this.labels(labelsOrValue).set(value ?? 0);
    else this.labels({}).set(labelsOrValue);
  }
}

export class HotHistogramChild {
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  touched = false;
  readonly #bounds: Float64Array;

  constructor(bounds: Float64Array) {
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    // Non-finite values would poison _sum forever; prom-client throws, which on a request path is worse.
    if (!Number.isFinite(value)) return;
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
    this.touched = true;
  }

  clear(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
    this.touched = false;
  }
}

export class HotHistogram<L extends string = string> extends HotMetric<L, HotHistogramChild> {
  readonly type = "histogram" as const;
  readonly #bounds: Float64Array;

  constructor(config: HotHistogramConfig<L>) {
    super(config);
    if ((config.labelNames ?? []).includes("le" as L)) throw new TypeError(`metric ${config.name}: "le" is reserved`);
    for (let i = 1; i < config.buckets.length; i++) {
      if (!(config.buckets[i]! > config.buckets[i - 1]!))
        throw new TypeError(`metric ${config.name}: buckets must be strictly increasing`);
    }
    this.#bounds = Float64Array.from(config.buckets);
    this.exportUnlabelled();
  }

  protected create(): HotHistogramChild {
    return new HotHistogramChild(this.#bounds);
  }

  /** `observe(value)` or `observe(labels, value)`, as prom-client. */
  observe(labelsOrValue: Labels<L> | number, value?: number): void {
    if (typeof labelsOrValue === "object") this.labels(labelsOrValue).observe(value ?? Number.NaN);
    else this.labels({}).observe(labelsOrValue);
  }

  /** What the Registry formats: `le` first, then the series labels, exactly as prom-client lays them out. */
  async getForPromString(): Promise<MetricSnapshot> {
    return this.#snapshot(true);
  }

  /** prom-client's JSON shape: labels merged with `le`. */
  async get(): Promise<MetricSnapshot> {
    return this.#snapshot(false);
  }

  #snapshot(shared: boolean): MetricSnapshot {
    const values: MetricValue[] = [];
    const bounds = this.#bounds;
    const bucket = `${this.name}_bucket`;
    const value = (labels: Record<string, string>, extra: Record<string, string | number>, v: number, n: string) =>
      values.push(
        shared
          ? { value: v, labels: extra, sharedLabels: labels, metricName: n }
          : { value: v, labels: { ...labels, ...extra }, metricName: n },
      );
    for (const { labels, child } of this.touched()) {
      let cumulative = 0;
      for (let i = 0; i <= bounds.length; i++) {
        cumulative += child.counts[i]!;
        value(labels, { le: i < bounds.length ? bounds[i]! : "+Inf" }, cumulative, bucket);
      }
      value(labels, {}, child.sum, `${this.name}_sum`);
      value(labels, {}, child.count, `${this.name}_count`);
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}
