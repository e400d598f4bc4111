/**
 * The EPP end to end over real sockets: a grpc-js ext_proc server on 127.0.0.1, fake vLLM pods on 127.0.1.x
 * scraped over HTTP, resources from a file, and a fake-Envoy client playing FULL_DUPLEX_STREAMED.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CHAT_HEADERS, chatBody, type Harness, startHarness } from "../helpers/epp-harness.js";

describe("epp routing", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      models: [
        { name: "critical-model", criticality: "Critical" },
        { name: "batch-model", criticality: "Sheddable" },
        {
          name: "split-model",
          targets: [
            { name: "target-a", weight: 70 },
            { name: "target-b", weight: 30 },
          ],
        },
      ],
    });
  });
  afterAll(async () => h?.close());

  const addr = (i: number) => `${h.pods[i]!.address}:${h.port}`;
  const route = (body: string | Buffer, extra: Record<string, unknown> = {}) =>
    h.client.roundTrip({ headers: CHAT_HEADERS, body, ...extra });

  it("routes to the endpoint with the lowest queue and KV usage", async () => {
    h.setPod(0, { waiting: 4, running: 3, kv: 0.7 });
    h.setPod(1, { waiting: 0, running: 1, kv: 0.1 });
    h.setPod(2, { waiting: 2, running: 2, kv: 0.5 });
    await h.settle();
    for (let i = 0; i < 10; i++) {
      const r = await route(chatBody("any-model"));
      expect(r.status).toBe("routed");
      expect(r.destination).toBe(addr(1));
      expect(r.metadataDestination).toBe(r.destination);
      expect(r.clearRouteCache).toBe(true);
    }
  });

  it("prefers a pod with the LoRA adapter loaded over one with lower KV usage", async () => {
    h.setPod(0, { waiting: 0, running: 1, kv: 0.5, runningLoras: ["sql-lora"], maxLora: 1 });
    h.setPod(1, { waiting: 0, running: 1, kv: 0.1, runningLoras: ["other-lora"], maxLora: 1 });
    h.setPod(2, { waiting: 0, running: 1, kv: 0.2, runningLoras: ["other-lora"], maxLora: 1 });
    await h.settle();
    for (let i = 0; i < 10; i++) expect((await route(chatBody("sql-lora"))).destination).toBe(addr(0));
  });

  it("admits Critical when every pod is busy and sheds Sheddable with 429", async () => {
    for (let i = 0; i < 3; i++) h.setPod(i, { waiting: 20, running: 8, kv: 0.95 });
    await h.settle();
    const critical = await route(chatBody("critical-model"));
    expect(critical.status).toBe("routed");
    const batch = await route(chatBody("batch-model"));
    expect(batch.status).toBe("immediate");
    expect(batch.immediate?.status).toBe(429);
    expect(batch.immediate?.body).toBe(
      "inference error: ResourceExhausted - system saturated, sheddable request dropped",
    );
    expect(batch.immediate?.headers.get("x-switchyard-error-code")).toBe("SY_SHED");
    // Standard is admitted even when saturated (no flow control configured).
    expect((await route(chatBody("any-model"))).status).toBe("routed");
    for (let i = 0; i < 3; i++) h.setPod(i, { waiting: 0, running: 0, kv: 0.1 });
    await h.settle();
    expect((await route(chatBody("batch-model"))).status).toBe("routed");
  });

  it("reassembles a body split across many chunks and forwards it byte for byte", async () => {
    // Odd spacing, key order and escapes must survive: switchyard never re-serialises an unchanged body.
    const body = Buffer.from(
      '{ "messages" : [ {"role":"user","content":"caf\\u00e9 <b>&amp;</b> 1.0e3"} ],\n  "model":"any-model", "n": 12345678901234567890 }',
    );
    const r = await route(body, { chunkSize: 7 });
    expect(r.status).toBe("routed");
    expect(Buffer.compare(r.body, body)).toBe(0);
    expect(r.setHeaders.get("content-length")).toBe(String(body.length));
  });

  it("routes a GET without a body to some endpoint", async () => {
    const r = await h.client.roundTrip({ headers: { ":method": "GET", ":path": "/v1/models" } });
    expect(r.status).toBe("routed");
    expect([addr(0), addr(1), addr(2)]).toContain(r.destination);
    expect(r.setHeaders.has("content-length")).toBe(false);
  });

  it("answers invalid JSON with 400 and a clear message", async () => {
    const r = await route('{"model": "x", "messages": [');
    expect(r.status).toBe("immediate");
    expect(r.immediate?.status).toBe(400);
    expect(r.immediate?.body).toMatch(/^inference error: BadRequest - error unmarshaling request body/);
    const missing = await route(JSON.stringify({ messages: [{ role: "user", content: "x" }] }));
    expect(missing.immediate?.status).toBe(400);
    expect(missing.immediate?.body).toBe("inference error: BadRequest - model not found in request body");
  });

  it("honours the subset hint and answers 503 when nothing in it matches", async () => {
    for (let i = 0; i < 5; i++) {
      const r = await route(chatBody("any-model"), { subsetHint: [addr(2)] });
      expect(r.destination).toBe(addr(2));
    }
    const none = await route(chatBody("any-model"), { subsetHint: ["10.9.9.9:8000"] });
    expect(none.immediate?.status).toBe(503);
    expect(none.immediate?.body).toBe(
      "inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request",
    );
    const empty = await route(chatBody("any-model"), { subsetHint: [] });
    expect(empty.immediate?.status).toBe(503);
  });

  it("passes an SSE response through chunk by chunk", async () => {
    const events = [
      'data: {"id":"1","object":"chat.completion.chunk","model":"any-model","choices":[{"delta":{"content":"Hi"}}]}\n\n',
      'data: {"id":"1","object":"chat.completion.chunk","model":"any-model","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n\ndata: [DONE]\n\n',
    ];
    const r = await route(chatBody("any-model", "hi", { stream: true }), {
      response: { headers: { ":status": "200", "content-type": "text/event-stream" }, body: events },
    });
    expect(r.response?.body.toString()).toBe(events.join(""));
    // One reply per upstream chunk: streaming is never buffered.
    const bodyReplies = r.messages.filter((m) => m.response_body !== undefined);
    expect(bodyReplies.length).toBe(events.length);
  });

  // 1000 round trips: 10 at a time, and a bound far above what a busy 2-core machine needs (30 s was hit).
  it("splits a weighted InferenceModel across its targets and rewrites the body", { timeout: 180_000 }, async () => {
    const counts = new Map<string, number>();
    const body = chatBody("split-model");
    const first = await route(body);
    expect(first.setHeaders.get("content-length")).toBe(String(first.body.length));
    // Only the model value changed.
    expect(first.body.toString().replace(/target-[ab]/, "split-model")).toBe(body);
    let next = 0;
    const worker = async () => {
      while (next < 1000) {
        next++;
        const r = await route(body);
        const model = JSON.parse(r.body.toString()).model as string;
        counts.set(model, (counts.get(model) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 10 }, worker));
    expect(counts.get("target-a")! / 1000).toBeGreaterThan(0.63);
    expect(counts.get("target-a")! / 1000).toBeLessThan(0.77);
    expect((counts.get("target-a") ?? 0) + (counts.get("target-b") ?? 0)).toBe(1000);
  });

  it("routes a 220 KB body and echoes it in chunks of at most 62000 bytes", async () => {
    const prompt = "x".repeat(220 * 1024);
    const body = Buffer.from(chatBody("any-model", prompt));
    const r = await route(body, { chunkSize: 16 * 1024 });
    expect(r.status).toBe("routed");
    expect(Buffer.compare(r.body, body)).toBe(0);
    const chunks = r.messages
      .map((m) => m.request_body?.response?.body_mutation?.streamed_response?.body)
      .filter((b): b is Buffer => b !== undefined);
    expect(chunks.length).toBeGreaterThanOrEqual(4);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(62000);
  });
});

describe("epp with stale metrics", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ models: [{ name: "batch-model", criticality: "Sheddable" }] });
  });
  afterAll(async () => h?.close());

  it("treats an endpoint whose scrapes fail as unknown, not as idle", async () => {
    h.setPod(0, { waiting: 3, running: 3, kv: 0.6 });
    h.setPod(1, { waiting: 0, running: 0, kv: 0.0 });
    h.setPod(2, { waiting: 3, running: 3, kv: 0.6 });
    await h.settle();
    // Pod 1 looked idle, then its /metrics breaks: its last (idle-looking) numbers go stale and must not attract load.
    h.pods[1]!.behaviour = { status: 500, body: "boom", delayMs: 0 };
    await h.settle();
    const key = `${h.pods[1]!.address}:${h.port}`;
    // Waits for the staleness bound to pass however slow the machine is (a fixed sleep was a flake under load).
    await vi.waitFor(() => expect(h.epp.snapshot().endpoints.find((e) => e.key === key)?.fresh).toBe(false), {
      timeout: 20_000,
      interval: 20,
    });
    for (let i = 0; i < 10; i++) {
      const r = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
      expect(r.destination).not.toBe(key);
    }
  });
});

describe("epp configuration", () => {
  it("rejects an unknown top-level config section, naming it", async () => {
    const { startEpp } = await import("../../src/cli/epp.js");
    const { silentLogger } = await import("../../src/observability/logger.js");
    const text = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nflowControll: {}\n";
    await expect(
      startEpp(["--pool-name", "p", "--resources", "/nonexistent", "--config-text", text], { logger: silentLogger }),
    ).rejects.toThrow(/flowControll: unknown top-level section/);
  });
});

describe("epp engine configs", () => {
  it("reads custom metric names from core-metrics-extractor engineConfigs", async () => {
    const { startHarness: start } = await import("../helpers/epp-harness.js");
    // Pods publish only renamed gauges; the default vllm mapping could not read them, the configured one can.
    const config = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: queue-scorer
  - type: kv-cache-utilization-scorer
  - type: core-metrics-extractor
    parameters:
      defaultEngine: custom
      engineConfigs:
        - name: custom
          queuedRequestsSpec: "my_waiting"
          runningRequestsSpec: "my_running"
          kvUsageSpec: "my_kv"
`;
    const h = await start({ flags: ["--config-text", config] });
    try {
      for (const [i, p] of h.pods.entries())
        p.behaviour = {
          status: 200,
          body: `my_waiting ${i === 1 ? 0 : 7}\nmy_running 1\nmy_kv ${i === 1 ? 0.1 : 0.7}\n`,
          delayMs: 0,
        };
      await h.settle();
      await new Promise((r) => setTimeout(r, 100));
      const snap = h.epp.snapshot();
      expect(snap.endpoints.every((e) => e.metrics !== null)).toBe(true);
      const r = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
      expect(r.destination).toBe(`${h.pods[1]!.address}:${h.port}`);
    } finally {
      await h.close();
    }
  });

  it("scrapes the path a metrics-data-source names, for every pod", async () => {
    const { startHarness: start } = await import("../helpers/epp-harness.js");
    const config = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: queue-scorer
  - type: metrics-data-source
    parameters: { scheme: http, path: /engine/metrics, insecureSkipVerify: true }
`;
    const h = await start({ flags: ["--config-text", config] });
    try {
      // /metrics now answers 404 everywhere: only the configured path has the text.
      for (const [i, p] of h.pods.entries())
        p.behaviour = {
          status: 404,
          body: "not here",
          delayMs: 0,
          routes: {
            "/engine/metrics": {
              status: 200,
              body: `vllm:num_requests_waiting ${i === 2 ? 0 : 9}\nvllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.2\n`,
              contentType: "text/plain",
            },
          },
        };
      await vi.waitFor(
        () => {
          const snap = h.epp.snapshot();
          expect(snap.endpoints.map((e) => e.metrics?.queue)).toEqual(h.pods.map((_, i) => (i === 2 ? 0 : 9)));
        },
        { timeout: 30_000, interval: 20 },
      );
      const r = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
      expect(r.destination).toBe(`${h.pods[2]!.address}:${h.port}`);
    } finally {
      await h.close();
    }
  });

  it("rejects an invalid engine config naming the field", async () => {
    const { startEpp } = await import("../../src/cli/epp.js");
    const { silentLogger } = await import("../../src/observability/logger.js");
    const text = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: core-metrics-extractor
    parameters: { engineConfigs: [ { name: x, bogus: 1 } ] }
`;
    await expect(
      startEpp(["--pool-name", "p", "--resources", "/nonexistent", "--config-text", text], { logger: silentLogger }),
    ).rejects.toThrow(/plugins\[0\]\.parameters\.engineConfigs\[0\]/);
  });
});

describe("shipped scheduling profiles", () => {
  it("deploy/examples/profiles/recommended.yaml loads with its filter, four scorers and picker", async () => {
    const { readFileSync } = await import("node:fs");
    const { loadPickerConfig } = await import("../../src/scheduling/index.js");
    const file = new URL("../../deploy/examples/profiles/recommended.yaml", import.meta.url);
    const config = loadPickerConfig({ text: readFileSync(file, "utf8"), file: "recommended.yaml" });
    expect(config.warnings).toEqual([]);
    expect(config.schedulingProfiles[0]!.plugins.map((p) => [p.pluginRef, p.weight])).toEqual([
      ["served-model-filter", 1],
      ["queue-scorer", 2],
      ["kv-cache-utilization-scorer", 2],
      ["lora-affinity-scorer", 1],
      ["prefix-cache-scorer", 3],
      ["max-score-picker", 1],
    ]);
  });
});

describe("epp with slow but healthy /metrics", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      models: [{ name: "batch-model", criticality: "Sheddable" }],
      // Generous, so the slow answers below always arrive in time however busy the machine is.
      flags: ["--scrape-timeout", "10s"],
    });
  });
  afterAll(async () => h?.close());

  it("does not shed Sheddable traffic as saturated on an idle pool whose scrapes take longer than the staleness bound", async () => {
    // Idle pods whose /metrics answers take 400 ms, twice the 200 ms staleness bound: without the fix the last
    // numbers are "stale" for most of each scrape, and the pool looks saturated.
    for (const p of h.pods) p.behaviour = { ...p.behaviour, delayMs: 400 };
    const start = h.pods.map((p) => p.requests);
    await vi.waitFor(() => expect(h.pods.every((p, i) => p.requests >= start[i]! + 2)).toBe(true), {
      timeout: 30_000,
      interval: 20,
    });
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("batch-model") });
      statuses.push(r.status === "routed" ? 200 : (r.immediate?.status ?? 0));
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  });
});

describe("epp with a pod whose metrics lie", () => {
  it("does not route to a pod reporting a negative KV usage, counts and logs the refusal naming pod and field", async () => {
    const { captureLogger, total } = await import("../observability/helpers.js");
    const log = captureLogger("warn");
    const h = await startHarness({ overrides: { logger: log.logger }, initial: { waiting: 1, running: 2, kv: 0.5 } });
    try {
      const liar = h.pods[1]!;
      // Before the fix this was clamped to 0: the liar looked idle and got 12 of 12 requests.
      liar.behaviour = {
        status: 200,
        body: "vllm:num_requests_waiting 0\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc -0.5\n",
        delayMs: 0,
      };
      await h.settle();
      const key = `${liar.address}:${h.port}`;
      await vi.waitFor(() => expect(h.epp.snapshot().endpoints.find((e) => e.key === key)?.fresh).toBe(false), {
        timeout: 20_000,
        interval: 20,
      });
      for (let i = 0; i < 12; i++) {
        const r = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
        expect(r.destination).not.toBe(key);
      }
      const text = await (await fetch(`http://127.0.0.1:${h.epp.metricsPort}/metrics`)).text();
      expect(total(text, "switchyard_scrape_errors_total", { endpoint: key, reason: "implausible" })).toBeGreaterThan(
        0,
      );
      log.logger.flush();
      const line = log.records().find((r) => r.msg === "metrics scrape failing" && r.endpoint === key);
      expect(line).toMatchObject({ pod: "pod-2", reason: "implausible" });
      expect(String(line?.err)).toContain("vllm:kv_cache_usage_perc");
    } finally {
      await h.close();
    }
  });
});
