/**
 * The simulator behaves like vLLM 0.32 where routing depends on it (docs/design/model-servers.md §3.3, §8): a
 * request shows in the load gauges only after its first engine step, a data-parallel server exports an engine's
 * gauges only after that engine's first request and repeats the total block count per engine, and the LoRA gauge
 * has no sample before the first step. Flags select the older shapes.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Simulator } from "../../src/sim/index.js";
import { closeAll, post, scrape, startSim, value, waitFor } from "./helpers.js";

afterEach(closeAll);

/** A request whose prefill never completes within the test: it is admitted (running) but has no first token. */
async function stuckInPrefill(sim: Simulator): Promise<AbortController> {
  const ac = new AbortController();
  const res = await post(
    sim,
    "/v1/completions",
    { model: "base", prompt: "x", max_tokens: 5, stream: true },
    ac.signal,
  );
  res.body?.pipeTo(new WritableStream()).catch(() => {});
  await waitFor(async () => sim.engine.running === 1, "the request admitted");
  return ac;
}

describe("simulator fidelity to vLLM 0.32", () => {
  it("shows a running request in the gauges only from its first token (first-step lag)", async () => {
    const sim = await startSim({ prefillOverheadMs: 600_000 });
    const ac = await stuckInPrefill(sim);
    expect(value(await scrape(sim), "vllm:num_requests_running")).toBe(0);
    ac.abort();
  });

  it("shows it at once with --gauge-lag 0 (the old shape)", async () => {
    const sim = await startSim({ prefillOverheadMs: 600_000, gaugeLag: 0 });
    const ac = await stuckInPrefill(sim);
    expect(value(await scrape(sim), "vllm:num_requests_running")).toBe(1);
    ac.abort();
  });

  it("exports a data-parallel engine's load gauges only after its first request, and the total blocks on each", async () => {
    const sim = await startSim({ dataParallelSize: 2, kvCacheSize: 512, interTokenLatencyMs: 1 });
    const fresh = await scrape(sim);
    expect(fresh.filter((s) => s.name === "vllm:num_requests_running")).toEqual([]);
    expect(fresh.filter((s) => s.name === "vllm:kv_cache_usage_perc")).toEqual([]);
    const info = fresh.filter((s) => s.name === "vllm:cache_config_info");
    expect(info.map((s) => [s.labels.engine, s.labels.num_gpu_blocks])).toEqual([
      ["0", "512"],
      ["1", "512"],
    ]);
    await (await post(sim, "/v1/completions", { model: "base", prompt: "x", max_tokens: 2 })).text();
    const after = await scrape(sim);
    expect(after.filter((s) => s.name === "vllm:num_requests_running").map((s) => s.labels.engine)).toEqual(["0"]);
  });

  it("exports every engine's gauges at 0 from the start with --dp-gauges-after-first-request=false", async () => {
    const sim = await startSim({ dataParallelSize: 2, dpGaugesAfterFirstRequest: false });
    const engines = (await scrape(sim))
      .filter((s) => s.name === "vllm:num_requests_waiting")
      .map((s) => s.labels.engine);
    expect(engines).toEqual(["0", "1"]);
  });
});
