/**
 * GIE's legacy decision-tree filters as standalone plugins (docs/design/scheduling.md §4.1). Unknown metrics follow
 * metrics-view.ts; when no candidate has usable metrics at all (e.g. before the first scrape) a filter cannot
 * judge and returns its input unchanged rather than failing every request with 429.
 */
import type { Endpoint } from "../../datastore/types.js";
import { ParamReader } from "../params.js";
import type { PluginFactory, PluginHandle } from "../registry.js";
import type { CycleState, Filter, SchedulingRequest, TypedName } from "../types.js";
import { anyFresh, usableMetrics } from "./metrics-view.js";

/** GIE QUEUING_THRESHOLD_LORA. */
export const DEFAULT_LOW_QUEUE_THRESHOLD = 128;
/** GIE LoRA soft-affinity probability of choosing the affinity set. */
export const DEFAULT_LORA_AFFINITY_THRESHOLD = 0.999;

/** Keeps endpoints with waiting queue < threshold. */
export class LowQueueFilter implements Filter {
  readonly typedName: TypedName;
  readonly threshold: number;
  readonly #handle: PluginHandle;

  constructor(name: string, handle: PluginHandle, threshold = DEFAULT_LOW_QUEUE_THRESHOLD) {
    this.typedName = { type: "low-queue-filter", name };
    this.#handle = handle;
    this.threshold = threshold;
  }

  filter(_state: CycleState, _request: SchedulingRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    const now = this.#handle.now();
    const stale = this.#handle.metricsStalenessMs;
    const fresh = anyFresh(endpoints, now, stale);
    const kept: Endpoint[] = [];
    let known = 0;
    for (let i = 0; i < endpoints.length; i++) {
      const m = usableMetrics(endpoints[i]!, fresh, now, stale);
      if (m === undefined) continue;
      known++;
      if (m.waitingQueueSize < this.threshold) kept.push(endpoints[i]!);
    }
    return known === 0 ? endpoints : kept;
  }
}

type LeastField = "waitingQueueSize" | "kvCacheUsagePercent";

/** Keeps endpoints with value ≤ min + (max − min) / N, N = number of candidates (GIE least-queue / least-kv). */
class LeastValueFilter implements Filter {
  readonly typedName: TypedName;
  readonly #handle: PluginHandle;
  readonly #field: LeastField;

  constructor(typedName: TypedName, handle: PluginHandle, field: LeastField) {
    this.typedName = typedName;
    this.#handle = handle;
    this.#field = field;
  }

