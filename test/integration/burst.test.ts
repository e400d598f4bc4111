/**
 * Issue 15's burst criterion against real loopback servers: two idle `switchyard sim` pods whose gauges show a
 * request only 300 ms after it arrives (--gauge-lag 300ms, like vLLM counting after its first engine step), the
 * EPP scraping them every 20 ms, and the dev gateway in front. 16 simultaneous requests must split 8/8 ± 1: every
 * scrape during the burst still says 0, so only own-load accounting (docs/design/scheduling.md §11) can spread them.
 * A second stack pairs a pod with one three times slower (`--speed 3`), nothing configured about either: once the
 * learner has seen them, one-at-a-time requests go to the faster. Assertions are on where requests went, never on
 * how long anything took.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningEpp, startEpp } from "../../src/cli/epp.js";
import { type Gateway, SERVED_ENDPOINT_HEADER, startGateway } from "../../src/gateway/index.js";
import type { DebugSnapshot } from "../../src/observability/debug.js";
import { silentLogger } from "../../src/observability/logger.js";
import { type Simulator, startSimulator } from "../../src/sim/index.js";
import { freshAddresses, LOOPBACK_EPP_FLAGS, resourcesYaml } from "../helpers/epp-harness.js";

// The predictive profile as built in, with metrics counted fresh for 2 s instead of 200 ms: on a shared 2-core
// machine a starved scrape loop would otherwise make one pod look stale (kv score 0) and the split would test the
// machine, not the accounting (the same allowance test/e2e/gateway.test.ts makes).
const CONFIG = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: utilization-detector
    parameters: {metricsStalenessThreshold: 2s}
  - type: served-model-filter
  - type: prefix-cache-scorer
  - type: predicted-latency-scorer
  - type: inflight-load-scorer
  - type: kv-cache-utilization-scorer
  - type: lora-affinity-scorer
  - type: max-score-picker
schedulingProfiles:
  - name: predictive
    plugins:
      - {pluginRef: served-model-filter}
      - {pluginRef: predicted-latency-scorer, weight: 3}
      - {pluginRef: prefix-cache-scorer, weight: 2}
      - {pluginRef: inflight-load-scorer, weight: 1}
      - {pluginRef: kv-cache-utilization-scorer, weight: 1}
      - {pluginRef: lora-affinity-scorer, weight: 1}
      - {pluginRef: max-score-picker}
`;

interface Stack {
  readonly addresses: readonly string[];
  readonly sims: Simulator[];
  readonly port: number;
  readonly epp: RunningEpp;
  readonly gateway: Gateway;
  readonly dir: string;
  close(): Promise<void>;
}

/** Two sims (one per speed) on one port, the EPP with CONFIG scraping every 20 ms, the dev gateway in front. */
async function startStack(speeds: readonly number[]): Promise<Stack> {
  const addresses = freshAddresses(speeds.length);
  const sims: Simulator[] = [];
  let port = 0;
  for (let attempt = 0; attempt < 10 && sims.length < speeds.length; attempt++) {
    try {
      for (const [i, host] of addresses.entries()) {
        sims.push(
          await startSimulator({
            model: "base",
            host,
            port,
            seed: 7,
            gaugeLag: 300,
            // A batch large enough that nothing queues: the waiting gauge stays 0, as on a real pod until full.
            maxNumSeqs: 32,
            interTokenLatencyMs: 10,
            speed: speeds[i]!,
            podName: host,
          }),
        );
        // Every pod on the one target port, at its own address, as the pool declares them.
        port = sims[0]!.port;
      }
    } catch (err) {
      await Promise.all(sims.splice(0).map((s) => s.close()));
      port = 0;
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    }
  }
  const dir = mkdtempSync(join(tmpdir(), "switchyard-burst-"));
  const file = join(dir, "resources.yaml");
  writeFileSync(file, resourcesYaml("pool", port, addresses, []));
  const epp = await startEpp(
    [
      "--resources",
      file,
      "--pool-name",
      "pool",
      ...LOOPBACK_EPP_FLAGS,
      "--refresh-metrics-interval",
      "20ms",
      "--config-text",
      CONFIG,
    ],
    { logger: silentLogger },
  );
  const gateway = await startGateway({ port: 0, epp: `127.0.0.1:${epp.grpcPort}`, shutdownGraceMs: 100 });
  // Every pod scraped at least once, so traffic starts from fresh, idle gauges.
  const deadline = Date.now() + 20_000;
  while (epp.datastore.endpoints().some((e) => e.metrics === undefined)) {
    if (Date.now() > deadline) throw new Error("pods were never scraped");
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    addresses,
    sims,
    port,
    epp,
    gateway,
    dir,
    async close() {
      await gateway.close();
      await epp.stop(100);
      await Promise.all(sims.map((s) => s.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One streamed chat completion through the gateway; resolves with the endpoint that served it. */
async function send(stack: Stack, i: number, maxTokens: number): Promise<string> {
  const res = await fetch(`${stack.gateway.url.replace(/\/$/, "")}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "base",
      messages: [{ role: "user", content: `request ${i}: ${"tell me about load balancing ".repeat(20)}` }],
      max_tokens: maxTokens,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  await res.text();
  expect(res.status).toBe(200);
  return res.headers.get(SERVED_ENDPOINT_HEADER) ?? "";
}

describe("a burst of 16 on two idle pods whose gauges lag 300 ms", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack([1, 1]);
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });

  it("splits 8/8 ± 1, then the EPP's own load returns to zero and it has learnt from the responses", async () => {
    const { addresses, port, epp } = stack;
    const served = await Promise.all(Array.from({ length: 16 }, (_, i) => send(stack, i, 40)));
    const counts = addresses.map((a) => served.filter((s) => s === `${a}:${port}`).length);
    expect(counts[0]! + counts[1]!).toBe(16);
    expect(Math.abs(counts[0]! - counts[1]!)).toBeLessThanOrEqual(2);

    // done() runs when the ext_proc stream closes, just after the client has its last byte.
    const deadline = Date.now() + 10_000;
    const endpoints = epp.datastore.endpoints();
    while (endpoints.some((e) => e.inflightRequests !== 0)) {
      if (Date.now() > deadline) throw new Error("in-flight counts never returned to 0");
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const e of endpoints) {
      expect(e.load).toMatchObject({ inflight: 0, prefillTokens: 0, decodeTokens: 0 });
      expect(e.inflightTokens).toBe(0);
      expect(e.load!.model.ttftObservations).toBeGreaterThan(0);
      expect(e.load!.model.itlObservations).toBeGreaterThan(0);
    }
    // The same state is visible to operators on /debug/endpoints. The fused count also follows the gauges, which
    // lag the completions by 300 ms plus a scrape: it reaches 0 once a scrape taken after them has landed.
    const debugUrl = `http://127.0.0.1:${epp.metricsPort}/debug/endpoints`;
    let debug = (await (await fetch(debugUrl)).json()) as DebugSnapshot;
    while (debug.endpoints.some((e) => e.load?.fusedRequests !== 0)) {
      if (Date.now() > deadline + 10_000) break;
      await new Promise((r) => setTimeout(r, 50));
      debug = (await (await fetch(debugUrl)).json()) as DebugSnapshot;
    }
    for (const e of debug.endpoints) {
      expect(e.load?.fusedRequests).toBe(0);
      expect(e.load?.ttftObservations).toBeGreaterThan(0);
      expect(e.load?.prefillMsPerToken).toBeGreaterThan(0);
    }
  }, 60_000);
});

describe("two idle pods, one three times slower, nothing configured about either", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack([1, 3]);
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });

  it("learns which is slower from the responses and sends one-at-a-time requests to the faster", async () => {
    const fast = `${stack.addresses[0]}:${stack.port}`;
    // Warm-up: both pods idle and unknown; an unobserved pod keeps the prior, so the picks reach both until one is
    // seen to be slower than the prior says.
    for (let i = 0; i < 6; i++) await send(stack, i, 20);
    // Idle pods either way, so queue, KV and in-flight scores tie: only the learned rates can pick the fast one
    // (a coin would send it 7 or 8 of 8 with probability 9/256).
    const after: string[] = [];
    for (let i = 0; i < 8; i++) after.push(await send(stack, 100 + i, 20));
    expect(after.filter((s) => s === fast).length).toBeGreaterThanOrEqual(7);
  }, 60_000);
});
