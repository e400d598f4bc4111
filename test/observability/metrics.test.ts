/**
 * The EPP's Prometheus surface against GIE v1.5's metric list (docs/design/api-resources.md §9), written out
 * here by hand so a rename, a type change or a label change in src/observability/metrics.ts fails this test.
 */

import type { Metric } from "prom-client";
import { describe, expect, it } from "vitest";
import type { DebugEndpoint } from "../../src/observability/debug.js";
import { EppMetrics, type PoolSnapshot } from "../../src/observability/metrics.js";
import { sample } from "./helpers.js";

type Kind = "counter" | "gauge" | "histogram";
const MT = ["model_name", "target_model_name"];
const FLOW = ["fairness_id", "priority", "inference_pool", "model_name", "target_model_name"];

/** docs/design/api-resources.md §9, minus the latency-predictor family (switchyard has no latency predictor). */
const GIE: readonly (readonly [string, Kind, readonly string[]])[] = [
  ["inference_objective_request_total", "counter", [...MT, "priority"]],
  ["inference_objective_request_error_total", "counter", [...MT, "error_code"]],
  ["inference_objective_request_duration_seconds", "histogram", MT],
  ["inference_objective_request_sizes", "histogram", MT],
  ["inference_objective_response_sizes", "histogram", MT],
  ["inference_objective_input_tokens", "histogram", MT],
  ["inference_objective_output_tokens", "histogram", MT],
  ["inference_objective_prompt_cached_tokens", "histogram", MT],
  ["inference_objective_normalized_time_per_output_token_seconds", "histogram", MT],
  ["inference_objective_running_requests", "gauge", ["model_name"]],
  ["inference_pool_average_kv_cache_utilization", "gauge", ["name"]],
  ["inference_pool_average_queue_size", "gauge", ["name"]],
  ["inference_pool_average_running_requests", "gauge", ["name"]],
  ["inference_pool_ready_pods", "gauge", ["name"]],
  ["inference_pool_per_pod_queue_size", "gauge", ["name", "model_server_pod"]],
  ["inference_extension_scheduler_e2e_duration_seconds", "histogram", []],
  [
    "inference_extension_scheduler_attempts_total",
    "counter",
    ["status", "target_model_name", "pod_name", "namespace", "port"],
  ],
  ["inference_extension_plugin_duration_seconds", "histogram", ["extension_point", "plugin_type", "plugin_name"]],
  ["inference_extension_prefix_indexer_size", "gauge", []],
  ["inference_extension_prefix_indexer_hit_ratio", "histogram", []],
  ["inference_extension_prefix_indexer_hit_bytes", "histogram", []],
  ["inference_extension_info", "gauge", ["commit", "build_ref"]],
  [
    "inference_extension_flow_control_request_queue_duration_seconds",
    "histogram",
    ["fairness_id", "priority", "outcome", "inference_pool", "model_name", "target_model_name"],
  ],
  ["inference_extension_flow_control_dispatch_cycle_duration_seconds", "histogram", []],
  [
    "inference_extension_flow_control_request_enqueue_duration_seconds",
    "histogram",
    ["fairness_id", "priority", "outcome"],
  ],
  ["inference_extension_flow_control_queue_size", "gauge", FLOW],
  ["inference_extension_flow_control_queue_bytes", "gauge", FLOW],
  ["inference_extension_flow_control_pool_saturation", "gauge", ["inference_pool"]],
  [
    "inference_extension_model_rewrite_decisions_total",
    "counter",
    ["model_rewrite_name", "model_name", "target_model"],
  ],
];

/** switchyard's own series (the list): shed, scrape health, metric age, streams, TTFT, queues, budgets. */
const EXTRAS: readonly (readonly [string, Kind, readonly string[]])[] = [
  ["switchyard_requests_shed_total", "counter", ["criticality", "reason"]],
  ["switchyard_scrape_errors_total", "counter", ["pod", "endpoint", "reason"]],
  ["switchyard_scrape_duration_seconds", "histogram", ["pod", "endpoint"]],
  ["switchyard_scrape_worker_restarts_total", "counter", []],
  ["switchyard_endpoint_scrape_up", "gauge", ["pod", "endpoint"]],
  ["switchyard_endpoint_metrics_age_seconds", "gauge", ["pod", "endpoint"]],
  ["switchyard_pool_endpoints", "gauge", ["name"]],
  ["switchyard_extproc_streams_in_flight", "gauge", []],
  ["switchyard_request_ttft_seconds", "histogram", MT],
  ["switchyard_rate_limited_total", "counter", ["tenant", "model_name", "limit"]],
  ["switchyard_budget_tokens_total", "counter", ["model_name", "kind"]],
  ["switchyard_queue_wait_seconds", "histogram", ["priority", "outcome"]],
  ["switchyard_pool_recommended_replicas", "gauge", ["inference_pool"]],
  ["switchyard_autoscaling_hint_errors_total", "counter", ["inference_pool"]],
  ["switchyard_metric_labels_capped_total", "counter", ["label", "reason"]],
  ["switchyard_resource_reloads_total", "counter", ["outcome"]],
  ["switchyard_extproc_streams_limited_total", "counter", ["reason"]],
  ["switchyard_metrics_requests_refused_total", "counter", ["status"]],
];

