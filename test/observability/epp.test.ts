/**
 * Observability of the real EPP (in-process, fake vLLM pods on 127.0.1.x, the fake-Envoy ext_proc client):
 * response accounting reaching the GIE metrics, every switchyard series being fed, /debug/endpoints, decision logs
 * and redaction. Each test uses its own model names so counters do not depend on test order.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEpp } from "../../src/cli/epp.js";
import { ConfigError } from "../../src/common/errors.js";
import type { DebugSnapshot } from "../../src/observability/debug.js";
import {
  CHAT_HEADERS,
  chatBody,
  freshAddresses,
  type Harness,
  resourcesYaml,
  startHarness,
} from "../helpers/epp-harness.js";
import { captureLogger, sample, samples, total } from "./helpers.js";

const JSON_HEADERS = { ":status": "200", "content-type": "application/json" };
const SSE_HEADERS = { ":status": "200", "content-type": "text/event-stream" };
/** GIE v1.5's default profile, as shipped in deploy/examples/profiles (prefix-cache scorer included). */
const PREFIX_CONFIG = readFileSync(new URL("../../deploy/examples/profiles/gie-default.yaml", import.meta.url), "utf8");

async function metricsText(h: Harness): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${h.epp.metricsPort}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("EPP metrics fed by real requests", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      models: [{ name: "alias-model", targets: [{ name: "base-target", weight: 1 }] }],
      // Every second cycle timed, so the test can see the flag take effect.
      flags: ["--config-text", PREFIX_CONFIG, "--plugin-timing-sample", "2"],
    });
  });
  afterAll(async () => h?.close());

  const mt = (model: string, target = model) => ({ model_name: model, target_model_name: target });

  it("accounts a JSON response: tokens, cached tokens, sizes, duration, NTPOT, TTFT", async () => {
    const body = chatBody("json-model", "hello json");
    const response = JSON.stringify({
      id: "x",
      object: "chat.completion",
      model: "json-model",
      choices: [{ index: 0, message: { role: "assistant", content: "hi" } }],
      usage: { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16, prompt_tokens_details: { cached_tokens: 3 } },
    });
    const r = await h.client.roundTrip({
      headers: CHAT_HEADERS,
      body,
      response: { headers: JSON_HEADERS, body: [response.slice(0, 40), response.slice(40)] },
    });
    expect(r.status).toBe("routed");
    const text = await metricsText(h);
    const l = mt("json-model");
    expect(sample(text, "inference_objective_request_total", { ...l, priority: "0" })).toBe(1);
    expect(sample(text, "inference_objective_input_tokens_sum", l)).toBe(11);
    expect(sample(text, "inference_objective_output_tokens_sum", l)).toBe(5);
    expect(sample(text, "inference_objective_prompt_cached_tokens_sum", l)).toBe(3);
    expect(sample(text, "inference_objective_request_sizes_sum", l)).toBe(Buffer.byteLength(body));
    expect(sample(text, "inference_objective_response_sizes_sum", l)).toBe(Buffer.byteLength(response));
    expect(sample(text, "inference_objective_request_duration_seconds_count", l)).toBe(1);
    expect(sample(text, "inference_objective_normalized_time_per_output_token_seconds_count", l)).toBe(1);
    // NTPOT as GIE defines it: the whole request duration divided by the output tokens.
    const duration = sample(text, "inference_objective_request_duration_seconds_sum", l)!;
    expect(sample(text, "inference_objective_normalized_time_per_output_token_seconds_sum", l)).toBeCloseTo(
      duration / 5,
      9,
    );
    expect(sample(text, "switchyard_request_ttft_seconds_count", l)).toBe(1);
    expect(sample(text, "inference_objective_running_requests", { model_name: "json-model" })).toBe(0);
    expect(sample(text, "inference_objective_request_error_total", l)).toBeUndefined();
  });

  it("accounts SSE usage when the usage line is split across body chunks", async () => {
    const usageEvent =
      'data: {"id":"1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":21,"completion_tokens":4,"total_tokens":25,"prompt_tokens_details":{"cached_tokens":16}}}\n\n';
    const events =
      'data: {"id":"1","object":"chat.completion.chunk","choices":[{"delta":{"content":"Hel"}}],"usage":null}\n\n' +
      'data: {"id":"1","object":"chat.completion.chunk","choices":[{"delta":{"content":"lo"}}],"usage":null}\n\n' +
      usageEvent +
      "data: [DONE]\n\n";
    const cut = events.indexOf('"usage":{') + 12;
    const r = await h.client.roundTrip({
      headers: CHAT_HEADERS,
      body: chatBody("sse-model", "hi", { stream: true, stream_options: { include_usage: true } }),
      response: { headers: SSE_HEADERS, body: [events.slice(0, 30), events.slice(30, cut), events.slice(cut)] },
    });
    expect(r.response?.body.toString()).toBe(events);
    const text = await metricsText(h);
    const l = mt("sse-model");
    expect(sample(text, "inference_objective_input_tokens_sum", l)).toBe(21);
    expect(sample(text, "inference_objective_output_tokens_sum", l)).toBe(4);
    expect(sample(text, "inference_objective_prompt_cached_tokens_sum", l)).toBe(16);
    expect(sample(text, "inference_objective_normalized_time_per_output_token_seconds_count", l)).toBe(1);
    expect(sample(text, "switchyard_request_ttft_seconds_count", l)).toBe(1);
  });

  it("accounts a Responses API stream (usage in response.completed, input_tokens_details.cached_tokens)", async () => {
    const events = [
      'event: response.created\ndata: {"type":"response.created","response":{"id":"r1","status":"in_progress","usage":null}}\n\n',
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n',
      'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r1","status":"completed","usage":{"input_tokens":30,"output_tokens":6,"total_tokens":36,"input_tokens_details":{"cached_tokens":12}}}}\n\n',
    ];
    await h.client.roundTrip({
      headers: { ...CHAT_HEADERS, ":path": "/v1/responses" },
      body: JSON.stringify({ model: "responses-model", input: "say hi", stream: true }),
      response: { headers: SSE_HEADERS, body: events },
    });
    const text = await metricsText(h);
    const l = mt("responses-model");
    expect(sample(text, "inference_objective_input_tokens_sum", l)).toBe(30);
    expect(sample(text, "inference_objective_output_tokens_sum", l)).toBe(6);
    expect(sample(text, "inference_objective_prompt_cached_tokens_sum", l)).toBe(12);
  });

  it("records no NTPOT when there are no output tokens", async () => {
    const response = JSON.stringify({
      object: "chat.completion",
      choices: [],
      usage: { prompt_tokens: 9, completion_tokens: 0, total_tokens: 9 },
    });
    await h.client.roundTrip({
      headers: CHAT_HEADERS,
      body: chatBody("empty-model"),
      response: { headers: JSON_HEADERS, body: [response] },
    });
    const text = await metricsText(h);
    const l = mt("empty-model");
    expect(sample(text, "inference_objective_output_tokens_count", l)).toBe(1);
    expect(sample(text, "inference_objective_normalized_time_per_output_token_seconds_count", l)).toBeUndefined();
  });

  it("classifies errors: upstream status != 200 is ModelServerError, EPP rejections use GIE's code, one per request", async () => {
    for (const status of ["500", "429", "404"])
      await h.client.roundTrip({
        headers: CHAT_HEADERS,
        body: chatBody("error-model"),
        response: { headers: { ":status": status, "content-type": "application/json" }, body: ['{"error":"x"}'] },
      });
    const bad = await h.client.roundTrip({ headers: CHAT_HEADERS, body: '{"model":"error-model","messages":[' });
    expect(bad.immediate?.status).toBe(400);
    const text = await metricsText(h);
    expect(sample(text, "inference_objective_request_error_total", { error_code: "ModelServerError" })).toBe(3);
    expect(total(text, "inference_objective_request_error_total", { error_code: "BadRequest" })).toBe(1);
    // Three routed requests, each counted once in request_total and at most once in errors.
    expect(sample(text, "inference_objective_request_total", { model_name: "error-model" })).toBe(3);
  });

  it("completes a response that has no body (headers with end_of_stream)", async () => {
    const r = await h.client.roundTrip({
      headers: CHAT_HEADERS,
      body: chatBody("nobody-model"),
      response: { headers: { ":status": "503" } },
    });
    expect(r.status).toBe("routed");
    const text = await metricsText(h);
    const l = mt("nobody-model");
    expect(sample(text, "inference_objective_request_duration_seconds_count", l)).toBe(1);
    expect(sample(text, "inference_objective_response_sizes_sum", l)).toBe(0);
    expect(sample(text, "inference_objective_request_error_total", { ...l, error_code: "ModelServerError" })).toBe(1);
    expect(sample(text, "inference_objective_running_requests", { model_name: "nobody-model" })).toBe(0);
  });

  it("labels the target model chosen by an InferenceModel split", async () => {
    await h.client.roundTrip({
      headers: CHAT_HEADERS,
      body: chatBody("alias-model"),
      response: { headers: JSON_HEADERS, body: ['{"usage":{"prompt_tokens":1,"completion_tokens":1}}'] },
    });
    const text = await metricsText(h);
    const l = mt("alias-model", "base-target");
    expect(sample(text, "inference_objective_request_total", l)).toBe(1);
    expect(sample(text, "inference_objective_request_sizes_count", l)).toBe(1);
    expect(sample(text, "inference_objective_request_duration_seconds_count", l)).toBe(1);
    expect(total(text, "inference_extension_scheduler_attempts_total", { target_model_name: "base-target" })).toBe(1);
  });

  it("feeds scheduler, plugin, prefix-index and scrape series", async () => {
    const prompt = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    for (let i = 0; i < 3; i++)
      await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("prefix-model", prompt) });
    const text = await metricsText(h);
    expect(sample(text, "inference_extension_scheduler_e2e_duration_seconds_count")).toBeGreaterThan(0);
    expect(total(text, "inference_extension_scheduler_attempts_total", { status: "success" })).toBeGreaterThan(0);
    // --plugin-timing-sample 2: plugins are timed on every second cycle. Exact because this profile has no filter
    // (no cycle fails after the picker, so e2e counts every cycle) and exactly one PreRequest plugin.
    const cycles = sample(text, "inference_extension_scheduler_e2e_duration_seconds_count")!;
    expect(cycles).toBeGreaterThanOrEqual(3);
    for (const point of ["Picker", "PreRequest"])
      expect(total(text, "inference_extension_plugin_duration_seconds_count", { extension_point: point }), point).toBe(
        Math.floor(cycles / 2),
      );
    expect(
      total(text, "inference_extension_plugin_duration_seconds_count", { extension_point: "Scorer" }),
    ).toBeGreaterThan(0);
    expect(sample(text, "inference_extension_prefix_indexer_size")).toBeGreaterThan(0);
    expect(sample(text, "inference_extension_prefix_indexer_hit_ratio_count")).toBeGreaterThanOrEqual(3);
    // The 2nd and 3rd identical prompts find their whole prefix in the index.
    expect(sample(text, "inference_extension_prefix_indexer_hit_ratio_bucket", { le: "0.9" })).toBeLessThan(
      sample(text, "inference_extension_prefix_indexer_hit_ratio_count")!,
    );
    expect(sample(text, "inference_extension_prefix_indexer_hit_bytes_sum")).toBeGreaterThan(0);
    expect(total(text, "switchyard_scrape_duration_seconds_count")).toBeGreaterThan(0);
    for (const p of h.pods)
      expect(sample(text, "switchyard_endpoint_scrape_up", { endpoint: `${p.address}:${h.port}` })).toBe(1);
    expect(sample(text, "inference_pool_ready_pods", { name: "pool" })).toBe(3);
    expect(sample(text, "switchyard_pool_endpoints", { name: "pool" })).toBe(3);
    expect(sample(text, "inference_extension_flow_control_pool_saturation", { inference_pool: "pool" })).toBeLessThan(
      1,
    );
    expect(sample(text, "inference_extension_info", { build_ref: "switchyard" })).toBe(1);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
  });

  it("counts ext_proc streams in flight and returns to zero when they end", async () => {
    const stream = h.client.open();
    stream.sendRequestHeaders(CHAT_HEADERS, { endOfStream: false });
    await waitFor(
      "an open stream to be counted",
      async () => sample(await metricsText(h), "switchyard_extproc_streams_in_flight") === 1,
    );
    stream.cancel();
    await waitFor(
      "the stream count to return to 0",
      async () => sample(await metricsText(h), "switchyard_extproc_streams_in_flight") === 0,
    );
  });

  it("counts scrape errors per endpoint and reason, and reports the endpoint down", async () => {
    const pod = h.pods[2]!;
    const endpoint = `${pod.address}:${h.port}`;
    const saved = pod.behaviour;
    pod.behaviour = { status: 503, body: "unavailable", delayMs: 0 };
    try {
      await waitFor("scrape errors to be counted", async () => {
        const text = await metricsText(h);
        return (
          (sample(text, "switchyard_scrape_errors_total", { endpoint, reason: "status" }) ?? 0) >= 2 &&
          sample(text, "switchyard_endpoint_scrape_up", { endpoint }) === 0
        );
      });
      const snap = (await (
        await fetch(`http://127.0.0.1:${h.epp.metricsPort}/debug/endpoints`)
      ).json()) as DebugSnapshot;
      expect(snap.endpoints.find((e) => e.key === endpoint)?.lastScrapeError).toMatch(/HTTP 503/);
    } finally {
      pod.behaviour = saved;
    }
    await waitFor(
      "the endpoint to recover",
      async () => sample(await metricsText(h), "switchyard_endpoint_scrape_up", { endpoint }) === 1,
    );
  });

  it("serves /debug/endpoints with pool, metrics, freshness, inflight, routed counts and decisions", async () => {
    await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("debug-model") });
    const none = await h.client.roundTrip({
      headers: CHAT_HEADERS,
      body: chatBody("debug-model"),
      subsetHint: ["10.9.9.9"],
    });
    expect(none.immediate?.status).toBe(503);
    const res = await fetch(`http://127.0.0.1:${h.epp.metricsPort}/debug/endpoints`);
    expect(res.headers.get("content-type")).toBe("application/json");
    const snap = (await res.json()) as DebugSnapshot;
    expect(snap.version).toBe(1);
    expect(snap.pool).toEqual({ name: "pool", namespace: "default", selector: { app: "vllm" }, targetPorts: [h.port] });
    expect(snap.synced).toBe(true);
    expect(snap.endpoints.map((e) => e.key).sort()).toEqual(h.pods.map((p) => `${p.address}:${h.port}`).sort());
    for (const e of snap.endpoints) {
      expect(e.fresh).toBe(true);
      expect(e.ageMs).toBeGreaterThanOrEqual(0);
      expect(e.metrics).toMatchObject({ queue: 0, running: 0, kvCacheUsage: 0.1, blockSize: 16, numBlocks: 2048 });
      expect(e.inflight).toBe(0);
      expect(e.lastScrapeError).toBeNull();
    }
    expect(snap.endpoints.reduce((n, e) => n + e.routed, 0)).toBeGreaterThan(0);
    const [rejected, routed] = snap.decisions;
    expect(rejected).toMatchObject({
      model: "debug-model",
      outcome: "rejected",
      error: { status: 503, code: "SY_NO_CANDIDATES" },
    });
    expect(routed).toMatchObject({ model: "debug-model", targetModel: "debug-model", outcome: "routed" });
    expect(routed!.endpoints).toHaveLength(1);
    expect(routed!.scores!.length).toBe(3);
    expect(Object.keys(routed!.scores![0]!.scores).sort()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/queue/),
        expect.stringMatching(/kv/),
        expect.stringMatching(/prefix/),
      ]),
    );
    // The snapshot the running EPP hands out in-process is the same document.
    expect(h.epp.snapshot().endpoints).toHaveLength(3);
  });
});

