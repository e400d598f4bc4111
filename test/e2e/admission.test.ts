/**
 * Admission control end to end: the real EPP (in-process, wired exactly as `switchyard epp`), fake vLLM pods on
 * 127.0.1.x scraped over HTTP, and the fake-Envoy ext_proc client. Budgets and flow control come from the
 * EndpointPickerConfig given with --config-text.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { FAIRNESS_ID_HEADER } from "../../src/common/constants.js";
import { CHAT_HEADERS, chatBody, type Harness, startHarness } from "../helpers/epp-harness.js";

const CONFIG = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
flowControl: {defaultRequestTTL: 25s}
admission:
  budgets:
    - {name: per-tenant, tenant: "*", tokensPerMinute: 1000}
`;

const sse = (usage: { prompt: number; completion: number }) => [
  'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}\n\n',
  `data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":${usage.prompt},"completion_tokens":${usage.completion},"total_tokens":${usage.prompt + usage.completion}}}\n\n`,
  "data: [DONE]\n\n",
];

describe("admission end to end", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ flags: ["--config-text", CONFIG] });
  });
  afterAll(async () => h?.close());

  const headers = (tenant: string) => ({ ...CHAT_HEADERS, [FAIRNESS_ID_HEADER]: tenant });
  const sumOf = async (metric: "flowQueueSize" | "rateLimited") =>
    (await h.epp.metrics[metric].get()).values.reduce((a, v) => a + v.value, 0);

  it("rate-limits a tenant over its token budget with 429 and x-ratelimit headers while another tenant passes", async () => {
    // Estimate ≈ 300 tokens; the streamed usage reports 1500, so reconciliation puts alpha ~500 tokens in debt.
    const first = await h.client.roundTrip({
      headers: headers("alpha"),
      body: chatBody("m", "Hello there", { max_tokens: 300, stream: true }),
      response: {
        headers: { ":status": "200", "content-type": "text/event-stream" },
        body: sse({ prompt: 3, completion: 1497 }),
      },
    });
    expect(first.status).toBe("routed");
    expect(first.response?.body.toString()).toContain('"total_tokens":1500');

    // 100 tokens would fit the 700 left if only the estimate had been charged; after reconciliation they do not.
    const over = await h.client.roundTrip({
      headers: headers("alpha"),
      body: chatBody("m", "Hello again", { max_tokens: 100 }),
    });
    expect(over.status).toBe("immediate");
    const imm = over.immediate!;
    expect(imm.status).toBe(429);
    expect(imm.body).toMatch(/^inference error: ResourceExhausted - token budget "per-tenant" exhausted/);
    expect(imm.headers.get("x-switchyard-error-code")).toBe("SY_RATE_LIMITED");
    expect(imm.headers.get("x-ratelimit-limit-tokens")).toBe("1000");
    expect(imm.headers.get("x-ratelimit-remaining-tokens")).toBe("0");
    expect(imm.headers.get("x-ratelimit-reset-tokens")).toMatch(/^(\d+m)?\d+(\.\d+)?s$/);
    // ~600 tokens short at 1000/min ≈ 36 s; generous bounds keep a slow machine from mattering.
    expect(Number(imm.headers.get("retry-after"))).toBeGreaterThanOrEqual(15);
    expect(Number(imm.headers.get("retry-after"))).toBeLessThanOrEqual(60);

    const beta = await h.client.roundTrip({
      headers: headers("beta"),
      body: chatBody("m", "Hello there", { max_tokens: 100 }),
    });
    expect(beta.status).toBe("routed");
    expect(await sumOf("rateLimited")).toBe(1);
  });

  it("queues a Standard request while the pool is saturated and dispatches it when metrics show capacity", async () => {
    for (let i = 0; i < h.pods.length; i++) h.setPod(i, { waiting: 20, running: 8, kv: 0.95 });
    await h.settle();
    let settled = false;
    const pending = h.client
      .roundTrip({ headers: headers("gamma"), body: chatBody("m", "queued", { max_tokens: 10 }), timeoutMs: 25_000 })
      .finally(() => {
        settled = true;
      });
    await vi.waitFor(async () => expect(await sumOf("flowQueueSize")).toBe(1), { timeout: 10_000, interval: 20 });
    expect(settled).toBe(false); // Envoy's stream stays open while the request waits

    h.setPod(1, { waiting: 0, running: 1, kv: 0.2 });
    const r = await pending;
    expect(r.status).toBe("routed");
    // Late binding: scheduled after dispatch, onto the pod that has capacity now.
    expect(r.destination).toBe(`${h.pods[1]!.address}:${h.port}`);
    expect(await sumOf("flowQueueSize")).toBe(0);
    const waits = (await h.epp.metrics.queueWait.get()).values.filter(
      (v) => v.metricName?.endsWith("_count") && v.labels.outcome === "dispatched",
    );
    expect(waits.reduce((a, v) => a + v.value, 0)).toBe(1);
  });
});
