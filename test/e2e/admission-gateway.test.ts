/**
 * Admission control end to end THROUGH THE LOCAL GATEWAY, as real processes: two `switchyard sim` pods on
 * 127.0.95.x (one port, different addresses), `switchyard epp` with an EndpointPickerConfig holding token budgets,
 * flow control and autoscaling, and one `switchyard gateway` in front. Every request goes through the gateway's
 * HTTP port; the EPP's state is read from its /metrics and /debug/endpoints, as an operator would.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAIRNESS_ID_HEADER } from "../../src/common/constants.js";
import { type Child, Supervisor, waitFor } from "../../src/local/children.js";
import { BASE_MODEL, fleet, fleetResources, POOL_NAME, POOL_NAMESPACE, type SimPod } from "../../src/local/stack.js";
import type { DebugSnapshot } from "../../src/observability/debug.js";
import {
  pidAlive,
  portFree,
  type Reply,
  requireBuild,
  sseData,
  startSims,
  uniquePrompt,
  waitForLog,
} from "./helpers.js";

const SERVED = "x-gateway-destination-endpoint-served";
const ERROR_CODE = "x-switchyard-error-code";
const GATEWAY_ERROR = "x-switchyard-gateway-error";

// Echo mode: a reply repeats the prompt's words up to max_tokens, so a request can declare a large max_tokens yet
// really use a few tokens — the difference between the admission estimate and the reconciled usage is then visible.
// 256 KV blocks × 16 tokens: one 3680-token prompt puts a pod above the 0.8 KV saturation threshold. A batch of two
// leaves room for a Critical request next to the long one; 50 ms per token keeps a held request open ~20 s.
const SIM_ARGS = [
  ...["--mode", "echo", "--max-num-seqs", "2", "--kv-cache-size", "256", "--max-model-len", "4096"],
  ...["--inter-token-latency", "50ms"],
];

const TPM = 3000;
const TARGET_KV = 50;

// Metrics count as fresh for 2 s (GIE: 200 ms): on a shared 2-core machine a starved scrape loop would otherwise
// make idle pods look stale, i.e. saturated, and the shed/queue assertions would test the machine.
const EPP_CONFIG = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: utilization-detector
    parameters: {metricsStalenessThreshold: 2s}
  - type: queue-scorer
  - type: kv-cache-utilization-scorer
  - type: max-score-picker
schedulingProfiles:
  - name: default
    plugins:
      - {pluginRef: queue-scorer, weight: 2}
      - {pluginRef: kv-cache-utilization-scorer, weight: 2}
      - {pluginRef: max-score-picker}
admission:
  budgets:
    - {name: per-tenant, tenant: "*", tokensPerMinute: ${TPM}}
flowControl:
  defaultRequestTTL: 25s
autoscaling:
  minReplicas: 1
  maxReplicas: 8
  targetGpuCacheUtilization: ${TARGET_KV}
  scaleDownStabilizationWindow: 1s
  interval: 100ms
`;

let dir: string;
let sup: Supervisor;
let pods: SimPod[] = [];
let eppPorts: number[] = [];
let metricsBase: string;
let gatewayUrl: string;
let gatewayPort: number;
/** Requests held open by a test; aborted by that test, and by afterAll if the test failed half-way. */
const open = new Set<AbortController>();

const addr = (p: SimPod) => `${p.address}:${p.port}`;

/** POSTs JSON through `url` as `tenant` and reads the whole answer. */
async function send(url: string, body: unknown, tenant?: string, signal?: AbortSignal): Promise<Reply> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (tenant !== undefined) headers[FAIRNESS_ID_HEADER] = tenant;
  const res = await fetch(url, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    signal: signal ?? AbortSignal.timeout(28_000),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

const chat = (model: string, content: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: "user", content }],
  max_tokens: 4,
  ...extra,
});

