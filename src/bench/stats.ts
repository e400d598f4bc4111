/**
 * Turns one stage's raw records into an inference-perf-shaped summary (docs/design/benchmarks.md §2: `load_summary`,
 * `successes.latency.{time_to_first_token,…}`, `successes.throughput`, `failures`; seconds, like inference-perf)
 * plus switchyard's own view in milliseconds: TTFT including censored requests, per-criticality outcomes and the
 * per-endpoint load spread.
 */

import type { GatewayTimings } from "./gateway-timings.js";
import type { LoadResult, RequestRecord } from "./loadgen.js";
import { CRITICALITIES, type Criticality } from "./workload.js";

export interface Dist {
  readonly count: number;
  readonly mean: number;
  readonly min: number;
  readonly max: number;
  readonly median: number;
  readonly p90: number;
  readonly p99: number;
}

export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** Distribution of `values` multiplied by `scale` (e.g. 0.001 for ms → s). Undefined when empty. */
export function dist(values: readonly number[], scale = 1): Dist | undefined {
  if (values.length === 0) return undefined;
  const s = values.map((v) => v * scale).sort((a, b) => a - b);
  let sum = 0;
  for (const v of s) sum += v;
  return {
    count: s.length,
    mean: sum / s.length,
    min: s[0]!,
    max: s[s.length - 1]!,
    median: quantile(s, 0.5),
    p90: quantile(s, 0.9),
    p99: quantile(s, 0.99),
  };
}

export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return quantile(finite, 0.5);
}

/** A TTFT sample: a measured first token, or a lower bound for a request aborted before its first token. */
export function ttftSamples(records: readonly RequestRecord[]): { values: number[]; censored: number } {
  const values: number[] = [];
  let censored = 0;
  for (const r of records) {
    if (r.ttft !== undefined) values.push(r.ttft);
    else if (r.outcome === "aborted") {
      values.push(r.e2e);
      censored++;
    }
  }
  return { values, censored };
}

export interface SpreadSample {
  /** Running requests per endpoint at one instant. */
  readonly running: Readonly<Record<string, number>>;
  readonly waiting: Readonly<Record<string, number>>;
}

export interface CriticalityStats {
  readonly sent: number;
  readonly ok: number;
  readonly shed: number;
  readonly errors: number;
  readonly aborted: number;
  readonly ttft_ms: Dist | undefined;
}

export interface SwitchyardStageView {
  readonly mode: string;
  readonly load_pct: number;
  readonly rate: number;
  readonly rep: number;
  readonly sent: number;
  readonly ok: number;
  readonly shed: number;
  readonly errors: number;
  readonly aborted: number;
  readonly censored_ttft: number;
  readonly ttft_ms: Dist | undefined;
  readonly itl_ms: Dist | undefined;
  readonly tpot_ms: Dist | undefined;
  readonly e2e_ms: Dist | undefined;
  /** Output tokens received while the stage was sending, per second. */
  readonly output_tokens_per_sec: number;
  readonly prefix_cache_hit_pct: number;
  readonly by_criticality: Readonly<Record<Criticality, CriticalityStats>>;
  readonly endpoints: {
    readonly served: Readonly<Record<string, number>>;
    /** Mean over 1 s samples of (max − min) running requests across endpoints. */
    readonly running_spread_mean: number;
    readonly running_spread_max: number;
    readonly waiting_max: number;
    readonly samples: number;
  };
  readonly errors_by_status: Readonly<Record<string, number>>;
  /**
   * TTFT ÷ the same request's TTFT alone on an idle 1× pod with a cold cache (fleet.ts idleColdTtftMs), scale-free;
   * like ttft_ms it includes requests aborted before their first token at their waiting time (a lower bound).
   */
  readonly slowdown: Dist | undefined;
  /** Completion requests each pod received during the stage (its own count, so every mode is counted alike). */
  readonly pod_requests: Readonly<Record<string, number>>;
  /** Calls to the pods' router-facing endpoints during the stage, summed over pods (tokenize, render, load …). */
  readonly peer_calls: Readonly<Record<string, number>>;
  readonly loadgen_cpu_pct: { readonly avg: number; readonly peak: number };
  /** Real Envoy's own time per request (its access log); absent behind the dev gateway. */
  readonly gateway?: GatewayTimings;
  readonly schedule_lag_ms: { readonly p50: number; readonly p99: number; readonly max: number };
}

