/**
 * Static checks of the Grafana dashboard and the alert rules: shape, datasource variable, and that every metric
 * they read is one the EPP (or vLLM, or the Node process collector) really exposes. The real-Prometheus proof that
 * every query parses and returns data is test/e2e/prometheus.test.ts.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Metric } from "prom-client";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { EppMetrics } from "../../src/observability/metrics.js";
import {
  alertRules,
  alertSignal,
  allPanels,
  dashboardQueries,
  loadDashboard,
  loadPrometheusRule,
  metricNames,
} from "./deploy-assets.js";

/** vLLM series the dashboard reads, current names only (docs/design/model-servers.md §3.2). */
const VLLM = new Set([
  "vllm:num_requests_running",
  "vllm:num_requests_waiting",
  "vllm:kv_cache_usage_perc",
  "vllm:prompt_tokens_total",
  "vllm:generation_tokens_total",
  "vllm:time_to_first_token_seconds_bucket",
  "vllm:inter_token_latency_seconds_bucket",
  "vllm:e2e_request_latency_seconds_bucket",
  "vllm:request_queue_time_seconds_bucket",
  "vllm:prefix_cache_hits_total",
  "vllm:prefix_cache_queries_total",
  // llm-d-inference-sim spells the two counters without `_total`; the panel accepts both.
  "vllm:prefix_cache_hits",
  "vllm:prefix_cache_queries",
]);

async function eppSeriesNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const metric of new EppMetrics().registry.getMetricsAsArray()) {
    const got = await (metric as unknown as Metric).get();
    names.add(got.name);
    if (String(got.type) === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(`${got.name}${s}`);
  }
  return names;
}

/** Grafana's reference to the DS_PROMETHEUS input, written literally in the JSON. */
const GRAFANA_DS_REF = ["$", "{DS_PROMETHEUS}"].join("");

describe("Grafana dashboard", () => {
  const d = loadDashboard();

  it("uses the DS_PROMETHEUS datasource variable everywhere, like GIE's dashboard", () => {
    expect(d.__inputs?.map((i) => [i.name, i.pluginId])).toEqual([["DS_PROMETHEUS", "prometheus"]]);
    expect(d.templating.list.find((v) => v.name === "DS_PROMETHEUS")?.type).toBe("datasource");
    for (const p of allPanels(d)) {
      if (p.type === "row" || p.type === "text") continue;
      expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: GRAFANA_DS_REF });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }
  });

  it("has the pool, objective, EPP-internals and model-server rows with their panels", () => {
    const titles = allPanels(d).map((p) => p.title);
    for (const t of [
      "Inference Pool",
      "Inference Objectives",
      "EPP Internals",
      "Model Servers (vLLM)",
      "Average KV Cache Utilization",
      "Average Queue Size",
      "Ready Pods",
      "Queue Size Per Pod",
      "Request Rate",
      "Errors by Code",
      "E2E Request Latency",
      "Tokens In / Out / Cached",
      "Normalized Time Per Output Token",
      "Scheduler Latency",
      "Scrape Health",
      "Scrape Errors",
      "Endpoint Metric Age",
      "ext_proc Streams In Flight",
      "Shed Rate",
      "Flow-Control Queue Size",
      "Queue Wait p90",
      "Rate-Limited",
      "Time To First Token",
      "Inter-Token Latency",
      "Prefix Cache Hit Rate",
    ])
      expect(titles, t).toContain(t);
    const note = allPanels(d).find((p) => p.type === "text")?.options?.content ?? "";
    expect(note).toContain("vllm:gpu_cache_usage_perc");
    expect(note).toContain("vllm:kv_cache_usage_perc");
    expect(note).toContain("vllm:time_per_output_token_seconds");
    expect(note).toContain("vllm:inter_token_latency_seconds");
  });

  it("reads only series that exist, with current vLLM names, and no unknown template variables", async () => {
    const epp = await eppSeriesNames();
    const problems: string[] = [];
    for (const q of dashboardQueries(d)) {
      if (q.expr.includes("$")) problems.push(`${q.panel}/${q.refId}: unsubstituted variable in ${q.expr}`);
      for (const name of metricNames(q.raw)) {
        const known = epp.has(name) || VLLM.has(name) || name.startsWith("process_") || name.startsWith("nodejs_");
        if (!known) problems.push(`${q.panel}/${q.refId}: unknown series ${name}`);
      }
    }
    expect(problems).toEqual([]);
    // The renamed vLLM series appear only in the note, never in a query.
    const all = dashboardQueries(d)
      .map((q) => q.raw)
      .join("\n");
    expect(all).not.toContain("gpu_cache_usage_perc");
    expect(all).not.toContain("vllm:time_per_output_token_seconds");
  });
});

describe("alert rules", () => {
  const rule = loadPrometheusRule();
  const rules = alertRules(rule);

  it("is a PrometheusRule with the five required alerts (and a threshold-free signal each)", () => {
    expect(rule.apiVersion).toBe("monitoring.coreos.com/v1");
    expect(rule.kind).toBe("PrometheusRule");
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining([
        "SwitchyardEndpointMetricsStale",
        "SwitchyardHighShedRate",
        "SwitchyardPoolSaturated",
        "SwitchyardScrapeErrors",
        "SwitchyardNoReadyPods",
      ]),
    );
    for (const r of rules) {
      expect(alertSignal(r.expr), r.alert).toBeDefined();
      expect(r.labels?.severity, r.alert).toMatch(/^(warning|critical)$/);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
    }
  });

  it("reads only series the EPP exposes", async () => {
    const epp = await eppSeriesNames();
    for (const r of rules)
      for (const name of metricNames(r.expr)) expect(epp.has(name), `${r.alert}: ${name}`).toBe(true);
  });

  it.skipIf(!existsSync("/usr/bin/promtool"))("passes promtool check rules as a plain Prometheus rules file", () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-rules-"));
    try {
      const file = join(dir, "rules.yaml");
      writeFileSync(file, stringify({ groups: rule.spec.groups }));
      const out = execFileSync("/usr/bin/promtool", ["check", "rules", file], { encoding: "utf8" });
      expect(out).toMatch(new RegExp(`SUCCESS: ${rules.length} rules found`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("splits an expression into signal and threshold", () => {
    expect(alertSignal("max(x) > 10")).toBe("max(x)");
    expect(alertSignal("a / (b + c) >= 0.05")).toBe("a / (b + c)");
    expect(alertSignal("x == 0")).toBe("x");
    expect(alertSignal("rate(x[5m])")).toBeUndefined();
    expect(metricNames('sum by (le) (rate(foo_bucket{a="b"}[5m])) / clamp_min(bar, 1e-9) and on (job) baz')).toEqual([
      "foo_bucket",
      "bar",
      "baz",
    ]);
  });
});
