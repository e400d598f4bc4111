import { describe, expect, it } from "vitest";
import { SwitchyardError } from "../../src/common/errors.js";
import type { Endpoint } from "../../src/datastore/types.js";
import { loadPickerConfig } from "../../src/scheduling/config.js";

/** GIE v1.5's default profile, by name (the built-in default is `predictive`: docs/design/scheduling.md §11.6). */
const gieConfig = () => loadPickerConfig({ builtin: "gie" });

import { isPreRequest, registerPlugin } from "../../src/scheduling/registry.js";
import { createScheduler, NO_ENDPOINTS_MESSAGE } from "../../src/scheduling/scheduler.js";
import type { ExtensionPoint, Filter, Scorer } from "../../src/scheduling/types.js";
import { endpoint, metrics, request, TestClock, testHandle } from "./helpers.js";

/** A scorer whose scores come from the endpoint's address, to drive the framework precisely. */
const FIXED: Record<string, number> = {};
registerPlugin(
  "test-fixed-scorer",
  (name) =>
    ({
      typedName: { type: "test-fixed-scorer", name },
      category: "Balance",
      score: (_s, _r, eps) => eps.map((e) => FIXED[e.address] ?? 0),
    }) satisfies Scorer,
);
registerPlugin(
  "test-reject-odd-filter",
  (name) =>
    ({
      typedName: { type: "test-reject-odd-filter", name },
      filter: (_s, _r, eps) => eps.filter((e) => Number(e.address.split(".")[3]) % 2 === 0),
    }) satisfies Filter,
);

const yaml = (body: string): string =>
  `apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n${body}`;

describe("GIE's default profile (--scheduling-profile gie)", () => {
  it("prefers the lowest queue and KV", () => {
    const clock = new TestClock();
    const s = createScheduler(gieConfig(), testHandle(clock));
    const busy = endpoint("10.0.0.1", metrics({ waitingQueueSize: 6, kvCacheUsagePercent: 0.7 }, clock.t));
    const idle = endpoint("10.0.0.2", metrics({ waitingQueueSize: 0, kvCacheUsagePercent: 0.1 }, clock.t));
    const mid = endpoint("10.0.0.3", metrics({ waitingQueueSize: 3, kvCacheUsagePercent: 0.4 }, clock.t));
    for (let i = 0; i < 20; i++) expect(s.schedule(request(), [busy, idle, mid]).endpoints).toEqual([idle]);
    const result = s.schedule(request(), [busy, idle, mid]);
    expect(result.profile).toBe("default");
    const byKey = Object.fromEntries(result.breakdown.map((b) => [b.endpoint, b]));
    // queue ×2 + kv ×2 + lora ×1 (no adapter slots: 0).
    expect(byKey["10.0.0.2:8000"]!.total).toBeCloseTo(2 * 1 + 2 * 0.9 + 0, 10);
    expect(byKey["10.0.0.3:8000"]!.total).toBeCloseTo(2 * 0.5 + 2 * 0.6, 10);
    expect(byKey["10.0.0.1:8000"]!.scores).toEqual({
      "queue-scorer": 0,
      "kv-cache-utilization-scorer": expect.closeTo(0.3, 10),
      "lora-affinity-scorer": 0,
    });
  });

  it("LoRA affinity beats lower KV when the other endpoint has no free adapter slot", () => {
    const clock = new TestClock();
    const s = createScheduler(gieConfig(), testHandle(clock));
    // A: 2×1 + 2×(1−0.5) + 1×1.0 = 4.0;  B: 2×1 + 2×(1−0.1) + 1×0.0 = 3.8.
    const a = endpoint("10.0.0.1", metrics({ kvCacheUsagePercent: 0.5, active: ["ad"], maxActiveModels: 1 }, clock.t));
    const b = endpoint(
      "10.0.0.2",
      metrics({ kvCacheUsagePercent: 0.1, active: ["other"], maxActiveModels: 1 }, clock.t),
    );
    const r = s.schedule(request({ model: "ad" }), [b, a]);
    expect(r.endpoints).toEqual([a]);
    expect(r.breakdown.map((x) => x.total)).toEqual([expect.closeTo(3.8, 10), expect.closeTo(4, 10)]);
  });

  it("a free adapter slot (0.8) plus much lower KV outweighs affinity, as GIE's weights dictate", () => {
    const clock = new TestClock();
    const s = createScheduler(gieConfig(), testHandle(clock));
    // A: 2 + 1.0 + 1.0 = 4.0;  B: 2 + 1.8 + 0.8 = 4.6.
    const a = endpoint("10.0.0.1", metrics({ kvCacheUsagePercent: 0.5, active: ["ad"], maxActiveModels: 2 }, clock.t));
    const b = endpoint("10.0.0.2", metrics({ kvCacheUsagePercent: 0.1, maxActiveModels: 2 }, clock.t));
    expect(s.schedule(request({ model: "ad" }), [a, b]).endpoints).toEqual([b]);
  });

  it("prefers a fresh endpoint over one whose (better) metrics are stale", () => {
    const clock = new TestClock();
    const s = createScheduler(gieConfig(), testHandle(clock));
    const stale = endpoint("10.0.0.1", metrics({ waitingQueueSize: 0, kvCacheUsagePercent: 0 }, clock.t - 500));
    const fresh = endpoint("10.0.0.2", metrics({ waitingQueueSize: 4, kvCacheUsagePercent: 0.6 }, clock.t));
    for (let i = 0; i < 20; i++) expect(s.schedule(request(), [stale, fresh]).endpoints).toEqual([fresh]);
  });
});

