/**
 * Metric and load scorers (docs/design/scheduling.md §2). Each returns one raw score per endpoint; the framework clamps
 * to [0,1] and weights. Returned arrays are reused between calls (hot path): a result is valid until the next call.
 * Unknown (stale/missing) metrics follow metrics-view.ts: score 0 while any candidate is fresh.
 */
import type { Endpoint } from "../../datastore/types.js";
import { ParamReader } from "../params.js";
import type { PluginFactory, PluginHandle } from "../registry.js";
import type { CycleState, SchedulingRequest, Scorer, ScorerCategory, TypedName } from "../types.js";
import { anyFresh, usableMetrics } from "./metrics-view.js";

/** GIE token-load-scorer default queueThresholdTokens. */
export const DEFAULT_TOKEN_LOAD_THRESHOLD = 4_194_304;

/**
 * `out` with length `n`. Writing `length` is a runtime call even when it does not change, and the scorers' reused
 * arrays almost always already have the pool's size.
 */
export function sized(out: number[], n: number): number[] {
  if (out.length !== n) out.length = n;
  return out;
}

type CountField = "waitingQueueSize" | "runningRequestsSize";

/**
 * `(max − v) / (max − min)` over the known candidates; all equal → 1.0 (GIE queue-scorer and
 * running-requests-size-scorer).
 */
class MinMaxCountScorer implements Scorer {
  readonly typedName: TypedName;
  readonly category: ScorerCategory = "Distribution";
  readonly #handle: PluginHandle;
  readonly #field: CountField;
  readonly #out: number[] = [];

  constructor(typedName: TypedName, handle: PluginHandle, field: CountField) {
    this.typedName = typedName;
    this.#handle = handle;
    this.#field = field;
  }

  score(_state: CycleState, _request: SchedulingRequest, endpoints: readonly Endpoint[]): ArrayLike<number> {
    const now = this.#handle.now();
    const stale = this.#handle.metricsStalenessMs;
    const fresh = anyFresh(endpoints, now, stale);
    const field = this.#field;
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < endpoints.length; i++) {
      const m = usableMetrics(endpoints[i]!, fresh, now, stale);
      if (m === undefined) continue;
      const v = m[field];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const out = sized(this.#out, endpoints.length);
    const range = max - min;
    for (let i = 0; i < endpoints.length; i++) {
      const m = usableMetrics(endpoints[i]!, fresh, now, stale);
      out[i] = m === undefined ? 0 : range > 0 ? (max - m[field]) / range : 1;
    }
    return out;
  }
}

export class QueueScorer extends MinMaxCountScorer {
  constructor(name: string, handle: PluginHandle) {
    super({ type: "queue-scorer", name }, handle, "waitingQueueSize");
  }
}

export class RunningRequestsSizeScorer extends MinMaxCountScorer {
  constructor(name: string, handle: PluginHandle) {
    super({ type: "running-requests-size-scorer", name }, handle, "runningRequestsSize");
  }
}

/** `1 − KVCacheUsagePercent`. */
export class KvCacheUtilizationScorer implements Scorer {
  readonly typedName: TypedName;
  readonly category: ScorerCategory = "Distribution";
  readonly #handle: PluginHandle;
  readonly #out: number[] = [];

  constructor(name: string, handle: PluginHandle, type = "kv-cache-utilization-scorer") {
    this.typedName = { type, name };
    this.#handle = handle;
  }

  score(_state: CycleState, _request: SchedulingRequest, endpoints: readonly Endpoint[]): ArrayLike<number> {
    const now = this.#handle.now();
    const stale = this.#handle.metricsStalenessMs;
    const fresh = anyFresh(endpoints, now, stale);
    const out = sized(this.#out, endpoints.length);
    for (let i = 0; i < endpoints.length; i++) {
      const m = usableMetrics(endpoints[i]!, fresh, now, stale);
      out[i] = m === undefined ? 0 : 1 - m.kvCacheUsagePercent;
    }
    return out;
  }
}

/**
 * GIE lora-affinity-scorer on the post-rewrite target model: adapter active → 1.0; a free adapter slot
 * (active + waiting < max) → 0.8; adapter waiting → 0.6; else 0.
 *
 * Better than GIE: an endpoint that reports the target as one of its served base models (`model_name` on its
 * metrics) scores 1.0. GIE scores a base-model request like a cold adapter, so every base request is pulled
 * toward pods with free adapter slots and away from pods without LoRA — the routing benchmark measured all base
 * traffic landing on the LoRA pods at 30 % load. Endpoints whose served models are unknown keep GIE's rules.
 */
export class LoraAffinityScorer implements Scorer {
  readonly typedName: TypedName;
  readonly category: ScorerCategory = "Affinity";
  readonly #handle: PluginHandle;
  readonly #out: number[] = [];