  filter(_state: CycleState, _request: SchedulingRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    const now = this.#handle.now();
    const stale = this.#handle.metricsStalenessMs;
    const fresh = anyFresh(endpoints, now, stale);
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < endpoints.length; i++) {
      const m = usableMetrics(endpoints[i]!, fresh, now, stale);
      if (m === undefined) continue;
      const v = m[this.#field];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    if (min === Number.POSITIVE_INFINITY) return endpoints;
    const limit = min + (max - min) / endpoints.length;
    const kept: Endpoint[] = [];
    for (let i = 0; i < endpoints.length; i++) {
      const m = usableMetrics(endpoints[i]!, fresh, now, stale);
      if (m !== undefined && m[this.#field] <= limit) kept.push(endpoints[i]!);
    }
    return kept;
  }
}

export class LeastQueueFilter extends LeastValueFilter {
  constructor(name: string, handle: PluginHandle) {
    super({ type: "least-queue-filter", name }, handle, "waitingQueueSize");
  }
}

export class LeastKvCacheFilter extends LeastValueFilter {
  constructor(name: string, handle: PluginHandle) {
    super({ type: "least-kv-cache-filter", name }, handle, "kvCacheUsagePercent");
  }
}

/**
 * LoRA soft affinity: affinity set = endpoints with the target adapter active, available set = endpoints with a
 * free adapter slot (active < max). Both non-empty → the affinity set with probability `threshold`, else the
 * available set; one non-empty → that one; neither → all candidates.
 */
export class LoraAffinityFilter implements Filter {
  readonly typedName: TypedName;
  readonly threshold: number;
  readonly #handle: PluginHandle;

  constructor(name: string, handle: PluginHandle, threshold = DEFAULT_LORA_AFFINITY_THRESHOLD) {
    this.typedName = { type: "lora-affinity-filter", name };
    this.#handle = handle;
    this.threshold = threshold;
  }

  filter(_state: CycleState, request: SchedulingRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    const now = this.#handle.now();
    const stale = this.#handle.metricsStalenessMs;
    const fresh = anyFresh(endpoints, now, stale);
    const affinity: Endpoint[] = [];
    const available: Endpoint[] = [];
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!;
      const m = usableMetrics(e, fresh, now, stale);
      if (m === undefined) continue;
      if (m.activeModels.has(request.targetModel)) affinity.push(e);
      else if (m.activeModels.size < m.maxActiveModels || m.lora === "pending") available.push(e);
    }
    if (affinity.length > 0 && available.length > 0)
      return this.#handle.random() < this.threshold ? affinity : available;
    if (affinity.length > 0) return affinity;
    if (available.length > 0) return available;
    return endpoints;
  }
}

export const lowQueueFilterFactory: PluginFactory = (name, params, handle) => {
  const p = new ParamReader(params);
  const threshold = p.number("threshold", DEFAULT_LOW_QUEUE_THRESHOLD, { above: 0 });
  p.done();
  return new LowQueueFilter(name, handle, threshold) satisfies Filter;
};

export const leastQueueFilterFactory: PluginFactory = (name, params, handle) => {
  new ParamReader(params).done();
  return new LeastQueueFilter(name, handle) satisfies Filter;
};

export const leastKvCacheFilterFactory: PluginFactory = (name, params, handle) => {
  new ParamReader(params).done();
  return new LeastKvCacheFilter(name, handle) satisfies Filter;
};

export const loraAffinityFilterFactory: PluginFactory = (name, params, handle) => {
  const p = new ParamReader(params);
  const threshold = p.number("threshold", DEFAULT_LORA_AFFINITY_THRESHOLD, { min: 0, max: 1 });
  p.done();
  return new LoraAffinityFilter(name, handle, threshold) satisfies Filter;
};

/**
 * Keeps the endpoints that can serve the request's target model (switchyard; GIE has no equivalent, so an adapter
 * request can land on a pod without that adapter and get a 404 from the model server):
 * - an endpoint whose `/v1/models` list is known serves exactly what it lists (base models, aliases, adapters;
 *   docs/design/model-servers.md §3.5);
 * - otherwise, from its metrics: a base-model request (some candidate lists the target in its served models) keeps
 *   the endpoints that serve it, plus those whose served models are unknown; an adapter request keeps the
 *   endpoints that have the adapter running or waiting, can load adapters (`max_lora` > 0) or have LoRA enabled
 *   with slots not reported yet, plus those with unknown metrics.
 * Never empties the candidate list: when nothing qualifies it returns every endpoint and lets the model server
 * answer, as the utilization filter fails open.
 */
export class ServedModelFilter implements Filter {
  readonly typedName: TypedName;

  constructor(name: string) {
    this.typedName = { type: "served-model-filter", name };
  }

  filter(_state: CycleState, request: SchedulingRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    const target = request.targetModel;
    let base = false;
    for (let i = 0; i < endpoints.length && !base; i++) {
      const e = endpoints[i]!;
      base =
        e.metrics?.servedModels?.has(target) === true ||
        (e.models !== undefined && !e.models.adapters.has(target) && e.models.ids.has(target));
    }
    // Counted first: usually every endpoint qualifies, and then nothing is allocated.
    let count = 0;
    for (let i = 0; i < endpoints.length; i++) if (canServe(endpoints[i]!, target, base)) count++;
    if (count === 0 || count === endpoints.length) return endpoints;
    const kept: Endpoint[] = [];
    for (let i = 0; i < endpoints.length; i++) if (canServe(endpoints[i]!, target, base)) kept.push(endpoints[i]!);
    return kept;
  }
}

function canServe(e: Endpoint, target: string, base: boolean): boolean {
  if (e.models !== undefined) return e.models.ids.has(target);
  const m = e.metrics;
  if (m === undefined) return true;
  if (base) {
    const served = m.servedModels;
    return served === undefined || served.size === 0 || served.has(target);
  }
  return m.activeModels.has(target) || m.waitingModels.has(target) || m.maxActiveModels > 0 || m.lora === "pending";
}

export const servedModelFilterFactory: PluginFactory = (name, params) => {
  new ParamReader(params).done();
  return new ServedModelFilter(name) satisfies Filter;
};
