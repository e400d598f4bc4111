/**
 * Label cardinality caps for values that come from requests (tenant headers, model names in bodies): Prometheus
 * series are never dropped once created, so an unbounded label is a memory leak in every scraper too.
 */

/** Metric label value for everything past the cap. */
export const OTHER_LABEL = "other";

/** Bounds a label's cardinality: the first `limit` distinct values keep their name, later ones become "other". */
export class LabelCapper {
  readonly #limit: number;
  readonly #seen = new Set<string>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  value(v: string): string {
    if (this.#seen.has(v)) return v;
    if (this.#seen.size >= this.#limit) return OTHER_LABEL;
    this.#seen.add(v);
    return v;
  }
}
