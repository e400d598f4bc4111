/**
 * `switchyard fleetsim`: the virtual-time fleet simulation (docs/design/benchmarks.md §5). The real director,
 * admission, scheduler and plugins route the bench's trace over simulated pods that run `switchyard sim`'s engine
 * on a simulated clock: a 10k-request load point takes seconds, and the same seed gives the same numbers.
 * Prints one row per mode and load with the spread across seeds; --json writes every run.
 */
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { H100_SCALED } from "../bench/fleet.js";
import { eppPathPairs } from "../bench/gateway-timings.js";
import { quantile } from "../bench/stats.js";
import { DEFAULT_WORKLOAD } from "../bench/workload.js";
import { ConfigError } from "../common/errors.js";
import { checks, type FlagSpecs, formatHelp, parseFlags } from "../common/flags.js";
import { meanSd, pairedRatios } from "../fleetsim/regression.js";
import { type EppPathSamples, type FleetShape, type ModeSpec, prepareTrace, type RunOutput } from "../fleetsim/run.js";
import { type Capacity, measureCapacity, type RunSummary, resolveMode, sweep } from "../fleetsim/summary.js";

const SUMMARY =
  "virtual-time fleet simulation: real scheduler and admission over simulated pods, deterministic by seed";

const FLAGS = {
  modes: {
    kind: "list",
    default: ["rr", "lr", "sy", "syr", "gie"],
    help: "rr, lr (power of two choices), lr-full, sy (default profile), syr (recommended), gie (GIE default), random, file:<EndpointPickerConfig>",
  },
  profile: { kind: "string", default: "", help: "an EndpointPickerConfig file to sweep as one more mode" },
  loads: {
    kind: "list",
    default: ["50", "85", "100"],
    help: "offered load, % of the capacity measured in virtual time",
  },
  seeds: {
    kind: "list",
    default: ["1", "2", "3"],
    help: "seeds (trace, pods, pickers, scrape phases); one run per seed",
  },
  requests: { kind: "int", default: 10_000, help: "requests per load point and mode", check: checks.positive },
  pods: { kind: "int", default: 8, help: "pods in the fleet", check: checks.positive },
  speeds: {
    kind: "list",
    default: [],
    help: "latency multiplier per pod (default: the bench's, last pod 2x, one 1.5x)",
  },
  capacity: { kind: "float", default: 0, help: "fleet capacity in requests/s (0 = measure it with a closed loop)" },
  "capacity-requests": { kind: "int", default: 3000, help: "requests in the capacity probe", check: checks.positive },
  "scrape-interval": { kind: "duration", default: 50, help: "the EPP's --refresh-metrics-interval" },
  "scrape-lag": { kind: "duration", default: 2, help: "time from a pod answering /metrics to the EPP holding it" },
  "epp-response-overhead": {
    kind: "duration",
    default: 0,
    help: "EPP modes only: how much later than the pod's first token the client sees it (the response side of the ext_proc path), added to the recorded TTFT",
  },
  "epp-overhead": {
    kind: "duration",
    default: 0,
    help: "EPP modes only: time from the pick to the pod receiving the request (the ext_proc round trip; the real-time bench's 5x time scale makes it 5x larger relative to model time)",
  },
  "epp-path": {
    kind: "string",
    default: "",
    help: "EPP modes only: real Envoy's access log of an EPP mode (switchyard bench --gateway envoy: <work dir>/envoy-<mode>/envoy-access.log); every EPP request replays one logged request's wait before the upstream and ext_proc time per response chunk, drawn at random, instead of --epp-overhead / --epp-response-overhead",
  },
  "epp-path-base": {
    kind: "duration",
    default: 0,
    help: "with --epp-path: subtracted from each logged wait before the upstream (a front door without the EPP pays this too: the least-request mode's p50 in the bench's \"Time in the gateway\")",
  },
  "epp-path-scale": {
    kind: "float",
    default: 1,
    help: "with --epp-path: wall time to model time (5 for a bench run at --time-scale 0.2)",
    check: checks.positive,
  },
  "scrape-mode": {
    kind: "string",
    default: "direct",
    help: "direct (gauges read from the engine) or text (render /metrics, run the EPP's extractor; slower)",
  },
  "gauge-lag": { kind: "string", default: "first-step", help: "the simulator's --gauge-lag: first-step or ms" },
  json: { kind: "string", default: "", help: "write every run's summary to this file" },
  records: {
    kind: "string",
    default: "",
    help: "write every request of every run to this CSV file (TTFT, TTFT alone, slowdown, pod, status, …)",
  },
  "from-json": { kind: "string", default: "", help: "print the table of an earlier --json file, then exit" },
  calibrate: {
    kind: "int",
    default: 0,
    help: "print the regression suite's paired ratios over this many seeds (test/fleetsim)",
  },
} as const satisfies FlagSpecs;

