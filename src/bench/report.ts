/**
 * Report files of one benchmark run: results.json (inference-perf-shaped stages plus medians over repetitions),
 * summary.md (tables, ratios to round-robin and least-request, the targets) and two SVG charts.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AggregatePoint, StageSummary } from "./stats.js";
import { renderLineChart, type Series } from "./svg.js";

export const MODE_LABELS: Readonly<Record<string, string>> = {
  "round-robin": "round-robin",
  "least-request": "least-request",
  switchyard: "switchyard (default profile)",
  "switchyard-recommended": "switchyard (recommended profile, + prefix 3)",
  "gie-default": "GIE v1.5 default (queue 2 / kv 2 / prefix 3)",
  "vllm-router-cache-aware": "vllm-router 0.1.17 cache_aware",
  "vllm-router-power-of-two": "vllm-router 0.1.17 power_of_two",
  "sglang-router-cache-aware": "sglang-router 0.3.2 cache_aware",
};

/** The peer routers' modes (src/bench/run.ts PEER_MODES), and the switchyard modes judged against them. */
const PEER_MODE_IDS: readonly string[] = [
  "vllm-router-cache-aware",
  "vllm-router-power-of-two",
  "sglang-router-cache-aware",
];
const SWITCHYARD_MODE_IDS: readonly string[] = ["switchyard", "switchyard-recommended"];

const MODE_COLORS: Readonly<Record<string, string>> = {
  "round-robin": "#d62728",
  "least-request": "#ff7f0e",
  switchyard: "#1f77b4",
  "switchyard-recommended": "#9467bd",
  "gie-default": "#2ca02c",
  "vllm-router-cache-aware": "#8c564b",
  "vllm-router-power-of-two": "#e377c2",
  "sglang-router-cache-aware": "#17becf",
};

export interface BenchResults {
  readonly version: 1;
  readonly tool: string;
  readonly generated_at: string;
  readonly git_sha: string;
  readonly command: string;
  readonly backend: string;
  readonly machine: { readonly cpus: number; readonly node: string; readonly loadavg_start: readonly number[] };
  readonly fleet: unknown;
  readonly workload: unknown;
  readonly capacity: {
    readonly measured: boolean;
    readonly requests_per_sec: number;
    readonly output_tokens_per_sec: number;
    readonly mean_output_tokens: number;
    readonly concurrency: number;
  };
  readonly modes: readonly string[];
  /** Multiplier on every simulated latency (absent in older results: 1). */
  readonly time_scale?: number;
  /** The EPPs' scrape interval in wall ms when the run chose one (--epp-scrape-interval). */
  readonly epp_scrape_interval_ms?: number;
  readonly stream_batch_tokens?: number;
  readonly peer_calls_note?: string;
  readonly loads_pct: readonly number[];
  readonly reps: number;
  readonly stage_duration_s: number;
  /** Requests per stage when the run fixed a count (--min-requests; the peers preset): stages then last longer. */
  readonly stage_min_requests?: number;
  readonly stages: readonly StageSummary[];
  readonly aggregate: readonly AggregatePoint[];
  readonly targets: readonly TargetCheck[];
}

export interface TargetCheck {
  readonly name: string;
  readonly met: boolean | undefined;
  readonly detail: string;
}

function point(agg: readonly AggregatePoint[], mode: string, load: number): AggregatePoint | undefined {
  return agg.find((a) => a.mode === mode && a.load_pct === load);
}

const fmt = (v: number | undefined, digits = 0): string =>
  v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits);

const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0
    ? "–"
    : `${(a / b).toFixed(2)}×`;

/** The load step the targets are judged at: 85 % if swept, else the closest one. */
export function targetLoad(loads: readonly number[]): number | undefined {
  if (loads.length === 0) return undefined;
  return [...loads].sort((a, b) => Math.abs(a - 85) - Math.abs(b - 85) || b - a)[0];
}

