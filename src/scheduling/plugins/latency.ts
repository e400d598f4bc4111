/**
 * Own-load and latency-predicting scorers (docs/design/scheduling.md §11). Both read the fused load view of
 * src/datastore/load.ts: the scraped gauges plus what this replica dispatched since they were read, so a burst
 * spreads even while every gauge still says 0.
 *
 * - `inflight-load-scorer`: min-max over fused requests on each pod, as queue-scorer does over the waiting gauge.
 * - `predicted-latency-scorer`: each candidate's predicted TTFT for this request — prefill queued ahead plus its
 *   own uncached prompt (the prefix-cache scorer's estimate, shared through the CycleState) at the pod's learned
 *   prefill rate, plus decode interference from the requests already there and, past a full batch, the wait for a
 *   slot — scored `min TTFT / TTFT`, so the fastest pod gets 1 and a pod predicted twice as slow 0.5.
 */
import {
  DEFAULT_LATENCY_PRIOR,
  fusedRequests,
  type LatencyPrior,
  loadStateOf,
  predictTtftMs,
} from "../../datastore/load.js";
import { type Endpoint, isFresh } from "../../datastore/types.js";
import { ParamReader } from "../params.js";
import type { PluginFactory, PluginHandle } from "../registry.js";
import type { CycleState, PreRequest, SchedulingRequest, Scorer, ScorerCategory, TypedName } from "../types.js";
import { anyFresh } from "./metrics-view.js";
import { PrefixCacheScorer } from "./prefix-cache.js";
import { sized } from "./scorers.js";

/** `(max − v) / (max − min)` over fused requests per pod (own dispatches + gauges); all equal → 1. */
export class InflightLoadScorer implements Scorer {
  readonly typedName: TypedName;
  readonly category: ScorerCategory = "Distribution";
  readonly #out: number[] = [];

  constructor(name: string) {
    this.typedName = { type: "inflight-load-scorer", name };
  }

  score(_state: CycleState, _request: SchedulingRequest, endpoints: readonly Endpoint[]): ArrayLike<number> {
    const n = endpoints.length;
    const out = sized(this.#out, n);
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const v = fusedRequests(endpoints[i]!);
      out[i] = v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const range = max - min;
    for (let i = 0; i < n; i++) out[i] = range > 0 ? (max - out[i]!) / range : 1;
    return out;
  }
}

export class PredictedLatencyScorer implements Scorer, PreRequest {
  readonly typedName: TypedName;
  readonly category: ScorerCategory = "Balance";
  /** Name of the prefix-cache-scorer whose estimate is used; "" = the first configured, if any. */
  readonly prefixCachePlugin: string;
  /** The learner's prior and forgetting rate, given to every endpoint's model this scorer creates (§11.3). */
  readonly prior: LatencyPrior;
  readonly #handle: PluginHandle;
  #prefix: PrefixCacheScorer | undefined;
  #resolved = false;
  readonly #out: number[] = [];
  /** Cached fraction of the prompt per scored endpoint, for preRequest to hand to the load accounting. */
  readonly #cached: number[] = [];
  #scored: readonly Endpoint[] | undefined;
  /** The last cycle's predictions, ms (for tests and /debug). */
  readonly predictions: number[] = [];

  constructor(name: string, handle: PluginHandle, prefixCachePlugin = "", prior: LatencyPrior = DEFAULT_LATENCY_PRIOR) {
    this.typedName = { type: "predicted-latency-scorer", name };
    this.#handle = handle;
    this.prefixCachePlugin = prefixCachePlugin;
    this.prior = prior;
  }