describe("framework", () => {
  const fixedConfig = (picker: string, extra = "") =>
    loadPickerConfig({
      text: yaml(`plugins:
  - type: test-fixed-scorer
  - type: ${picker}
${extra}schedulingProfiles:
  - name: p
    plugins:
      - pluginRef: test-fixed-scorer
        weight: 3
      - pluginRef: ${picker}
`),
    });

  it("clamps each score to [0,1] and sums weight × score without normalising", () => {
    const clock = new TestClock();
    const s = createScheduler(fixedConfig("max-score-picker"), testHandle(clock));
    Object.assign(FIXED, { "10.1.0.1": -2, "10.1.0.2": 7, "10.1.0.3": Number.NaN, "10.1.0.4": 0.5 });
    const eps = ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"].map((a) => endpoint(a));
    const r = s.schedule(request(), eps);
    expect(r.breakdown.map((b) => b.scores["test-fixed-scorer"])).toEqual([0, 1, 0, 0.5]);
    expect(r.breakdown.map((b) => b.total)).toEqual([0, 3, 0, 1.5]);
    expect(r.endpoints).toEqual([eps[1]]);
    expect(r.rejected).toEqual([]);
  });

  it("best(k) keeps the chosen endpoint, then the highest totals, and never more than k rows", () => {
    const s = createScheduler(fixedConfig("random-picker"), testHandle(new TestClock(), 99));
    const eps = Array.from({ length: 40 }, (_, i) => endpoint(`10.2.0.${i + 1}`));
    // Distinct scores in a shuffled order, so position in the pool says nothing about rank.
    for (let i = 0; i < 40; i++) FIXED[`10.2.0.${i + 1}`] = ((i * 17) % 40) / 40;
    for (let round = 0; round < 20; round++) {
      const r = s.schedule(request(), eps);
      expect(r.scoredCount).toBe(40);
      const best = r.best(5);
      expect(best).toHaveLength(5);
      const chosen = r.endpoints[0]!.key;
      expect(best[0]!.endpoint).toBe(chosen);
      const others = r.breakdown
        .filter((b) => b.endpoint !== chosen)
        .sort((x, y) => y.total - x.total)
        .slice(0, 4);
      expect(best.slice(1)).toEqual(others);
      expect(r.best(50)).toEqual(r.breakdown);
    }
  });

  it("a result's scores are readable until the next cycle, and reading them later fails loudly", () => {
    const s = createScheduler(fixedConfig("max-score-picker"), testHandle(new TestClock()));
    Object.assign(FIXED, { "10.3.0.1": 0.2, "10.3.0.2": 0.9 });
    const eps = [endpoint("10.3.0.1"), endpoint("10.3.0.2")];
    const first = s.schedule(request(), eps);
    const kept = first.breakdown;
    FIXED["10.3.0.1"] = 1;
    const second = s.schedule(request(), eps);
    // What was copied before the next cycle stays; the cycle's own numbers are the second request's now.
    expect(kept.map((b) => b.total)).toEqual([expect.closeTo(0.6, 10), expect.closeTo(2.7, 10)]);
    expect(first.breakdown).toBe(kept);
    expect(first.endpoints).toEqual([eps[1]]);
    expect(() => first.scoresOf("test-fixed-scorer")).toThrow(/after the next cycle ran/);
    expect(() => first.bestScoreOf("test-fixed-scorer")).toThrow(SwitchyardError);
    expect(second.scoresOf("test-fixed-scorer")).toEqual([1, 0.9]);
    expect(second.bestScoreOf("test-fixed-scorer")).toBe(1);
  });

  it("max-score-picker breaks ties uniformly at random", () => {
    const s = createScheduler(gieConfig(), testHandle(new TestClock(), 7));
    const a = endpoint("10.0.0.1");
    const b = endpoint("10.0.0.2");
    const counts = new Map<Endpoint, number>([
      [a, 0],
      [b, 0],
    ]);
    for (let i = 0; i < 400; i++) {
      const [chosen] = s.schedule(request(), [a, b]).endpoints;
      counts.set(chosen!, counts.get(chosen!)! + 1);
    }
    expect(counts.get(a)).toBeGreaterThan(120);
    expect(counts.get(b)).toBeGreaterThan(120);
  });

  it("max-score-picker spreads a three-way tie evenly and never picks a lower score", () => {
    const s = createScheduler(fixedConfig("max-score-picker"), testHandle(new TestClock(), 11));
    Object.assign(FIXED, { "10.3.0.1": 0.5, "10.3.0.2": 0.9, "10.3.0.3": 0.9, "10.3.0.4": 0.9 });
    const eps = ["10.3.0.1", "10.3.0.2", "10.3.0.3", "10.3.0.4"].map((a) => endpoint(a));
    const counts = new Map<string, number>();
    for (let i = 0; i < 900; i++) {
      const [chosen] = s.schedule(request(), eps).endpoints;
      counts.set(chosen!.address, (counts.get(chosen!.address) ?? 0) + 1);
    }
    expect(counts.get("10.3.0.1")).toBeUndefined();
    // Expected 300 each; a first-or-last bias of the 1/k rule would put one of them near 0 or 900.
    for (const a of ["10.3.0.2", "10.3.0.3", "10.3.0.4"]) expect(counts.get(a)).toBeGreaterThan(230);
  });

  it("maxNumOfEndpoints > 1 returns the best endpoints as ordered fallbacks", () => {
    const config = loadPickerConfig({
      text: yaml(`plugins:
  - type: test-fixed-scorer
  - type: max-score-picker
    parameters:
      maxNumOfEndpoints: 3
schedulingProfiles:
  - name: p
    plugins:
      - pluginRef: test-fixed-scorer
      - pluginRef: max-score-picker
`),
    });
    const s = createScheduler(config, testHandle(new TestClock()));
    Object.assign(FIXED, { "10.2.0.1": 0.2, "10.2.0.2": 0.9, "10.2.0.3": 0.5, "10.2.0.4": 0.7 });
    const eps = ["10.2.0.1", "10.2.0.2", "10.2.0.3", "10.2.0.4"].map((a) => endpoint(a));
    expect(s.schedule(request(), eps).endpoints.map((e) => e.address)).toEqual(["10.2.0.2", "10.2.0.4", "10.2.0.3"]);
    // Fewer candidates than maxNumOfEndpoints: all of them.
    expect(s.schedule(request(), eps.slice(0, 2)).endpoints.map((e) => e.address)).toEqual(["10.2.0.2", "10.2.0.1"]);
  });

  it("weighted-random-picker picks roughly in proportion to the scores", () => {
    const s = createScheduler(fixedConfig("weighted-random-picker"), testHandle(new TestClock(), 1234));
    Object.assign(FIXED, { "10.3.0.1": 0.1, "10.3.0.2": 0.3, "10.3.0.3": 0 });
    const eps = ["10.3.0.1", "10.3.0.2", "10.3.0.3"].map((a) => endpoint(a));
    const counts = [0, 0, 0];
    const N = 4000;
    for (let i = 0; i < N; i++) counts[eps.indexOf(s.schedule(request(), eps).endpoints[0]!)]!++;
    // Totals are 0.3 and 0.9 (weight 3): expected shares 1/4 and 3/4; a zero score is never chosen over a positive one.
    expect(counts[0]! / N).toBeGreaterThan(0.18);
    expect(counts[0]! / N).toBeLessThan(0.32);
    expect(counts[1]! / N).toBeGreaterThan(0.68);
    expect(counts[2]).toBe(0);
  });

  it("random-picker ignores scores", () => {
    const s = createScheduler(fixedConfig("random-picker"), testHandle(new TestClock(), 99));
    Object.assign(FIXED, { "10.4.0.1": 1, "10.4.0.2": 0 });
    const eps = ["10.4.0.1", "10.4.0.2"].map((a) => endpoint(a));
    let low = 0;
    for (let i = 0; i < 400; i++) if (s.schedule(request(), eps).endpoints[0] === eps[1]) low++;
    expect(low).toBeGreaterThan(120);
    expect(low).toBeLessThan(280);
  });

  it("records filter rejections and fails with SY_SCHEDULING_FAILED when a filter empties the list", () => {
    const config = loadPickerConfig({
      text: yaml(`plugins:
  - type: test-reject-odd-filter
    name: even-only
schedulingProfiles:
  - name: p
    plugins:
      - pluginRef: even-only
`),
    });
    const s = createScheduler(config, testHandle(new TestClock()));
    const eps = ["10.5.0.1", "10.5.0.2", "10.5.0.3"].map((a) => endpoint(a));
    const r = s.schedule(request(), eps);
    expect(r.endpoints).toEqual([eps[1]]);
    expect(r.rejected).toEqual([
      { endpoint: "10.5.0.1:8000", by: "even-only" },
      { endpoint: "10.5.0.3:8000", by: "even-only" },
    ]);
    let caught: unknown;
    try {
      s.schedule(request(), [eps[0]!, eps[2]!]);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SwitchyardError);
    expect((caught as SwitchyardError).code).toBe("SY_SCHEDULING_FAILED");
    expect((caught as SwitchyardError).status).toBe(429);
    expect((caught as SwitchyardError).message).toBe(NO_ENDPOINTS_MESSAGE);
    expect(() => s.schedule(request(), [])).toThrow(NO_ENDPOINTS_MESSAGE);
  });

  it("utilization-detector as a filter keeps fresh endpoints under the thresholds, else all (fail-open)", () => {
    const config = loadPickerConfig({
      text: yaml(`plugins:
  - type: utilization-detector
    parameters:
      headroom: 0.2
  - type: queue-scorer
schedulingProfiles:
  - name: p
    plugins:
      - pluginRef: utilization-detector
      - pluginRef: queue-scorer
`),
    });
    const clock = new TestClock();
    const s = createScheduler(config, testHandle(clock));
    const ok = endpoint("10.6.0.1", metrics({ waitingQueueSize: 5, kvCacheUsagePercent: 0.9 }, clock.t)); // < 6, < 0.96
    const fullQ = endpoint("10.6.0.2", metrics({ waitingQueueSize: 6 }, clock.t));
    const fullKv = endpoint("10.6.0.3", metrics({ kvCacheUsagePercent: 0.96 }, clock.t));
    const stale = endpoint("10.6.0.4", metrics({}, clock.t - 201));
    const r = s.schedule(request(), [ok, fullQ, fullKv, stale]);
    expect(r.endpoints).toEqual([ok]);
    expect(r.rejected.map((x) => x.endpoint)).toEqual(["10.6.0.2:8000", "10.6.0.3:8000", "10.6.0.4:8000"]);
    const all = s.schedule(request(), [fullQ, fullKv, stale]);
    expect(all.rejected).toEqual([]);
    expect(all.endpoints).toHaveLength(1);
  });

  /** One plugin at each extension point: a filter, two scorers, the default picker and a PreRequest (prefix). */
  const timedProfile = () =>
    loadPickerConfig({
      text: yaml(`plugins:
  - type: low-queue-filter
  - type: queue-scorer
  - type: prefix-cache-scorer
    name: prefix
schedulingProfiles:
  - name: p
    plugins:
      - pluginRef: low-queue-filter
      - pluginRef: queue-scorer
      - pluginRef: prefix
`),
    });

  it("reports every plugin invocation to onPluginDuration", () => {
    const calls: [ExtensionPoint, string, string, number][] = [];
    const config = timedProfile();
    const s = createScheduler(config, testHandle(new TestClock()), {
      observer: { pluginDuration: (point, type, name) => (seconds) => calls.push([point, type, name, seconds]) },
    });
    const req = request({ prefixText: "x".repeat(200) });
    const r = s.schedule(req, [endpoint("10.7.0.1")]);
    s.preRequest(req, r.endpoints);
    expect(calls.map(([p, t, n]) => [p, t, n])).toEqual([
      ["Filter", "low-queue-filter", "low-queue-filter"],
      ["Scorer", "queue-scorer", "queue-scorer"],
      ["Scorer", "prefix-cache-scorer", "prefix"],
      ["Picker", "max-score-picker", "max-score-picker"],
      ["PreRequest", "prefix-cache-scorer", "prefix"],
    ]);
    for (const [, , , seconds] of calls) expect(seconds).toBeGreaterThanOrEqual(0);
    expect(s.pluginSet.plugins.filter(isPreRequest).map((p) => p.typedName.name)).toEqual(["prefix"]);
  });

  it("times every plugin of one cycle in pluginTimingEvery, PreRequest with its own cycle", () => {
    const calls: string[] = [];
    const config = timedProfile();
    const s = createScheduler(config, testHandle(new TestClock()), {
      observer: { pluginDuration: (point) => () => calls.push(point) },
      pluginTimingEvery: 3,
    });
    const timedCycles: number[] = [];
    for (let cycle = 1; cycle <= 6; cycle++) {
      const before = calls.length;
      const req = request({ prefixText: "x".repeat(200) });
      s.preRequest(req, s.schedule(req, [endpoint("10.7.0.1")]).endpoints);
      if (calls.length > before) {
        timedCycles.push(cycle);
        expect(calls.slice(before)).toEqual(["Filter", "Scorer", "Scorer", "Picker", "PreRequest"]);
      }
    }
    expect(timedCycles).toEqual([3, 6]);
  });
});