export function checkTargets(agg: readonly AggregatePoint[], loads: readonly number[]): TargetCheck[] {
  const load = targetLoad(loads);
  if (load === undefined) return [];
  const sy = point(agg, "switchyard", load);
  const rr = point(agg, "round-robin", load);
  const lr = point(agg, "least-request", load);
  const checks: TargetCheck[] = [];
  if (sy && rr)
    checks.push({
      name: `TTFT p90 at ${load} % ≥ 50 % below round-robin`,
      met: sy.ttft_p90_ms <= 0.5 * rr.ttft_p90_ms,
      detail: `switchyard ${fmt(sy.ttft_p90_ms)} ms vs round-robin ${fmt(rr.ttft_p90_ms)} ms (${ratio(sy.ttft_p90_ms, rr.ttft_p90_ms)})`,
    });
  if (sy && lr)
    checks.push({
      name: `TTFT p90 at ${load} % below least-request`,
      met: sy.ttft_p90_ms < lr.ttft_p90_ms,
      detail: `switchyard ${fmt(sy.ttft_p90_ms)} ms vs least-request ${fmt(lr.ttft_p90_ms)} ms (${ratio(sy.ttft_p90_ms, lr.ttft_p90_ms)})`,
    });
  for (const base of [rr, lr]) {
    if (!sy || !base) continue;
    checks.push({
      name: `output tokens/s at ${load} % no lower than ${base.mode}`,
      // Within 2 %: the token rate of two runs of one open-loop trace differs by noise alone.
      met: sy.output_tokens_per_sec >= 0.98 * base.output_tokens_per_sec,
      detail: `switchyard ${fmt(sy.output_tokens_per_sec)} vs ${base.mode} ${fmt(base.output_tokens_per_sec)} tokens/s (${ratio(sy.output_tokens_per_sec, base.output_tokens_per_sec)})`,
    });
  }
  const light = Math.min(...loads);
  const syLight = point(agg, "switchyard", light);
  if (sy && syLight && light < load)
    checks.push({
      name: `Critical TTFT p90 at ${load} % within 2× of light load (${light} %)`,
      met: sy.critical_ttft_p90_ms <= 2 * syLight.critical_ttft_p90_ms,
      detail: `${fmt(sy.critical_ttft_p90_ms)} ms vs ${fmt(syLight.critical_ttft_p90_ms)} ms (${ratio(sy.critical_ttft_p90_ms, syLight.critical_ttft_p90_ms)})`,
    });
  checks.push(...peerTargets(agg, load));
  const top = Math.max(...loads);
  const syTop = point(agg, "switchyard", top);
  if (syTop)
    checks.push({
      name: `Sheddable absorbs shedding (at ${top} %)`,
      // Nothing shed means the pool never reached saturation: the target was not exercised, not met.
      met: syTop.shed === 0 ? undefined : syTop.critical_shed === 0 && syTop.sheddable_shed >= 0.8 * syTop.shed,
      detail:
        syTop.shed === 0
          ? "not exercised: the EPP shed nothing (the pool never reached its saturation threshold)"
          : `shed ${fmt(syTop.shed)} requests, of which Sheddable ${fmt(syTop.sheddable_shed)}, Critical ${fmt(syTop.critical_shed)}`,
    });
  return checks;
}

/**
 * Issue 15's targets against the peer routers at `load`, for each switchyard mode in the run: TTFT slowdown p90
 * ≤ 0.5× round-robin's, ≤ 0.75× least-request's, ≤ 0.85× the best peer's; raw TTFT p90 and p99 no worse than the
 * best peer's; output throughput no lower than any other mode's (within 2 %, the noise of one open-loop trace).
 */