describe("EPP logs", () => {
  const log = captureLogger("debug");
  let h: Harness;
  const addresses = freshAddresses(3);
  beforeAll(async () => {
    h = await startHarness({ addresses, overrides: { logger: log.logger } });
  });
  afterAll(async () => h?.close());

  it("logs start-up, the accepted configuration and endpoints joining at info", () => {
    const msgs = log.records().map((r) => r.msg);
    expect(msgs).toContain("switchyard epp started");
    expect(msgs).toContain("configuration accepted");
    const joined = log.records().filter((r) => r.msg === "endpoint joined the pool");
    expect(joined.map((r) => r.endpoint).sort()).toEqual(addresses.map((a) => `${a}:${h.port}`).sort());
    expect(joined.every((r) => r.level === 30)).toBe(true);
    const config = log.records().find((r) => r.msg === "configuration accepted")!;
    expect(config.config).toBe("(default)");
    expect(config.plugins).toEqual(expect.arrayContaining(["predicted-latency-scorer:predicted-latency-scorer"]));
  });

  it("logs each decision at debug with scores and the choice, and never the prompt or credentials", async () => {
    const secretPrompt = "TOP-SECRET-PROMPT-a8f3e1";
    const token = "sk-live-SECRET-TOKEN-77c2";
    const before = log.lines.length;
    const r = await h.client.roundTrip({
      headers: {
        ...CHAT_HEADERS,
        authorization: `Bearer ${token}`,
        "x-api-key": token,
        cookie: `session=${token}`,
        "x-request-id": "req-log-1",
      },
      body: chatBody("log-model", secretPrompt),
      response: {
        headers: JSON_HEADERS,
        body: [JSON.stringify({ choices: [{ message: { content: secretPrompt } }], usage: { prompt_tokens: 3 } })],
      },
    });
    expect(r.status).toBe("routed");
    const rejected = await h.client.roundTrip({
      headers: { ...CHAT_HEADERS, authorization: `Bearer ${token}`, "x-request-id": "req-log-2" },
      body: `{"model":"log-model","messages":[{"role":"user","content":"${secretPrompt}"`,
    });
    expect(rejected.immediate?.status).toBe(400);

    const lines = log.lines.slice(before);
    const raw = lines.join("\n");
    expect(raw).not.toContain(secretPrompt);
    expect(raw).not.toContain(token);
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const routed = records.find((x) => x.msg === "request routed");
    expect(routed).toMatchObject({
      level: 20,
      requestId: "req-log-1",
      model: "log-model",
      targetModel: "log-model",
      criticality: "Standard",
      priority: 0,
      chosen: [r.destination],
    });
    const candidates = routed!.candidates as { endpoint: string; total: number; scores: Record<string, number> }[];
    expect(candidates).toHaveLength(3);
    for (const c of candidates) expect(Object.keys(c.scores).length).toBeGreaterThanOrEqual(3);
    const reject = records.find((x) => typeof x.msg === "string" && x.msg.startsWith("request rejected"));
    expect(reject).toMatchObject({ level: 20, requestId: "req-log-2", code: "SY_BAD_JSON", status: 400 });
  });

  it("logs endpoints leaving the pool", async () => {
    writeFileSync(join(h.dir, "resources.yaml"), resourcesYaml("pool", h.port, addresses.slice(0, 2), []));
    await waitFor("the endpoint-left line", () =>
      log.records().some((r) => r.msg === "endpoint left the pool" && r.endpoint === `${addresses[2]}:${h.port}`),
    );
  });
});

