import { describe, expect, it } from "vitest";
import type { Endpoint } from "../../src/datastore/types.js";
import { PluginParamError } from "../../src/scheduling/params.js";
import { ServedModelFilter } from "../../src/scheduling/plugins/filters.js";
import {
  KvCacheUtilizationScorer,
  LoraAffinityScorer,
  QueueScorer,
  RunningRequestsSizeScorer,
  TokenLoadScorer,
  tokenLoadScorerFactory,
} from "../../src/scheduling/plugins/scorers.js";
import type { Scorer } from "../../src/scheduling/types.js";
import { endpoint, metrics, request, TestClock, testHandle } from "./helpers.js";

function scores(scorer: Scorer, endpoints: readonly Endpoint[], targetModel = "base"): number[] {
  return Array.from(scorer.score(new Map(), request({ targetModel }), endpoints));
}

describe("queue-scorer", () => {
  it("scores (maxQ − q) / (maxQ − minQ) over the candidates", () => {
    const clock = new TestClock();
    const s = new QueueScorer("q", testHandle(clock));
    const eps = [0, 5, 10, 2].map((q, i) => endpoint(`10.0.0.${i + 1}`, metrics({ waitingQueueSize: q }, clock.t)));
    expect(scores(s, eps)).toEqual([1, 0.5, 0, 0.8]);
    expect(s.category).toBe("Distribution");
  });

  it("gives 1.0 to every endpoint when all queues are equal", () => {
    const clock = new TestClock();
    const s = new QueueScorer("q", testHandle(clock));
    const eps = [3, 3, 3].map((q, i) => endpoint(`10.0.0.${i + 1}`, metrics({ waitingQueueSize: q }, clock.t)));
    expect(scores(s, eps)).toEqual([1, 1, 1]);
  });

  it("treats stale and missing metrics as unknown (0) while another endpoint is fresh", () => {
    const clock = new TestClock();
    const s = new QueueScorer("q", testHandle(clock));
    const stale = endpoint("10.0.0.1", metrics({ waitingQueueSize: 0 }, clock.t - 201)); // 200 ms default
    const edge = endpoint("10.0.0.2", metrics({ waitingQueueSize: 8 }, clock.t - 200)); // exactly at the limit: fresh
    const fresh = endpoint("10.0.0.3", metrics({ waitingQueueSize: 4 }, clock.t));
    const never = endpoint("10.0.0.4");
    // min/max come from the fresh endpoints only (4 and 8): the stale queue of 0 must not stretch the range.
    expect(scores(s, [stale, edge, fresh, never])).toEqual([0, 0, 1, 0]);
  });

  it("falls back to last-known metrics when no endpoint is fresh", () => {
    const clock = new TestClock();
    const s = new QueueScorer("q", testHandle(clock));
    const a = endpoint("10.0.0.1", metrics({ waitingQueueSize: 0 }, clock.t - 5_000));
    const b = endpoint("10.0.0.2", metrics({ waitingQueueSize: 10 }, clock.t - 5_000));
    const never = endpoint("10.0.0.3");
    expect(scores(s, [a, b, never])).toEqual([1, 0, 0]);
  });
});

describe("running-requests-size-scorer", () => {
  it("uses the queue formula on RunningRequestsSize", () => {
    const clock = new TestClock();
    const s = new RunningRequestsSizeScorer("r", testHandle(clock));
    const eps = [2, 6, 4].map((r, i) =>
      endpoint(`10.0.0.${i + 1}`, metrics({ runningRequestsSize: r, waitingQueueSize: 100 - i }, clock.t)),
    );
    expect(scores(s, eps)).toEqual([1, 0, 0.5]);
    expect(s.typedName).toEqual({ type: "running-requests-size-scorer", name: "r" });
  });
});

describe("kv-cache-utilization-scorer", () => {
  it("scores 1 − KV usage, unknown → 0", () => {
    const clock = new TestClock();
    const s = new KvCacheUtilizationScorer("kv", testHandle(clock));
    const eps = [
      endpoint("10.0.0.1", metrics({ kvCacheUsagePercent: 0.25 }, clock.t)),
      endpoint("10.0.0.2", metrics({ kvCacheUsagePercent: 1 }, clock.t)),
      endpoint("10.0.0.3", metrics({ kvCacheUsagePercent: 0 }, clock.t - 1_000)),
    ];
    expect(scores(s, eps)).toEqual([0.75, 0, 0]);
  });
});