export function peerTargets(agg: readonly AggregatePoint[], load: number): TargetCheck[] {
  const peers = PEER_MODE_IDS.map((m) => point(agg, m, load)).filter((a): a is AggregatePoint => a !== undefined);
  const rr = point(agg, "round-robin", load);
  const lr = point(agg, "least-request", load);
  if (peers.length === 0) return [];
  const best = (f: (a: AggregatePoint) => number): AggregatePoint => peers.reduce((x, y) => (f(y) < f(x) ? y : x));
  const out: TargetCheck[] = [];
  for (const id of SWITCHYARD_MODE_IDS) {
    const sy = point(agg, id, load);
    if (!sy) continue;
    const name = MODE_LABELS[id] ?? id;
    const slow = (base: AggregatePoint | undefined, factor: number, what: string) => {
      if (!base) return;
      out.push({
        name: `${name}: slowdown p90 at ${load} % ≤ ${factor}× ${what}`,
        met: sy.slowdown_p90 <= factor * base.slowdown_p90,
        detail: `${fmt(sy.slowdown_p90, 2)} vs ${base.mode} ${fmt(base.slowdown_p90, 2)} (${ratio(sy.slowdown_p90, base.slowdown_p90)})`,
      });
    };
    slow(rr, 0.5, "round-robin's");
    slow(lr, 0.75, "least-request's");
    slow(
      best((a) => a.slowdown_p90),
      0.85,
      "the best peer's",
    );
    for (const q of ["p90", "p99"] as const) {
      const f = (a: AggregatePoint) => (q === "p90" ? a.ttft_p90_ms : a.ttft_p99_ms);
      const b = best(f);
      out.push({
        name: `${name}: TTFT ${q} at ${load} % no worse than the best peer's`,
        met: f(sy) <= f(b),
        detail: `${fmt(f(sy))} ms vs ${b.mode} ${fmt(f(b))} ms (${ratio(f(sy), f(b))})`,
      });
    }
    const others = agg.filter((a) => a.load_pct === load && a.mode !== id);
    if (others.length > 0) {
      const top = others.reduce((x, y) => (y.output_tokens_per_sec > x.output_tokens_per_sec ? y : x));
      out.push({
        name: `${name}: output tokens/s at ${load} % ≥ every other mode's`,
        met: sy.output_tokens_per_sec >= 0.98 * top.output_tokens_per_sec,
        detail: `${fmt(sy.output_tokens_per_sec)} vs the highest other, ${top.mode}, ${fmt(top.output_tokens_per_sec)} (${ratio(sy.output_tokens_per_sec, top.output_tokens_per_sec)})`,
      });
    }
  }
  return out;
}

const withRange = (v: number, r: readonly [number, number] | undefined, digits = 0): string =>
  r === undefined || !Number.isFinite(r[0]) || r[0] === r[1]
    ? fmt(v, digits)
    : `${fmt(v, digits)} (${fmt(r[0], digits)}–${fmt(r[1], digits)})`;

/** Real Envoy's own time per request, from its access log: what each front door adds, the EPP's exchanges included. */
function renderGatewayTimes(r: BenchResults): string[] {
  const rows = r.aggregate.filter((a) => a.gateway_us !== undefined);
  if (rows.length === 0) return [];
  const us = (v: number) => (Number.isFinite(v) ? fmt(v / 1000, 2) : "–");
  const lines = [
    "### Time in the gateway (real Envoy's access log)",
    "",
    "Wall ms per request at real speed, median over repetitions of each stage's percentile. `before upstream` = first " +
      "request byte in → first byte to the upstream (for EPP modes, the ext_proc exchange that picks the endpoint); " +
      "`headers back` = first response byte from the upstream → first byte to the client; `per chunk` = Envoy's mean " +
      "ext_proc time per response body chunk, one value per request. A peer router's own time is inside its upstream.",
    "",
    "| load | mode | before upstream p50 / p90 / p99 | headers back p50 / p90 / p99 | per chunk p50 / p90 |",
    "|---|---|---|---|---|",
  ];
  for (const a of rows) {
    const g = a.gateway_us!;
    lines.push(
      `| ${a.load_pct} % | ${MODE_LABELS[a.mode] ?? a.mode} | ${us(g.before_upstream.p50)} / ${us(g.before_upstream.p90)} / ${us(g.before_upstream.p99)} | ${us(g.headers_back.p50)} / ${us(g.headers_back.p90)} / ${us(g.headers_back.p99)} | ${g.epp_chunk_mean === undefined ? "–" : `${us(g.epp_chunk_mean.p50)} / ${us(g.epp_chunk_mean.p90)}`} |`,
    );
  }
  lines.push("");
  return lines;
}

