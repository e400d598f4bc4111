import { afterEach, describe, expect, it } from "vitest";
import type { Simulator } from "../../src/sim/index.js";
import {
  closeAll,
  json,
  longPrompt,
  parseMetrics,
  post,
  type Sample,
  scrape,
  startSim,
  value,
  waitFor,
  waitForQueue,
} from "./helpers.js";

afterEach(closeAll);

/** Opens a long streaming request and returns its abort handle once the response headers arrived. */
async function openStream(sim: Simulator, body: Record<string, unknown>): Promise<AbortController> {
  const ac = new AbortController();
  const res = await post(sim, "/v1/completions", { model: "base", max_tokens: 900, stream: true, ...body }, ac.signal);
  expect(res.status).toBe(200);
  // Keep reading in the background so the socket drains; the abort ends it.
  res.body?.pipeTo(new WritableStream()).catch(() => {});
  return ac;
}

function loraSeries(samples: readonly Sample[]): Sample[] {
  return samples.filter((s) => s.name === "vllm:lora_requests_info");
}

function currentLora(samples: readonly Sample[]): Sample {
  const series = loraSeries(samples);
  return series.reduce((a, b) => (b.value > a.value ? b : a));
}

describe("continuous batching and the waiting queue", () => {
  it("reports running and waiting on /metrics, and frees everything when clients abort", async () => {
    const sim = await startSim({ maxNumSeqs: 2, interTokenLatencyMs: 20 });
    const streams: AbortController[] = [];
    for (let i = 0; i < 5; i++) streams.push(await openStream(sim, { prompt: `request ${i}` }));
    const metrics = await waitForQueue(sim, 2, 3);
    expect(value(metrics, "vllm:kv_cache_usage_perc", { model_name: "base", engine: "0" })).toBeGreaterThan(0);
    for (const s of streams) s.abort();
    const after = await waitForQueue(sim, 0, 0);
    expect(value(after, "vllm:kv_cache_usage_perc")).toBe(0);
  });

  it("answers 429 when the waiting queue is full", async () => {
    const sim = await startSim({ maxNumSeqs: 1, maxWaitingQueueLength: 1, interTokenLatencyMs: 20 });
    const a = await openStream(sim, { prompt: "first" });
    const b = await openStream(sim, { prompt: "second" });
    await waitForQueue(sim, 1, 1);
    const res = await post(sim, "/v1/completions", { model: "base", prompt: "third", stream: true });
    expect(res.status).toBe(429);
    expect((await json(res)).error).toMatchObject({ type: "RateLimitError", code: 429 });
    a.abort();
    b.abort();
    await waitForQueue(sim, 0, 0);
  });

  it("gives an aborted request's slot to the next one", async () => {
    const sim = await startSim({ maxNumSeqs: 1, interTokenLatencyMs: 10 });
    const a = await openStream(sim, { prompt: "hog the only slot" });
    const b = post(sim, "/v1/completions", { model: "base", prompt: "patient", max_tokens: 2 });
    await waitForQueue(sim, 1, 1);
    a.abort();
    const res = await b;
    expect(res.status).toBe(200);
    expect((await json(res)).usage.completion_tokens).toBe(2);
    const metrics = await waitForQueue(sim, 0, 0);
    expect(value(metrics, "vllm:request_success_total", { finished_reason: "length" })).toBe(1);
  });

  it("an aborted non-streaming request leaves the batch too", async () => {
    const sim = await startSim({ maxNumSeqs: 2, interTokenLatencyMs: 10 });
    const ac = new AbortController();
    const pending = post(sim, "/v1/completions", { model: "base", prompt: "x", max_tokens: 900 }, ac.signal).catch(
      (err: Error) => err.name,
    );
    await waitForQueue(sim, 1, 0);
    ac.abort();
    expect(await pending).toBe("AbortError");
    await waitForQueue(sim, 0, 0);
    expect(sim.engine.kv.usedBlocks).toBe(0);
  });
});

