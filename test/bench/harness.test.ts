/**
 * The benchmark's parts on their own: the seeded trace, request rendering, the load generator against a real
 * loopback SSE server, the stage statistics, the SVG charts and the llm-d-inference-sim backend's flag mapping.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { findLlmdBinary, goDuration, H100_SCALED, llmdArgs, podSpeeds } from "../../src/bench/fleet.js";
import { type LoadJob, type RequestRecord, runLoad } from "../../src/bench/loadgen.js";
import { checkTargets, targetLoad } from "../../src/bench/report.js";
import { type AggregatePoint, aggregate, dist, summarizeStage, ttftSamples } from "../../src/bench/stats.js";
import { niceTicks, renderLineChart } from "../../src/bench/svg.js";
import {
  CRITICALITY_MODELS,
  DEFAULT_WORKLOAD,
  generateTrace,
  RequestBuilder,
  type WorkloadSpec,
} from "../../src/bench/workload.js";
import { pickSteps } from "../../src/cli/bench.js";
import { ConfigError } from "../../src/common/errors.js";
import { parseXmlElements } from "./xml.js";

describe("trace", () => {
  it("is reproducible from its seed and prefix-stable in its length", () => {
    const a = generateTrace(DEFAULT_WORKLOAD, 300);
    const b = generateTrace(DEFAULT_WORKLOAD, 500);
    expect(b.items.slice(0, 300)).toEqual(a.items);
    const c = generateTrace({ ...DEFAULT_WORKLOAD, seed: DEFAULT_WORKLOAD.seed + 1 }, 300);
    expect(c.items).not.toEqual(a.items);
  });

  it("draws the configured shapes: heavy-tailed lengths, criticality mix, LoRA share, prefix groups", () => {
    const t = generateTrace(DEFAULT_WORKLOAD, 5000);
    const prompts = t.items.map((i) => i.promptTokens);
    expect(Math.min(...prompts)).toBeGreaterThanOrEqual(100);
    expect(Math.max(...prompts)).toBeLessThanOrEqual(10_000);
    const long = prompts.filter((p) => p >= 2500).length / prompts.length;
    expect(long).toBeGreaterThan(0.07);
    expect(long).toBeLessThan(0.14);
    const crit = (c: string) => t.items.filter((i) => i.criticality === c).length / t.items.length;
    expect(crit("Critical")).toBeGreaterThan(0.17);
    expect(crit("Critical")).toBeLessThan(0.23);
    expect(crit("Sheddable")).toBeGreaterThan(0.26);
    expect(crit("Sheddable")).toBeLessThan(0.34);
    const lora = t.items.filter((i) => i.lora !== undefined);
    expect(lora.length / t.items.length).toBeGreaterThan(0.07);
    expect(lora.length / t.items.length).toBeLessThan(0.13);
    // Zipf: the first adapter is the most popular.
    const first = lora.filter((i) => i.lora === DEFAULT_WORKLOAD.loras[0]).length;
    const last = lora.filter((i) => i.lora === DEFAULT_WORKLOAD.loras.at(-1)).length;
    expect(first).toBeGreaterThan(last);
    const grouped = t.items.filter((i) => i.group >= 0).length / t.items.length;
    expect(grouped).toBeGreaterThan(0.45);
    expect(grouped).toBeLessThan(0.55);
    // Unit-rate Poisson gaps: mean ≈ 1 s.
    const meanGap = t.items.reduce((s, i) => s + i.gap, 0) / t.items.length;
    expect(meanGap).toBeGreaterThan(0.93);
    expect(meanGap).toBeLessThan(1.07);
  });

  it("rejects impossible shares with a named field", () => {
    const bad: WorkloadSpec = { ...DEFAULT_WORKLOAD, loraShare: 1.5 };
    expect(() => generateTrace(bad, 10)).toThrow(/workload\.loraShare/);
    expect(() => generateTrace({ ...DEFAULT_WORKLOAD, prefixGroups: 0 }, 10)).toThrow(/prefixGroups/);
  });

  it("renders streaming chat bodies whose size matches the drawn prompt and whose groups share a system prompt", () => {
    const t = generateTrace(DEFAULT_WORKLOAD, 400);
    const run1 = new RequestBuilder(t, "run-1");
    const run2 = new RequestBuilder(t, "run-2");
    const grouped = t.items.filter((i) => i.group === t.items.find((j) => j.group >= 0)!.group).slice(0, 2);
    expect(grouped.length).toBe(2);
    const [x, y] = grouped.map((i) => JSON.parse(run1.build(i).body));
    expect(x.messages[0].content).toBe(y.messages[0].content);
    expect(x.messages[0].content.length).toBeGreaterThan(DEFAULT_WORKLOAD.prefixTokens[0] * 4);
    // A different run salt changes the first block, so caches never carry over between modes.
    expect(JSON.parse(run2.build(grouped[0]!).body).messages[0].content).not.toBe(x.messages[0].content);
    const item = t.items[0]!;
    const body = JSON.parse(run1.build(item).body);
    expect(body.messages[1].content.length).toBe(item.promptTokens * 4);
    expect(body.max_tokens).toBe(item.outputTokens);
    expect(body.stream).toBe(true);
    expect(body.stream_options).toEqual({ include_usage: true });
    const base = t.items.find((i) => i.lora === undefined && i.criticality === "Sheddable")!;
    expect(JSON.parse(run1.build(base).body).model).toBe(CRITICALITY_MODELS.Sheddable);
    const lora = t.items.find((i) => i.lora !== undefined && i.criticality === "Sheddable");
    if (lora) {
      const built = run1.build(lora);
      expect(JSON.parse(built.body).model).toBe(lora.lora);
      expect(built.objective).toBe("batch");
    }
  });
});

/** A tiny vLLM-like SSE server: one event per token every `itlMs`, usage at the end, 429 for model "shed-me". */
function sseServer(itlMs: number): Server {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = "";
    req.on("data", (d) => {
      raw += d;
    });
    req.on("end", () => {
      const body = JSON.parse(raw) as { model: string; max_tokens: number };
      if (body.model === "llama3-batch") {
        res.writeHead(429, { "content-type": "application/json" }).end('{"error":{"message":"shed"}}');
        return;
      }
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "x-gateway-destination-endpoint-served": "10.0.0.7:8000",
      });
      let n = 0;
      const tick = () => {
        if (res.destroyed) return;
        n++;
        const role = n === 1 ? 'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n' : "";
        res.write(`${role}data: {"choices":[{"index":0,"delta":{"content":" w"},"finish_reason":null}]}\n\n`);
        if (n >= body.max_tokens) {
          res.end(
            `data: {"choices":[],"usage":{"prompt_tokens":42,"completion_tokens":${n},"prompt_tokens_details":{"cached_tokens":16}}}\n\ndata: [DONE]\n\n`,
          );
          return;
        }
        setTimeout(tick, itlMs);
      };
      setTimeout(tick, itlMs);
    });
  });
}

