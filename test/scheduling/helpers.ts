import type { Endpoint, EndpointMetrics } from "../../src/datastore/types.js";
import { createPluginHandle, type DefaultPluginHandle } from "../../src/scheduling/registry.js";
import type { SchedulingRequest } from "../../src/scheduling/types.js";

/** A controllable monotonic clock (ms), so staleness is decided by the test, never by the machine. */
export class TestClock {
  t = 1_000_000;
  readonly now = (): number => this.t;
}

export interface MetricsInit extends Partial<Omit<EndpointMetrics, "activeModels" | "waitingModels">> {
  active?: readonly string[];
  waiting?: readonly string[];
}

export function metrics(init: MetricsInit, updateTime: number): EndpointMetrics {
  return {
    waitingQueueSize: init.waitingQueueSize ?? 0,
    runningRequestsSize: init.runningRequestsSize ?? 0,
    kvCacheUsagePercent: init.kvCacheUsagePercent ?? 0,
    activeModels: new Set(init.active ?? []),
    waitingModels: new Set(init.waiting ?? []),
    maxActiveModels: init.maxActiveModels ?? 0,
    cacheBlockSize: init.cacheBlockSize ?? 0,
    cacheNumBlocks: init.cacheNumBlocks ?? 0,
    updateTime: init.updateTime ?? updateTime,
  };
}

let seq = 0;

/** An endpoint like the datastore builds; `m` undefined = never scraped. */
export function endpoint(address: string, m?: EndpointMetrics, port = 8000): Endpoint {
  const podName = `pod-${address.replaceAll(".", "-")}-${seq++}`;
  return {
    key: `${address}:${port}`,
    name: `${podName}-rank-0`,
    podName,
    namespace: "default",
    address,
    port,
    rank: 0,
    labels: {},
    engine: "vllm",
    metrics: m,
    inflightRequests: 0,
    inflightTokens: 0,
    routedRequests: 0,
    lastScrapeError: undefined,
  };
}

export function request(init: Partial<SchedulingRequest> = {}): SchedulingRequest {
  return {
    requestId: init.requestId ?? `req-${seq++}`,
    model: init.model ?? "base",
    targetModel: init.targetModel ?? init.model ?? "base",
    criticality: init.criticality ?? "Standard",
    priority: init.priority ?? 0,
    prefixText: init.prefixText ?? "",
    inputTokens: init.inputTokens ?? 0,
    maxTokens: init.maxTokens,
    headers: init.headers ?? new Map(),
  };
}

export function testHandle(clock: TestClock, seed = 42, endpoints?: () => readonly Endpoint[]): DefaultPluginHandle {
  return createPluginHandle({ now: clock.now, seed, ...(endpoints ? { endpoints } : {}) });
}
