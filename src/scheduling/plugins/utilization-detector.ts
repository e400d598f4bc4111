/**
 * GIE's `utilization-detector` (docs/design/scheduling.md §4.2, §6). One object serves two extension points:
 *
 * - SaturationDetector for admission: `saturation()` is the v1.5 mean of max(q/Q, kv/KV) (stale/missing = 1.0,
 *   no endpoints = 1.0, uncapped), and `isSaturated()` is the shedding contract "no endpoint has fresh metrics
 *   with queue < Q and KV < KV" — exactly "no endpoint's v1.5 term is below 1", so the two outputs agree on what
 *   a healthy endpoint is. (v1.0 used ≤; with < a pod sitting exactly at the threshold counts as full, matching
 *   v1.5's `saturation ≥ 1.0` shedding rule.)
 * - Filter for scheduling: keeps fresh endpoints with q < Q×(1+headroom) and kv < KV×(1+headroom); if none
 *   survive it returns all of them (fail-open), as GIE does.
 *
 * Its metricsStalenessThreshold is also the staleness every metric scorer uses (see metrics-view.ts).
 */
import {
  DEFAULT_KV_CACHE_UTIL_THRESHOLD,
  DEFAULT_QUEUE_DEPTH_THRESHOLD,
  DEFAULT_SATURATION_STALENESS_MS,
} from "../../common/constants.js";
import { type Endpoint, isFresh } from "../../datastore/types.js";
import { ParamReader } from "../params.js";
import type { PluginFactory, PluginHandle } from "../registry.js";
import type { CycleState, Filter, SaturationDetector, SchedulingRequest, TypedName } from "../types.js";

export interface UtilizationDetectorParams {
  /** Waiting-queue depth at which an endpoint counts as full. Default 5. */
  readonly queueDepthThreshold: number;
  /** KV-cache utilization (0..1] at which an endpoint counts as full. Default 0.8. */
  readonly kvCacheUtilThreshold: number;
  /** Metrics older than this (ms) are stale. Default 200 ms ("200ms" in config). */
  readonly metricsStalenessThresholdMs: number;
  /** Extra room for the filter: thresholds × (1 + headroom). Default 0. */
  readonly headroom: number;
}

export const DEFAULT_UTILIZATION_PARAMS: UtilizationDetectorParams = {
  queueDepthThreshold: DEFAULT_QUEUE_DEPTH_THRESHOLD,
  kvCacheUtilThreshold: DEFAULT_KV_CACHE_UTIL_THRESHOLD,
  metricsStalenessThresholdMs: DEFAULT_SATURATION_STALENESS_MS,
  headroom: 0,
};

export class UtilizationDetector implements Filter, SaturationDetector {
  readonly typedName: TypedName;
  readonly params: UtilizationDetectorParams;
  readonly #handle: PluginHandle | undefined;
  readonly #queueLimit: number;
  readonly #kvLimit: number;

  /** Without a handle, the filter reads performance.now(). */
  constructor(name = "utilization-detector", params: Partial<UtilizationDetectorParams> = {}, handle?: PluginHandle) {
    this.typedName = { type: "utilization-detector", name };
    this.params = { ...DEFAULT_UTILIZATION_PARAMS, ...params };
    this.#handle = handle;
    this.#queueLimit = this.params.queueDepthThreshold * (1 + this.params.headroom);
    this.#kvLimit = this.params.kvCacheUtilThreshold * (1 + this.params.headroom);
  }

  get metricsStalenessMs(): number {
    return this.params.metricsStalenessThresholdMs;
  }

  saturation(endpoints: readonly Endpoint[], now: number): number {
    const n = endpoints.length;
    if (n === 0) return 1;
    const { queueDepthThreshold: q, kvCacheUtilThreshold: kv, metricsStalenessThresholdMs: stale } = this.params;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const e = endpoints[i]!;
      const m = e.metrics;
      if (m === undefined || !isFresh(e, now, stale)) {
        sum += 1;
        continue;
      }
      const qTerm = m.waitingQueueSize / q;
      const kvTerm = m.kvCacheUsagePercent / kv;
      sum += Math.max(qTerm, kvTerm);
    }
    return sum / n;
  }

  isSaturated(endpoints: readonly Endpoint[], now: number): boolean {
    const { queueDepthThreshold: q, kvCacheUtilThreshold: kv, metricsStalenessThresholdMs: stale } = this.params;
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!;
      const m = e.metrics;
      if (m !== undefined && isFresh(e, now, stale) && m.waitingQueueSize < q && m.kvCacheUsagePercent < kv)
        return false;
    }
    return true;
  }

  filter(_state: CycleState, _request: SchedulingRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    const now = this.#handle ? this.#handle.now() : performance.now();
    const stale = this.params.metricsStalenessThresholdMs;
    let kept: Endpoint[] | undefined;
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!;
      const m = e.metrics;
      if (
        m !== undefined &&
        isFresh(e, now, stale) &&
        m.waitingQueueSize < this.#queueLimit &&
        m.kvCacheUsagePercent < this.#kvLimit
      ) {
        if (kept === undefined) kept = [];
        kept.push(e);
      }
    }
    return kept ?? endpoints;
  }
}

/** Validates utilization-detector parameters (field names as in GIE's config). */
export function readUtilizationParams(params: unknown): UtilizationDetectorParams {
  const p = new ParamReader(params);
  const out: UtilizationDetectorParams = {
    queueDepthThreshold: p.number("queueDepthThreshold", DEFAULT_QUEUE_DEPTH_THRESHOLD, { above: 0 }),
    kvCacheUtilThreshold: p.number("kvCacheUtilThreshold", DEFAULT_KV_CACHE_UTIL_THRESHOLD, { above: 0, max: 1 }),
    metricsStalenessThresholdMs: p.duration("metricsStalenessThreshold", DEFAULT_SATURATION_STALENESS_MS, {
      above: 0,
    }),
    headroom: p.number("headroom", 0, { min: 0 }),
  };
  p.done();
  return out;
}

export const utilizationDetectorFactory: PluginFactory = (name, params, handle) => {
  const parsed = readUtilizationParams(params);
  // GIE warns too: headroom above 1 more than doubles the thresholds, which effectively disables the filter.
  if (parsed.headroom > 1)
    handle.warn(`parameters.headroom: ${parsed.headroom} is above 1.0; the filter will let almost everything through`);
  return new UtilizationDetector(name, parsed, handle) satisfies Filter & SaturationDetector;
};
