import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ENGINE_TYPE_LABEL } from "../../src/common/constants.js";
import { ConfigError } from "../../src/common/errors.js";
import {
  compileEngine,
  DEFAULT_ENGINE_CONFIGS,
  EngineRegistry,
  engineFor,
  extractMetrics,
  formatMetricSpec,
  ImplausibleMetricsError,
  MetricsExtractionError,
  parseMetricSpec,
  validateEngineConfig,
} from "../../src/datalayer/engines.js";

const fixture = (name: string) => readFileSync(new URL(`../fixtures/metrics/${name}`, import.meta.url), "utf8");
const registry = new EngineRegistry();
const mapping = (name: string) => {
  const m = registry.get(name);
  if (m === undefined) throw new Error(`no engine ${name}`);
  return m;
};

describe("parseMetricSpec", () => {
  it("parses bare names, empty braces, quoted and unquoted values", () => {
    expect(parseMetricSpec("vllm:num_requests_waiting")).toEqual({ name: "vllm:num_requests_waiting", matchers: [] });
    expect(parseMetricSpec("  m{}  ")).toEqual({ name: "m", matchers: [] });
    expect(parseMetricSpec("m{request_type=waiting}")?.matchers).toEqual([["request_type", "waiting"]]);
    expect(parseMetricSpec(`m{ a = "x,}y" , b='z', c = bare value ,}`)?.matchers).toEqual([
      ["a", "x,}y"],
      ["b", "z"],
      ["c", "bare value"],
    ]);
    expect(formatMetricSpec(parseMetricSpec("m{a=b}")!)).toBe('m{a="b"}');
  });

  it("treats an empty spec as disabled", () => {
    expect(parseMetricSpec("")).toBeUndefined();
    expect(parseMetricSpec("   ")).toBeUndefined();
  });

  it.each([
    ["1metric", /metric name must match/],
    ["m{a}", /expected "=" after label name "a" at column 4/],
    ["m{a!=b}", /matcher "!=" is not supported/],
    ["m{a=~b}", /matcher "=~" is not supported/],
    ['m{a="b}', /unterminated quoted value for label "a"/],
    ["m{a=b", /missing closing "}"/],
    ["m{a=b} x", /unexpected text after "}"/],
    ["m x", /unexpected "x" after metric name/],
    ["m{a=b,a=c}", /duplicate label "a"/],
    ["m{=b}", /expected a label name at column 3/],
    ['m{a=b"c}', /stray quote/],
  ])("rejects %s precisely", (spec, message) => {
    expect(() => parseMetricSpec(spec, "kvUsageSpec")).toThrow(message);
    try {
      parseMetricSpec(spec, "kvUsageSpec");
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).field).toBe("kvUsageSpec");
    }
  });
});