interface Described {
  readonly type: string;
  readonly labels: readonly string[];
}

async function describeRegistry(m: EppMetrics): Promise<Map<string, Described>> {
  const out = new Map<string, Described>();
  for (const metric of m.registry.getMetricsAsArray()) {
    const got = await (metric as unknown as Metric).get();
    const labelNames = (metric as unknown as { labelNames: readonly string[] }).labelNames ?? [];
    out.set(got.name, { type: String(got.type), labels: [...labelNames].sort() });
  }
  return out;
}

/** One endpoint as /debug/endpoints shows it (the projection the pool gauges read too). */
const endpoint = (
  n: number,
  m: { ageMs: number; queue: number; running: number; kv: number; scrapeError?: string } | undefined,
): DebugEndpoint => ({
  name: `pod-${n}`,
  key: `10.0.0.${n}:8000`,
  pod: `pod-${n}`,
  engine: "vllm",
  fresh: m !== undefined && m.ageMs <= 2000,
  ageMs: m?.ageMs ?? null,
  metrics: m
    ? {
        queue: m.queue,
        running: m.running,
        kvCacheUsage: m.kv,
        activeAdapters: [],
        waitingAdapters: [],
        maxLoras: 0,
        blockSize: 16,
        numBlocks: 0,
      }
    : null,
  inflight: 0,
  inflightTokens: 0,
  routed: 0,
  lastScrapeError: m?.scrapeError ?? null,
});

const snapshot = (over: Partial<PoolSnapshot> = {}): PoolSnapshot => ({
  poolName: "pool-a",
  stalenessMs: 2000,
  saturation: 0.4,
  endpoints: [
    endpoint(1, { ageMs: 100, queue: 2, running: 4, kv: 0.5 }),
    endpoint(2, { ageMs: 900, queue: 4, running: 2, kv: 0.3 }),
    // Stale: left out of every pool average and of ready_pods, as GIE does.
    endpoint(3, { ageMs: 5000, queue: 50, running: 50, kv: 1, scrapeError: "connect" }),
    endpoint(4, undefined),
  ],
  ...over,
});