  /** A named prefix-cache-scorer must exist; without a name the first one is used, or none (nothing cached). */
  resolveDependencies(handle: PluginHandle): void {
    this.#resolve(handle);
    if (this.prefixCachePlugin !== "" && this.#prefix === undefined)
      throw new Error(`prefixCachePlugin "${this.prefixCachePlugin}" is not a prefix-cache-scorer in this config`);
  }

  #resolve(handle: PluginHandle): PrefixCacheScorer | undefined {
    if (this.#resolved) return this.#prefix;
    this.#resolved = true;
    if (this.prefixCachePlugin !== "") {
      const p = handle.plugin(this.prefixCachePlugin);
      this.#prefix = p instanceof PrefixCacheScorer ? p : undefined;
    } else {
      for (const p of handle.plugins())
        if (p instanceof PrefixCacheScorer) {
          this.#prefix = p;
          break;
        }
    }
    return this.#prefix;
  }

  score(state: CycleState, request: SchedulingRequest, endpoints: readonly Endpoint[]): ArrayLike<number> {
    const n = endpoints.length;
    const out = sized(this.#out, n);
    const cachedOut = sized(this.#cached, n);
    const pred = sized(this.predictions, n);
    const prompt = Math.max(request.inputTokens, 0);
    const prefix = this.#prefix ?? this.#resolve(this.#handle);
    let fractions: ArrayLike<number> | undefined;
    let hashedTokens = 0;
    if (prefix !== undefined && prompt > 0) {
      fractions = prefix.matchFractions(state, request, endpoints);
      hashedTokens = prefix.hashesFor(request, endpoints).length * prefix.blockTokens(request, endpoints);
    }
    // A pod whose scrapes fail is unknown, not idle: its last numbers (and its own-load view, blind to what it is
    // doing) would otherwise attract load while any candidate is fresh, as the GIE scorers also refuse
    // (docs/design/scheduling.md §11.4). A pod not yet scraped has no error and is scored from own load.
    const now = this.#handle.now();
    const staleMs = this.#handle.metricsStalenessMs;
    const someFresh = anyFresh(endpoints, now, staleMs);
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const e = endpoints[i]!;
      if (someFresh && e.lastScrapeError !== undefined && !isFresh(e, now, staleMs)) {
        cachedOut[i] = 0;
        pred[i] = Number.POSITIVE_INFINITY;
        continue;
      }
      let cached = fractions === undefined ? 0 : fractions[i]! * hashedTokens;
      if (cached > prompt) cached = prompt;
      cachedOut[i] = prompt > 0 ? cached / prompt : 0;
      // Creating the state here (once per endpoint) gives its learner this scorer's prior before the first dispatch.
      const model = (e.load ?? loadStateOf(e, this.prior)).model;
      const t = predictTtftMs(e, prompt - cached, model);
      pred[i] = t;
      if (t < best) best = t;
    }
    for (let i = 0; i < n; i++) {
      const t = pred[i]!;
      out[i] = t === Number.POSITIVE_INFINITY ? 0 : t > 0 && best > 0 ? best / t : 1;
    }
    this.#scored = endpoints;
    return out;
  }

  /** Tells the load accounting how much of the prompt the chosen endpoint is expected to have cached. */
  preRequest(_request: SchedulingRequest, chosen: readonly Endpoint[]): void {
    const primary = chosen[0];
    const scored = this.#scored;
    this.#scored = undefined;
    if (primary === undefined || scored === undefined) return;
    const i = scored.indexOf(primary);
    if (i >= 0) loadStateOf(primary, this.prior).cachedHint = this.#cached[i]!;
  }
}

export const inflightLoadScorerFactory: PluginFactory = (name, params) => {
  new ParamReader(params).done();
  return new InflightLoadScorer(name) satisfies Scorer;
};

export const predictedLatencyScorerFactory: PluginFactory = (name, params, handle) => {
  const p = new ParamReader(params);
  const prefixCachePlugin = p.string("prefixCachePlugin", "");
  const d = DEFAULT_LATENCY_PRIOR;
  const prior: LatencyPrior = {
    overheadMs: p.number("priorOverheadMs", d.overheadMs, { min: 0, max: 600_000 }),
    prefillMsPerToken: p.number("priorPrefillMsPerToken", d.prefillMsPerToken, { above: 0, max: 1000 }),
    interferenceMsPerRequest: p.number("priorInterferenceMsPerRequest", d.interferenceMsPerRequest, {
      min: 0,
      max: 600_000,
    }),
    interTokenMs: p.number("priorInterTokenMs", d.interTokenMs, { above: 0, max: 600_000 }),
    priorWeight: p.number("priorWeight", d.priorWeight, { above: 0, max: 1_000_000 }),
    decay: p.number("decay", d.decay, { above: 0, max: 0.999 }),
  };
  p.done();
  return new PredictedLatencyScorer(name, handle, prefixCachePlugin, prior) satisfies Scorer & PreRequest;
};