export interface StageSummary {
  /** inference-perf's summary_lifecycle_metrics.json shape (seconds). */
  readonly benchmark_time_seconds: number;
  readonly load_summary: {
    readonly count: number;
    readonly requested_rate: number;
    readonly achieved_rate: number;
  };
  readonly successes: {
    readonly count: number;
    readonly rate: number;
    readonly prompt_len: (Dist & { total: number; cached: number }) | undefined;
    readonly output_len: (Dist & { total: number }) | undefined;
    readonly latency: {
      readonly request_latency: Dist | undefined;
      readonly normalized_time_per_output_token: Dist | undefined;
      readonly time_to_first_token: Dist | undefined;
      readonly time_per_output_token: Dist | undefined;
      readonly inter_token_latency: Dist | undefined;
    };
    readonly throughput: {
      readonly input_tokens_per_sec: number;
      readonly output_tokens_per_sec: number;
      readonly total_tokens_per_sec: number;
      readonly requests_per_sec: number;
    };
  };
  readonly failures: {
    readonly count: number;
    readonly rate: number;
    readonly errors: Readonly<Record<string, number>>;
  };
  readonly switchyard: SwitchyardStageView;
}

function statusLabel(r: RequestRecord): string {
  if (r.outcome === "aborted") return "aborted at stage deadline";
  if (r.status === 0) return "connection error";
  const names: Record<number, string> = {
    400: "Bad Request",
    404: "Model Not Found",
    429: "Rate Limit",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
  };
  return `${r.status} - ${names[r.status] ?? "other"}`;
}

export interface StageMeta {
  readonly mode: string;
  readonly loadPct: number;
  readonly rate: number;
  readonly rep: number;
}

/** What the runner measures around a stage besides the load generator's records. */
export interface StageExtras {
  /** Per-request TTFT slowdown samples (see SwitchyardStageView.slowdown). */
  readonly slowdowns: readonly number[];
  readonly podRequests: Readonly<Record<string, number>>;
  readonly peerCalls: Readonly<Record<string, number>>;
  /** Real Envoy's own timings of the stage's requests, from its access log (gateway-timings.ts). */
  readonly gateway?: GatewayTimings;
}

