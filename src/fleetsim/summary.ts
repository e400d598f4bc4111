/**
 * Per-run statistics and the mode × load sweep (docs/design/benchmarks.md §5.4): TTFT and TTFT-slowdown
 * percentiles over served requests, output throughput while load was offered, prefix-cache hit rate (vLLM's
 * token-level definition, summed over pods), per-pod share of requests, and the outcome counts. Capacity is
 * measured in virtual time first, with a closed loop, as `switchyard bench` measures it in real time.
 */
import { profilePath } from "../bench/run.js";
import { quantile } from "../bench/stats.js";
import { meanOutputTokens } from "../bench/workload.js";
import { type FleetShape, type ModeSpec, type RunConfig, type RunOutput, runFleet } from "./run.js";
import type { PreparedTrace } from "./trace.js";

export interface Pcts {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
}

export interface RunSummary {
  readonly mode: string;
  readonly seed: number;
  readonly loadPct: number;
  readonly rate: number;
  readonly sent: number;
  readonly ok: number;
  /** Requests the router refused (shed, no endpoint), by status. */
  readonly rejected: number;
  /** Requests a pod refused (404 adapter not served, 400, 429 queue full). */
  readonly errors: number;
  readonly ttftMs: Pcts;
  readonly slowdown: Pcts;
  readonly outputTokensPerSec: number;
  readonly prefixHitPct: number;
  /** Share of routed requests per pod, %, in pod order. */
  readonly podSharePct: readonly number[];
  /** Time-averaged requests running and waiting per pod, in pod order. */
  readonly podMeanRunning: readonly number[];
  readonly podMeanWaiting: readonly number[];
  readonly virtualSeconds: number;
  readonly events: number;
}

function pcts(values: number[]): Pcts {
  values.sort((a, b) => a - b);
  return { p50: quantile(values, 0.5), p90: quantile(values, 0.9), p99: quantile(values, 0.99) };
}

export function summarize(mode: string, seed: number, loadPct: number, rate: number, out: RunOutput): RunSummary {
  const ttft: number[] = [];
  const slow: number[] = [];
  let ok = 0;
  let rejected = 0;
  let errors = 0;
  const routed = new Array<number>(out.pods.length).fill(0);
  for (const r of out.records) {
    if (r.pod >= 0) routed[r.pod]!++;
    if (r.pod < 0) rejected++;
    else if (r.status !== 200) errors++;
    else {
      ok++;
      ttft.push(r.ttft);
      slow.push(r.ttft / r.aloneTtft);
    }
  }
  const routedTotal = routed.reduce((a, b) => a + b, 0);
  return {
    mode,
    seed,
    loadPct,
    rate,
    sent: out.records.length,
    ok,
    rejected,
    errors,
    ttftMs: pcts(ttft),
    slowdown: pcts(slow),
    outputTokensPerSec: out.windowMs > 0 ? out.windowTokens / (out.windowMs / 1000) : 0,
    prefixHitPct: out.prefixQueries > 0 ? (100 * out.prefixHits) / out.prefixQueries : 0,
    podSharePct: routed.map((n) => (routedTotal > 0 ? (100 * n) / routedTotal : 0)),
    podMeanRunning: out.meanRunning,
    podMeanWaiting: out.meanWaiting,
    virtualSeconds: out.spanMs / 1000,
    events: out.events,
  };
}

/** Built-in modes by name; `file:<path>` loads any EndpointPickerConfig. */
export function resolveMode(name: string): ModeSpec {
  switch (name) {
    case "rr":
    case "round-robin":
      return { id: "rr", kind: "round-robin" };
    case "lr":
    case "least-request":
      return { id: "lr", kind: "least-request", choices: 2 };
    case "lr-full":
      return { id: "lr-full", kind: "least-request", choices: Number.MAX_SAFE_INTEGER };
    case "sy":
    case "switchyard":
      return { id: "sy", kind: "epp" };
    case "syr":
    case "switchyard-recommended":
      return { id: "syr", kind: "epp", configFile: profilePath("recommended") };
    case "gie":
    case "gie-default":
      return { id: "gie", kind: "epp", configFile: profilePath("gie-default") };
    case "random":
      // A deliberately blind EPP: every scorer ignored, a uniformly random pick. The regression suite must tell it
      // from a real profile (docs/design/benchmarks.md §5.5).
      return { id: "random", kind: "epp", configText: RANDOM_PICKER_CONFIG };
  }
  if (name.startsWith("file:")) {
    const file = name.slice(5);
    return { id: file.replace(/^.*\//, "").replace(/\.ya?ml$/, ""), kind: "epp", configFile: file };
  }
  throw new RangeError(`unknown mode "${name}" (rr, lr, lr-full, sy, syr, gie, random, file:<config.yaml>)`);
}

export const RANDOM_PICKER_CONFIG = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: served-model-filter
  - type: random-picker
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: served-model-filter
      - pluginRef: random-picker
`;

export interface Capacity {
  readonly requestsPerSec: number;
  readonly outputTokensPerSec: number;
  readonly meanOutputTokens: number;
  readonly concurrency: number;
}

/**
 * Closed loop with every batch slot filled (pods × max-num-seqs in flight) through exact least-request: the
 * tokens/s the fleet sustains, converted to requests/s with the trace's mean output length.
 */
export function measureCapacity(fleet: FleetShape, trace: PreparedTrace, seed: number, requests: number): Capacity {
  const concurrency = fleet.pods * fleet.params.maxNumSeqs;
  const out = runFleet({
    fleet,
    trace,
    mode: { id: "capacity", kind: "least-request", choices: Number.MAX_SAFE_INTEGER },
    seed,
    concurrency,
    requests,
  });
  const tokensPerSec = out.windowTokens / (out.windowMs / 1000);
  const meanOut = meanOutputTokens(trace.trace);
  return {
    requestsPerSec: tokensPerSec / meanOut,
    outputTokensPerSec: tokensPerSec,
    meanOutputTokens: meanOut,
    concurrency,
  };
}

export interface SweepConfig extends Omit<RunConfig, "mode" | "rate" | "concurrency" | "seed"> {
  readonly modes: readonly ModeSpec[];
  readonly loads: readonly number[];
  readonly seed: number;
  readonly capacity: Capacity;
}

/** Every mode at every load point on one seed. */
export function sweep(c: SweepConfig, onRun?: (s: RunSummary, run: RunOutput) => void): RunSummary[] {
  const out: RunSummary[] = [];
  for (const load of c.loads) {
    const rate = (c.capacity.requestsPerSec * load) / 100;
    for (const mode of c.modes) {
      const run = runFleet({ ...c, mode, rate, seed: c.seed });
      const s = summarize(mode.id, c.seed, load, rate, run);
      out.push(s);
      onRun?.(s, run);
    }
  }
  return out;
}