describe("EPP configuration errors", () => {
  it("logs the rejected configuration naming file and field, then fails start-up", async () => {
    const log = captureLogger("info");
    const dir = mkdtempSync(join(tmpdir(), "switchyard-cfg-"));
    const file = join(dir, "config.yaml");
    writeFileSync(
      file,
      "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n  - type: no-such-plugin\n",
    );
    try {
      await expect(
        startEpp(["--pool-name", "p", "--resources", dir, "--config-file", file, "--metrics-port", "0"], {
          logger: log.logger,
        }),
      ).rejects.toThrow(ConfigError);
      const line = log.records().find((r) => r.msg === "configuration rejected");
      expect(line).toMatchObject({ level: 50, config: file, field: "plugins[0].type" });
      expect(line?.err).toMatch(/unknown plugin type "no-such-plugin"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("metric labels from request bodies are bounded", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      models: [{ name: "configured-model", targets: [{ name: "configured-model", weight: 1 }] }],
    });
  });
  afterAll(async () => h?.close());

  it("labels unconfigured model names past the first 100 as other, and never caps configured ones", async () => {
    for (let i = 0; i < 130; i++) {
      const r = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody(`flood-${i}`, "hi") });
      expect(r.status).toBe("routed");
    }
    const r = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("configured-model", "hi") });
    expect(r.status).toBe("routed");
    const text = await metricsText(h);
    const names = new Set(
      samples(text)
        .filter((s) => s.name === "inference_objective_request_total")
        .map((s) => s.labels.get("model_name")),
    );
    expect(names.has("flood-0")).toBe(true);
    expect(names.has("flood-99")).toBe(true);
    expect(names.has("flood-100")).toBe(false);
    expect(names.has("configured-model")).toBe(true);
    expect(names.size).toBe(102); // 100 flood names + "other" + the configured model
    expect(total(text, "inference_objective_request_total", { model_name: "other" })).toBe(30);
  });
});