describe("engine configs", () => {
  it("ships the four built-in engines of the reference table", () => {
    expect(registry.names().sort()).toEqual(["sglang", "triton-tensorrt-llm", "trtllm-serve", "vllm"]);
    expect(DEFAULT_ENGINE_CONFIGS.find((c) => c.name === "vllm")?.kvUsageSpec).toBe("vllm:kv_cache_usage_perc");
    expect(registry.get("default")?.name).toBe("vllm");
  });

  it("lets custom configs replace built-ins and add engines, with GIE's reserved name and default checks", () => {
    const custom = new EngineRegistry({
      engineConfigs: [
        { name: "vllm", queuedRequestsSpec: "custom_queue", runningRequestsSpec: "custom_running" },
        { name: "mine", queuedRequestsSpec: "q", runningRequestsSpec: "r", kvUsageSpec: "kv" },
      ],
      defaultEngine: "mine",
    });
    expect(custom.get("vllm")?.queued?.name).toBe("custom_queue");
    expect(custom.get("vllm")?.kvUsage).toEqual([]); // missing spec = disabled, as in GIE
    expect(custom.get("sglang")?.queued?.name).toBe("sglang:num_queue_reqs");
    expect(custom.engineFor({})).toBe("mine");
    expect(() => new EngineRegistry({ engineConfigs: [{ name: "default" }] })).toThrow(/reserved/);
    expect(() => new EngineRegistry({ defaultEngine: "nope" })).toThrow(/defaultEngine "nope" not found/);
    expect(() => new EngineRegistry({ engineConfigs: [{ name: "a" }, { name: "a" }] })).toThrow(/duplicate/);
    expect(() => new EngineRegistry({ engineConfigs: [{ name: "x", queuedRequestsSpec: "q{" }] })).toThrow(
      /engineConfigs\[0\]\.queuedRequestsSpec: invalid metric spec/,
    );
  });

  it("validates untyped engine configs naming the field", () => {
    expect(validateEngineConfig({ name: "e", kvUsageSpec: "k" }, "engineConfigs[0]").kvUsageSpec).toBe("k");
    expect(() => validateEngineConfig({ name: "e", kvUsageSpc: "k" }, "engineConfigs[0]")).toThrow(
      /engineConfigs\[0\]\.kvUsageSpc: unknown field/,
    );
    expect(() => validateEngineConfig({ name: "e", loraSpec: 3 }, "engineConfigs[1]")).toThrow(
      /engineConfigs\[1\]\.loraSpec: must be a string/,
    );
    expect(() => validateEngineConfig({ name: "" })).toThrow(/name cannot be empty/);
    expect(() => validateEngineConfig([])).toThrow(/must be a mapping, got a list/);
    expect(() => validateEngineConfig({ name: "e", cacheBlockSizeLabelName: "bad-label" })).toThrow(
      /invalid label name/,
    );
  });

  it("picks the engine from the pod label, defaulting to vllm", () => {
    expect(engineFor({})).toBe("vllm");
    expect(engineFor(undefined)).toBe("vllm");
    expect(engineFor({ [ENGINE_TYPE_LABEL]: "sglang" })).toBe("sglang");
    expect(engineFor({ [ENGINE_TYPE_LABEL]: " " })).toBe("vllm");
    expect(engineFor({ custom: "trtllm-serve" }, { labelKey: "custom" })).toBe("trtllm-serve");
    expect(registry.resolve({ engine: "", labels: { [ENGINE_TYPE_LABEL]: "sglang" } })?.name).toBe("sglang");
    expect(registry.resolve({ engine: "trtllm-serve", labels: {} })?.name).toBe("trtllm-serve");
    expect(registry.resolve({ engine: "unknown-engine", labels: {} })).toBeUndefined();
  });
});

