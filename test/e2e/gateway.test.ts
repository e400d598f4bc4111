/**
 * The local stack end to end, as real processes: four `switchyard sim` pods on 127.0.94.x (one port, different
 * addresses), `switchyard epp` reading their resources, and three `switchyard gateway`s in front — EPP routing with
 * FailOpen, EPP routing with FailClose, and the round-robin baseline. Every assertion goes through HTTP.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Child, Supervisor, waitFor } from "../../src/local/children.js";
import { BASE_MODEL, fleet, fleetResources, POOL_NAME, POOL_NAMESPACE, type SimPod } from "../../src/local/stack.js";
import type { DebugSnapshot } from "../../src/observability/debug.js";
import { pidAlive, portFree, post, requireBuild, sseData, startSims, uniquePrompt, waitForLog } from "./helpers.js";

const SERVED = "x-gateway-destination-endpoint-served";
const GATEWAY_ERROR = "x-switchyard-gateway-error";

// Small KV caches (256 blocks × 16 tokens) so one long prompt visibly loads a pod (kv scorer) and one huge prompt
// saturates it (kv ≥ 0.8); a batch of 16 so small requests never queue (the queue scorer would then legitimately
// prefer a pod holding long requests); 30 ms per token so long requests stay open while we look.
const SIM_ARGS = [
  "--max-num-seqs",
  "16",
  "--kv-cache-size",
  "256",
  "--max-model-len",
  "4096",
  "--inter-token-latency",
  "30ms",
];

// GIE's default pipeline (queue ×2, kv ×2, lora-affinity ×1, max-score), with one change: metrics count as fresh
// for 2 s instead of 200 ms. On a shared 2-core machine a starved scrape loop would otherwise make idle pods look
// stale (score 0, saturated), and the routing assertions below would test the machine, not the picker.
const EPP_CONFIG = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: utilization-detector
    parameters: {metricsStalenessThreshold: 2s}
  - type: queue-scorer
  - type: kv-cache-utilization-scorer
  - type: lora-affinity-scorer
  - type: max-score-picker
schedulingProfiles:
  - name: default
    plugins:
      - {pluginRef: queue-scorer, weight: 2}
      - {pluginRef: kv-cache-utilization-scorer, weight: 2}
      - {pluginRef: lora-affinity-scorer, weight: 1}
      - {pluginRef: max-score-picker}
`;

interface RunningGateway {
  readonly child: Child;
  readonly url: string;
  readonly port: number;
}

let dir: string;
let sup: Supervisor;
let pods: SimPod[] = [];
let epp: Child;
let eppPorts: number[] = [];
let debugUrl: string;
let failOpen: RunningGateway;
let failClose: RunningGateway;
let roundRobin: RunningGateway;
/** Requests held open by a test; aborted by that test, and by afterAll if the test failed half-way. */
const open = new Set<AbortController>();

const addr = (p: SimPod) => `${p.address}:${p.port}`;

async function startGateway(name: string, args: readonly string[]): Promise<RunningGateway> {
  const child = sup.start(name, ["gateway", "--host", "127.0.0.1", "--port", "0", "--log-level", "info", ...args]);
  const line = await waitForLog(sup, child, "gateway listening");
  const url = String(line.url).replace(/\/$/, "");
  return { child, url, port: Number(new URL(url).port) };
}

async function snapshot(): Promise<DebugSnapshot> {
  return (await (await fetch(debugUrl, { signal: AbortSignal.timeout(5000) })).json()) as DebugSnapshot;
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

const kvOf = (s: DebugSnapshot, endpoint: string) => s.endpoints.find((e) => e.key === endpoint)?.metrics?.kvCacheUsage;

/** Opens a streaming completion and resolves once response headers arrive (the sim flushes them at admission). */
async function holdOpen(url: string, model: string, promptTokens: number, maxTokens: number) {
  const ac = new AbortController();
  open.add(ac);
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt: uniquePrompt(promptTokens, model), max_tokens: maxTokens, stream: true }),
    signal: ac.signal,
  });
  return { res, ac, served: res.headers.get(SERVED) ?? "" };
}