describe("load generator against a loopback SSE server", () => {
  let server: Server;
  let url: string;
  let dir: string;

  beforeAll(async () => {
    server = sseServer(5);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dir = mkdtempSync(join(tmpdir(), "sy-bench-lg-"));
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  // Short outputs so every request finishes inside the stage.
  const workload: WorkloadSpec = {
    ...DEFAULT_WORKLOAD,
    output: {
      body: { median: 5, sigma: 0.2, min: 3, max: 8 },
      tail: { median: 10, sigma: 0.1, min: 9, max: 12 },
      tailShare: 0.1,
    },
    loraShare: 0,
  };
  const job = (over: Partial<LoadJob>): LoadJob => ({
    url,
    workload,
    traceLength: 200,
    salt: "t",
    kind: "open",
    rate: 40,
    durationMs: 500,
    maxRequests: 12,
    drainMs: 3000,
    windowStartMs: 0,
    out: join(dir, "out.json"),
    ...over,
  });

  it("records TTFT, tokens, usage, the served endpoint, and 429s as shed, bounded by maxRequests", async () => {
    const r = await runLoad(job({}));
    expect(r.records.length).toBe(12);
    const t = generateTrace(workload, 12);
    for (const rec of r.records) {
      const item = t.items[rec.i]!;
      if (item.criticality === "Sheddable") {
        expect(rec.outcome).toBe("shed");
        expect(rec.status).toBe(429);
        continue;
      }
      expect(rec.outcome).toBe("ok");
      expect(rec.out).toBe(item.outputTokens);
      expect(rec.prompt).toBe(42);
      expect(rec.cached).toBe(16);
      expect(rec.endpoint).toBe("10.0.0.7:8000");
      expect(rec.ttft).toBeGreaterThan(0);
      expect(rec.tpot).toBeGreaterThan(0);
    }
    expect(r.records.some((x) => x.outcome === "shed")).toBe(true);
    expect(r.itl.length).toBeGreaterThan(0);
    expect(r.cpu.pct).toBeGreaterThanOrEqual(0);
  });

  it("aborts whatever is still streaming at duration + drain, and counts it as aborted", async () => {
    const long: WorkloadSpec = {
      ...workload,
      output: { body: { median: 5000, sigma: 0, min: 5000, max: 5000 }, tail: workload.output.tail, tailShare: 0 },
      criticalityMix: [1, 0, 0],
    };
    const r = await runLoad(job({ workload: long, maxRequests: 3, durationMs: 200, drainMs: 300 }));
    expect(r.records.length).toBe(3);
    for (const rec of r.records) {
      expect(rec.outcome).toBe("aborted");
      expect(rec.ttft).toBeGreaterThan(0);
    }
  });

  it("closed loop keeps `concurrency` requests in flight and counts tokens inside the window", async () => {
    const r = await runLoad(
      job({ kind: "closed", rate: undefined, concurrency: 2, durationMs: 600, windowStartMs: 100, maxRequests: 500 }),
    );
    expect(r.tokensInWindow).toBeGreaterThan(0);
    expect(r.records.length).toBeGreaterThan(2);
  });

  it("refuses an open loop without a rate", async () => {
    await expect(runLoad(job({ rate: 0 }))).rejects.toThrow(/rate > 0/);
  });
});

function rec(over: Partial<RequestRecord>): RequestRecord {
  return {
    i: 0,
    crit: "Standard",
    lora: undefined,
    sent: 0,
    status: 200,
    outcome: "ok",
    ttft: 100,
    e2e: 1000,
    out: 10,
    prompt: 100,
    cached: 50,
    endpoint: "a",
    tpot: 10,
    error: undefined,
    ...over,
  };
}

describe("stage statistics", () => {
  it("computes percentiles by linear interpolation", () => {
    const d = dist([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])!;
    expect(d.median).toBeCloseTo(5.5);
    expect(d.p90).toBeCloseTo(9.1);
    expect(d.min).toBe(1);
    expect(d.max).toBe(10);
    expect(dist([])).toBeUndefined();
  });

  it("counts censored TTFTs (aborted before the first token) at their waiting time", () => {
    const s = ttftSamples([
      rec({ ttft: 100 }),
      rec({ outcome: "aborted", ttft: undefined, e2e: 5000 }),
      rec({ outcome: "shed", status: 429, ttft: undefined, e2e: 3 }),
    ]);
    expect(s.values.sort((a, b) => a - b)).toEqual([100, 5000]);
    expect(s.censored).toBe(1);
  });

  it("summarizes outcomes by criticality, endpoints and spread into the inference-perf shape", () => {
    const records = [
      rec({ i: 0, crit: "Critical", endpoint: "a", ttft: 50 }),
      rec({ i: 1, crit: "Sheddable", outcome: "shed", status: 429, ttft: undefined, endpoint: "" }),
      rec({ i: 2, crit: "Standard", endpoint: "b", ttft: 150 }),
      rec({ i: 3, crit: "Standard", outcome: "error", status: 404, ttft: undefined, endpoint: "b" }),
    ];
    const s = summarizeStage(
      { mode: "switchyard", loadPct: 85, rate: 2, rep: 1 },
      {
        kind: "open",
        rate: 2,
        concurrency: undefined,
        durationMs: 2000,
        elapsedMs: 4000,
        records,
        itl: [10, 20, 0],
        tokensInWindow: 40,
        windowMs: 2000,
        cpu: { userMs: 1, systemMs: 1, wallMs: 4000, pct: 0.05, peakPct: 1 },
        scheduleLagMs: { p50: 0, p99: 1, max: 2 },
      },
      [
        { running: { a: 3, b: 1 }, waiting: { a: 0, b: 2 } },
        { running: { a: 2, b: 2 }, waiting: { a: 0, b: 0 } },
      ],
    );
    expect(s.load_summary.count).toBe(4);
    expect(s.load_summary.achieved_rate).toBe(2);
    expect(s.successes.count).toBe(2);
    expect(s.failures.count).toBe(2);
    expect(s.failures.errors).toEqual({ "429 - Rate Limit": 1, "404 - Model Not Found": 1 });
    expect(s.successes.latency.time_to_first_token?.median).toBeCloseTo(0.1);
    const v = s.switchyard;
    expect(v.by_criticality.Critical).toMatchObject({ sent: 1, ok: 1, shed: 0 });
    expect(v.by_criticality.Sheddable).toMatchObject({ sent: 1, ok: 0, shed: 1 });
    expect(v.endpoints.served).toEqual({ a: 1, b: 1 });
    expect(v.endpoints.running_spread_mean).toBe(1);
    expect(v.endpoints.running_spread_max).toBe(2);
    expect(v.endpoints.waiting_max).toBe(2);
    expect(v.output_tokens_per_sec).toBe(20);
    expect(v.prefix_cache_hit_pct).toBe(50);
  });

  it("judges the targets at the step closest to 85 %", () => {
    expect(targetLoad([30, 50, 70, 85, 100, 110])).toBe(85);
    expect(targetLoad([50, 110])).toBe(110);
    const p = (mode: string, load: number, ttft: number, tok: number): AggregatePoint =>
      ({
        ...aggregate([])[0],
        mode,
        load_pct: load,
        ttft_p90_ms: ttft,
        output_tokens_per_sec: tok,
        critical_ttft_p90_ms: ttft,
        shed: 0,
        sheddable_shed: 0,
        critical_shed: 0,
      }) as AggregatePoint;
    const checks = checkTargets(
      [p("round-robin", 85, 1000, 100), p("least-request", 85, 600, 100), p("switchyard", 85, 400, 101)],
      [85],
    );
    expect(checks.find((c) => c.name.includes("round-robin") && c.name.includes("TTFT"))?.met).toBe(true);
    expect(checks.find((c) => c.name.includes("least-request") && c.name.includes("TTFT"))?.met).toBe(true);
    const worse = checkTargets(
      [p("round-robin", 85, 1000, 100), p("least-request", 85, 300, 100), p("switchyard", 85, 600, 90)],
      [85],
    );
    expect(worse.filter((c) => c.met === false).length).toBe(4);
  });
});

describe("SVG line chart", () => {
  it("is well-formed XML with exactly one path per series, a legend entry per series, and axis ticks", () => {
    const svg = renderLineChart({
      title: "TTFT <p90> & friends",
      xLabel: "load %",
      yLabel: "ms",
      series: [
        {
          name: "round-robin",
          color: "#d62728",
          points: [
            [30, 100],
            [85, 900],
            [110, 2000],
          ],
        },
        {
          name: "least-request",
          color: "#ff7f0e",
          points: [
            [30, 90],
            [85, 500],
            [110, Number.NaN],
          ],
        },
        {
          name: "switchyard",
          color: "#1f77b4",
          points: [
            [30, 80],
            [85, 300],
            [110, 700],
          ],
        },
      ],
    });
    const elements = parseXmlElements(svg);
    expect(elements[0]).toBe("svg");
    expect(elements.filter((e) => e === "path").length).toBe(3);
    expect(svg).toContain("TTFT &lt;p90&gt; &amp; friends");
    for (const name of ["round-robin", "least-request", "switchyard"]) expect(svg).toContain(`>${name}</text>`);
    // The NaN point is skipped: 3 + 2 + 3 markers.
    expect(elements.filter((e) => e === "circle").length).toBe(8);
  });

  it("the XML checker itself rejects broken documents", () => {
    expect(() => parseXmlElements("<svg><g></svg>")).toThrow();
    expect(() => parseXmlElements("<svg>a & b</svg>")).toThrow();
    expect(() => parseXmlElements("<svg/><svg/>")).toThrow();
  });

  it("picks 1/2/5 ticks that cover the data", () => {
    expect(niceTicks(0, 97)).toEqual([0, 20, 40, 60, 80, 100]);
    const t = niceTicks(30, 110);
    expect(t[0]).toBeLessThanOrEqual(30);
    expect(t.at(-1)).toBeGreaterThanOrEqual(110);
  });
});

describe("fleet and backends", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("makes one pod twice as slow and one 1.5× slower", () => {
    expect(podSpeeds(8)).toEqual([1, 1, 1, 1.5, 1, 1, 1, 2]);
    expect(podSpeeds(2)).toEqual([1, 2]);
  });

  it("maps the fleet onto llm-d-inference-sim's flags, scaling a slow pod's latencies", () => {
    const pod = { name: "sim-8", address: "127.0.0.1", port: 8007, speed: 2, loras: ["a", "b", "c"], maxLoras: 2 };
    const args = llmdArgs(pod, H100_SCALED, 7);
    const flag = (name: string) => args[args.indexOf(name) + 1];
    expect(flag("--port")).toBe("8007");
    expect(flag("--inter-token-latency")).toBe("24ms");
    expect(flag("--prefill-time-per-token")).toBe("300us");
    expect(flag("--latency-calculator")).toBe("per-token");
    expect(flag("--max-num-seqs")).toBe("8");
    expect(flag("--max-loras")).toBe("2");
    expect(args).toContain("--zmq-endpoint=");
    expect(flag("--kv-cache-size")).toBe("2048");
    expect(args).toContain("--enable-kvcache");
    expect(args).toContain("--force-dummy-tokenizer");
    const lora = args.slice(args.indexOf("--lora-modules") + 1, args.indexOf("--lora-modules") + 4);
    expect(lora.map((s) => JSON.parse(s).name)).toEqual(["a", "b", "c"]);
    expect(goDuration(0.15)).toBe("150us");
  });

  it("explains how to install llm-d-inference-sim when it is missing, and finds it on PATH", () => {
    const empty = mkdtempSync(join(tmpdir(), "sy-bench-path-"));
    dirs.push(empty);
    const env = { PATH: empty, HOME: empty, SWITCHYARD_TOOLS: empty };
    expect(() => findLlmdBinary("", env)).toThrow(ConfigError);
    expect(() => findLlmdBinary("", env)).toThrow(/npm run setup:tools -- llm-d-inference-sim/);
    expect(() => findLlmdBinary(join(empty, "nope"), env)).toThrow(/not found or not executable/);
    const bin = join(empty, "llm-d-inference-sim");
    writeFileSync(bin, "#!/bin/sh\n");
    chmodSync(bin, 0o755);
    expect(findLlmdBinary("", env)).toBe(bin);
  });

  it("spreads --steps evenly over the load list", () => {
    expect(pickSteps([30, 50, 70, 85, 100, 110], 2)).toEqual([30, 110]);
    expect(pickSteps([30, 50, 70, 85, 100, 110], 3)).toEqual([30, 85, 110]);
    expect(pickSteps([50, 85, 110], 0)).toEqual([50, 85, 110]);
  });
});