describe("metric label values from requests are bounded in length and expire when idle", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      models: [{ name: "configured-model", targets: [{ name: "configured-model", weight: 1 }] }],
      // 1 ms idle: every sweep (once a second) drops every unconfigured name not used since the previous one.
      flags: ["--metrics-model-label-limit", "1", "--metrics-model-label-idle-expiry", "1ms"],
    });
  });
  afterAll(async () => h?.close());

  it("labels a 1 MB model name as other, so the exposition does not grow by megabytes, and counts it", async () => {
    const before = (await metricsText(h)).length;
    const r = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m".repeat(1 << 20), "hi") });
    expect(r.status).toBe("routed");
    const text = await metricsText(h);
    // Without the bound the name is copied into ~30 series: 63 MB.
    expect(text.length).toBeLessThan(before + 200_000);
    expect(total(text, "inference_objective_request_total", { model_name: "other" })).toBeGreaterThanOrEqual(1);
    expect(
      total(text, "switchyard_metric_labels_capped_total", { label: "model_name", reason: "too_long" }),
    ).toBeGreaterThanOrEqual(1);
  });

  it("drops the series of an idle unconfigured model name and frees its slot; configured names stay", async () => {
    const names = async () =>
      new Set(
        samples(await metricsText(h))
          .filter((s) => s.name === "inference_objective_request_total")
          .map((s) => s.labels.get("model_name")),
      );
    expect((await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("idle-a") })).status).toBe("routed");
    expect((await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("configured-model") })).status).toBe(
      "routed",
    );
    await waitFor("idle-a to expire", async () => !(await names()).has("idle-a"), 20_000);
    expect((await names()).has("configured-model")).toBe(true);
    // The slot is free again (limit 1): a new name gets its own series, not "other".
    await waitFor(
      "idle-b to get its own series",
      async () => {
        await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("idle-b") });
        return (await names()).has("idle-b");
      },
      20_000,
    );
    // A name that comes back counts from zero in a fresh series (no stale cached child swallowing updates).
    await waitFor("idle-b to expire", async () => !(await names()).has("idle-b"), 20_000);
    await waitFor(
      "idle-a to come back",
      async () => {
        await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("idle-a") });
        return (await names()).has("idle-a");
      },
      20_000,
    );
  });
});

