/**
 * The dashboard and the alerts, proven against a REAL Prometheus (/usr/bin/prometheus, Debian package
 * `prometheus`): three vLLM simulators on 127.0.1.x (one shared port, like pods) plus one dead pod address, the EPP
 * in-process, the dev gateway in front, Prometheus scraping the EPP and the simulators every second. After a
 * bounded amount of traffic, every dashboard query and every alert expression runs through /api/v1/query: it must
 * parse and return at least one series, unless it is in ALLOWED_EMPTY with the reason.
 *
 * Waits poll Prometheus' API; nothing sleeps a fixed time. `npm run setup:tools` installs Prometheus; without it the
 * group is skipped with one line (a failure under SWITCHYARD_REQUIRE_TOOLS=1, as in CI).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { stringify } from "yaml";
import { type RunningEpp, startEpp } from "../../src/cli/epp.js";
import { type Gateway, startGateway } from "../../src/gateway/index.js";
import { silentLogger } from "../../src/observability/logger.js";
import { type Simulator, startSimulator } from "../../src/sim/index.js";
import { freshAddresses, LOOPBACK_EPP_FLAGS, resourcesYaml } from "../helpers/epp-harness.js";
import { describeWithTools } from "../helpers/tools.js";
import { alertRules, alertSignal, dashboardQueries, loadPrometheusRule } from "../observability/deploy-assets.js";

/**
 * Queries allowed to return no series here, each with the reason. Everything else must return data.
 * Keyed by the substituted expression's metric of interest (matched as a substring).
 */
const ALLOWED_EMPTY: Readonly<Record<string, string>> = {
  inference_extension_flow_control_queue_size:
    "flow control is not configured in this EPP (legacy shedding admission): no request is ever queued, so no flow has a queue gauge",
  switchyard_queue_wait_seconds_bucket:
    "observed only when the flow-control queue releases a request; this EPP admits at once",
  switchyard_rate_limited_total: "no token/request budget is configured, so nothing is rate-limited",
};

/** GIE v1.5's default profile, as shipped in deploy/examples/profiles (prefix-cache scorer included). */
const CONFIG = readFileSync(new URL("../../deploy/examples/profiles/gie-default.yaml", import.meta.url), "utf8");

interface PromResult {
  status: string;
  errorType?: string;
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

async function until<T>(what: string, deadline: number, check: () => Promise<T | undefined>): Promise<T> {
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
}

/** Starts simulators on `addresses`, all on one random high port; retries the port on EADDRINUSE. */
async function startSims(addresses: readonly string[]): Promise<{ port: number; sims: Simulator[] }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const sims: Simulator[] = [];
    try {
      for (const host of addresses)
        sims.push(
          await startSimulator({
            model: "base",
            host,
            port,
            seed: 7,
            interTokenLatencyMs: 1,
            prefillOverheadMs: 1,
            prefillTimePerTokenMs: 0.01,
            podName: `sim-${host}`,
          }),
        );
      return { port, sims };
    } catch (err) {
      await Promise.all(sims.map((s) => s.close()));
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    }
  }
  throw new Error("no free shared port for the simulators after 20 attempts");
}