export function summarizeStage(
  meta: StageMeta,
  result: LoadResult,
  spread: readonly SpreadSample[],
  extras: StageExtras = { slowdowns: [], podRequests: {}, peerCalls: {} },
): StageSummary {
  const recs = result.records;
  const oks = recs.filter((r) => r.outcome === "ok");
  const failures = recs.filter((r) => r.outcome !== "ok");
  const elapsedS = result.elapsedMs / 1000;
  const durationS = result.durationMs / 1000;
  const ttft = ttftSamples(recs);
  const okTtft = oks.flatMap((r) => (r.ttft === undefined ? [] : [r.ttft]));
  const tpot = oks.flatMap((r) => (r.tpot === undefined ? [] : [r.tpot]));
  const ntpot = oks.filter((r) => r.out > 0).map((r) => r.e2e / r.out);
  const promptTotal = oks.reduce((a, r) => a + r.prompt, 0);
  const cachedTotal = oks.reduce((a, r) => a + r.cached, 0);
  const outTotal = oks.reduce((a, r) => a + r.out, 0);
  const promptDist = dist(oks.map((r) => r.prompt));
  const outDist = dist(oks.map((r) => r.out));

  const errorsByStatus: Record<string, number> = {};
  for (const r of failures) {
    const l = statusLabel(r);
    errorsByStatus[l] = (errorsByStatus[l] ?? 0) + 1;
  }

  const byCrit = {} as Record<Criticality, CriticalityStats>;
  for (const c of CRITICALITIES) {
    const rs = recs.filter((r) => r.crit === c);
    byCrit[c] = {
      sent: rs.length,
      ok: rs.filter((r) => r.outcome === "ok").length,
      shed: rs.filter((r) => r.outcome === "shed").length,
      errors: rs.filter((r) => r.outcome === "error").length,
      aborted: rs.filter((r) => r.outcome === "aborted").length,
      ttft_ms: dist(ttftSamples(rs).values),
    };
  }

  const served: Record<string, number> = {};
  for (const r of oks) if (r.endpoint !== "") served[r.endpoint] = (served[r.endpoint] ?? 0) + 1;
  let spreadSum = 0;
  let spreadMax = 0;
  let waitingMax = 0;
  for (const s of spread) {
    const vals = Object.values(s.running);
    if (vals.length === 0) continue;
    const d = Math.max(...vals) - Math.min(...vals);
    spreadSum += d;
    if (d > spreadMax) spreadMax = d;
    for (const w of Object.values(s.waiting)) if (w > waitingMax) waitingMax = w;
  }

  const view: SwitchyardStageView = {
    mode: meta.mode,
    load_pct: meta.loadPct,
    rate: meta.rate,
    rep: meta.rep,
    sent: recs.length,
    ok: oks.length,
    shed: recs.filter((r) => r.outcome === "shed").length,
    errors: recs.filter((r) => r.outcome === "error").length,
    aborted: recs.filter((r) => r.outcome === "aborted").length,
    censored_ttft: ttft.censored,
    ttft_ms: dist(ttft.values),
    itl_ms: dist(result.itl),
    tpot_ms: dist(tpot),
    e2e_ms: dist(oks.map((r) => r.e2e)),
    output_tokens_per_sec: result.tokensInWindow / (result.windowMs / 1000),
    prefix_cache_hit_pct: promptTotal > 0 ? (cachedTotal / promptTotal) * 100 : 0,
    by_criticality: byCrit,
    endpoints: {
      served,
      running_spread_mean: spread.length > 0 ? spreadSum / spread.length : 0,
      running_spread_max: spreadMax,
      waiting_max: waitingMax,
      samples: spread.length,
    },
    errors_by_status: errorsByStatus,
    slowdown: dist(extras.slowdowns),
    pod_requests: extras.podRequests,
    peer_calls: extras.peerCalls,
    loadgen_cpu_pct: { avg: result.cpu.pct, peak: result.cpu.peakPct },
    ...(extras.gateway !== undefined ? { gateway: extras.gateway } : {}),
    schedule_lag_ms: result.scheduleLagMs,
  };

  return {
    benchmark_time_seconds: elapsedS,
    load_summary: {
      count: recs.length,
      requested_rate: meta.rate,
      achieved_rate: durationS > 0 ? recs.length / durationS : 0,
    },
    successes: {
      count: oks.length,
      rate: elapsedS > 0 ? oks.length / elapsedS : 0,
      prompt_len: promptDist && { ...promptDist, total: promptTotal, cached: cachedTotal },
      output_len: outDist && { ...outDist, total: outTotal },
      latency: {
        request_latency: dist(
          oks.map((r) => r.e2e),
          0.001,
        ),
        normalized_time_per_output_token: dist(ntpot, 0.001),
        time_to_first_token: dist(okTtft, 0.001),
        time_per_output_token: dist(tpot, 0.001),
        inter_token_latency: dist(result.itl, 0.001),
      },
      throughput: {
        input_tokens_per_sec: elapsedS > 0 ? promptTotal / elapsedS : 0,
        output_tokens_per_sec: elapsedS > 0 ? outTotal / elapsedS : 0,
        total_tokens_per_sec: elapsedS > 0 ? (promptTotal + outTotal) / elapsedS : 0,
        requests_per_sec: elapsedS > 0 ? oks.length / elapsedS : 0,
      },
    },
    failures: {
      count: failures.length,
      rate: elapsedS > 0 ? failures.length / elapsedS : 0,
      errors: errorsByStatus,
    },
    switchyard: view,
  };
}

