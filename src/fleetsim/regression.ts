/**
 * The routing-quality regression scenario (docs/design/benchmarks.md §5.5), shared by test/fleetsim and
 * `switchyard fleetsim --calibrate`: the bench's 8-pod heterogeneous fleet and workload (all Standard, so shedding
 * never removes a request from one mode's statistics and not another's) at 85 % of its virtual-time capacity.
 * A mode's quality on one seed is its TTFT-slowdown p50 and p90 divided by least-request's on the same trace —
 * a paired ratio, so most of the seed-to-seed variation of the trace cancels.
 */
import { H100_SCALED } from "../bench/fleet.js";
import { DEFAULT_WORKLOAD, type WorkloadSpec } from "../bench/workload.js";
import { type FleetShape, prepareTrace, runFleet } from "./run.js";
import { type Capacity, measureCapacity, resolveMode, summarize } from "./summary.js";

export const REGRESSION_FLEET: FleetShape = { pods: 8, params: H100_SCALED };
export const REGRESSION_REQUESTS = 1500;
export const REGRESSION_LOAD_PCT = 85;
export const REGRESSION_WORKLOAD: WorkloadSpec = { ...DEFAULT_WORKLOAD, criticalityMix: [0, 1, 0] };

let capacity: Capacity | undefined;

/** The fleet's capacity, probed once (seed-independent by construction: one fixed probe trace). */
export function regressionCapacity(): Capacity {
  capacity ??= measureCapacity(
    REGRESSION_FLEET,
    prepareTrace({ ...REGRESSION_WORKLOAD, seed: 999 }, 1500, REGRESSION_FLEET.params),
    999,
    1500,
  );
  return capacity;
}

export interface PairedRatio {
  readonly seed: number;
  readonly p50: number;
  readonly p90: number;
}

/** `mode`'s slowdown p50/p90 over least-request's, on one seed's trace. */
export function pairedRatios(seed: number, modes: readonly string[]): Map<string, PairedRatio> {
  const trace = prepareTrace({ ...REGRESSION_WORKLOAD, seed }, REGRESSION_REQUESTS, REGRESSION_FLEET.params);
  const rate = (regressionCapacity().requestsPerSec * REGRESSION_LOAD_PCT) / 100;
  const run = (name: string) => {
    const mode = resolveMode(name);
    const out = runFleet({ fleet: REGRESSION_FLEET, trace, mode, seed, rate, requests: REGRESSION_REQUESTS });
    return summarize(mode.id, seed, REGRESSION_LOAD_PCT, rate, out).slowdown;
  };
  const base = run("lr");
  const out = new Map<string, PairedRatio>();
  for (const m of modes) {
    const s = run(m);
    out.set(m, { seed, p50: s.p50 / base.p50, p90: s.p90 / base.p90 });
  }
  return out;
}

export function meanSd(values: readonly number[]): { mean: number; sd: number } {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd };
}