function releaseAll(): void {
  for (const ac of open) ac.abort();
  open.clear();
}

/** After aborting held requests: every pod is back to idle in the EPP's eyes before the next scenario. */
function untilIdle(): Promise<DebugSnapshot> {
  return untilEpp("every pod to be idle", (s) =>
    s.endpoints.every((e) => e.fresh && e.metrics !== null && e.metrics.running === 0 && e.metrics.kvCacheUsage < 0.05),
  );
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: "user", content: "Write a haiku about GPUs" }],
  max_tokens: 6,
  ...extra,
});

describe("local stack through the gateway (real processes)", () => {
  beforeAll(async () => {
    requireBuild();
    dir = mkdtempSync(join(tmpdir(), "switchyard-e2e-gateway-"));
    sup = new Supervisor(dir);
    ({ pods } = await startSims(
      sup,
      (port) => fleet({ count: 4, addressPrefix: "127.0.94", port, loraPods: 2, speeds: [1] }),
      SIM_ARGS,
    ));
    const resources = join(dir, "resources.yaml");
    writeFileSync(resources, fleetResources(pods));
    writeFileSync(join(dir, "epp-config.yaml"), EPP_CONFIG);
    epp = sup.start("epp", [
      "epp",
      ...["--resources", resources, "--pool-name", POOL_NAME, "--pool-namespace", POOL_NAMESPACE],
      ...["--host", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0"],
      "--enable-debug-endpoints",
      ...["--secure-serving=false", "--config-file", join(dir, "epp-config.yaml"), "--log-level", "info"],
    ]);
    const started = await waitForLog(sup, epp, "switchyard epp started");
    eppPorts = [Number(started.grpcPort), Number(started.healthPort), Number(started.metricsPort)];
    debugUrl = `http://127.0.0.1:${started.metricsPort}/debug/endpoints`;
    const endpoints = pods.map(addr).join(",");
    const eppTarget = `127.0.0.1:${started.grpcPort}`;
    [failOpen, failClose, roundRobin] = await Promise.all([
      startGateway("gateway-failopen", ["--epp", eppTarget, "--failure-mode", "FailOpen", "--endpoints", endpoints]),
      startGateway("gateway-failclose", ["--epp", eppTarget, "--failure-mode", "FailClose", "--endpoints", endpoints]),
      startGateway("gateway-rr", ["--lb", "round-robin", "--endpoints", endpoints]),
    ]);
    await untilEpp(
      "fresh metrics from every pod",
      (s) => s.endpoints.length === 4 && s.endpoints.every((e) => e.fresh),
    );
  }, 60_000);

  afterAll(async () => {
    releaseAll();
    await sup?.stopAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("serves chat completions, non-streaming, on the pod it names", async () => {
    for (const gw of [failOpen, failClose]) {
      const r = await post(`${gw.url}/v1/chat/completions`, chat("llama3"));
      expect(r.status).toBe(200);
      const served = r.headers.get(SERVED);
      const pod = pods.find((p) => addr(p) === served);
      expect(pod, `served ${served}`).toBeDefined();
      // The sim stamps its own pod name: the header names the pod that really answered.
      expect(r.headers.get("x-inference-pod")).toBe(pod!.name);
      const body = JSON.parse(r.text);
      expect(body.object).toBe("chat.completion");
      expect(body.choices[0].message.role).toBe("assistant");
      expect(body.choices[0].message.content.split(" ")).toHaveLength(6);
      expect(body.usage.completion_tokens).toBe(6);
    }
  });

  it("streams chat completions chunk by chunk with usage and [DONE]", async () => {
    const r = await post(
      `${failOpen.url}/v1/chat/completions`,
      chat("llama3-standard", { stream: true, stream_options: { include_usage: true } }),
    );
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(pods.map(addr)).toContain(r.headers.get(SERVED));
    const data = sseData(r.text);
    expect(data.at(-1)).toBe("[DONE]");
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    expect(text.trim().split(/\s+/)).toHaveLength(6);
    expect(chunks.at(-1).usage.completion_tokens).toBe(6);
  });

  it("serves legacy completions, streaming and not", async () => {
    const plain = await post(`${failOpen.url}/v1/completions`, { model: "llama3", prompt: "Say hi", max_tokens: 5 });
    expect(plain.status).toBe(200);
    expect(pods.map(addr)).toContain(plain.headers.get(SERVED));
    const body = JSON.parse(plain.text);
    expect(body.object).toBe("text_completion");
    expect(body.choices[0].text.trim().split(/\s+/)).toHaveLength(5);

    const streamed = await post(`${failOpen.url}/v1/completions`, {
      model: "llama3",
      prompt: "Say hi",
      max_tokens: 5,
      stream: true,
    });
    expect(streamed.status).toBe(200);
    expect(pods.map(addr)).toContain(streamed.headers.get(SERVED));
    const data = sseData(streamed.text);
    expect(data.at(-1)).toBe("[DONE]");
    const words = data
      .slice(0, -1)
      .map((d) => JSON.parse(d).choices[0]?.text ?? "")
      .join("");
    expect(words.trim().split(/\s+/)).toHaveLength(5);
  });

  it("sends LoRA adapter requests only to pods that have the adapter", async () => {
    const loraPods = new Set(pods.filter((p) => p.loras.length > 0).map(addr));
    expect(loraPods.size).toBe(2);
    const served: string[] = [];
    // Sequential, then concurrent: both must avoid pods 3 and 4, which would answer 404 for an unknown adapter.
    for (let i = 0; i < 4; i++) {
      const r = await post(`${failOpen.url}/v1/chat/completions`, chat(i % 2 ? "sql-lora" : "tweet-summary-lora"));
      expect(r.status, r.text).toBe(200);
      served.push(r.headers.get(SERVED) ?? "");
    }
    const burst = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        post(`${failOpen.url}/v1/completions`, {
          model: i % 2 ? "sql-lora" : "tweet-summary-lora",
          prompt: "x",
          max_tokens: 3,
        }),
      ),
    );
    for (const r of burst) {
      expect(r.status, r.text).toBe(200);
      served.push(r.headers.get(SERVED) ?? "");
    }
    for (const s of served) expect(loraPods).toContain(s);
  });

  /**
   * Two long requests, then a burst of twelve short ones. The EPP must keep the short ones off the two pods busy
   * with long work while two pods sit idle; round-robin puts half of them there by construction.
   *
   * The long prompts fill ~60% of a pod's KV cache. They must weigh more than 40%: GIE's lora-affinity scorer (kept
   * exactly) gives even base-model requests a 0.8 bonus on pods with free adapter slots (pods 1-2 here), which the
   * ×2 kv scorer only outweighs beyond a 0.4 usage difference.
   */
  async function unevenBurst(gw: RunningGateway, waitForEpp: boolean) {
    // The base model: the round-robin gateway has no EPP to rewrite "llama3" for the pods.
    const longs: string[] = [];
    for (let i = 0; i < 2; i++) {
      const { res, served } = await holdOpen(gw.url, BASE_MODEL, 2400, 1500);
      expect(res.status).toBe(200);
      longs.push(served);
      if (waitForEpp)
        await untilEpp(`the EPP to see the long request on ${served}`, (s) => (kvOf(s, served) ?? 0) >= 0.5);
    }
    const burst = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        post(`${gw.url}/v1/completions`, { model: BASE_MODEL, prompt: `q${i}`, max_tokens: 4 }),
      ),
    );
    for (const r of burst) expect(r.status).toBe(200);
    releaseAll();
    await untilIdle();
    return { longs, small: burst.map((r) => r.headers.get(SERVED) ?? "") };
  }

  it("spreads an uneven burst by load, where round-robin does not", async () => {
    const all = pods.map(addr);
    const byEpp = await unevenBurst(failOpen, true);
    expect(new Set(byEpp.longs).size, "the second long request went to an idle pod").toBe(2);
    expect(byEpp.small.every((s) => all.includes(s))).toBe(true);
    const onBusy = byEpp.small.filter((s) => byEpp.longs.includes(s));
    expect(onBusy, `EPP routed ${byEpp.small.join(" ")} with longs on ${byEpp.longs.join(" ")}`).toEqual([]);

    const byRoundRobin = await unevenBurst(roundRobin, false);
    const rrOnBusy = byRoundRobin.small.filter((s) => byRoundRobin.longs.includes(s));
    // Round-robin cycles over all four pods whatever their load: 6 of the 12 land next to the long requests.
    expect(rrOnBusy).toHaveLength(6);
  });

  it("sheds Sheddable with 429 while Critical passes when the fleet is saturated", async () => {
    // Control: not saturated, so the same Sheddable request is served.
    const before = await post(`${failOpen.url}/v1/chat/completions`, chat("llama3-batch"));
    expect(before.status).toBe(200);

    // Other traffic fills every pod's KV cache directly (~3680 of 4096 token slots): kv ≥ 0.8 everywhere.
    const holders = await Promise.all(pods.map((p) => holdOpen(`http://${addr(p)}`, BASE_MODEL, 3680, 380)));
    for (const h of holders) expect(h.res.status).toBe(200);
    const saturated = await untilEpp("the EPP to report the pool saturated", (s) => s.saturated);
    expect(saturated.endpoints.every((e) => (e.metrics?.kvCacheUsage ?? 0) >= 0.8)).toBe(true);

    const shed = await post(`${failOpen.url}/v1/chat/completions`, chat("llama3-batch"));
    expect(shed.status).toBe(429);
    expect(shed.headers.get(GATEWAY_ERROR)).toBeNull(); // the EPP's answer, not a gateway failure
    expect(shed.headers.get(SERVED)).toBeNull();

    // Critical is admitted and routed while saturated (streaming headers arrive at admission) …
    const critical = await holdOpen(failOpen.url, "llama3", 8, 4);
    expect(critical.res.status).toBe(200);
    expect(pods.map(addr)).toContain(critical.served);
    // … and the pool is still saturated after it: Sheddable is still refused.
    expect((await post(`${failOpen.url}/v1/chat/completions`, chat("llama3-batch"))).status).toBe(429);

    // Release the fleet; the Critical request then runs to completion.
    for (const h of holders) h.ac.abort();
    const data = sseData(await critical.res.text());
    expect(data.at(-1)).toBe("[DONE]");
    open.delete(critical.ac);
    releaseAll();
    await untilIdle();
    expect((await post(`${failOpen.url}/v1/chat/completions`, chat("llama3-batch"))).status).toBe(200);
  });

  it("FailOpen routes round-robin and FailClose answers 503 once the EPP process is killed", async () => {
    epp.process.kill("SIGKILL");
    expect(await epp.exited).toBe("SIGKILL");

    const closed = await post(`${failClose.url}/v1/chat/completions`, chat("llama3"));
    expect(closed.status).toBe(503);
    expect(closed.headers.get(GATEWAY_ERROR)).toBe("GW_EPP_UNAVAILABLE");

    const counts = new Map<string, number>();
    for (let i = 0; i < 8; i++) {
      // Fail-open skips the EPP, so no rewrite: use the base model name the pods serve.
      const r = await post(`${failOpen.url}/v1/chat/completions`, chat(BASE_MODEL));
      expect(r.status, r.text).toBe(200);
      const s = r.headers.get(SERVED) ?? "";
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    expect(Object.fromEntries(counts)).toEqual(Object.fromEntries(pods.map((p) => [addr(p), 2])));
  });

  it("leaves nothing running: every child exits and every port is free", async () => {
    releaseAll();
    const children = [...sup.children()];
    await sup.stopAll();
    for (const c of children) {
      expect(c.process.pid).toBeTypeOf("number");
      expect(pidAlive(c.process.pid!), `${c.name} (pid ${c.process.pid})`).toBe(false);
    }
    for (const p of pods) expect(await portFree(p.address, p.port), addr(p)).toBe(true);
    for (const port of [...eppPorts, failOpen.port, failClose.port, roundRobin.port])
      expect(await portFree("127.0.0.1", port), `127.0.0.1:${port}`).toBe(true);
  });
});
