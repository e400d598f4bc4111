/**
 * Extraction on texts captured from real servers (vLLM 0.32.0, test/fixtures/metrics/vllm-0.32/) and on the
 * shapes other real servers emit (llm-d-inference-sim's whole-second LoRA timestamps, a data-parallel vLLM that
 * sums lora_requests_info over engines, SGLang 0.5.x priority series and page gauges).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  compileEngine,
  DEFAULT_ENGINE_CONFIGS,
  DEFAULT_MAX_SERIES_PER_SIGNAL,
  type EngineMapping,
  extractMetrics,
} from "../../src/datalayer/engines.js";

const real = (name: string) => readFileSync(new URL(`../fixtures/metrics/vllm-0.32/${name}`, import.meta.url), "utf8");
const mapping = (name: string): EngineMapping => compileEngine(DEFAULT_ENGINE_CONFIGS.find((c) => c.name === name)!);
const vllm = mapping("vllm");
/** The wall clock of the captures (their lora_requests_info timestamps are ≈ 1.7966e9). */
const CAPTURE_NOW = 1_796_604_000;

describe("extraction on real vLLM 0.32 texts", () => {
  it("reads a fresh single-engine server: zero load, no LoRA sample yet, blocks from cache_config_info", () => {
    const m = extractMetrics(
      vllm,
      real("metrics-fresh.txt"),
      1,
      "/metrics",
      DEFAULT_MAX_SERIES_PER_SIGNAL,
      CAPTURE_NOW,
    );
    expect(m).toMatchObject({ waitingQueueSize: 0, runningRequestsSize: 0, unreported: undefined });
    expect(m.lora).toBe("pending");
    expect(m.maxActiveModels).toBe(0);
    expect(m.cacheBlockSize).toBe(128);
    expect(m.cacheNumBlocks).toBe(8192);
    expect([...(m.servedModels ?? [])]).toEqual(["tiny"]);
  });

  it("reads a busy server: 8 running, 2 waiting, the running adapter, max_lora", () => {
    const m = extractMetrics(vllm, real("metrics-busy.txt"), 1, "/metrics", DEFAULT_MAX_SERIES_PER_SIGNAL, CAPTURE_NOW);
    expect(m).toMatchObject({ waitingQueueSize: 2, runningRequestsSize: 8, maxActiveModels: 2, lora: "reported" });
    expect([...m.activeModels]).toEqual(["sql-lora"]);
  });

  it("sums a data-parallel server's engines and does not double its block count", () => {
    const m = extractMetrics(
      vllm,
      real("metrics-dp2-busy.txt"),
      1,
      "/metrics",
      DEFAULT_MAX_SERIES_PER_SIGNAL,
      CAPTURE_NOW,
    );
    expect(m.runningRequestsSize).toBe(6);
    expect([...m.activeModels]).toEqual(["sql-lora"]);
    // Each engine's cache_config_info already carries the server's 16384 blocks (2 × 8192).
    expect(m.cacheNumBlocks).toBe(16384);
    const fresh = extractMetrics(
      vllm,
      real("metrics-dp2-fresh.txt"),
      1,
      "/metrics",
      DEFAULT_MAX_SERIES_PER_SIGNAL,
      CAPTURE_NOW,
    );
    expect(fresh).toMatchObject({ runningRequestsSize: 0, waitingQueueSize: 0, cacheNumBlocks: 16384 });
  });

  it("keeps a fresh data-parallel server that exports no load gauges yet as a zero-load, unreported scrape", () => {
    const text = real("metrics-dp2-fresh.txt")
      .split("\n")
      .filter((l) => !/^vllm:(num_requests_(waiting|running)|kv_cache_usage_perc)\{/.test(l))
      .join("\n");
    const m = extractMetrics(vllm, text, 1, "/metrics", DEFAULT_MAX_SERIES_PER_SIGNAL, CAPTURE_NOW);
    expect(m).toMatchObject({ waitingQueueSize: 0, runningRequestsSize: 0, kvCacheUsagePercent: 0 });
    expect(m.unreported).toBe("vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc");
  });
});

describe("lora_requests_info: which label set is current", () => {
  const lora = (series: [running: string, value: number][]) =>
    [
      "vllm:num_requests_waiting 0",
      "vllm:num_requests_running 1",
      "vllm:kv_cache_usage_perc 0.1",
      ...series.map(
        ([r, v]) => `vllm:lora_requests_info{max_lora="2",running_lora_adapters="${r}",waiting_lora_adapters=""} ${v}`,
      ),
      "",
    ].join("\n");

  it("divides a data-parallel sum by the engine count, so a stale set on two engines does not beat the current one", () => {
    const now = 1_800_000_000;
    // The empty set was current on both engines 30 s ago (summed: ≈ 2 × now); lora-a is current on one engine now.
    const text = lora([
      ["", 2 * (now - 30)],
      ["lora-a", now - 1],
    ]);
    expect([...extractMetrics(vllm, text, 0, "/metrics", DEFAULT_MAX_SERIES_PER_SIGNAL, now).activeModels]).toEqual([
      "lora-a",
    ]);
  });

  it("breaks a whole-second tie (llm-d-inference-sim) toward the set that names a running adapter", () => {
    const now = 1_800_000_000;
    const text = lora([
      ["", now - 2],
      ["lora-b", now - 2],
    ]);
    const m = extractMetrics(vllm, text, 0, "/metrics", DEFAULT_MAX_SERIES_PER_SIGNAL, now);
    expect([...m.activeModels]).toEqual(["lora-b"]);
    // A strictly newer empty set still wins: the adapter finished.
    const later = lora([
      ["lora-b", now - 2],
      ["", now - 1],
    ]);
    expect(extractMetrics(vllm, later, 0, "/metrics", DEFAULT_MAX_SERIES_PER_SIGNAL, now).activeModels.size).toBe(0);
  });
});

describe("SGLang 0.5.x", () => {
  const sglang = mapping("sglang");
  const text = [
    "# TYPE sglang:num_queue_reqs gauge",
    'sglang:num_queue_reqs{model_name="m",priority="",tp_rank="0"} 5',
    'sglang:num_queue_reqs{model_name="m",priority="0",tp_rank="0"} 2',
    'sglang:num_queue_reqs{model_name="m",priority="10",tp_rank="0"} 3',
    "# TYPE sglang:num_running_reqs gauge",
    'sglang:num_running_reqs{model_name="m",priority="",tp_rank="0"} 4',
    'sglang:num_running_reqs{model_name="m",priority="0",tp_rank="0"} 4',
    'sglang:token_usage{model_name="m",tp_rank="0"} 0.25',
    'sglang:page_size{model_name="m",tp_rank="0"} 16',
    'sglang:page_size{model_name="m",tp_rank="1"} 16',
    'sglang:num_pages{model_name="m",tp_rank="0"} 62500',
    'sglang:num_pages{model_name="m",tp_rank="1"} 62500',
    "",
  ].join("\n");

  it('reads the total under priority="" instead of summing it with the per-priority series', () => {
    const m = extractMetrics(sglang, text, 0);
    expect(m).toMatchObject({ waitingQueueSize: 5, runningRequestsSize: 4, kvCacheUsagePercent: 0.25 });
  });

  it("reads the page gauges once, not once per tensor-parallel rank", () => {
    expect(extractMetrics(sglang, text, 0)).toMatchObject({ cacheBlockSize: 16, cacheNumBlocks: 62500 });
  });
});