/** The medians over repetitions of the numbers the report compares, with their min–max spread. */
export interface AggregatePoint {
  readonly mode: string;
  readonly load_pct: number;
  readonly rate: number;
  readonly reps: number;
  readonly ttft_p50_ms: number;
  readonly ttft_p90_ms: number;
  readonly ttft_p99_ms: number;
  readonly ttft_p90_ms_range: readonly [number, number];
  readonly itl_p50_ms: number;
  readonly itl_p90_ms: number;
  readonly tpot_p50_ms: number;
  readonly e2e_p50_ms: number;
  readonly e2e_p90_ms: number;
  readonly output_tokens_per_sec: number;
  readonly sent: number;
  readonly ok: number;
  readonly shed: number;
  readonly errors: number;
  readonly aborted: number;
  readonly critical_ttft_p90_ms: number;
  readonly standard_ttft_p90_ms: number;
  readonly sheddable_ttft_p90_ms: number;
  readonly sheddable_shed: number;
  readonly critical_shed: number;
  readonly running_spread_mean: number;
  readonly prefix_cache_hit_pct: number;
  readonly loadgen_cpu_peak_pct: number;
  /** Min–max across repetitions of the figures the peer comparison reports. */
  readonly ttft_p50_ms_range: readonly [number, number];
  readonly ttft_p99_ms_range: readonly [number, number];
  readonly slowdown_p50: number;
  readonly slowdown_p90: number;
  readonly slowdown_p99: number;
  readonly slowdown_p50_range: readonly [number, number];
  readonly slowdown_p90_range: readonly [number, number];
  readonly slowdown_p99_range: readonly [number, number];
  readonly output_tokens_per_sec_range: readonly [number, number];
  readonly prefix_cache_hit_pct_range: readonly [number, number];
  /** Requests each pod received, median over repetitions. */
  readonly pod_requests: Readonly<Record<string, number>>;
  /** Router-facing endpoint calls, median over repetitions. */
  readonly peer_calls: Readonly<Record<string, number>>;
  /** Smallest request count behind any repetition's p90 (requests at or above it). */
  readonly p90_tail_min: number;
  /**
   * Real Envoy's own time per request, µs, median over repetitions of each stage's percentile (absent behind the
   * dev gateway): before the upstream (the EPP's request-side exchange included), the response headers' crossing,
   * and for EPP modes the mean ext_proc time per response chunk.
   */
  readonly gateway_us?: {
    readonly before_upstream: { readonly p50: number; readonly p90: number; readonly p99: number };
    readonly headers_back: { readonly p50: number; readonly p90: number; readonly p99: number };
    readonly epp_chunk_mean: { readonly p50: number; readonly p90: number } | undefined;
  };
}

function range(values: readonly (number | undefined)[]): readonly [number, number] {
  const v = values.filter((x): x is number => x !== undefined && Number.isFinite(x));
  return v.length === 0 ? [Number.NaN, Number.NaN] : [Math.min(...v), Math.max(...v)];
}

function medianRecord(records: readonly Readonly<Record<string, number>>[]): Record<string, number> {
  const keys = new Set<string>();
  for (const r of records) for (const k of Object.keys(r)) keys.add(k);
  const out: Record<string, number> = {};
  for (const k of [...keys].sort()) out[k] = median(records.map((r) => r[k] ?? 0));
  return out;
}

function gatewayPoint(g: readonly SwitchyardStageView[]): Pick<AggregatePoint, "gateway_us"> {
  const with_ = g.filter((s) => s.gateway?.before_upstream_us !== undefined);
  if (with_.length === 0) return {};
  const m = (f: (t: GatewayTimings) => number | undefined) =>
    median(with_.map((s) => f(s.gateway!) ?? Number.NaN).filter(Number.isFinite));
  const chunks = with_.some((s) => s.gateway!.epp_chunk_mean_us !== undefined);
  return {
    gateway_us: {
      before_upstream: {
        p50: m((t) => t.before_upstream_us?.median),
        p90: m((t) => t.before_upstream_us?.p90),
        p99: m((t) => t.before_upstream_us?.p99),
      },
      headers_back: {
        p50: m((t) => t.headers_back_us?.median),
        p90: m((t) => t.headers_back_us?.p90),
        p99: m((t) => t.headers_back_us?.p99),
      },
      epp_chunk_mean: chunks
        ? { p50: m((t) => t.epp_chunk_mean_us?.median), p90: m((t) => t.epp_chunk_mean_us?.p90) }
        : undefined,
    },
  };
}

