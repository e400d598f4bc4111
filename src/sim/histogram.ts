/** A fixed-bucket Prometheus histogram rendered by hand (text format 0.0.4); observe() is a short linear scan. */
export class Histogram {
  readonly buckets: readonly number[];
  #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(buckets: readonly number[]) {
    this.buckets = buckets;
    this.#counts = new Float64Array(buckets.length);
  }

  get count(): number {
    return this.#count;
  }

  get sum(): number {
    return this.#sum;
  }

  observe(value: number): void {
    this.#sum += value;
    this.#count++;
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]!) {
        this.#counts[i]!++;
        return;
      }
    }
  }

  /** Appends `_bucket`, `_sum` and `_count` lines; `labels` is the inside of `{…}` without braces. */
  render(out: string[], name: string, labels: string): void {
    let cumulative = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      cumulative += this.#counts[i]!;
      out.push(`${name}_bucket{${labels},le="${formatLe(this.buckets[i]!)}"} ${cumulative}`);
    }
    out.push(`${name}_bucket{${labels},le="+Inf"} ${this.#count}`);
    out.push(`${name}_sum{${labels}} ${this.#sum}`);
    out.push(`${name}_count{${labels}} ${this.#count}`);
  }
}

/** Python's prometheus_client prints bucket bounds as floats ("1.0", "0.005"); match it so label values agree. */
function formatLe(v: number): string {
  return Number.isInteger(v) ? `${v}.0` : String(v);
}

/** vLLM's bucket boundaries (vllm/v1/metrics/loggers.py), in seconds. */
export const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
  640.0, 2560.0,
] as const;
export const ITL_BUCKETS = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
] as const;
export const REQUEST_LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0,
  7680.0,
] as const;