interface Sample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of one metric in the EPP's Prometheus text exposition. */
async function samples(name: string): Promise<Sample[]> {
  const text = await (await fetch(`${metricsBase}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith(name) || (line[name.length] !== "{" && line[name.length] !== " ")) continue;
    const brace = line.indexOf("}");
    const labels: Record<string, string> = {};
    if (line[name.length] === "{")
      for (const m of line.slice(name.length + 1, brace).matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g))
        labels[m[1]!] = m[2]!;
    out.push({ labels, value: Number(line.slice((brace === -1 ? name.length : brace + 1) + 1).split(" ")[0]) });
  }
  return out;
}

/** Sum of a metric's samples whose labels include `match`. */
async function total(name: string, match: Readonly<Record<string, string>> = {}): Promise<number> {
  return (await samples(name))
    .filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

/** Polls a metric sum until `check` holds (waitFor needs a truthy value, so a 0 travels boxed). */
async function untilMetric(
  what: string,
  name: string,
  match: Readonly<Record<string, string>>,
  check: (v: number) => boolean,
  timeoutMs = 15_000,
): Promise<number> {
  const hit = await waitFor(
    what,
    async () => {
      const v = await total(name, match);
      return check(v) ? { v } : undefined;
    },
    timeoutMs,
    50,
  );
  return hit.v;
}

const queued = () => total("inference_extension_flow_control_queue_size");

async function snapshot(): Promise<DebugSnapshot> {
  return (await (
    await fetch(`${metricsBase}/debug/endpoints`, { signal: AbortSignal.timeout(5000) })
  ).json()) as DebugSnapshot;
}

/** Polls /debug/endpoints until `check` holds: the EPP's view catches up with the pods through scraping. */
function untilEpp(what: string, check: (s: DebugSnapshot) => boolean, timeoutMs = 15_000): Promise<DebugSnapshot> {
  return waitFor(
    what,
    async () => {
      const s = await snapshot();
      return check(s) ? s : undefined;
    },
    timeoutMs,
    50,
  );
}

/**
 * Other traffic straight to every pod (not through the gateway, so not admitted or charged by the EPP): one long
 * streaming completion each, ~3680 of 4096 KV token slots, resolved once the sim has admitted it (headers flushed).
 */
async function fillEveryPod(): Promise<AbortController[]> {
  const held = await Promise.all(
    pods.map(async (p) => {
      const ac = new AbortController();
      open.add(ac);
      const res = await fetch(`http://${addr(p)}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: BASE_MODEL, prompt: uniquePrompt(3680, p.name), max_tokens: 380, stream: true }),
        signal: ac.signal,
      });
      expect(res.status).toBe(200);
      // Drain in the background so the sim's writes never block; the abort ends it.
      res.body?.pipeTo(new WritableStream()).catch(() => {});
      return ac;
    }),
  );
  await untilEpp(
    "the EPP to see every pod's KV cache full (pool saturated)",
    (s) => s.saturated && s.endpoints.every((e) => e.fresh && (e.metrics?.kvCacheUsage ?? 0) >= 0.8),
  );
  return held;
}

function releaseAll(): void {
  for (const ac of open) ac.abort();
  open.clear();
}

function untilIdle(): Promise<DebugSnapshot> {
  return untilEpp(
    "every pod to be idle",
    (s) =>
      !s.saturated &&
      s.endpoints.every(
        (e) => e.fresh && e.metrics !== null && e.metrics.running === 0 && e.metrics.kvCacheUsage < 0.05,
      ),
  );
}