describe("EppMetrics", () => {
  it("exposes every GIE v1.5 EPP metric with GIE's exact name, type and labels", async () => {
    const got = await describeRegistry(new EppMetrics({ processMetrics: false }));
    const mismatches: string[] = [];
    for (const [name, type, labels] of GIE) {
      const d = got.get(name);
      if (!d) mismatches.push(`${name}: missing`);
      else if (d.type !== type || d.labels.join(",") !== [...labels].sort().join(","))
        mismatches.push(`${name}: got ${d.type} {${d.labels}} want ${type} {${[...labels].sort()}}`);
    }
    expect(mismatches).toEqual([]);
  });

  it("exposes switchyard's own series, and nothing under GIE's prefixes that GIE does not define", async () => {
    const got = await describeRegistry(new EppMetrics({ processMetrics: false }));
    for (const [name, type, labels] of EXTRAS) {
      expect(got.get(name), name).toEqual({ type, labels: [...labels].sort() });
    }
    const known = new Set([...GIE, ...EXTRAS].map(([n]) => n));
    const unknown = [...got.keys()].filter((n) => !known.has(n));
    expect(unknown).toEqual([]);
  });

  it("adds Node process metrics unless disabled", async () => {
    const withProcess = await new EppMetrics().text();
    expect(withProcess).toMatch(/^process_cpu_seconds_total /m);
    expect(withProcess).toMatch(/^nodejs_eventloop_lag_p99_seconds /m);
    expect(await new EppMetrics({ processMetrics: false }).text()).not.toMatch(/process_cpu_seconds_total/);
  });

  it("computes pool gauges at scrape time from fresh endpoints only", async () => {
    let current: PoolSnapshot | undefined = snapshot();
    const m = new EppMetrics({ processMetrics: false, poolSnapshot: () => current });
    let text = await m.text();
    const pool = { name: "pool-a" };
    expect(sample(text, "inference_pool_ready_pods", pool)).toBe(2);
    expect(sample(text, "switchyard_pool_endpoints", pool)).toBe(4);
    expect(sample(text, "inference_pool_average_queue_size", pool)).toBe(3);
    expect(sample(text, "inference_pool_average_running_requests", pool)).toBe(3);
    expect(sample(text, "inference_pool_average_kv_cache_utilization", pool)).toBeCloseTo(0.4);
    expect(sample(text, "inference_pool_per_pod_queue_size", { model_server_pod: "pod-2" })).toBe(4);
    expect(sample(text, "inference_pool_per_pod_queue_size", { model_server_pod: "pod-3" })).toBeUndefined();
    expect(sample(text, "inference_extension_flow_control_pool_saturation", { inference_pool: "pool-a" })).toBe(0.4);
    expect(sample(text, "switchyard_endpoint_metrics_age_seconds", { pod: "pod-2" })).toBeCloseTo(0.9);
    expect(sample(text, "switchyard_endpoint_metrics_age_seconds", { pod: "pod-4" })).toBe(Number.POSITIVE_INFINITY);
    expect(sample(text, "switchyard_endpoint_scrape_up", { pod: "pod-1" })).toBe(1);
    expect(sample(text, "switchyard_endpoint_scrape_up", { pod: "pod-3" })).toBe(0);
    // Never attempted: no series rather than a misleading 0 or 1.
    expect(sample(text, "switchyard_endpoint_scrape_up", { pod: "pod-4" })).toBeUndefined();

    // The next scrape reflects the pool as it is then: departed endpoints leave no series behind.
    current = snapshot({ endpoints: [snapshot().endpoints[0]!] });
    text = await m.text();
    expect(sample(text, "inference_pool_ready_pods", pool)).toBe(1);
    expect(sample(text, "switchyard_endpoint_metrics_age_seconds", { pod: "pod-2" })).toBeUndefined();
    expect(sample(text, "inference_pool_per_pod_queue_size", { model_server_pod: "pod-2" })).toBeUndefined();

    current = undefined;
    text = await m.text();
    expect(sample(text, "inference_pool_ready_pods")).toBeUndefined();
  });

  it("reports a pool whose endpoints are all stale as zero ready pods with zero averages", async () => {
    const stale = snapshot();
    const m = new EppMetrics({
      processMetrics: false,
      poolSnapshot: () => ({ ...stale, endpoints: stale.endpoints.slice(2) }),
    });
    const text = await m.text();
    expect(sample(text, "inference_pool_ready_pods", { name: "pool-a" })).toBe(0);
    expect(sample(text, "inference_pool_average_kv_cache_utilization", { name: "pool-a" })).toBe(0);
  });

  it("reads the prefix index size on every scrape and labels build info", async () => {
    let size: number | undefined = 42;
    const m = new EppMetrics({ processMetrics: false, prefixIndexSize: () => size, commit: "abc123" });
    expect(sample(await m.text(), "inference_extension_prefix_indexer_size")).toBe(42);
    size = 7;
    const text = await m.text();
    expect(sample(text, "inference_extension_prefix_indexer_size")).toBe(7);
    expect(sample(text, "inference_extension_info", { commit: "abc123", build_ref: "switchyard" })).toBe(1);
  });

  it("starts the shed counter at zero so shed-rate queries have a series before the first shed", async () => {
    const text = await new EppMetrics({ processMetrics: false }).text();
    expect(sample(text, "switchyard_requests_shed_total", { criticality: "Sheddable", reason: "saturated" })).toBe(0);
  });
});

describe("model-name labels", () => {
  it("bounds length and number, counts every capped value and logs one line per label and reason", async () => {
    const { captureLogger } = await import("./helpers.js");
    const log = captureLogger("warn");
    const m = new EppMetrics({ processMetrics: false, labelMaxLength: 8, modelLabelLimit: 2, logger: log.logger });
    m.setKnownModels((n) => n === "known-1" || n === "known-too-long");
    expect(m.modelLabel("a")).toBe("a");
    expect(m.modelLabel("b")).toBe("b");
    expect(m.modelLabel("c")).toBe("other");
    expect(m.modelLabel("d")).toBe("other");
    expect(m.modelLabel("known-1")).toBe("known-1");
    expect(m.modelLabel("x".repeat(9))).toBe("other");
    expect(m.modelLabel("known-too-long")).toBe("other");
    const text = await m.text();
    expect(sample(text, "switchyard_metric_labels_capped_total", { label: "model_name", reason: "too_many" })).toBe(2);
    expect(sample(text, "switchyard_metric_labels_capped_total", { label: "model_name", reason: "too_long" })).toBe(2);
    log.logger.flush();
    const lines = log.records().filter((r) => r.msg === 'metric label value replaced by "other"');
    expect(lines.map((r) => r.reason).sort()).toEqual(["too_long", "too_many"]);
    expect(lines.find((r) => r.reason === "too_long")).toMatchObject({ length: 9, valuePrefix: "xxxxxxxxx" });
    m.close();
  });
});