describeWithTools(["prometheus"], "dashboard and alerts against a real Prometheus", (tools) => {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-prom-"));
  let sims: Simulator[] = [];
  let epp: RunningEpp | undefined;
  let gateway: Gateway | undefined;
  let prom: ChildProcess | undefined;
  let promUrl = "";
  let promLog = "";
  let routedTotal = 0;

  const query = async (expr: string): Promise<PromResult> => {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.json()) as PromResult;
  };
  const scalar = async (expr: string): Promise<number | undefined> => {
    const r = await query(expr);
    const v = r.data?.result[0]?.value[1];
    return v === undefined ? undefined : Number(v);
  };

  async function startPrometheus(config: string): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = 40_000 + Math.floor(Math.random() * 20_000);
      const child = spawn(
        tools.prometheus,
        [
          `--config.file=${config}`,
          `--storage.tsdb.path=${join(dir, `data-${attempt}`)}`,
          `--web.listen-address=127.0.0.1:${port}`,
          "--log.level=warn",
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      promLog = "";
      child.stderr?.on("data", (b: Buffer) => {
        promLog = (promLog + b.toString()).slice(-8_000);
      });
      let exited = false;
      child.once("exit", () => {
        exited = true;
      });
      prom = child;
      promUrl = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 15_000;
      while (!exited && Date.now() < deadline) {
        const ready = await fetch(`${promUrl}/-/ready`).then(
          (r) => r.ok,
          () => false,
        );
        if (ready) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      await stopPrometheus();
      if (!/address already in use/.test(promLog)) throw new Error(`prometheus did not start:\n${promLog}`);
    }
    throw new Error("no free port for prometheus after 5 attempts");
  }

  async function stopPrometheus(): Promise<void> {
    const child = prom;
    prom = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }

  /** One bounded wave of traffic through the gateway; returns how many requests the EPP routed. */
  async function wave(): Promise<number> {
    const url = gateway!.url.replace(/\/$/, "");
    const post = async (path: string, body: unknown, raw?: string) => {
      const res = await fetch(`${url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer test" },
        body: raw ?? JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      await res.arrayBuffer();
      return res.status;
    };
    const shared = "You are a helpful assistant that answers questions about trains. ".repeat(8);
    let routed = 0;
    for (let i = 0; i < 4; i++) {
      expect(
        await post("/v1/chat/completions", {
          model: "chat",
          messages: [{ role: "user", content: `${shared} question ${i}` }],
          max_tokens: 8,
        }),
      ).toBe(200);
      routed++;
    }
    for (let i = 0; i < 3; i++) {
      expect(
        await post("/v1/chat/completions", {
          model: "base",
          messages: [{ role: "user", content: `stream ${i}` }],
          max_tokens: 6,
          stream: true,
          stream_options: { include_usage: true },
        }),
      ).toBe(200);
      routed++;
    }
    expect(await post("/v1/completions", { model: "base", prompt: "Once upon a time", max_tokens: 5 })).toBe(200);
    routed++;
    // Errors last, so they fall inside every rate window: the model server's 404, then the EPP's own 400.
    expect(
      await post("/v1/chat/completions", { model: "nonexistent", messages: [{ role: "user", content: "x" }] }),
    ).toBe(404);
    routed++;
    expect(await post("/v1/chat/completions", undefined, '{"model":"base","messages":[')).toBe(400);
    return routed;
  }

  beforeAll(async () => {
    const addresses = freshAddresses(4);
    const started = await startSims(addresses.slice(0, 3));
    sims = started.sims;
    // The fourth pod has no server: its scrapes fail (scrape errors, metric age, stale alert have data).
    const resources = join(dir, "resources.yaml");
    writeFileSync(
      resources,
      resourcesYaml("pool", started.port, addresses, [
        { name: "chat", targets: [{ name: "base", weight: 1 }] },
        { name: "batch", criticality: "Sheddable" },
      ]),
    );
    epp = await startEpp(
      ["--resources", resources, "--pool-name", "pool", ...LOOPBACK_EPP_FLAGS, "--config-text", CONFIG],
      { logger: silentLogger },
    );
    gateway = await startGateway({ port: 0, epp: `127.0.0.1:${epp.grpcPort}`, logger: silentLogger });

    const rulesFile = join(dir, "rules.yaml");
    writeFileSync(rulesFile, stringify({ groups: loadPrometheusRule().spec.groups }));
    const config = join(dir, "prometheus.yml");
    writeFileSync(
      config,
      stringify({
        global: { scrape_interval: "1s", evaluation_interval: "1s", scrape_timeout: "900ms" },
        rule_files: [rulesFile],
        scrape_configs: [
          { job_name: "switchyard-epp", static_configs: [{ targets: [`127.0.0.1:${epp.metricsPort}`] }] },
          { job_name: "vllm", static_configs: [{ targets: sims.map((s) => `${s.address}:${s.port}`) }] },
        ],
      }),
    );
    await startPrometheus(config);

    const deadline = Date.now() + 40_000;
    await until("every target to be up", deadline, async () =>
      (await scalar("count(up == 1)")) === 1 + sims.length ? true : undefined,
    );
    // Two waves with a Prometheus scrape between them, so every counter and histogram has moved inside the rate window.
    for (let w = 0; w < 2; w++) {
      routedTotal += await wave();
      await until(`Prometheus to see wave ${w + 1}`, deadline, async () =>
        ((await scalar('sum(inference_objective_request_total{job="switchyard-epp"})')) ?? 0) >= routedTotal &&
        ((await scalar('sum(vllm:request_success_total{job="vllm"})')) ?? 0) >= routedTotal - 2 * (w + 1)
          ? true
          : undefined,
      );
    }
    // Alert rules are evaluated every second; wait for an evaluation that saw the traffic.
    await until("the alert rules to be evaluated", deadline, async () => {
      const res = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as {
        data: { groups: { rules: { lastEvaluation: string }[] }[] };
      };
      const rules = res.data.groups.flatMap((g) => g.rules);
      return rules.length > 0 && rules.every((r) => Date.parse(r.lastEvaluation) > Date.now() - 3_000)
        ? true
        : undefined;
    });
  }, 60_000);

  afterAll(async () => {
    await stopPrometheus();
    await gateway?.close();
    await epp?.stop(100);
    await Promise.all(sims.map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  const allowedReason = (expr: string) => Object.entries(ALLOWED_EMPTY).find(([k]) => expr.includes(k))?.[1];

  it("runs every dashboard query: each parses and returns data", async () => {
    const problems: string[] = [];
    let withData = 0;
    for (const q of dashboardQueries()) {
      const r = await query(q.expr);
      if (r.status !== "success") problems.push(`${q.panel}/${q.refId}: ${r.errorType}: ${r.error}\n  ${q.expr}`);
      else if ((r.data?.result.length ?? 0) > 0) withData++;
      else if (!allowedReason(q.expr)) problems.push(`${q.panel}/${q.refId}: no series\n  ${q.expr}`);
    }
    expect(problems).toEqual([]);
    expect(withData).toBeGreaterThan(40);
  });

  it("runs every alert: the rule loads healthy, the expression parses, its signal has data", async () => {
    const res = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as {
      data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
    };
    const loaded = res.data.groups.flatMap((g) => g.rules);
    const rules = alertRules();
    expect(loaded.map((r) => r.name).sort()).toEqual(rules.map((r) => r.alert).sort());
    for (const r of loaded) expect(`${r.name}: ${r.health} ${r.lastError ?? ""}`.trim()).toBe(`${r.name}: ok`);

    const problems: string[] = [];
    for (const rule of rules) {
      const full = await query(rule.expr);
      if (full.status !== "success") problems.push(`${rule.alert}: ${full.error}`);
      const signal = alertSignal(rule.expr)!;
      const s = await query(signal);
      if (s.status !== "success") problems.push(`${rule.alert} signal: ${s.error}`);
      else if ((s.data?.result.length ?? 0) === 0 && !allowedReason(signal))
        problems.push(`${rule.alert}: signal has no series: ${signal}`);
    }
    expect(problems).toEqual([]);
  });

  it("sees the numbers the traffic produced", async () => {
    // Exact where the test controls the count; the dead pod is never routed to and its metrics are +Inf old.
    expect(await scalar('sum(inference_objective_request_total{job="switchyard-epp"})')).toBe(routedTotal);
    expect(await scalar('sum(inference_objective_request_error_total{error_code="ModelServerError"})')).toBe(2);
    expect(await scalar('sum(inference_objective_request_error_total{error_code="BadRequest"})')).toBe(2);
    expect(await scalar('sum(inference_objective_request_total{model_name="chat",target_model_name="base"})')).toBe(8);
    expect(await scalar("max(inference_pool_ready_pods)")).toBe(3);
    expect(await scalar("max(switchyard_pool_endpoints)")).toBe(4);
    expect(await scalar("sum(switchyard_endpoint_scrape_up)")).toBe(3);
    expect(await scalar("count(switchyard_endpoint_metrics_age_seconds == +Inf)")).toBe(1);
    expect(await scalar("sum(switchyard_extproc_streams_in_flight)")).toBe(0);
    // The alert that must fire in this setup (a pod that never answers), once its `for` is over: pending now.
    const alerts = (await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as {
      data: { alerts: { labels: Record<string, string>; state: string }[] };
    };
    expect(alerts.data.alerts.map((a) => a.labels.alertname)).toContain("SwitchyardEndpointMetricsStale");
  });
});