describe("extractMetrics", () => {
  it("aggregates vLLM data-parallel engines: sums queue and running, max KV, max blocks (each engine reports the total)", () => {
    const m = extractMetrics(mapping("vllm"), fixture("vllm-dp.txt"), 1234.5);
    expect(m).toEqual({
      waitingQueueSize: 7,
      runningRequestsSize: 7,
      kvCacheUsagePercent: 0.625,
      activeModels: new Set(),
      waitingModels: new Set(),
      maxActiveModels: 0,
      servedModels: new Set(["meta-llama/Llama-3.1-8B-Instruct"]),
      cacheBlockSize: 16,
      cacheNumBlocks: 27724,
      updateTime: 1234.5,
      lora: undefined,
      unreported: undefined,
    });
  });

  it("accepts the old vLLM KV name and prefers the new one when both exist", () => {
    expect(extractMetrics(mapping("vllm"), fixture("vllm-legacy.txt"), 0).kvCacheUsagePercent).toBe(0.4375);
    expect(extractMetrics(mapping("vllm"), fixture("vllm-both-kv.txt"), 0).kvCacheUsagePercent).toBe(0.9);
    // A GIE ≤ 1.2 config naming the old metric still reads a new vLLM.
    const old = compileEngine({
      name: "old",
      queuedRequestsSpec: "vllm:num_requests_waiting",
      runningRequestsSpec: "vllm:num_requests_running",
      kvUsageSpec: "vllm:gpu_cache_usage_perc",
    });
    expect(extractMetrics(old, fixture("vllm-dp.txt"), 0).kvCacheUsagePercent).toBe(0.625);
  });

  it("takes LoRA state from the series with the largest value, even among lingering series", () => {
    const m = extractMetrics(mapping("vllm"), fixture("vllm-lora.txt"), 0);
    expect(m.activeModels).toEqual(new Set(["sql-lora"]));
    expect(m.waitingModels).toEqual(new Set(["fin-{q3}", '"quoted"']));
    expect(m.maxActiveModels).toBe(4);
  });

  it("lets the newest LoRA series win even when its lists are empty (adapters unloaded)", () => {
    const text = [
      "vllm:num_requests_waiting 0",
      "vllm:num_requests_running 0",
      "vllm:kv_cache_usage_perc 0",
      'vllm:lora_requests_info{max_lora="2",running_lora_adapters="a, b",waiting_lora_adapters=""} 100',
      'vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 200',
    ].join("\n");
    const m = extractMetrics(mapping("vllm"), text, 0);
    expect(m.activeModels.size).toBe(0);
    expect(m.maxActiveModels).toBe(2);
    const older = text.replace("} 200", "} 50");
    expect(extractMetrics(mapping("vllm"), older, 0).activeModels).toEqual(new Set(["a", "b"]));
  });

  it("knows where trtllm-serve and Triton serve their metrics, and checks a configured path and port", () => {
    expect(mapping("vllm")).toMatchObject({ metricsPath: "/metrics", metricsPort: undefined });
    expect(mapping("trtllm-serve")).toMatchObject({ metricsPath: "/prometheus/metrics", metricsPort: undefined });
    expect(mapping("triton-tensorrt-llm")).toMatchObject({ metricsPath: "/metrics", metricsPort: 8002 });
    const custom = validateEngineConfig({ name: "x", metricsPath: "/m", metricsPort: 9100 }, "engineConfigs[0]");
    expect(compileEngine(custom)).toMatchObject({ metricsPath: "/m", metricsPort: 9100 });
    expect(() => validateEngineConfig({ name: "x", metricsPath: "m" }, "engineConfigs[0]")).toThrow(
      /engineConfigs\[0\]\.metricsPath/,
    );
    expect(() => validateEngineConfig({ name: "x", metricsPort: 0 }, "engineConfigs[0]")).toThrow(
      /engineConfigs\[0\]\.metricsPort/,
    );
  });

  it("reads SGLang, trtllm-serve and Triton", () => {
    expect(extractMetrics(mapping("sglang"), fixture("sglang.txt"), 1)).toMatchObject({
      waitingQueueSize: 3,
      runningRequestsSize: 7,
      kvCacheUsagePercent: 0.12,
      cacheBlockSize: 1,
      cacheNumBlocks: 200000,
      maxActiveModels: 0,
    });
    expect(extractMetrics(mapping("trtllm-serve"), fixture("trtllm-serve.txt"), 1)).toMatchObject({
      waitingQueueSize: 11,
      runningRequestsSize: 6,
      kvCacheUsagePercent: 0.73,
      cacheBlockSize: 32,
      cacheNumBlocks: 4096,
    });
    expect(extractMetrics(mapping("triton-tensorrt-llm"), fixture("triton-trtllm.txt"), 1)).toMatchObject({
      waitingQueueSize: 4,
      runningRequestsSize: 9,
      kvCacheUsagePercent: 0.3125,
      cacheBlockSize: 64,
      cacheNumBlocks: 1024,
    });
  });

  it("fails on a body that carries none of the engine's families, or only non-finite values", () => {
    expect(() => extractMetrics(mapping("vllm"), "", 0)).toThrow(/no vllm metric family \(.*\) in \/metrics/);
    expect(() => extractMetrics(mapping("vllm"), "<html>not prometheus</html>\n", 0)).toThrow(MetricsExtractionError);
    expect(() => extractMetrics(mapping("sglang"), fixture("vllm-dp.txt"), 0, "/custom")).toThrow(
      /no sglang metric family .* in \/custom/,
    );
    const nan = "vllm:num_requests_waiting NaN\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0";
    expect(() => extractMetrics(mapping("vllm"), nan, 0)).toThrow("vllm:num_requests_waiting has no finite value");
  });

  it("reads an absent load family as 0 and names it in `unreported` (no load reported yet, not a failure)", () => {
    const partial = extractMetrics(mapping("vllm"), "vllm:num_requests_waiting 1\nvllm:num_requests_running 1", 0);
    expect(partial).toMatchObject({ waitingQueueSize: 1, runningRequestsSize: 1, kvCacheUsagePercent: 0 });
    expect(partial.unreported).toBe("vllm:kv_cache_usage_perc");
    // Only the HELP/TYPE lines, as a fresh data-parallel vLLM can serve them before its first request.
    const declared = [
      "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
      "# TYPE vllm:num_requests_waiting gauge",
      "# TYPE vllm:num_requests_running gauge",
      "# TYPE vllm:kv_cache_usage_perc gauge",
      "",
    ].join("\n");
    const fresh = extractMetrics(mapping("vllm"), declared, 7);
    expect(fresh).toMatchObject({ waitingQueueSize: 0, runningRequestsSize: 0, kvCacheUsagePercent: 0, updateTime: 7 });
    expect(fresh.unreported).toBe("vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc");
    const triton = fixture("triton-trtllm.txt").replace(/waiting/g, "queued");
    expect(extractMetrics(mapping("triton-tensorrt-llm"), triton, 0).unreported).toBe(
      'nv_trt_llm_request_metrics{request_type="waiting"}',
    );
    expect(extractMetrics(mapping("vllm"), fixture("vllm-dp.txt"), 0).unreported).toBeUndefined();
  });

  it("skips disabled signals and clamps KV usage above 1 to 1", () => {
    const onlyQueue = compileEngine({ name: "q", queuedRequestsSpec: "q" });
    expect(extractMetrics(onlyQueue, "q 3\n", 0)).toMatchObject({ waitingQueueSize: 3, runningRequestsSize: 0 });
    const text = "vllm:num_requests_waiting 0\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 1.5";
    expect(extractMetrics(mapping("vllm"), text, 0)).toMatchObject({ waitingQueueSize: 0, kvCacheUsagePercent: 1 });
  });

  it("refuses bodies that lie: negative values, too many series, a series twice (naming the field)", () => {
    const ok = ["vllm:num_requests_waiting 0", "vllm:num_requests_running 1", "vllm:kv_cache_usage_perc 0.2"];
    const refuse = (lines: string[], field: RegExp, maxSeries?: number) => {
      let caught: unknown;
      try {
        extractMetrics(mapping("vllm"), `${lines.join("\n")}\n`, 0, "/metrics", maxSeries);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(ImplausibleMetricsError);
      expect((caught as ImplausibleMetricsError).field).toMatch(field);
      return (caught as Error).message;
    };
    // A negative KV usage used to be clamped to 0: the pod looked idle and got every request.
    expect(refuse([ok[0]!, ok[1]!, "vllm:kv_cache_usage_perc -0.5"], /kv_cache_usage_perc/)).toContain("negative");
    expect(refuse(["vllm:num_requests_waiting -1", ok[1]!, ok[2]!], /num_requests_waiting/)).toContain("negative");
    // 10k series used to be summed (a queue of 49,995,000).
    const many = Array.from({ length: 10_000 }, (_, i) => `vllm:num_requests_waiting{engine="${i}"} ${i}`);
    expect(refuse([...many, ok[1]!, ok[2]!], /num_requests_waiting/)).toContain("--scrape-max-series (256)");
    expect(refuse([...many.slice(0, 5), ok[1]!, ok[2]!], /num_requests_waiting/, 4)).toContain("5 series");
    // The same family twice (a duplicated block) used to be summed too.
    const dup = ['vllm:num_requests_running{engine="0"} 3', 'vllm:num_requests_running{engine="0"} 3'];
    expect(refuse([ok[0]!, ...dup, ok[2]!], /num_requests_running/)).toContain("twice");
    // Distinct ranks are fine and are summed.
    expect(
      extractMetrics(
        mapping("vllm"),
        `${[ok[0], 'vllm:num_requests_running{engine="0"} 3', 'vllm:num_requests_running{engine="1"} 2', ok[2]].join("\n")}\n`,
        0,
      ),
    ).toMatchObject({ runningRequestsSize: 5 });
  });

  it("returns a new object per scrape", () => {
    const a = extractMetrics(mapping("vllm"), fixture("vllm-dp.txt"), 1);
    const b = extractMetrics(mapping("vllm"), fixture("vllm-dp.txt"), 2);
    expect(a).not.toBe(b);
    expect(b.updateTime).toBe(2);
  });
});