describe("admission control through the local gateway (real processes)", () => {
  beforeAll(async () => {
    requireBuild();
    dir = mkdtempSync(join(tmpdir(), "switchyard-e2e-admission-gw-"));
    sup = new Supervisor(dir);
    ({ pods } = await startSims(
      sup,
      (port) => fleet({ count: 2, addressPrefix: "127.0.95", port, loraPods: 0, speeds: [1] }),
      SIM_ARGS,
    ));
    const resources = join(dir, "resources.yaml");
    writeFileSync(resources, fleetResources(pods));
    writeFileSync(join(dir, "epp-config.yaml"), EPP_CONFIG);
    const epp = sup.start("epp", [
      "epp",
      ...["--resources", resources, "--pool-name", POOL_NAME, "--pool-namespace", POOL_NAMESPACE],
      ...["--host", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0"],
      ...["--secure-serving=false", "--config-file", join(dir, "epp-config.yaml"), "--log-level", "info"],
      "--enable-debug-endpoints",
    ]);
    const started = await waitForLog(sup, epp, "switchyard epp started");
    eppPorts = [Number(started.grpcPort), Number(started.healthPort), Number(started.metricsPort)];
    metricsBase = `http://127.0.0.1:${started.metricsPort}`;
    // FailClose: an EPP failure must surface as a gateway 503, never as a silently round-robined success. The EPP
    // message timeout is raised above Envoy's 10 s default only so a slow machine cannot cut a request that is
    // (correctly) still waiting in the flow-control queue.
    const gateway = sup.start("gateway", [
      "gateway",
      ...["--host", "127.0.0.1", "--port", "0", "--log-level", "info", "--failure-mode", "FailClose"],
      ...["--epp", `127.0.0.1:${started.grpcPort}`, "--epp-timeout", "28s", "--endpoints", pods.map(addr).join(",")],
    ]);
    gatewayUrl = String((await waitForLog(sup, gateway, "gateway listening")).url).replace(/\/$/, "");
    gatewayPort = Number(new URL(gatewayUrl).port);
    await untilEpp(
      "fresh metrics from every pod",
      (s) => s.endpoints.length === pods.length && s.endpoints.every((e) => e.fresh) && !s.saturated,
    );
  }, 30_000);

  afterAll(async () => {
    releaseAll();
    await sup?.stopAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("rate-limits a tenant over its token budget with 429 and x-ratelimit headers while another tenant passes", async () => {
    // ~2400 prompt tokens + 8: most of alpha's 3000-token minute. Critical, so only the budget can refuse it.
    const big = () => chat("llama3", uniquePrompt(2400, "budget"), { max_tokens: 8 });
    const first = await send(`${gatewayUrl}/v1/chat/completions`, big(), "alpha");
    expect(first.status, first.text).toBe(200);

    // Needs ~2000 tokens; at most ~600 are left plus 50 per second of refill: refused for the next ~25 s.
    const over = await send(
      `${gatewayUrl}/v1/chat/completions`,
      chat("llama3", "one more please", { max_tokens: 2000 }),
      "alpha",
    );
    expect(over.status).toBe(429);
    expect(over.headers.get(GATEWAY_ERROR)).toBeNull(); // the EPP's answer, not a gateway failure
    expect(over.headers.get(SERVED)).toBeNull();
    expect(over.headers.get(ERROR_CODE)).toBe("SY_RATE_LIMITED");
    expect(over.text).toMatch(/^inference error: ResourceExhausted - token budget "per-tenant" exhausted/);
    expect(over.headers.get("x-ratelimit-limit-tokens")).toBe(String(TPM));
    const remaining = Number(over.headers.get("x-ratelimit-remaining-tokens"));
    expect(remaining).toBeGreaterThanOrEqual(0);
    expect(remaining).toBeLessThan(2000);
    expect(over.headers.get("x-ratelimit-reset-tokens")).toMatch(/^(\d+m)?\d+(\.\d+)?s$/);
    const retryAfter = Number(over.headers.get("retry-after"));
    expect(Number.isInteger(retryAfter)).toBe(true);
    // ≥ ~1400 tokens short at 50 per second: about half a minute; loose bounds keep a slow machine from mattering.
    expect(retryAfter).toBeGreaterThanOrEqual(10);
    expect(retryAfter).toBeLessThanOrEqual(60);

    // Another tenant has its own budget ("*"): the same large request passes.
    const beta = await send(`${gatewayUrl}/v1/chat/completions`, big(), "beta");
    expect(beta.status, beta.text).toBe(200);
    expect(pods.map(addr)).toContain(beta.headers.get(SERVED));
    expect(await total("switchyard_rate_limited_total", { tenant: "alpha", limit: "tpm" })).toBe(1);
    expect(await total("switchyard_rate_limited_total", { tenant: "beta" })).toBe(0);
  });

  it("reconciles a streamed request's charge with its include_usage chunk", async () => {
    const match = (kind: string) => ({ model_name: BASE_MODEL, kind });
    expect(await total("switchyard_budget_tokens_total", match("reconciled"))).toBe(0);
    // Declares 200 completion tokens; the echo sim answers with the message's five words.
    const r = await send(
      `${gatewayUrl}/v1/chat/completions`,
      chat(BASE_MODEL, "one two three four five", {
        max_tokens: 200,
        stream: true,
        stream_options: { include_usage: true },
      }),
      "gamma",
    );
    expect(r.status, r.text).toBe(200);
    const data = sseData(r.text);
    expect(data.at(-1)).toBe("[DONE]");
    const usage = JSON.parse(data.at(-2)!).usage as { completion_tokens: number; total_tokens: number };
    expect(usage.completion_tokens).toBe(5);

    const estimated = await total("switchyard_budget_tokens_total", match("estimated"));
    expect(estimated).toBeGreaterThanOrEqual(200);
    // The EPP settles the charge when the response stream ends, which may be just after the client saw [DONE].
    const reconciled = await untilMetric(
      "the reconciled charge",
      "switchyard_budget_tokens_total",
      match("reconciled"),
      (v) => v > 0,
    );
    expect(reconciled).toBe(usage.total_tokens);
    // The estimate counted the 200 declared tokens; only the 5 used ones (plus the templated prompt) stay charged.
    expect(estimated - reconciled).toBeGreaterThanOrEqual(150);
  });

  it("queues Standard while saturated, sheds Sheddable, passes Critical, and drops a disconnected waiter", async () => {
    // Control: with capacity, the same Sheddable request is served.
    const control = await send(`${gatewayUrl}/v1/chat/completions`, chat("llama3-batch", "hello there"), "fc");
    expect(control.status, control.text).toBe(200);

    const held = await fillEveryPod();

    let settled = false;
    const standard = send(`${gatewayUrl}/v1/chat/completions`, chat("llama3-standard", "queued words"), "fc-a").finally(
      () => {
        settled = true;
      },
    );
    await untilMetric(
      "the Standard request to be queued",
      "inference_extension_flow_control_queue_size",
      {},
      (v) => v === 1,
    );
    expect(await total("inference_extension_flow_control_queue_size", { fairness_id: "fc-a" })).toBe(1);

    // Sheddable is refused while the pool is saturated (and others wait) …
    const shed = await send(`${gatewayUrl}/v1/chat/completions`, chat("llama3-batch", "hello there"), "fc");
    expect(shed.status).toBe(429);
    expect(shed.headers.get(GATEWAY_ERROR)).toBeNull();
    expect(shed.headers.get(ERROR_CODE)).toBe("SY_SHED");

    // … Critical bypasses the queue and completes next to the long requests …
    const critical = await send(`${gatewayUrl}/v1/chat/completions`, chat("llama3", "critical words here"), "fc");
    expect(critical.status, critical.text).toBe(200);
    expect(JSON.parse(critical.text).choices[0].message.content).toBe("critical words here");

    // … while the Standard request is still waiting, its stream to the EPP open.
    expect(settled).toBe(false);
    expect(await queued()).toBe(1);

    // A second waiter whose client goes away leaves the queue at once.
    const leaver = new AbortController();
    const gone = send(
      `${gatewayUrl}/v1/chat/completions`,
      chat("llama3-standard", "never mind"),
      "fc-b",
      leaver.signal,
    );
    await untilMetric(
      "the second request to be queued",
      "inference_extension_flow_control_queue_size",
      {},
      (v) => v === 2,
    );
    leaver.abort();
    await expect(gone).rejects.toThrow();
    await untilMetric(
      "the disconnected request to leave the queue",
      "switchyard_queue_wait_seconds_count",
      { outcome: "client_disconnected" },
      (v) => v === 1,
    );
    expect(await total("inference_extension_flow_control_queue_size", { fairness_id: "fc-b" })).toBe(0);
    // GIE's histogram names the outcome too.
    const gieQueueDuration = "inference_extension_flow_control_request_queue_duration_seconds_count";
    expect(await total(gieQueueDuration, { outcome: "EvictedContextCancelled", fairness_id: "fc-b" })).toBe(1);
    expect(await queued()).toBe(1);
    expect(settled).toBe(false);

    // Capacity returns: the waiting Standard request is dispatched, scheduled and served.
    for (const ac of held) {
      ac.abort();
      open.delete(ac);
    }
    const served = await standard;
    expect(served.status, served.text).toBe(200);
    expect(pods.map(addr)).toContain(served.headers.get(SERVED));
    expect(JSON.parse(served.text).choices[0].message.content).toBe("queued words");
    expect(await queued()).toBe(0);
    expect(await total("switchyard_queue_wait_seconds_count", { outcome: "dispatched" })).toBe(1);
    expect(await total("switchyard_requests_shed_total", { reason: "saturated" })).toBe(1);
    expect(await total("switchyard_requests_shed_total", { reason: "client_disconnected" })).toBe(1);
    await untilIdle();
  });

  it("recommends more replicas while KV usage is high, and fewer again after it falls", async () => {
    // Start from an idle pool even when an earlier test failed with requests still held.
    releaseAll();
    await untilIdle();
    const pool = { inference_pool: POOL_NAME };
    // Idle: average KV ≈ 0 → the minimum.
    await untilMetric("the idle recommendation", "switchyard_pool_recommended_replicas", pool, (v) => v === 1);

    const held = await fillEveryPod();
    // Both pods at KV in [0.8, 1]: ceil(2 × kv / 0.5) = 4.
    await untilMetric("the recommendation to rise", "switchyard_pool_recommended_replicas", pool, (v) => v === 4);

    for (const ac of held) {
      ac.abort();
      open.delete(ac);
    }
    await untilIdle();
    // Scale-down waits out the 1 s stabilisation window, then follows the idle pool.
    await untilMetric("the recommendation to fall", "switchyard_pool_recommended_replicas", pool, (v) => v === 1);
  });

  it("leaves nothing running: every child exits and every port is free", async () => {
    releaseAll();
    const children: Child[] = [...sup.children()];
    await sup.stopAll();
    for (const c of children) {
      expect(c.process.pid).toBeTypeOf("number");
      expect(pidAlive(c.process.pid!), `${c.name} (pid ${c.process.pid})`).toBe(false);
    }
    for (const p of pods) expect(await portFree(p.address, p.port), addr(p)).toBe(true);
    for (const port of [...eppPorts, gatewayPort])
      expect(await portFree("127.0.0.1", port), `127.0.0.1:${port}`).toBe(true);
  });
});