/** Seeds of the calibration behind test/fleetsim/regression.test.ts's bounds (disjoint from the test's own). */
const CALIBRATION_FIRST_SEED = 101;

const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "–");
const f0 = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : "–");

/** mean ± sd across seeds (just the value for one seed). */
function spread(values: readonly number[], fmt: (v: number) => string): string {
  if (values.length === 1) return fmt(values[0]!);
  const { mean, sd } = meanSd(values);
  return `${fmt(mean)}±${fmt(sd)}`;
}

export function formatTable(runs: readonly RunSummary[]): string {
  const groups = new Map<string, RunSummary[]>();
  for (const r of runs) {
    const k = `${r.loadPct}\u0000${r.mode}`;
    const g = groups.get(k);
    if (g === undefined) groups.set(k, [r]);
    else g.push(r);
  }
  const head = [
    "load",
    "mode",
    "TTFT p50 ms",
    "TTFT p90 ms",
    "TTFT p99 ms",
    "slow p50",
    "slow p90",
    "slow p99",
    "out tok/s",
    "prefix hit %",
    "fail %",
    "slow p50 ÷ lr",
    "slow p90 ÷ lr",
    "per-pod share %",
    "per-pod mean waiting",
  ];
  // Paired with least-request on the same seed and load (same trace), when lr ran: ratios with their spread.
  const lrOf = new Map<string, RunSummary>();
  for (const r of runs) if (r.mode === "lr") lrOf.set(`${r.loadPct}\u0000${r.seed}`, r);
  const ratio = (g: readonly RunSummary[], pct: "p50" | "p90"): string => {
    const v: number[] = [];
    for (const r of g) {
      const base = lrOf.get(`${r.loadPct}\u0000${r.seed}`);
      if (base !== undefined) v.push(r.slowdown[pct] / base.slowdown[pct]);
    }
    return v.length === 0 ? "–" : spread(v, f2);
  };
  const rows: string[][] = [head];
  for (const g of groups.values()) {
    const pick = (fn: (r: RunSummary) => number) => g.map(fn);
    const shares = g[0]!.podSharePct.map((_, i) => meanSd(g.map((r) => r.podSharePct[i]!)).mean.toFixed(0));
    rows.push([
      `${g[0]!.loadPct}%`,
      g[0]!.mode,
      spread(
        pick((r) => r.ttftMs.p50),
        f0,
      ),
      spread(
        pick((r) => r.ttftMs.p90),
        f0,
      ),
      spread(
        pick((r) => r.ttftMs.p99),
        f0,
      ),
      spread(
        pick((r) => r.slowdown.p50),
        f2,
      ),
      spread(
        pick((r) => r.slowdown.p90),
        f2,
      ),
      spread(
        pick((r) => r.slowdown.p99),
        f2,
      ),
      spread(
        pick((r) => r.outputTokensPerSec),
        f0,
      ),
      spread(
        pick((r) => r.prefixHitPct),
        (v) => v.toFixed(1),
      ),
      spread(
        pick((r) => (100 * (r.rejected + r.errors)) / r.sent),
        (v) => v.toFixed(1),
      ),
      ratio(g, "p50"),
      ratio(g, "p90"),
      shares.join("/"),
      g[0]!.podMeanWaiting
        .map((_, i) => {
          const v = meanSd(g.map((r) => r.podMeanWaiting?.[i] ?? Number.NaN)).mean;
          return !Number.isFinite(v) ? "–" : v < 10 ? v.toFixed(1) : v.toFixed(0);
        })
        .join("/"),
    ]);
  }
  const widths = head.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(" | ")} |`).join("\n");
}

const RECORD_COLUMNS = [
  "mode",
  "load_pct",
  "seed",
  "request",
  "pod",
  "status",
  "arrival_ms",
  "ttft_ms",
  "ttft_alone_ms",
  "slowdown",
  "e2e_ms",
  "output_tokens",
  "cached_tokens",
] as const;

/** One CSV line per request of a run (pod −1 = refused by the router; timings empty when not served). */
export function recordsCsv(s: RunSummary, raw: RunOutput): string {
  const num = (v: number, digits = 3) => (Number.isFinite(v) ? String(Number(v.toFixed(digits))) : "");
  const lines: string[] = [];
  raw.records.forEach((r, i) => {
    const pod = r.pod < 0 ? "-1" : raw.pods[r.pod]!.name;
    lines.push(
      [
        s.mode,
        s.loadPct,
        s.seed,
        i,
        pod,
        r.status,
        num(r.arrival),
        num(r.ttft),
        num(r.aloneTtft),
        num(r.ttft / r.aloneTtft, 4),
        num(r.e2e),
        r.outputTokens,
        r.cachedTokens,
      ].join(","),
    );
  });
  return `${lines.join("\n")}\n`;
}

export async function run(argv: readonly string[]): Promise<number | undefined> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(formatHelp("fleetsim", SUMMARY, FLAGS));
    return 0;
  }
  const f = parseFlags(FLAGS, argv);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  if (f["from-json"] !== "") {
    const saved = JSON.parse(readFileSync(f["from-json"], "utf8")) as { runs: RunSummary[] };
    out(formatTable(saved.runs));
    return 0;
  }
  if (f.calibrate > 0) {
    const modes = ["sy", "syr", "random"];
    const acc = new Map(modes.map((m) => [m, { p50: [] as number[], p90: [] as number[] }]));
    for (let seed = CALIBRATION_FIRST_SEED; seed < CALIBRATION_FIRST_SEED + f.calibrate; seed++) {
      const r = pairedRatios(seed, modes);
      for (const m of modes) {
        acc.get(m)!.p50.push(r.get(m)!.p50);
        acc.get(m)!.p90.push(r.get(m)!.p90);
      }
      out(`seed ${seed}: ${modes.map((m) => `${m} ${f2(r.get(m)!.p50)}/${f2(r.get(m)!.p90)}`).join("  ")}`);
    }
    for (const m of modes) {
      const a = acc.get(m)!;
      // Ratios are skewed (a bad seed doubles p90, a good one cannot halve it): the suite works on their logs.
      const p50 = meanSd(a.p50.map(Math.log));
      const p90 = meanSd(a.p90.map(Math.log));
      out(
        `${m}: ln(p50 ratio) mean ${p50.mean.toFixed(4)} sd ${p50.sd.toFixed(4)}; ln(p90 ratio) mean ${p90.mean.toFixed(4)} sd ${p90.sd.toFixed(4)}`,
      );
    }
    return 0;
  }
  const scrapeMode = f["scrape-mode"];
  if (scrapeMode !== "direct" && scrapeMode !== "text")
    throw new ConfigError('must be "direct" or "text"', undefined, "--scrape-mode");
  const gl = f["gauge-lag"];
  const gaugeLag = gl === "first-step" ? "first-step" : Number(gl);
  if (gaugeLag !== "first-step" && !(gaugeLag >= 0))
    throw new ConfigError('must be "first-step" or a number of ms', undefined, "--gauge-lag");
  const modes: ModeSpec[] = f.modes.map(resolveMode);
  if (f.profile !== "") modes.push(resolveMode(`file:${f.profile}`));
  const loads = f.loads.map(Number);
  const seeds = f.seeds.map(Number);
  if (loads.some((l) => !(l > 0))) throw new ConfigError("must be positive percentages", undefined, "--loads");
  if (seeds.some((s) => !Number.isInteger(s))) throw new ConfigError("must be integers", undefined, "--seeds");
  const fleet: FleetShape = { pods: f.pods, speeds: f.speeds.map(Number), params: H100_SCALED };
  const eppPath =
    f["epp-path"] === "" ? undefined : readEppPath(f["epp-path"], f["epp-path-base"], f["epp-path-scale"]);
  if (eppPath !== undefined) {
    const before = [...eppPath.requestMs].sort((a, b) => a - b);
    const after = [...eppPath.responseMs].sort((a, b) => a - b);
    out(
      `--epp-path: ${before.length} logged EPP requests; model ms before the pod p50/p99 ${f2(quantile(before, 0.5))}/${f2(quantile(before, 0.99))}, after its first token ${f2(quantile(after, 0.5))}/${f2(quantile(after, 0.99))}`,
    );
  }

  const runs: RunSummary[] = [];
  const records = f.records === "" ? undefined : f.records;
  if (records !== undefined) writeFileSync(records, `${RECORD_COLUMNS.join(",")}\n`);
  const started = performance.now();
  for (const seed of seeds) {
    const workload = { ...DEFAULT_WORKLOAD, seed };
    const trace = prepareTrace(workload, f.requests, fleet.params);
    let capacity: Capacity;
    if (f.capacity > 0)
      capacity = { requestsPerSec: f.capacity, outputTokensPerSec: 0, meanOutputTokens: 0, concurrency: 0 };
    else {
      const probe = prepareTrace({ ...workload, seed: seed ^ 0xcafe }, f["capacity-requests"], fleet.params);
      capacity = measureCapacity(fleet, probe, seed, f["capacity-requests"]);
      out(
        `seed ${seed}: capacity ${capacity.requestsPerSec.toFixed(2)} req/s (${capacity.outputTokensPerSec.toFixed(0)} output tokens/s, closed loop x${capacity.concurrency})`,
      );
    }
    let t0 = performance.now();
    let cpu0 = process.cpuUsage();
    sweep(
      {
        fleet,
        trace,
        modes,
        loads,
        seed,
        capacity,
        requests: f.requests,
        scrapeIntervalMs: f["scrape-interval"],
        scrapeLagMs: f["scrape-lag"],
        eppOverheadMs: f["epp-overhead"],
        eppResponseOverheadMs: f["epp-response-overhead"],
        ...(eppPath !== undefined ? { eppPathSamples: eppPath } : {}),
        scrapeMode,
        gaugeLag,
      },
      (s, raw) => {
        if (records !== undefined) appendFileSync(records, recordsCsv(s, raw));
        const wall = performance.now() - t0;
        const used = process.cpuUsage(cpu0);
        t0 = performance.now();
        cpu0 = process.cpuUsage();
        runs.push(s);
        out(
          `  seed ${seed} ${String(s.loadPct).padStart(3)}% ${s.mode.padEnd(6)} slowdown p50/p90/p99 ${f2(s.slowdown.p50)}/${f2(s.slowdown.p90)}/${f2(s.slowdown.p99)}  ${s.sent} requests, ${s.virtualSeconds.toFixed(0)} virtual s in ${(wall / 1000).toFixed(1)} wall s (${((used.user + used.system) / 1e6).toFixed(1)} CPU s)`,
        );
      },
    );
  }
  out("");
  out(
    `${runs.length} runs, ${seeds.length} seed(s), ${f.requests} requests each, in ${((performance.now() - started) / 1000).toFixed(1)} s (simulation: virtual time)`,
  );
  out(formatTable(runs));
  if (f.json !== "") {
    writeFileSync(f.json, `${JSON.stringify({ flags: { ...f, $set: undefined }, runs }, null, 2)}\n`);
    out(`wrote ${f.json}`);
  }
  return 0;
}

/** Paired per-request delays from real Envoy's access log, in model ms (docs/design/benchmarks.md, fleetsim table). */
function readEppPath(file: string, baseMs: number, scale: number): EppPathSamples {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`, undefined, "--epp-path");
  }
  const { beforeUs, chunkUs } = eppPathPairs(text.split("\n"));
  if (beforeUs.length === 0)
    throw new ConfigError(
      `${file} has no EPP request lines (completion requests with the ext_proc fields of deploy/envoy/envoy.yaml's access log)`,
      undefined,
      "--epp-path",
    );
  return {
    requestMs: beforeUs.map((us) => Math.max(0, us / 1000 - baseMs) * scale),
    responseMs: chunkUs.map((us) => (us / 1000) * scale),
  };
}