describe("KV cache", () => {
  it("makes requests wait when their blocks do not fit, with batch slots free", async () => {
    // 800 chars = 200 prompt tokens = 13 blocks of 16 with the first output token; 20 blocks fit only one.
    const sim = await startSim({ maxNumSeqs: 4, kvCacheSize: 20, blockSize: 16, interTokenLatencyMs: 30 });
    const a = await openStream(sim, { prompt: longPrompt("a", 800), max_tokens: 100 });
    const b = await openStream(sim, { prompt: longPrompt("b", 800), max_tokens: 100 });
    const metrics = await waitForQueue(sim, 1, 1);
    expect(value(metrics, "vllm:num_requests_running")).toBeLessThan(4);
    expect(value(metrics, "vllm:kv_cache_usage_perc")).toBeGreaterThanOrEqual(0.65);
    a.abort();
    b.abort();
    await waitForQueue(sim, 0, 0);
  });

  it("preempts the newest sequence when decode runs out of blocks, and still finishes both", async () => {
    // Each request needs 2 blocks at admission and 5 at the end; 6 blocks cannot hold both to completion.
    const sim = await startSim({ maxNumSeqs: 4, kvCacheSize: 6, blockSize: 16, interTokenLatencyMs: 1 });
    const results = await Promise.all(
      ["p", "q"].map(async (tag) => {
        const res = await post(sim, "/v1/completions", { model: "base", prompt: longPrompt(tag, 64), max_tokens: 60 });
        return (await json(res)).usage.completion_tokens as number;
      }),
    );
    expect(results).toEqual([60, 60]);
    const metrics = await scrape(sim);
    expect(value(metrics, "vllm:num_preemptions_total")).toBeGreaterThan(0);
    expect(value(metrics, "vllm:generation_tokens_total")).toBe(120);
    expect(sim.engine.kv.usedBlocks).toBe(0);
  });

  it("counts prefix-cache hits for a repeated long prompt and reports cached_tokens", async () => {
    const sim = await startSim({ blockSize: 16, interTokenLatencyMs: 0 });
    const prompt = longPrompt("shared system prompt", 2000); // 500 tokens, 31 full blocks of 64 chars
    const first = await json(await post(sim, "/v1/completions", { model: "base", prompt, max_tokens: 2 }));
    expect(first.usage.prompt_tokens_details.cached_tokens).toBe(0);
    const second = await json(await post(sim, "/v1/completions", { model: "base", prompt, max_tokens: 2 }));
    expect(second.usage.prompt_tokens_details.cached_tokens).toBe(31 * 16);
    // Same first half, different tail: only the shared blocks hit.
    const half = `${prompt.slice(0, 1000)}${longPrompt("different tail", 1000)}`;
    const third = await json(await post(sim, "/v1/completions", { model: "base", prompt: half, max_tokens: 2 }));
    expect(third.usage.prompt_tokens_details.cached_tokens).toBe(Math.floor(1000 / 64) * 16);
    const metrics = await scrape(sim);
    expect(value(metrics, "vllm:prefix_cache_queries_total")).toBe(1500);
    expect(value(metrics, "vllm:prefix_cache_hits_total")).toBe(31 * 16 + 15 * 16);
    expect(value(metrics, "vllm:prompt_tokens_total")).toBe(1500);
  });

  it("keys the cache by adapter and cache_salt, and can be disabled", async () => {
    const sim = await startSim({ loraModules: "ad", interTokenLatencyMs: 0, loraLoadTimeMs: 0 });
    const prompt = longPrompt("p", 640);
    const cached = async (body: Record<string, unknown>): Promise<number> =>
      (await json(await post(sim, "/v1/completions", { model: "base", prompt, max_tokens: 1, ...body }))).usage
        .prompt_tokens_details.cached_tokens;
    expect(await cached({})).toBe(0);
    expect(await cached({})).toBeGreaterThan(0);
    expect(await cached({ model: "ad" })).toBe(0);
    expect(await cached({ cache_salt: "tenant-2" })).toBe(0);

    const off = await startSim({ enablePrefixCaching: false, interTokenLatencyMs: 0 });
    for (let i = 0; i < 2; i++) {
      const body = await json(await post(off, "/v1/completions", { model: "base", prompt, max_tokens: 1 }));
      expect(body.usage.prompt_tokens_details.cached_tokens).toBe(0);
    }
    const metrics = await (await fetch(`${off.url}/metrics`)).text();
    expect(metrics).toContain('enable_prefix_caching="False"');
  });

  it("evicts least recently freed cached blocks under memory pressure", async () => {
    const sim = await startSim({ kvCacheSize: 12, blockSize: 16, interTokenLatencyMs: 0 });
    const ask = async (prompt: string): Promise<number> =>
      (await json(await post(sim, "/v1/completions", { model: "base", prompt, max_tokens: 1 }))).usage
        .prompt_tokens_details.cached_tokens;
    const a = longPrompt("a", 320); // 5 blocks
    const b = longPrompt("b", 320);
    const c = longPrompt("c", 320);
    await ask(a);
    await ask(b);
    await ask(c); // 12 blocks cannot keep a, b and c (6 each incl. the output block): a is evicted first
    expect(await ask(c)).toBeGreaterThan(0);
    expect(await ask(a)).toBe(0);
  });
});

