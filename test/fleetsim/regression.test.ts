/**
 * Routing-quality regression suite (docs/design/benchmarks.md §5.5), in virtual time: no wall-clock anywhere.
 *
 * For each profile, the TTFT-slowdown p50 and p90 are divided by least-request's on the same seed's trace (a paired
 * ratio). The bounds come from a calibration over 20 other seeds (`switchyard fleetsim --calibrate 20`, seeds
 * 101–120): ln(ratio) had mean μ and standard deviation σ there, so the geometric mean over this suite's K seeds
 * stays below exp(μ + 3σ/√K) unless routing got measurably worse. The run is deterministic, so the suite never
 * flakes; the margin is what lets a behaviour-neutral change that merely reshuffles random draws (a fresh sample of
 * seeds, in effect) pass, with probability ≈ 99.9 % per bound. A blind random picker must fail the same bounds,
 * which shows the suite can fail.
 *
 * When the engine model, the workload or a default changes on purpose, re-run the calibration and update CALIBRATED.
 */
import { describe, expect, it } from "vitest";
import { type PairedRatio, pairedRatios } from "../../src/fleetsim/regression.js";

/** ln(ratio) mean and sd per mode and percentile, from `switchyard fleetsim --calibrate 20`. */
const CALIBRATED = {
  syr: { p50: { mean: -0.078, sd: 0.0366 }, p90: { mean: 0.4786, sd: 0.2199 } },
  sy: { p50: { mean: 0.0861, sd: 0.0195 }, p90: { mean: 0.5435, sd: 0.2444 } },
} as const;

const SEEDS = [1, 2, 3];
const Z = 3;

function bound(mode: keyof typeof CALIBRATED, pct: "p50" | "p90"): number {
  const c = CALIBRATED[mode][pct];
  return Math.exp(c.mean + (Z * c.sd) / Math.sqrt(SEEDS.length));
}

function geomean(ratios: readonly PairedRatio[], pct: "p50" | "p90"): number {
  return Math.exp(ratios.reduce((a, r) => a + Math.log(r[pct]), 0) / ratios.length);
}

// Each seed runs least-request, then the profiles, on the same trace.
const results = new Map<string, PairedRatio[]>();
function ratiosOf(mode: string): PairedRatio[] {
  if (results.size === 0) {
    for (const seed of SEEDS) {
      const r = pairedRatios(seed, seed === SEEDS[0] ? ["syr", "sy", "random"] : ["syr", "sy"]);
      for (const [m, v] of r) results.set(m, [...(results.get(m) ?? []), v]);
    }
  }
  return results.get(mode)!;
}

describe("routing quality in virtual time (paired with least-request on each seed)", () => {
  it.each(["syr", "sy"] as const)(
    "%s keeps its TTFT-slowdown ratios within the calibrated bounds",
    (mode) => {
      const r = ratiosOf(mode);
      expect(r).toHaveLength(SEEDS.length);
      expect(geomean(r, "p50")).toBeLessThanOrEqual(bound(mode, "p50"));
      expect(geomean(r, "p90")).toBeLessThanOrEqual(bound(mode, "p90"));
    },
    120_000,
  );

  it("the recommended profile beats least-request at the median slowdown", () => {
    // The bound itself is below 1: a profile whose median is no better than a blind balancer's fails here.
    expect(bound("syr", "p50")).toBeLessThan(1);
    expect(geomean(ratiosOf("syr"), "p50")).toBeLessThan(1);
  }, 120_000);

  it("a blind random picker is caught by the same bounds", () => {
    const r = ratiosOf("random");
    expect(r).toHaveLength(1);
    for (const mode of ["syr", "sy"] as const) {
      expect(r[0]!.p50).toBeGreaterThan(bound(mode, "p50"));
      expect(r[0]!.p90).toBeGreaterThan(bound(mode, "p90"));
    }
  }, 120_000);
});