export function aggregate(stages: readonly SwitchyardStageView[]): AggregatePoint[] {
  const groups = new Map<string, SwitchyardStageView[]>();
  for (const s of stages) {
    const key = `${s.mode}\u0000${s.load_pct}`;
    const g = groups.get(key);
    if (g) g.push(s);
    else groups.set(key, [s]);
  }
  const out: AggregatePoint[] = [];
  for (const g of groups.values()) {
    const m = (f: (s: SwitchyardStageView) => number | undefined) => median(g.map((s) => f(s) ?? Number.NaN));
    const p90s = g.map((s) => s.ttft_ms?.p90 ?? Number.NaN).filter(Number.isFinite);
    out.push({
      mode: g[0]!.mode,
      load_pct: g[0]!.load_pct,
      rate: g[0]!.rate,
      reps: g.length,
      ttft_p50_ms: m((s) => s.ttft_ms?.median),
      ttft_p90_ms: m((s) => s.ttft_ms?.p90),
      ttft_p99_ms: m((s) => s.ttft_ms?.p99),
      ttft_p90_ms_range: [Math.min(...p90s), Math.max(...p90s)],
      itl_p50_ms: m((s) => s.itl_ms?.median),
      itl_p90_ms: m((s) => s.itl_ms?.p90),
      tpot_p50_ms: m((s) => s.tpot_ms?.median),
      e2e_p50_ms: m((s) => s.e2e_ms?.median),
      e2e_p90_ms: m((s) => s.e2e_ms?.p90),
      output_tokens_per_sec: m((s) => s.output_tokens_per_sec),
      sent: m((s) => s.sent),
      ok: m((s) => s.ok),
      shed: m((s) => s.shed),
      errors: m((s) => s.errors),
      aborted: m((s) => s.aborted),
      critical_ttft_p90_ms: m((s) => s.by_criticality.Critical.ttft_ms?.p90),
      standard_ttft_p90_ms: m((s) => s.by_criticality.Standard.ttft_ms?.p90),
      sheddable_ttft_p90_ms: m((s) => s.by_criticality.Sheddable.ttft_ms?.p90),
      sheddable_shed: m((s) => s.by_criticality.Sheddable.shed),
      critical_shed: m((s) => s.by_criticality.Critical.shed),
      running_spread_mean: m((s) => s.endpoints.running_spread_mean),
      prefix_cache_hit_pct: m((s) => s.prefix_cache_hit_pct),
      loadgen_cpu_peak_pct: m((s) => s.loadgen_cpu_pct.peak),
      ttft_p50_ms_range: range(g.map((s) => s.ttft_ms?.median)),
      ttft_p99_ms_range: range(g.map((s) => s.ttft_ms?.p99)),
      slowdown_p50: m((s) => s.slowdown?.median),
      slowdown_p90: m((s) => s.slowdown?.p90),
      slowdown_p99: m((s) => s.slowdown?.p99),
      slowdown_p50_range: range(g.map((s) => s.slowdown?.median)),
      slowdown_p90_range: range(g.map((s) => s.slowdown?.p90)),
      slowdown_p99_range: range(g.map((s) => s.slowdown?.p99)),
      output_tokens_per_sec_range: range(g.map((s) => s.output_tokens_per_sec)),
      prefix_cache_hit_pct_range: range(g.map((s) => s.prefix_cache_hit_pct)),
      pod_requests: medianRecord(g.map((s) => s.pod_requests ?? {})),
      peer_calls: medianRecord(g.map((s) => s.peer_calls ?? {})),
      p90_tail_min: Math.min(...g.map((s) => Math.ceil((s.ttft_ms?.count ?? 0) * 0.1))),
      ...gatewayPoint(g),
    });
  }
  return out;
}
