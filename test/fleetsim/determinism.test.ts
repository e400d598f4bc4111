/**
 * Deterministic by seed: the whole run (trace, pods, picker randomness, scrape phases) is a function of its
 * config, so the same seed reproduces every request's record exactly and another seed does not.
 */
import { describe, expect, it } from "vitest";
import { H100_SCALED } from "../../src/bench/fleet.js";
import { DEFAULT_WORKLOAD } from "../../src/bench/workload.js";
import { prepareTrace, type RunOutput, runFleet } from "../../src/fleetsim/run.js";
import { resolveMode } from "../../src/fleetsim/summary.js";

const fleet = { pods: 4, params: H100_SCALED };

function run(seed: number, mode: string, cacheLimit?: number): RunOutput {
  const trace = prepareTrace({ ...DEFAULT_WORKLOAD, seed }, 400, H100_SCALED, cacheLimit);
  return runFleet({ fleet, trace, mode: resolveMode(mode), seed, rate: 2, requests: 400 });
}

describe("fleetsim determinism", () => {
  it.each(["syr", "lr"])(
    "the same seed gives identical per-request records (%s)",
    (mode) => {
      const a = run(5, mode);
      // The second run rebuilds every request instead of reading the cache (what traces past CACHE_LIMIT do).
      const b = run(5, mode, 0);
      expect(b.records).toEqual(a.records);
      expect(b.events).toBe(a.events);
      expect(b.prefixHits).toBe(a.prefixHits);
      // Not vacuous: requests were served, spread over pods, and some hit the prefix cache.
      expect(a.records.filter((r) => r.status === 200).length).toBeGreaterThan(350);
      expect(new Set(a.records.filter((r) => r.pod >= 0).map((r) => r.pod)).size).toBe(4);
      expect(a.prefixHits).toBeGreaterThan(0);
      const c = run(6, mode);
      expect(c.records.map((r) => r.ttft)).not.toEqual(a.records.map((r) => r.ttft));
    },
    60_000,
  );
});

describe("fleetsim --epp-overhead", () => {
  it("delays every EPP dispatch by the overhead and leaves the baseline balancers alone", { timeout: 60_000 }, () => {
    const trace = prepareTrace({ ...DEFAULT_WORKLOAD, seed: 7 }, 40, H100_SCALED);
    const go = (mode: string, eppOverheadMs: number) =>
      runFleet({ fleet, trace, mode: resolveMode(mode), seed: 7, rate: 0.05, requests: 40, eppOverheadMs }).records;
    // A balancer that is not the EPP runs exactly as without it.
    expect(go("lr", 250)).toEqual(go("lr", 0));
    // Through the EPP no first token can come sooner than the overhead, though most do without it (a trickle of
    // requests on an idle fleet: tens of ms each). The picks themselves may differ, so TTFTs are not compared 1:1.
    const ttfts = (records: RunOutput["records"]) => records.filter((r) => r.status === 200).map((r) => r.ttft);
    const base = ttfts(go("sy", 0));
    const slow = ttfts(go("sy", 250));
    expect(base.filter((t) => t < 250).length).toBeGreaterThan(base.length / 2);
    expect(slow.length).toBeGreaterThan(20);
    for (const t of slow) expect(t).toBeGreaterThanOrEqual(250);
  });

  it("adds the response-side overhead to every EPP request's TTFT, and to no other mode's", { timeout: 60_000 }, () => {
    const trace = prepareTrace({ ...DEFAULT_WORKLOAD, seed: 7 }, 40, H100_SCALED);
    const go = (mode: string, eppResponseOverheadMs: number) =>
      runFleet({ fleet, trace, mode: resolveMode(mode), seed: 7, rate: 0.05, requests: 40, eppResponseOverheadMs })
        .records;
    expect(go("lr", 250)).toEqual(go("lr", 0));
    // The pod sees the same requests at the same times (the EPP's own events are not moved), so every TTFT is the
    // same one plus the overhead.
    const base = go("sy", 0);
    const slow = go("sy", 250);
    expect(slow.map((r) => r.pod)).toEqual(base.map((r) => r.pod));
    const ok = base.filter((r) => r.status === 200).length;
    expect(ok).toBeGreaterThan(20);
    slow.forEach((r, i) => {
      if (r.status === 200) expect(r.ttft - base[i]!.ttft).toBeCloseTo(250, 6);
    });
  });
});

describe("fleetsim --epp-path (measured per-request delays)", () => {
  const trace = prepareTrace({ ...DEFAULT_WORKLOAD, seed: 7 }, 40, H100_SCALED);
  const go = (mode: string, extra: Partial<Parameters<typeof runFleet>[0]>) =>
    runFleet({ fleet, trace, mode: resolveMode(mode), seed: 7, rate: 0.05, requests: 40, ...extra }).records;

  it("one logged pair behaves exactly as the two constants", { timeout: 60_000 }, () => {
    const sampled = go("sy", { eppPathSamples: { requestMs: [100], responseMs: [30] } });
    expect(sampled).toEqual(go("sy", { eppOverheadMs: 100, eppResponseOverheadMs: 30 }));
    expect(go("lr", { eppPathSamples: { requestMs: [100], responseMs: [30] } })).toEqual(go("lr", {}));
  });

  it("draws a pair per request, and the draw moves nothing else", { timeout: 60_000 }, () => {
    const base = go("sy", {});
    const sampled = go("sy", { eppPathSamples: { requestMs: [0, 0], responseMs: [0, 500] } });
    // Request side 0: the pods see the same requests at the same times, so only the response side differs.
    expect(sampled.map((r) => r.pod)).toEqual(base.map((r) => r.pod));
    const added = sampled.flatMap((r, i) => (r.status === 200 ? [Math.round(r.ttft - base[i]!.ttft)] : []));
    expect(added.length).toBeGreaterThan(20);
    expect(new Set(added)).toEqual(new Set([0, 500]));
    // Deterministic by seed.
    expect(go("sy", { eppPathSamples: { requestMs: [0, 0], responseMs: [0, 500] } })).toEqual(sampled);
  });
});