/** The comparison issue 15 asks for: raw TTFT and slowdown percentiles, throughput, errors, hits, per-pod load. */
export function renderPeerComparison(r: BenchResults): string[] {
  const lines: string[] = [];
  const scale = r.time_scale ?? 1;
  lines.push("## Peer comparison: TTFT, slowdown, throughput, errors, prefix hits, per-pod load");
  lines.push("");
  lines.push(
    `Median over ${r.reps} repetition(s), min–max across repetitions in parentheses. TTFT in wall ms${scale !== 1 ? ` on a fleet running at ${fmt(1 / scale, 1)}× simulated speed (× ${fmt(1 / scale, 1)} for model time; everything outside the simulators — gateway, router, network — runs at real speed)` : ""}. ` +
      (r.epp_scrape_interval_ms !== undefined
        ? `The EPPs scraped every ${r.epp_scrape_interval_ms} ms of wall time. `
        : "") +
      "Slowdown = a request's TTFT ÷ its TTFT alone on an idle 1× pod with a cold cache, from the simulator's parameters (scale-free). " +
      "`tail` = the fewest requests at or above any repetition's TTFT p90. " +
      (r.backend === "llm-d-inference-sim"
        ? "`pods` = requests each pod completed (its `vllm:request_success_total`, median), pod 1 first."
        : "`pods` = completion requests each pod received (median), pod 1 first."),
  );
  lines.push("");
  lines.push(
    "| load | mode | TTFT p50 | TTFT p90 | TTFT p99 | slowdown p50 | slowdown p90 | slowdown p99 | out tok/s | ok / err / aborted | hit % | tail | pods |",
  );
  lines.push("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const load of r.loads_pct)
    for (const mode of r.modes) {
      const a = point(r.aggregate, mode, load);
      if (!a || a.slowdown_p90 === undefined) continue;
      const pods = Object.values(a.pod_requests ?? {});
      lines.push(
        `| ${load} % | ${MODE_LABELS[mode] ?? mode} | ${withRange(a.ttft_p50_ms, a.ttft_p50_ms_range)} | ${withRange(a.ttft_p90_ms, a.ttft_p90_ms_range)} | ${withRange(a.ttft_p99_ms, a.ttft_p99_ms_range)} | ${withRange(a.slowdown_p50, a.slowdown_p50_range, 2)} | ${withRange(a.slowdown_p90, a.slowdown_p90_range, 2)} | ${withRange(a.slowdown_p99, a.slowdown_p99_range, 2)} | ${withRange(a.output_tokens_per_sec, a.output_tokens_per_sec_range)} | ${fmt(a.ok)} / ${fmt(a.errors)} / ${fmt(a.aborted)} | ${withRange(a.prefix_cache_hit_pct, a.prefix_cache_hit_pct_range)} | ${fmt(a.p90_tail_min)} | ${pods.length > 0 ? pods.map((v) => fmt(v)).join(" / ") : "–"} |`,
      );
    }
  lines.push("");
  lines.push(...renderGatewayTimes(r));
  const calls = r.aggregate.filter((a) => a.peer_calls !== undefined && Object.keys(a.peer_calls).length > 0);
  if (calls.length > 0) {
    lines.push(
      "Calls to the pods' router-facing endpoints per stage (median, all pods; docs/design/model-servers.md §10):",
    );
    lines.push("");
    for (const a of calls)
      lines.push(
        `- ${a.load_pct} % ${MODE_LABELS[a.mode] ?? a.mode}: ${Object.entries(a.peer_calls)
          .map(([k, v]) => `\`${k}\` ${fmt(v)}`)
          .join(", ")}`,
      );
    lines.push("");
  }
  return lines;
}

/** How long a stage was: a fixed duration, or a fixed request count (which sets the duration at each rate). */
export function stageText(r: Pick<BenchResults, "stage_duration_s" | "stage_min_requests">): string {
  const n = r.stage_min_requests ?? 0;
  if (n <= 0) return `${r.stage_duration_s} s open-loop Poisson stages`;
  return `open-loop Poisson stages of ${n} requests each (at least ${r.stage_duration_s} s; at each load step as long as ${n} requests take at its rate)`;
}

export function renderSummary(r: BenchResults): string {
  const lines: string[] = [];
  const agg = r.aggregate;
  lines.push(`# Routing benchmark — ${r.generated_at}`);
  lines.push("");
  lines.push(
    `Backend **${r.backend}**, ${r.modes.length} modes interleaved at each load step, ${r.reps} repetition(s), ${stageText(r)}. ` +
      `Capacity ${r.capacity.measured ? "measured" : "given"}: **${r.capacity.requests_per_sec.toFixed(2)} req/s** ` +
      `(${r.capacity.output_tokens_per_sec.toFixed(0)} output tokens/s at concurrency ${r.capacity.concurrency}, mean output ${r.capacity.mean_output_tokens.toFixed(0)} tokens). ` +
      `git ${r.git_sha.slice(0, 12)}, ${r.machine.cpus} CPUs, Node ${r.machine.node}.`,
  );
  lines.push("");
  lines.push("Values are medians over repetitions; ratios are mode ÷ baseline (below 1 is better for latency).");
  lines.push("");
  lines.push("## Targets");
  lines.push("");
  for (const t of r.targets)
    lines.push(`- ${t.met === true ? "✅" : t.met === false ? "❌" : "–"} ${t.name}: ${t.detail}`);
  lines.push("");
  if (r.aggregate.some((a) => a.slowdown_p90 !== undefined)) lines.push(...renderPeerComparison(r));
  lines.push("## TTFT, ITL, e2e and throughput per load step");
  lines.push("");
  lines.push(
    "| load | req/s | mode | TTFT p50 | TTFT p90 | TTFT p99 | ITL p50 | ITL p90 | e2e p50 | e2e p90 | out tok/s | ok / shed / err / aborted | p90 vs RR | p90 vs LR | spread |",
  );
  lines.push("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const load of r.loads_pct) {
    const rr = point(agg, "round-robin", load);
    const lr = point(agg, "least-request", load);
    for (const mode of r.modes) {
      const a = point(agg, mode, load);
      if (!a) continue;
      lines.push(
        `| ${load} % | ${a.rate.toFixed(2)} | ${mode} | ${fmt(a.ttft_p50_ms)} | ${fmt(a.ttft_p90_ms)} | ${fmt(a.ttft_p99_ms)} | ${fmt(a.itl_p50_ms, 1)} | ${fmt(a.itl_p90_ms, 1)} | ${fmt(a.e2e_p50_ms)} | ${fmt(a.e2e_p90_ms)} | ${fmt(a.output_tokens_per_sec)} | ${fmt(a.ok)} / ${fmt(a.shed)} / ${fmt(a.errors)} / ${fmt(a.aborted)} | ${ratio(a.ttft_p90_ms, rr?.ttft_p90_ms)} | ${ratio(a.ttft_p90_ms, lr?.ttft_p90_ms)} | ${fmt(a.running_spread_mean, 1)} |`,
      );
    }
  }
  lines.push("");
  lines.push(
    "Latencies in ms, measured by the client from the SSE stream. TTFT includes requests aborted at the stage deadline before their first token, counted at their waiting time (a lower bound). ITL pools the gaps between token-carrying reads (inference-perf's definition). `out tok/s` counts tokens received while the stage was sending. `spread` is the mean over 1 s samples of (max − min) running requests across pods.",
  );
  lines.push("");
  lines.push("## By criticality (TTFT p90, ms; shed counts)");
  lines.push("");
  lines.push("| load | mode | Critical | Standard | Sheddable | shed Critical | shed Sheddable |");
  lines.push("|---|---|---|---|---|---|---|");
  for (const load of r.loads_pct)
    for (const mode of r.modes) {
      const a = point(agg, mode, load);
      if (!a) continue;
      lines.push(
        `| ${load} % | ${mode} | ${fmt(a.critical_ttft_p90_ms)} | ${fmt(a.standard_ttft_p90_ms)} | ${fmt(a.sheddable_ttft_p90_ms)} | ${fmt(a.critical_shed)} | ${fmt(a.sheddable_shed)} |`,
      );
    }
  lines.push("");
  lines.push("## Requests served per endpoint (first repetition)");
  lines.push("");
  const endpoints = new Set<string>();
  for (const s of r.stages) for (const e of Object.keys(s.switchyard.endpoints.served)) endpoints.add(e);
  const eps = [...endpoints].sort();
  lines.push(`| load | mode | ${eps.join(" | ")} |`);
  lines.push(`|---|---|${eps.map(() => "---").join("|")}|`);
  for (const s of r.stages) {
    if (s.switchyard.rep !== 1) continue;
    lines.push(
      `| ${s.switchyard.load_pct} % | ${s.switchyard.mode} | ${eps.map((e) => String(s.switchyard.endpoints.served[e] ?? 0)).join(" | ")} |`,
    );
  }
  lines.push("");
  lines.push("## Errors by status (all repetitions)");
  lines.push("");
  lines.push("| load | mode | rep | errors |");
  lines.push("|---|---|---|---|");
  for (const s of r.stages) {
    const e = Object.entries(s.switchyard.errors_by_status);
    if (e.length === 0) continue;
    lines.push(
      `| ${s.switchyard.load_pct} % | ${s.switchyard.mode} | ${s.switchyard.rep} | ${e.map(([k, v]) => `${k}: ${v}`).join(", ")} |`,
    );
  }
  lines.push("");
  lines.push("## Load generator health");
  lines.push("");
  let peak = 0;
  let lag = 0;
  for (const s of r.stages) {
    peak = Math.max(peak, s.switchyard.loadgen_cpu_pct.peak);
    lag = Math.max(lag, s.switchyard.schedule_lag_ms.p99);
  }
  lines.push(
    `Busiest one-second window of the load generator: ${peak.toFixed(0)} % of a core (limit 70 %); worst p99 send delay behind the Poisson schedule: ${lag.toFixed(1)} ms.`,
  );
  lines.push("");
  return `${lines.join("\n")}\n`;
}

export function seriesFor(r: BenchResults, value: (a: AggregatePoint) => number): Series[] {
  return r.modes.map((mode) => ({
    name: MODE_LABELS[mode] ?? mode,
    color: MODE_COLORS[mode] ?? "#7f7f7f",
    points: r.aggregate.filter((a) => a.mode === mode).map((a) => [a.load_pct, value(a)] as const),
  }));
}

/** Writes results.json, summary.md, ttft-p90.svg and throughput.svg into `dir`. */
export function writeReport(dir: string, r: BenchResults): string[] {
  const files = {
    json: join(dir, "results.json"),
    md: join(dir, "summary.md"),
    ttft: join(dir, "ttft-p90.svg"),
    tput: join(dir, "throughput.svg"),
  };
  writeFileSync(files.json, `${JSON.stringify(r, null, 1)}\n`);
  writeFileSync(files.md, renderSummary(r));
  writeFileSync(
    files.ttft,
    renderLineChart({
      title: "TTFT p90 vs offered load",
      xLabel: "offered load (% of measured capacity)",
      yLabel: "TTFT p90 (ms)",
      series: seriesFor(r, (a) => a.ttft_p90_ms),
    }),
  );
  writeFileSync(
    files.tput,
    renderLineChart({
      title: "Output throughput vs offered load",
      xLabel: "offered load (% of measured capacity)",
      yLabel: "output tokens/s",
      series: seriesFor(r, (a) => a.output_tokens_per_sec),
    }),
  );
  return Object.values(files);
}
