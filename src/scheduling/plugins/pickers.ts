/**
 * Pickers (docs/design/scheduling.md §3). Each returns at most `maxNumOfEndpoints` endpoints, best first; the rest are
 * fallbacks the proxy may try. Scratch arrays are reused between calls; the returned array is always new.
 */
import type { Endpoint } from "../../datastore/types.js";
import { ParamReader } from "../params.js";
import { shuffleInPlace } from "../random.js";
import type { PluginFactory, PluginHandle } from "../registry.js";
import type { CycleState, Picker, ScoredEndpoint, TypedName } from "../types.js";

export const DEFAULT_MAX_NUM_OF_ENDPOINTS = 1;

function byScoreDesc(a: ScoredEndpoint, b: ScoredEndpoint): number {
  return b.score - a.score;
}

function firstN(sorted: readonly ScoredEndpoint[], n: number): Endpoint[] {
  const count = Math.min(n, sorted.length);
  const out = new Array<Endpoint>(count);
  for (let i = 0; i < count; i++) out[i] = sorted[i]!.endpoint;
  return out;
}

/**
 * GIE max-score-picker: shuffle, then a STABLE sort by score descending, then the top N. The shuffle makes the
 * tie-break uniformly random, so equally good endpoints share load instead of the first one taking it all.
 */
export class MaxScorePicker implements Picker {
  readonly typedName: TypedName;
  readonly maxNumOfEndpoints: number;
  readonly #handle: PluginHandle;
  readonly #scratch: ScoredEndpoint[] = [];

  constructor(name: string, handle: PluginHandle, maxNumOfEndpoints = DEFAULT_MAX_NUM_OF_ENDPOINTS) {
    this.typedName = { type: "max-score-picker", name };
    this.#handle = handle;
    this.maxNumOfEndpoints = maxNumOfEndpoints;
  }

  pick(_state: CycleState, scored: readonly ScoredEndpoint[]): readonly Endpoint[] {
    if (this.maxNumOfEndpoints === 1) return pickOneUniform(scored, this.#handle);
    const buf = this.#scratch;
    buf.length = 0;
    for (let i = 0; i < scored.length; i++) buf.push(scored[i]!);
    shuffleInPlace(buf, this.#handle);
    buf.sort(byScoreDesc); // Array.prototype.sort is stable (ES2019).
    const out = firstN(buf, this.maxNumOfEndpoints);
    buf.length = 0; // do not keep endpoints alive between requests
    return out;
  }
}

/**
 * One pass instead of shuffle + sort when only the best is wanted (the default): the k-th endpoint tied for the
 * best score so far replaces the pick with probability 1/k, which leaves every tied endpoint equally likely —
 * the same distribution as GIE's shuffle-then-stable-sort, for one random draw per tie instead of n.
 */
function pickOneUniform(scored: readonly ScoredEndpoint[], rng: PluginHandle): Endpoint[] {
  let best: ScoredEndpoint | undefined;
  let ties = 0;
  for (let i = 0; i < scored.length; i++) {
    const s = scored[i]!;
    if (best === undefined || s.score > best.score) {
      best = s;
      ties = 1;
    } else if (s.score === best.score && rng.random() * ++ties < 1) {
      best = s;
    }
  }
  return best === undefined ? [] : [best.endpoint];
}

/** GIE random-picker: shuffle, take N; ignores scores. */
export class RandomPicker implements Picker {
  readonly typedName: TypedName;
  readonly maxNumOfEndpoints: number;
  readonly #handle: PluginHandle;
  readonly #scratch: ScoredEndpoint[] = [];

  constructor(name: string, handle: PluginHandle, maxNumOfEndpoints = DEFAULT_MAX_NUM_OF_ENDPOINTS) {
    this.typedName = { type: "random-picker", name };
    this.#handle = handle;
    this.maxNumOfEndpoints = maxNumOfEndpoints;
  }

  pick(_state: CycleState, scored: readonly ScoredEndpoint[]): readonly Endpoint[] {
    const buf = this.#scratch;
    buf.length = 0;
    for (let i = 0; i < scored.length; i++) buf.push(scored[i]!);
    shuffleInPlace(buf, this.#handle);
    const out = firstN(buf, this.maxNumOfEndpoints);
    buf.length = 0;
    return out;
  }
}

/**
 * GIE weighted-random-picker, A-Res (Efraimidis–Spirakis): key = U^(1/score), take the N largest keys, so each
 * endpoint is chosen with probability proportional to its score. Computed as ln(U)/score (same order, no
 * underflow for small scores). Score ≤ 0 gets key −∞: only chosen when nothing better is left, and with all
 * scores 0 the pre-shuffle makes the choice uniformly random.
 */
export class WeightedRandomPicker implements Picker {
  readonly typedName: TypedName;
  readonly maxNumOfEndpoints: number;
  readonly #handle: PluginHandle;
  readonly #keys: number[] = [];
  readonly #order: number[] = [];
  readonly #byKeyDesc: (a: number, b: number) => number;

  constructor(name: string, handle: PluginHandle, maxNumOfEndpoints = DEFAULT_MAX_NUM_OF_ENDPOINTS) {
    this.typedName = { type: "weighted-random-picker", name };
    this.#handle = handle;
    this.maxNumOfEndpoints = maxNumOfEndpoints;
    const keys = this.#keys;
    // Created once: a comparator over the reused key array, not a per-call closure.
    this.#byKeyDesc = (a, b) => {
      const ka = keys[a]!;
      const kb = keys[b]!;
      return ka === kb ? 0 : ka > kb ? -1 : 1;
    };
  }

  pick(_state: CycleState, scored: readonly ScoredEndpoint[]): readonly Endpoint[] {
    const n = scored.length;
    const keys = this.#keys;
    const order = this.#order;
    keys.length = n;
    order.length = n;
    for (let i = 0; i < n; i++) {
      const s = scored[i]!.score;
      // 1 − U lies in (0, 1], so the log is finite.
      keys[i] = s > 0 ? Math.log(1 - this.#handle.random()) / s : Number.NEGATIVE_INFINITY;
      order[i] = i;
    }
    shuffleInPlace(order, this.#handle);
    order.sort(this.#byKeyDesc);
    const count = Math.min(this.maxNumOfEndpoints, n);
    const out = new Array<Endpoint>(count);
    for (let i = 0; i < count; i++) out[i] = scored[order[i]!]!.endpoint;
    return out;
  }
}

function readMaxNum(params: unknown): number {
  const p = new ParamReader(params);
  const n = p.integer("maxNumOfEndpoints", DEFAULT_MAX_NUM_OF_ENDPOINTS, { min: 1 });
  p.done();
  return n;
}

export const maxScorePickerFactory: PluginFactory = (name, params, handle) =>
  new MaxScorePicker(name, handle, readMaxNum(params)) satisfies Picker;

export const randomPickerFactory: PluginFactory = (name, params, handle) =>
  new RandomPicker(name, handle, readMaxNum(params)) satisfies Picker;

export const weightedRandomPickerFactory: PluginFactory = (name, params, handle) =>
  new WeightedRandomPicker(name, handle, readMaxNum(params)) satisfies Picker;