  constructor(name: string, handle: PluginHandle) {
    this.typedName = { type: "lora-affinity-scorer", name };
    this.#handle = handle;
  }

  score(_state: CycleState, request: SchedulingRequest, endpoints: readonly Endpoint[]): ArrayLike<number> {
    const now = this.#handle.now();
    const stale = this.#handle.metricsStalenessMs;
    const fresh = anyFresh(endpoints, now, stale);
    const target = request.targetModel;
    const out = sized(this.#out, endpoints.length);
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!;
      const m = usableMetrics(e, fresh, now, stale);
      if (m === undefined) out[i] = 0;
      // A base model or an alias (from the server's own model list) needs no adapter slot.
      else if (
        m.activeModels.has(target) ||
        m.servedModels?.has(target) ||
        (e.models?.ids.has(target) === true && !e.models.adapters.has(target))
      )
        out[i] = 1;
      else if (m.activeModels.size + m.waitingModels.size < m.maxActiveModels || m.lora === "pending") out[i] = 0.8;
      else if (m.waitingModels.has(target)) out[i] = 0.6;
      else out[i] = 0;
    }
    return out;
  }
}

/**
 * `1 − min(1, inflightTokens / threshold)` from this replica's own in-flight token estimate, so it needs no
 * scrape and is never stale.
 */
export class TokenLoadScorer implements Scorer {
  readonly typedName: TypedName;
  readonly category: ScorerCategory = "Distribution";
  readonly threshold: number;
  readonly #out: number[] = [];

  constructor(name: string, threshold = DEFAULT_TOKEN_LOAD_THRESHOLD) {
    this.typedName = { type: "token-load-scorer", name };
    this.threshold = threshold;
  }

  score(_state: CycleState, _request: SchedulingRequest, endpoints: readonly Endpoint[]): ArrayLike<number> {
    const out = sized(this.#out, endpoints.length);
    for (let i = 0; i < endpoints.length; i++) {
      const load = endpoints[i]!.inflightTokens / this.threshold;
      out[i] = 1 - Math.min(load, 1);
    }
    return out;
  }
}

function noParams(params: unknown): void {
  new ParamReader(params).done();
}

export const queueScorerFactory: PluginFactory = (name, params, handle) => {
  noParams(params);
  return new QueueScorer(name, handle) satisfies Scorer;
};

export const runningRequestsSizeScorerFactory: PluginFactory = (name, params, handle) => {
  noParams(params);
  return new RunningRequestsSizeScorer(name, handle) satisfies Scorer;
};

export const kvCacheUtilizationScorerFactory: PluginFactory = (name, params, handle) => {
  noParams(params);
  return new KvCacheUtilizationScorer(name, handle) satisfies Scorer;
};

/** `kv-cache-scorer` is the pre-v1.0 name of the same scorer; older configs still use it. */
export const kvCacheScorerAliasFactory: PluginFactory = (name, params, handle) => {
  noParams(params);
  return new KvCacheUtilizationScorer(name, handle, "kv-cache-scorer") satisfies Scorer;
};

export const loraAffinityScorerFactory: PluginFactory = (name, params, handle) => {
  noParams(params);
  return new LoraAffinityScorer(name, handle) satisfies Scorer;
};

export const tokenLoadScorerFactory: PluginFactory = (name, params) => {
  const p = new ParamReader(params);
  const threshold = p.integer("queueThresholdTokens", DEFAULT_TOKEN_LOAD_THRESHOLD, { min: 1 });
  p.done();
  return new TokenLoadScorer(name, threshold) satisfies Scorer;
};