describe("lora-affinity-scorer", () => {
  it("scores 1.0 active, 0.8 free slot, 0.6 waiting, 0.0 otherwise on the target model", () => {
    const clock = new TestClock();
    const s = new LoraAffinityScorer("lora", testHandle(clock));
    const eps = [
      endpoint("10.0.0.1", metrics({ active: ["ad"], maxActiveModels: 1 }, clock.t)),
      endpoint("10.0.0.2", metrics({ active: ["x"], maxActiveModels: 2 }, clock.t)),
      endpoint("10.0.0.3", metrics({ active: ["x"], waiting: ["ad"], maxActiveModels: 2 }, clock.t)),
      endpoint("10.0.0.4", metrics({ active: ["x", "y"], maxActiveModels: 2 }, clock.t)),
      endpoint("10.0.0.5", metrics({ active: ["ad"] }, clock.t - 1_000)),
    ];
    expect(scores(s, eps, "ad")).toEqual([1, 0.8, 0.6, 0, 0]);
    // The affinity follows the post-rewrite target model, not the requested one.
    expect(Array.from(s.score(new Map(), request({ model: "ad", targetModel: "x" }), eps.slice(0, 1)))).toEqual([0]);
    expect(s.category).toBe("Affinity");
  });
});

describe("token-load-scorer", () => {
  it("scores 1 − min(1, inflightTokens / threshold)", () => {
    const s = new TokenLoadScorer("t", 1000);
    const eps = [0, 250, 1000, 5000].map((tokens, i) => {
      const e = endpoint(`10.0.0.${i + 1}`);
      e.inflightTokens = tokens;
      return e;
    });
    expect(scores(s, eps)).toEqual([1, 0.75, 0, 0]);
    expect(new TokenLoadScorer("d").threshold).toBe(4_194_304);
  });

  it("validates queueThresholdTokens", () => {
    const handle = testHandle(new TestClock());
    expect(() => tokenLoadScorerFactory("t", { queueThresholdTokens: 0 }, handle)).toThrow(
      new PluginParamError("queueThresholdTokens", "must be an integer >= 1, got 0"),
    );
    expect(() => tokenLoadScorerFactory("t", { queueThresholdTokens: 0 }, handle)).toThrow(
      "parameters.queueThresholdTokens: must be an integer >= 1, got 0",
    );
    expect((tokenLoadScorerFactory("t", { queueThresholdTokens: 10 }, handle) as TokenLoadScorer).threshold).toBe(10);
  });
});

describe("served models (better than GIE)", () => {
  const base = "meta-llama/Llama-3.1-8B-Instruct";
  const clock = new TestClock();
  const pod = (address: string, max: number) =>
    endpoint(address, {
      ...metrics({ kvCacheUsagePercent: 0.2, maxActiveModels: max }, clock.t),
      servedModels: new Set([base]),
    });

  it("lora-affinity gives every pod serving the base model 1.0, so base requests are not pulled to LoRA pods", () => {
    const scorer = new LoraAffinityScorer("l", testHandle(clock));
    const loraPod = pod("10.0.0.1", 2);
    const plainPod = pod("10.0.0.2", 0);
    expect(Array.from(scorer.score(new Map(), request({ targetModel: base }), [loraPod, plainPod]))).toEqual([1, 1]);
    // An adapter request keeps GIE's rules: a free slot 0.8, no LoRA support 0.
    expect(Array.from(scorer.score(new Map(), request({ targetModel: "sql-lora" }), [loraPod, plainPod]))).toEqual([
      0.8, 0,
    ]);
  });

  it("served-model-filter keeps adapter requests on pods that can load adapters", () => {
    const loraPod = pod("10.0.0.1", 2);
    const plainPod = pod("10.0.0.2", 0);
    const f = new ServedModelFilter("f");
    expect(f.filter(new Map(), request({ targetModel: "sql-lora" }), [loraPod, plainPod])).toEqual([loraPod]);
    expect(f.filter(new Map(), request({ targetModel: base }), [loraPod, plainPod])).toEqual([loraPod, plainPod]);
    // Nothing qualifies: fail open rather than reject.
    expect(f.filter(new Map(), request({ targetModel: "sql-lora" }), [plainPod])).toEqual([plainPod]);
  });
});