/** Rewrites the harness's resources file with only its first `n` pods: the others leave the pool. */
function keepFirstPods(h: Harness, n: number): void {
  const addresses = h.pods.slice(0, n).map((p) => p.address);
  writeFileSync(join(h.dir, "resources.yaml"), resourcesYaml("pool", h.port, addresses, []));
}

describe("a departed pod's scrape series", () => {
  it("leave /metrics when the pod leaves the pool; the others keep theirs", async () => {
    const h = await startHarness();
    try {
      const [kept, , gone] = h.pods.map((p) => `${p.address}:${h.port}`);
      const count = (text: string, endpoint: string) =>
        sample(text, "switchyard_scrape_duration_seconds_count", { endpoint: endpoint! });
      await waitFor("the pod's scrape series", async () => (count(await metricsText(h), gone!) ?? 0) > 0);
      keepFirstPods(h, 2);
      await waitFor("the departed pod's series to leave", async () => count(await metricsText(h), gone!) === undefined);
      const text = await metricsText(h);
      expect(count(text, kept!)).toBeGreaterThan(0);
      expect(text).not.toContain(`endpoint="${gone}"`);
    } finally {
      await h.close();
    }
  });

  it("so do its inference_extension_scheduler_attempts_total series; a pod that stays keeps its count", async () => {
    const h = await startHarness();
    try {
      const busy = { waiting: 10, running: 8, kv: 0.9 };
      const idle = { waiting: 0, running: 0, kv: 0.1 };
      const attempts = (text: string, pod: string) =>
        sample(text, "inference_extension_scheduler_attempts_total", { status: "success", pod_name: pod });
      // One request to pod-3 (the one that will leave), then one to pod-1 (which stays).
      for (const [best, pod] of [
        [2, "pod-3"],
        [0, "pod-1"],
      ] as const) {
        for (let i = 0; i < 3; i++) h.setPod(i, i === best ? idle : busy);
        await h.settle();
        const r = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
        expect(r.destination).toBe(`${h.pods[best]!.address}:${h.port}`);
        expect(attempts(await metricsText(h), pod)).toBe(1);
      }
      keepFirstPods(h, 2);
      await waitFor(
        "pod-3's attempt series to leave",
        async () => attempts(await metricsText(h), "pod-3") === undefined,
      );
      expect(attempts(await metricsText(h), "pod-1")).toBe(1);
    } finally {
      await h.close();
    }
  });
});
