/**
 * Label bounds for values that come from requests (model names in bodies, tenant headers): Prometheus keeps a
 * series until the exporter drops it, so an unbounded label is a memory leak in the EPP and in every scraper, and
 * one long value is copied into every series that carries it (about 30 per model name). See docs/security.md.
 */

/** Metric label value for everything past a bound. */
export const OTHER_LABEL = "other";

/** Defaults of `--metrics-label-max-length`, `--metrics-model-label-limit`, `--metrics-model-label-idle-expiry`. */
export const DEFAULT_LABEL_MAX_LENGTH = 256;
export const DEFAULT_MODEL_LABEL_LIMIT = 100;
export const DEFAULT_MODEL_LABEL_IDLE_MS = 30 * 60_000;

export type CapReason = "too_long" | "too_many";

export interface LabelCapperOptions {
  /** Distinct uncapped values that keep their own series; later ones become "other". */
  readonly limit: number;
  /** Longer values become "other" (UTF-16 code units, as `String.length`). Default: no length bound. */
  readonly maxLength?: number;
  /** Values not seen for this long are forgotten by `sweep()`, freeing their slot. Default: never. */
  readonly idleMs?: number;
  /** Values that never count against `limit` and never expire (configured model names). */
  readonly pinned?: (value: string) => boolean;
  /** Called for every capped value (counted and logged by the owner, rate-limited). */
  readonly onCapped?: (reason: CapReason, value: string) => void;
  /** ms clock for idle expiry; injectable for tests. Default Date.now. */
  readonly now?: () => number;
}

/**
 * Bounds a label's cardinality and length. The hot path is one Map lookup and a store of a coarse timestamp:
 * `now()` is read only by `sweep()`, which runs on a background timer.
 */
export class LabelCapper {
  readonly #limit: number;
  readonly #maxLength: number;
  readonly #idleMs: number;
  readonly #pinned: ((value: string) => boolean) | undefined;
  readonly #onCapped: ((reason: CapReason, value: string) => void) | undefined;
  readonly #now: () => number;
  /** Value → the sweep clock when it was last used. */
  readonly #seen = new Map<string, number>();
  #clock: number;

  constructor(options: LabelCapperOptions | number) {
    const o = typeof options === "number" ? { limit: options } : options;
    this.#limit = o.limit;
    this.#maxLength = o.maxLength ?? Number.POSITIVE_INFINITY;
    this.#idleMs = o.idleMs ?? Number.POSITIVE_INFINITY;
    this.#pinned = o.pinned;
    this.#onCapped = o.onCapped;
    this.#now = o.now ?? Date.now;
    this.#clock = this.#now();
  }

  value(v: string): string {
    const seen = this.#seen.get(v);
    if (seen !== undefined) {
      if (seen !== this.#clock) this.#seen.set(v, this.#clock);
      return v;
    }
    if (v.length > this.#maxLength) {
      this.#onCapped?.("too_long", v);
      return OTHER_LABEL;
    }
    if (v === OTHER_LABEL || this.#pinned?.(v)) return v;
    if (this.#seen.size >= this.#limit) {
      this.#onCapped?.("too_many", v);
      return OTHER_LABEL;
    }
    this.#seen.set(v, this.#clock);
    return v;
  }

  /** Forgets values unused for `idleMs` and returns them, so their series can be dropped. */
  sweep(): string[] {
    const now = this.#now();
    const expired: string[] = [];
    for (const [v, at] of this.#seen) if (now - at >= this.#idleMs) expired.push(v);
    for (const v of expired) this.#seen.delete(v);
    this.#clock = now;
    return expired;
  }

  get size(): number {
    return this.#seen.size;
  }
}