describe("metrics exposition", () => {
  it("exposes vLLM's families with model_name and engine labels", async () => {
    const sim = await startSim({ servedModelNames: ["served-a", "served-b"], interTokenLatencyMs: 0 });
    await (await post(sim, "/v1/completions", { model: "served-b", prompt: "hello", max_tokens: 3 })).text();
    const res = await fetch(`${sim.url}/metrics`);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const samples = parseMetrics(await res.text());
    const names = new Set(samples.map((s) => s.name));
    for (const n of [
      "vllm:num_requests_running",
      "vllm:num_requests_waiting",
      "vllm:kv_cache_usage_perc",
      "vllm:cache_config_info",
      "vllm:prompt_tokens_total",
      "vllm:generation_tokens_total",
      "vllm:prefix_cache_queries_total",
      "vllm:prefix_cache_hits_total",
      "vllm:request_success_total",
      "vllm:time_to_first_token_seconds_bucket",
      "vllm:inter_token_latency_seconds_count",
      "vllm:e2e_request_latency_seconds_sum",
    ]) {
      expect(names.has(n), n).toBe(true);
    }
    expect(names.has("vllm:gpu_cache_usage_perc")).toBe(false);
    expect(names.has("vllm:lora_requests_info")).toBe(false);
    const running = samples.find((s) => s.name === "vllm:num_requests_running")!;
    expect(running.labels).toEqual({ model_name: "served-a", engine: "0" });
    expect(value(samples, "vllm:cache_config_info", { block_size: "16", num_gpu_blocks: "1024" })).toBe(1);
    expect(value(samples, "vllm:generation_tokens_total")).toBe(3);
    expect(value(samples, "vllm:time_to_first_token_seconds_count")).toBe(1);
    expect(value(samples, "vllm:inter_token_latency_seconds_count")).toBe(2);
    expect(value(samples, "vllm:time_to_first_token_seconds_bucket", { le: "+Inf" })).toBe(1);
  });

  it("can use the old gpu_cache_usage_perc name", async () => {
    const sim = await startSim({ kvCacheMetricName: "gpu_cache_usage_perc" });
    const names = new Set((await scrape(sim)).map((s) => s.name));
    expect(names.has("vllm:gpu_cache_usage_perc")).toBe(true);
    expect(names.has("vllm:kv_cache_usage_perc")).toBe(false);
  });
});

describe("LoRA", () => {
  it("exports the initial empty LoRA label set from the start with --lora-info-at-start (older vLLM)", async () => {
    const sim = await startSim({ loraModules: ["ad-a"], loraInfoAtStart: true });
    expect(currentLora(await scrape(sim)).labels).toEqual({
      max_lora: "1",
      running_lora_adapters: "",
      waiting_lora_adapters: "",
    });
  });

  it("records the first LoRA label set at the first engine step, even for a base-model request", async () => {
    const sim = await startSim({ loraModules: ["ad-a"], interTokenLatencyMs: 1 });
    const res = await post(sim, "/v1/completions", { model: sim.engine.options.model, prompt: "x", max_tokens: 2 });
    await res.text();
    expect(currentLora(await scrape(sim)).labels.running_lora_adapters).toBe("");
  });

  it("reflects loads, waiting adapters and eviction in lora_requests_info", async () => {
    const sim = await startSim({
      loraModules: ["ad-a", "ad-b"],
      maxLoras: 1,
      loraLoadTimeMs: 5,
      interTokenLatencyMs: 10,
    });
    // Like vLLM 0.32: the family is declared, but there is no sample before the first engine step.
    const freshText = await (await fetch(`${sim.url}/metrics`)).text();
    expect(freshText).toContain("# TYPE vllm:lora_requests_info gauge");
    expect(loraSeries(await scrape(sim))).toEqual([]);

    const a = await openStream(sim, { model: "ad-a", prompt: "use adapter a" });
    await waitFor(async () => currentLora(await scrape(sim)).labels.running_lora_adapters === "ad-a", "ad-a running");

    // ad-b cannot load while ad-a holds the only slot: it waits although batch slots are free.
    const b = post(sim, "/v1/completions", { model: "ad-b", prompt: "use adapter b", max_tokens: 2 });
    const blocked = await waitFor(async () => {
      const s = await scrape(sim);
      const cur = currentLora(s);
      // The gauges show a request one engine step after it arrives (vLLM 0.32's lag), the LoRA set at once.
      const gauges = value(s, "vllm:num_requests_waiting") === 1 && value(s, "vllm:num_requests_running") === 1;
      return gauges && cur.labels.waiting_lora_adapters === "ad-b" && cur.labels.running_lora_adapters === "ad-a"
        ? s
        : undefined;
    }, "ad-b waiting");
    expect(value(blocked, "vllm:num_requests_waiting")).toBe(1);
    expect(value(blocked, "vllm:num_requests_running")).toBe(1);

    a.abort();
    const res = await b;
    expect(res.status).toBe(200);
    await res.text();
    const done = await waitFor(async () => {
      const s = await scrape(sim);
      const cur = currentLora(s);
      return cur.labels.running_lora_adapters === "" && cur.labels.waiting_lora_adapters === "" ? s : undefined;
    }, "adapters idle");
    // Old label sets linger as separate series, like vLLM; the largest value is the current one.
    const series = loraSeries(done);
    expect(series.length).toBeGreaterThanOrEqual(3);
    expect(new Set(series.map((s) => s.value)).size).toBe(series.length);
    expect(series.every((s) => s.value > 1e9)).toBe(true);
    expect(sim.engine.lora?.evictions).toBe(1);
    expect(sim.engine.lora?.resident()).toEqual(["ad-b"]);
  });

  it("shares one resident adapter across concurrent requests", async () => {
    const sim = await startSim({ loraModules: "x,y", maxLoras: 1, interTokenLatencyMs: 5, loraLoadTimeMs: 1 });
    const results = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const res = await post(sim, "/v1/completions", { model: "x", prompt: `p${i}`, max_tokens: 3 });
        return res.status;
      }),
    );
    expect(results).toEqual([200, 200, 200]);
    expect(sim.engine.lora?.loads).toBe(1);
  });
});
