/**
 * The one projection of the pool's endpoints that both observers read: the pool gauges on /metrics (computed at
 * Prometheus scrape time, docs/design/api-resources.md §9) and /debug/endpoints (what `switchyard top` shows,
 * docs/architecture.md, In the background). One function, so the two views of the same pool cannot drift apart.
 */
import type { Datastore } from "../datastore/datastore.js";
import { loadDebugView } from "../datastore/load.js";
import { type Endpoint, isFresh } from "../datastore/types.js";
import type { DebugEndpoint, DebugSnapshot } from "../observability/debug.js";
import type { DecisionLog } from "../observability/decisions.js";
import type { PoolSnapshot } from "../observability/metrics.js";
import type { SaturationDetector } from "../scheduling/index.js";

export interface PoolViews {
  /** For the pool gauges; undefined while no pool is known. */
  pool(): PoolSnapshot | undefined;
  /** For /debug/endpoints. */
  debug(): DebugSnapshot;
}

export interface PoolViewOptions {
  readonly datastore: Datastore;
  readonly detector: SaturationDetector;
  readonly decisions: DecisionLog;
  /** `--metrics-staleness-threshold`: freshness bound of the pool averages. */
  readonly stalenessMs: number;
}

export function poolViews(o: PoolViewOptions): PoolViews {
  const { datastore, detector } = o;
  return {
    pool() {
      const pool = datastore.pool();
      if (!pool) return undefined;
      const now = performance.now();
      const endpoints = datastore.endpoints();
      return {
        poolName: pool.name,
        stalenessMs: o.stalenessMs,
        saturation: detector.saturation(endpoints, now),
        endpoints: endpoints.map((e) => endpointView(e, now, detector.metricsStalenessMs)),
      };
    },
    debug() {
      const now = performance.now();
      const pool = datastore.pool();
      const endpoints = datastore.endpoints();
      return {
        version: 1,
        time: new Date().toISOString(),
        pool: pool
          ? { name: pool.name, namespace: pool.namespace, selector: pool.selector, targetPorts: pool.targetPorts }
          : null,
        synced: datastore.synced(),
        saturation: detector.saturation(endpoints, now),
        saturated: detector.isSaturated(endpoints, now),
        endpoints: endpoints.map((e) => endpointView(e, now, detector.metricsStalenessMs)),
        decisions: o.decisions.recent(20),
      };
    },
  };
}

/** One endpoint as both observers see it at `now` (performance.now()). */
function endpointView(e: Endpoint, now: number, staleMs: number): DebugEndpoint {
  const m = e.metrics;
  return {
    name: e.name,
    key: e.key,
    pod: e.podName,
    engine: e.engine,
    fresh: isFresh(e, now, staleMs),
    ageMs: m ? Math.round(now - m.updateTime) : null,
    metrics: m
      ? {
          queue: m.waitingQueueSize,
          running: m.runningRequestsSize,
          kvCacheUsage: m.kvCacheUsagePercent,
          activeAdapters: [...m.activeModels],
          waitingAdapters: [...m.waitingModels],
          maxLoras: m.maxActiveModels,
          blockSize: m.cacheBlockSize,
          numBlocks: m.cacheNumBlocks,
        }
      : null,
    inflight: e.inflightRequests,
    inflightTokens: e.inflightTokens,
    routed: e.routedRequests,
    load: loadDebugView(e),
    lastScrapeError: e.lastScrapeError ?? null,
  };
}
