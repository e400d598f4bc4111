/**
 * The peer-router comparison's own parts: the idle cold TTFT behind every slowdown, time scaling of both backends,
 * the per-repetition spread the report prints, the issue-15 targets against the best peer, and the CLI refusing a
 * peer mode whose router is not installed, and the per-pod count read from llm-d-inference-sim's metrics.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { benchPods, H100_SCALED, idleColdTtftMs, llmdArgs, simOptions } from "../../src/bench/fleet.js";
import { type GatewayTimings, summarizeGatewayLines } from "../../src/bench/gateway-timings.js";
import type { LoadResult } from "../../src/bench/loadgen.js";
import { peerTargets, renderPeerComparison, stageText } from "../../src/bench/report.js";
import { completedRequests, MODE_ALIASES, PEER_MODES } from "../../src/bench/run.js";
import { type AggregatePoint, aggregate, summarizeStage } from "../../src/bench/stats.js";

describe("the summary's stage length", () => {
  it("names the request count when the run fixed one (the peers preset), not the unused duration", () => {
    expect(stageText({ stage_duration_s: 40 })).toBe("40 s open-loop Poisson stages");
    expect(stageText({ stage_duration_s: 40, stage_min_requests: 2000 })).toMatch(
      /^open-loop Poisson stages of 2000 requests each \(at least 40 s;/,
    );
  });
});

describe("idle cold TTFT", () => {
  it("is the simulator's prefill for a batch of one, plus the adapter load for an adapter request", () => {
    // (10 ms first token + 5 ms overhead + 1000 × 0.15 ms) × (1 + 1.5 / 8) = 165 × 1.1875
    expect(idleColdTtftMs(H100_SCALED, 1000, false)).toBeCloseTo(195.9375, 6);
    expect(idleColdTtftMs(H100_SCALED, 1000, true)).toBeCloseTo(295.9375, 6);
    expect(idleColdTtftMs({ ...H100_SCALED, timeFactorUnderLoad: 1 }, 0, false)).toBe(15);
  });
});

describe("time scaling", () => {
  const pods = benchPods({ count: 8, addressPrefix: "127.0.1", port: 8000, loras: ["a"], params: H100_SCALED });
  it("multiplies each pod's own speed, for switchyard's simulator and for llm-d-inference-sim", () => {
    const slow = pods[7]!;
    expect(slow.speed).toBe(2);
    expect(simOptions(slow, H100_SCALED, 1, 0.2, 8)).toMatchObject({ speed: 0.4, streamBatchTokens: 8 });
    expect(simOptions(slow, H100_SCALED, 1)).toMatchObject({ speed: 2, streamBatchTokens: 1 });
    const args = llmdArgs(slow, H100_SCALED, 1, 0.5);
    // 12 ms × 2 (slow pod) × 0.5 (time scale)
    expect(args[args.indexOf("--inter-token-latency") + 1]).toBe("12ms");
  });
});

function stage(
  mode: string,
  rep: number,
  ttfts: number[],
  slowdowns: number[],
  tokens: number,
  gateway?: GatewayTimings,
) {
  const records = ttfts.map((ttft, i) => ({
    i,
    crit: "Standard" as const,
    lora: undefined,
    sent: i,
    status: 200,
    outcome: "ok" as const,
    ttft,
    e2e: ttft + 100,
    out: 10,
    prompt: 100,
    cached: 50,
    endpoint: "",
    tpot: 10,
    error: undefined,
  }));
  const result: LoadResult = {
    kind: "open",
    rate: 1,
    concurrency: undefined,
    durationMs: 1000,
    elapsedMs: 1000,
    records,
    itl: [],
    tokensInWindow: tokens,
    windowMs: 1000,
    cpu: { userMs: 0, systemMs: 0, wallMs: 1000, pct: 0, peakPct: 0 },
    scheduleLagMs: { p50: 0, p99: 0, max: 0 },
  };
  return summarizeStage({ mode, loadPct: 85, rate: 1, rep }, result, [], {
    slowdowns,
    podRequests: { "sim-1": rep * 10, "sim-2": 5 },
    peerCalls: { "/tokenize": rep },
    ...(gateway !== undefined ? { gateway } : {}),
  }).switchyard;
}

describe("spread across repetitions", () => {
  it("reports the median with min–max of TTFT, slowdown and throughput, per-pod medians and the p90 tail", () => {
    const ten = (base: number) => Array.from({ length: 10 }, (_, k) => base + k);
    const [a] = aggregate([
      stage("round-robin", 1, ten(100), ten(1), 100),
      stage("round-robin", 2, ten(200), ten(2), 300),
      stage("round-robin", 3, ten(300), ten(3), 200),
    ]);
    expect(a!.reps).toBe(3);
    expect(a!.ttft_p90_ms).toBeCloseTo(208.1);
    expect(a!.ttft_p90_ms_range[0]).toBeCloseTo(108.1);
    expect(a!.ttft_p90_ms_range[1]).toBeCloseTo(308.1);
    expect(a!.slowdown_p90).toBeCloseTo(10.1);
    expect(a!.slowdown_p99_range[0]).toBeCloseTo(1 + 8.91);
    expect(a!.output_tokens_per_sec).toBe(200);
    expect(a!.output_tokens_per_sec_range).toEqual([100, 300]);
    expect(a!.pod_requests).toEqual({ "sim-1": 20, "sim-2": 5 });
    expect(a!.peer_calls).toEqual({ "/tokenize": 2 });
    expect(a!.p90_tail_min).toBe(1);
  });
});

describe("targets against the peers", () => {
  const p = (mode: string, slowP90: number, p90: number, p99: number, tok: number): AggregatePoint =>
    ({
      ...aggregate([stage(mode, 1, [1], [1], 1)])[0],
      mode,
      load_pct: 85,
      slowdown_p90: slowP90,
      ttft_p90_ms: p90,
      ttft_p99_ms: p99,
      output_tokens_per_sec: tok,
    }) as AggregatePoint;
  const base = [
    p("round-robin", 10, 900, 3000, 100),
    p("least-request", 6, 700, 2500, 100),
    p("vllm-router-cache-aware", 5, 600, 2000, 100),
    p("sglang-router-cache-aware", 8, 500, 2600, 100),
  ];

  it("judges switchyard against the best peer on each figure, and meets all when it is ahead", () => {
    const checks = peerTargets([...base, p("switchyard", 4, 450, 1900, 101)], 85);
    expect(checks).toHaveLength(6);
    expect(checks.every((c) => c.met === true)).toBe(true);
    expect(checks.find((c) => c.name.includes("0.85×"))?.detail).toContain("vllm-router-cache-aware");
    expect(checks.find((c) => c.name.includes("TTFT p90"))?.detail).toContain("sglang-router-cache-aware");
    expect(checks.find((c) => c.name.includes("TTFT p99"))?.detail).toContain("vllm-router-cache-aware");
  });

  it("misses each target it falls short of", () => {
    const checks = peerTargets([...base, p("switchyard", 4.5, 550, 1900, 90)], 85);
    const missed = checks.filter((c) => c.met === false).map((c) => c.name);
    expect(missed).toHaveLength(3);
    expect(missed.some((n) => n.includes("0.85×"))).toBe(true); // 4.5 > 0.85 × 5
    expect(missed.some((n) => n.includes("TTFT p90"))).toBe(true); // 550 > 500
    expect(missed.some((n) => n.includes("tokens/s"))).toBe(true); // 90 < 0.98 × 100
    expect(peerTargets([p("switchyard", 1, 1, 1, 1), base[0]!], 85)).toEqual([]);
  });

  it("prints one table row per mode with the repetitions' spread", () => {
    const agg = aggregate([
      stage("switchyard", 1, [100, 200], [1, 2], 50),
      stage("switchyard", 2, [300, 400], [3, 4], 70),
    ]);
    const lines = renderPeerComparison({
      modes: ["switchyard"],
      loads_pct: [85],
      reps: 2,
      aggregate: agg,
      time_scale: 0.2,
    } as never);
    const row = lines.find((l) => l.startsWith("| 85 % | switchyard"));
    expect(row).toContain("(190–390)");
    expect(row).toContain("15 / 5");
    expect(lines.join("\n")).toContain("5.0× simulated speed");
  });
});

describe("time in the gateway", () => {
  const log = (before: number[], chunk: number | undefined) =>
    summarizeGatewayLines(
      before.map((b) =>
        JSON.stringify({
          path: "/v1/chat/completions",
          rx_to_upstream_us: b,
          upstream_to_client_us: 40,
          ...(chunk === undefined
            ? {}
            : { epp_req_headers_us: "900", epp_resp_body_calls: "2", epp_resp_body_us: String(2 * chunk) }),
        }),
      ),
    )!;

  it("takes the median over repetitions of each stage's percentiles, and prints them in ms", () => {
    const agg = aggregate([
      stage("switchyard", 1, [100], [1], 1, log([1000, 1000, 3000], 400)),
      stage("switchyard", 2, [100], [1], 1, log([2000, 2000, 2000], 600)),
      stage("switchyard", 3, [100], [1], 1, log([1500, 1500, 1500], 500)),
      stage("least-request", 1, [100], [1], 1, log([200, 200], undefined)),
      stage("round-robin", 1, [100], [1], 1),
    ]);
    const sy = agg.find((a) => a.mode === "switchyard")!.gateway_us!;
    expect(sy.before_upstream.p50).toBe(1500);
    expect(sy.epp_chunk_mean).toEqual({ p50: 500, p90: 500 });
    const lr = agg.find((a) => a.mode === "least-request")!.gateway_us!;
    expect(lr.before_upstream.p50).toBe(200);
    expect(lr.epp_chunk_mean).toBeUndefined();
    // Behind the dev gateway there is no access log, hence nothing to report.
    expect(agg.find((a) => a.mode === "round-robin")!.gateway_us).toBeUndefined();
    const lines = renderPeerComparison({
      modes: ["switchyard", "least-request", "round-robin"],
      loads_pct: [85],
      reps: 3,
      aggregate: agg,
    } as never);
    const at = lines.indexOf("### Time in the gateway (real Envoy's access log)");
    expect(at).toBeGreaterThan(0);
    const rows = lines.slice(at).filter((l) => l.startsWith("| 85 % |"));
    expect(rows).toEqual([
      // p90s of the stages: 2.6, 2.0 and 1.5 ms (interpolated); their median is 2.0.
      "| 85 % | switchyard (default profile) | 1.50 / 2.00 / 2.00 | 0.04 / 0.04 / 0.04 | 0.50 / 0.50 |",
      "| 85 % | least-request | 0.20 / 0.20 / 0.20 | 0.04 / 0.04 / 0.04 | – |",
    ]);
  });
});

describe("peer modes", () => {
  it("have short aliases and a router each", () => {
    expect(MODE_ALIASES.vca).toBe("vllm-router-cache-aware");
    expect(PEER_MODES[MODE_ALIASES.vp2!]).toEqual({ tool: "vllm-router", policy: "power_of_two" });
    expect(PEER_MODES[MODE_ALIASES.sca!]).toEqual({ tool: "sglang-router", policy: "cache_aware" });
  });

  it("make the CLI say how to install a router that is missing, before starting anything", () => {
    const empty = mkdtempSync(join(tmpdir(), "sy-peers-"));
    try {
      let message = "";
      try {
        execFileSync(
          process.execPath,
          ["--import", "tsx", "src/cli.ts", "bench", "--modes", "rr,vca", "--work-dir", join(empty, "w")],
          {
            env: { ...process.env, PATH: "", SWITCHYARD_TOOLS: empty, SWITCHYARD_VLLM_ROUTER: "" },
            stdio: ["ignore", "pipe", "pipe"],
            encoding: "utf8",
          },
        );
      } catch (err) {
        message = `${(err as { stderr: string }).stderr}`;
      }
      expect(message).toContain("npm run setup:peers");
      expect(message).toContain("vllm-router");
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe("per-pod requests on llm-d-inference-sim", () => {
  it("sums vllm:request_success_total over every reason and model, and reads 0 when the pod reports none", () => {
    const llmd = [
      "# HELP vllm:request_success_total Count of successfully processed requests.",
      "# TYPE vllm:request_success_total counter",
      'vllm:request_success_total{finish_reason="length",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3',
      'vllm:request_success_total{finish_reason="stop",model_name="lora-a"} 4',
      'vllm:request_success_total_created{finish_reason="stop",model_name="lora-a"} 1.7e9',
      "vllm:num_requests_running 2",
      "",
    ].join("\n");
    expect(completedRequests(llmd)).toBe(7);
    const real = readFileSync(
      fileURLToPath(new URL("../fixtures/metrics/vllm-0.32/metrics-busy.txt", import.meta.url)),
      "utf8",
    );
    expect(completedRequests(real)).toBe(1);
    expect(completedRequests("vllm:num_requests_running 2\n")).toBe(0);
  });
});
