/**
 * switchyard behind a real Envoy 1.40, configured by the shipped deploy/envoy/ bootstraps (rendered by
 * src/local/envoy.ts, exactly as `switchyard up --gateway envoy` does). Pods are in-process simulators on
 * 127.0.x.y that record what reached them, so "the routed pod is the picked pod" and "the body arrived intact" are
 * checked at the pod. The EPP runs as a child process so it can be drained and killed. Every wait is bounded by a
 * generous deadline; nothing asserts on how long something took.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logOffset, readLinesSince, summarizeGatewayLines } from "../../src/bench/gateway-timings.js";
import { type Child, Supervisor } from "../../src/local/children.js";
import { type EnvoyBodyMode, type EnvoyConfigOptions, type EnvoyProcess, startEnvoy } from "../../src/local/envoy.js";
import { type Simulator, startSimulator } from "../../src/sim/index.js";
import { freshAddresses, resourcesYaml } from "../helpers/epp-harness.js";
import { freePort } from "../helpers/relay.js";
import { describeWithTools } from "../helpers/tools.js";
import { healthCheck } from "../k8s/helpers.js";
import { randomPort, requireBuild, sseData, waitForLog } from "./helpers.js";

const BASE = "base";
const LONG = "base-model-served-under-a-much-longer-name";
const ALIAS = "chat";
const ADAPTER = "sql-lora";
const FLAKY = "flaky";

interface Seen {
  readonly pod: string;
  readonly destination: string | undefined;
  readonly contentLength: string | undefined;
  readonly chunked: boolean;
  readonly length: number;
  readonly sha: string;
  readonly model: string | undefined;
}

interface Pod {
  readonly name: string;
  readonly address: string;
  readonly sim: Simulator;
}

const EPP_CONFIG = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
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
admission:
  budgets:
    - name: tiny
      tenant: limited
      requestsPerMinute: 1
`;

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

function chat(model: string, content: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ model, messages: [{ role: "user", content }], max_tokens: 4, ...extra });
}

describeWithTools(["envoy"], "switchyard behind real Envoy", ({ envoy: envoyBinary }) => {
  let dir: string;
  let sup: Supervisor;
  const pods: Pod[] = [];
  const seen: Seen[] = [];
  let resources: string;
  let configFile: string;
  let port: number;
  let epp: { child: Child; port: number };
  const envoys = new Set<EnvoyProcess>();
  const accessLogs = new Map<EnvoyProcess, string>();
  let next = 0;

  async function startEpp(name: string, extra: readonly string[] = []): Promise<{ child: Child; port: number }> {
    const healthPort = await freePort();
    const child = sup.start(name, [
      "epp",
      "--resources",
      resources,
      "--pool-name",
      "pool",
      "--host",
      "127.0.0.1",
      "--grpc-port",
      "0",
      "--grpc-health-port",
      String(healthPort),
      "--metrics-port",
      "0",
      "--refresh-metrics-interval",
      "50ms",
      "--config-file",
      configFile,
      "--max-body-bytes",
      "300000",
      "--log-level",
      "info",
      ...(extra.includes("--secure-serving") ? [] : ["--secure-serving=false"]),
      ...extra,
    ]);
    const line = await waitForLog(sup, child, "ext_proc listening", 60_000);
    // Ready means every pod had its first scrape, what it serves included: Envoy in a cluster sends nothing to an
    // EPP that is not Ready, so neither does this test.
    const deadline = Date.now() + 60_000;
    while ((await healthCheck(`127.0.0.1:${healthPort}`, "readiness").catch(() => "")) !== "SERVING") {
      if (Date.now() > deadline) throw new Error(`${name} never became ready`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return { child, port: Number(String(line.address).split(":").at(-1)) };
  }

  async function envoyFor(config: Partial<EnvoyConfigOptions>, eppPort = epp.port): Promise<EnvoyProcess> {
    const n = next++;
    for (let attempt = 0; ; attempt++) {
      try {
        const e = await startEnvoy({
          binary: envoyBinary,
          configFile: join(dir, `envoy-${n}-${attempt}.yaml`),
          logFile: join(dir, `envoy-${n}.log`),
          concurrency: 1,
          config: {
            listenPort: randomPort(),
            adminPort: randomPort(),
            eppPort,
            accessLog: join(dir, `access-${n}.log`),
            ...config,
          },
        });
        envoys.add(e);
        accessLogs.set(e, join(dir, `access-${n}.log`));
        return e;
      } catch (err) {
        if (attempt >= 3 || !/Address already in use|cannot bind/i.test(String(err))) throw err;
      }
    }
  }

  async function stopEnvoy(e: EnvoyProcess): Promise<void> {
    envoys.delete(e);
    await e.stop();
  }

  /** POST through Envoy; returns the answer and what the pod saw for it (undefined when no pod was reached). */
  async function call(
    e: EnvoyProcess,
    body: string | Buffer,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; headers: Headers; text: string; pod: Seen | undefined }> {
    const before = seen.length;
    const res = await fetch(`${e.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, pod: seen.slice(before).at(-1) };
  }

  beforeAll(async () => {
    requireBuild();
    dir = mkdtempSync(join(tmpdir(), "switchyard-envoy-"));
    mkdirSync(join(dir, "logs"));
    sup = new Supervisor(join(dir, "logs"));
    const addresses = freshAddresses(4);
    for (let attempt = 0; ; attempt++) {
      port = randomPort();
      try {
        for (const [i, address] of addresses.entries()) {
          const name = `pod-${i + 1}`;
          const sim = await startSimulator({
            model: BASE,
            servedModelNames: i === 3 ? [FLAKY] : [BASE, LONG],
            host: address,
            port,
            podName: name,
            podNamespace: "default",
            // Only pod-3 has the adapter; pod-4 answers every request with a rate-limit error.
            ...(i === 2 ? { loraModules: [ADAPTER] } : {}),
            ...(i === 3 ? { failureInjectionRate: 100, failureTypes: ["rate_limit"] as const } : {}),
            maxModelLen: 200_000,
            kvCacheSize: 20_000,
            maxNumSeqs: 64,
            interTokenLatencyMs: 5,
            prefillTimePerTokenMs: 0,
            prefillOverheadMs: 1,
          });
          sim.server.on("request", (req) => {
            const chunks: Buffer[] = [];
            req.on("data", (c: Buffer) => chunks.push(c));
            req.on("end", () => {
              if (req.method !== "POST") return;
              const body = Buffer.concat(chunks);
              let model: string | undefined;
              try {
                model = (JSON.parse(body.toString("utf8")) as { model?: string }).model;
              } catch {
                model = undefined;
              }
              const h = (n: string) => (typeof req.headers[n] === "string" ? (req.headers[n] as string) : undefined);
              seen.push({
                pod: name,
                destination: h("x-gateway-destination-endpoint"),
                contentLength: h("content-length"),
                chunked: /chunked/.test(h("transfer-encoding") ?? ""),
                length: body.length,
                sha: sha(body),
                model,
              });
            });
          });
          pods.push({ name, address, sim });
        }
        break;
      } catch (err) {
        for (const p of pods.splice(0)) await p.sim.close();
        if (attempt >= 5 || !/EADDRINUSE/.test(String(err))) throw err;
      }
    }
    resources = join(dir, "resources.yaml");
    writeFileSync(
      resources,
      resourcesYaml(
        "pool",
        port,
        addresses,
        [
          {
            name: ALIAS,
            targets: [
              { name: BASE, weight: 50 },
              { name: LONG, weight: 50 },
            ],
          },
          { name: ADAPTER },
          { name: FLAKY },
        ],
        "",
      ),
    );
    configFile = join(dir, "epp-config.yaml");
    writeFileSync(configFile, EPP_CONFIG);
    epp = await startEpp("epp");
  }, 120_000);

  afterAll(async () => {
    for (const e of [...envoys]) await e.stop();
    await sup?.stopAll();
    for (const p of pods) await p.sim.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  // ---------------------------------------------------------------------------------------------------------
  // The body-mode matrix the Envoy-based gateways use.

  const REQUEST_MODES: EnvoyBodyMode[] = ["FULL_DUPLEX_STREAMED", "BUFFERED", "STREAMED"];
  const RESPONSE_MODES: EnvoyBodyMode[] = ["FULL_DUPLEX_STREAMED", "BUFFERED", "STREAMED", "NONE"];
  for (const requestBodyMode of REQUEST_MODES) {
    for (const responseBodyMode of RESPONSE_MODES) {
      it(`request ${requestBodyMode} × response ${responseBodyMode}: routes to the picked pod, rewrites with correct lengths, streams SSE`, async () => {
        const e = await envoyFor({ requestBodyMode, responseBodyMode });
        try {
          // An aliased model: the pod gets a target name with a matching content-length.
          for (let i = 0; i < 6; i++) {
            const r = await call(e, chat(ALIAS, `hello ${i}`));
            expect(r.status, r.text).toBe(200);
            const pod = r.pod!;
            expect([BASE, LONG]).toContain(pod.model);
            expect(pod.destination).toBe(`${pods.find((p) => p.name === pod.pod)!.address}:${port}`);
            expect(r.headers.get("x-inference-pod")).toBe(pod.pod);
            if (pod.contentLength !== undefined) expect(Number(pod.contentLength)).toBe(pod.length);
            // The client gets its own model name back (not with NONE: the picker never sees that body).
            const answer = JSON.parse(r.text) as { model: string };
            expect(answer.model).toBe(responseBodyMode === "NONE" ? pod.model : ALIAS);
            const length = r.headers.get("content-length");
            if (length !== null) expect(Number(length)).toBe(Buffer.byteLength(r.text));
          }
          // SSE: every chunk and [DONE] arrive.
          const res = await fetch(`${e.url}/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: chat(BASE, "stream please", {
              stream: true,
              max_tokens: 8,
              stream_options: { include_usage: true },
            }),
            signal: AbortSignal.timeout(30_000),
          });
          expect(res.status).toBe(200);
          const data = sseData(await res.text());
          expect(data.at(-1)).toBe("[DONE]");
          const usage = JSON.parse(data.at(-2)!) as { usage?: { completion_tokens: number } };
          expect(usage.usage?.completion_tokens).toBe(8);
        } finally {
          await stopEnvoy(e);
        }
      }, 60_000);
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // One Envoy in the shipped default shape for the feature checks.

  describe("the shipped bootstrap (full duplex both ways)", () => {
    let e: EnvoyProcess;
    beforeAll(async () => {
      e = await envoyFor({ subsetHintHeader: "x-test-subset-hint" });
    }, 60_000);
    afterAll(async () => {
      if (e) await stopEnvoy(e);
    });

    it("streams SSE chunk by chunk as the pod produces it, and counts its usage", async () => {
      const res = await fetch(`${e.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: chat(BASE, "count these", { stream: true, max_tokens: 40, stream_options: { include_usage: true } }),
        signal: AbortSignal.timeout(30_000),
      });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      let reads = 0;
      let text = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        reads++;
        text += Buffer.from(value).toString("utf8");
      }
      // 40 tokens 5 ms apart do not arrive as one buffered blob.
      expect(reads).toBeGreaterThan(1);
      const data = sseData(text);
      expect(data.at(-1)).toBe("[DONE]");
      expect((JSON.parse(data.at(-2)!) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(40);
    });

    it("logs what the picker's round trips cost each request, in fields the bench reads", async () => {
      const file = accessLogs.get(e)!;
      const from = logOffset(file);
      // An earlier test's line may still be in Envoy's buffer: this request is found by a marker in its query
      // (Envoy replaces a client's x-request-id, and the picker and the pod ignore the query).
      const marker = `probe=${Date.now()}`;
      const res = await fetch(`${e.url}/v1/chat/completions?${marker}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: chat(BASE, "time me", { stream: true, max_tokens: 20 }),
        signal: AbortSignal.timeout(30_000),
      });
      expect(res.status).toBe(200);
      await res.text();
      // Envoy flushes its access log file about once a second.
      let lines: string[] = [];
      const deadline = Date.now() + 20_000;
      while (lines.length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        lines = readLinesSince(file, from).filter((l) => l.includes(marker));
      }
      expect(lines).toHaveLength(1);
      // Envoy 1.40 fills every field: a wrong filter-state key or field name would print null.
      const row = JSON.parse(lines[0]!) as Record<string, unknown>;
      for (const key of ["epp_req_headers_us", "epp_req_body_us", "epp_resp_headers_us", "epp_resp_body_us"]) {
        expect(Number(row[key]), key).toBeGreaterThan(0);
      }
      const t = summarizeGatewayLines(lines)!;
      expect(t.requests).toBe(1);
      // 20 tokens 5 ms apart cross ext_proc as several chunks, each one timed.
      expect(t.epp_chunks!.median).toBeGreaterThan(1);
      expect(t.epp_chunk_mean_us!.median).toBeGreaterThan(0);
      expect(t.epp_request_us!.median).toBeGreaterThan(0);
      expect(t.before_upstream_us!.median).toBeGreaterThan(0);
    });

    it("sends LoRA requests only to the pod that has the adapter", async () => {
      for (let i = 0; i < 4; i++) {
        const r = await call(e, chat(ADAPTER, `adapter ${i}`));
        expect(r.status, r.text).toBe(200);
        expect(r.pod?.pod).toBe("pod-3");
      }
    });

    it("passes a 220 KB prompt to the pod byte for byte", async () => {
      const body = Buffer.from(chat(BASE, "x".repeat(220_000)));
      const r = await call(e, body);
      expect(r.status, r.text.slice(0, 200)).toBe(200);
      expect(r.pod!.length).toBe(body.length);
      expect(r.pod!.sha).toBe(sha(body));
      // Envoy 1.40 ignores a content-length set by the processor in full-duplex mode (docs/envoy.md): chunked.
      expect(r.pod!.contentLength).toBeUndefined();
      expect(r.pod!.chunked).toBe(true);
    });

    it("answers 400 for a body that is not JSON, 413 past --max-body-bytes, 429 from a budget and from a pod", async () => {
      const bad = await call(e, "{not json");
      expect(bad.status).toBe(400);
      expect(bad.pod).toBeUndefined();
      const big = await call(e, chat(BASE, "y".repeat(400_000)));
      expect(big.status).toBe(413);
      expect(big.pod).toBeUndefined();
      const first = await call(e, chat(BASE, "budget"), { "x-gateway-inference-fairness-id": "limited" });
      expect(first.status).toBe(200);
      const second = await call(e, chat(BASE, "budget"), { "x-gateway-inference-fairness-id": "limited" });
      expect(second.status).toBe(429);
      expect(second.headers.get("retry-after")).not.toBeNull();
      const flaky = await call(e, chat(FLAKY, "please"));
      expect(flaky.status).toBe(429);
      expect(flaky.pod?.pod).toBe("pod-4");
    });

    it("honours the subset hint from metadata, and answers 503 when it names no pod", async () => {
      const target = pods[1]!;
      for (let i = 0; i < 3; i++) {
        const r = await call(e, chat(BASE, `hint ${i}`), { "x-test-subset-hint": `${target.address}:${port}` });
        expect(r.status, r.text).toBe(200);
        expect(r.pod?.pod).toBe(target.name);
      }
      const none = await call(e, chat(BASE, "nowhere"), { "x-test-subset-hint": "10.255.255.1:1" });
      expect(none.status).toBe(503);
      expect(none.pod).toBeUndefined();
    });

    it("uses graceful ext_proc close: no stream is reset and none fails", async () => {
      const before = await e.stats(/^cluster\.endpoint_picker\.upstream_rq_(tx_reset|total)$/);
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => call(e, chat(BASE, `reset ${i}`))));
      for (const r of results) expect(r.status).toBe(200);
      const after = await e.stats(/^cluster\.endpoint_picker\.upstream_rq_(tx_reset|total)$/);
      const key = "cluster.endpoint_picker.upstream_rq_tx_reset";
      expect(after.get(key)! - before.get(key)!).toBe(0);
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  // What Envoy Gateway + AI Gateway generate.

  describe("an Envoy Gateway + AI Gateway shaped listener (TLS to the picker, auth and CORS first)", () => {
    let tlsEpp: { child: Child; port: number };
    let e: EnvoyProcess;
    const auth = { authorization: `Basic ${Buffer.from("alice:wonderland").toString("base64")}` };
    beforeAll(async () => {
      tlsEpp = await startEpp("epp-tls", ["--secure-serving"]);
      e = await envoyFor({ template: "envoy-gateway-like" }, tlsEpp.port);
    }, 120_000);
    afterAll(async () => {
      if (e) await stopEnvoy(e);
    });

    it("lets an earlier filter's local replies reach the client unchanged (401, CORS preflight)", async () => {
      const denied = await call(e, chat(BASE, "no credentials"));
      expect(denied.status).toBe(401);
      expect(denied.headers.get("www-authenticate")).toMatch(/Basic/);
      expect(denied.headers.get("x-switchyard-error-code")).toBeNull();
      expect(denied.pod).toBeUndefined();
      const preflight = await fetch(`${e.url}/v1/chat/completions`, {
        method: "OPTIONS",
        headers: { origin: "https://app.example.com", "access-control-request-method": "POST" },
        signal: AbortSignal.timeout(30_000),
      });
      expect(preflight.status).toBe(200);
      expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    });

    it("routes authenticated requests to the picked pod, and a 220 KB prompt arrives intact through 32 KiB buffers", async () => {
      const r = await call(e, chat(ALIAS, "with credentials"), auth);
      expect(r.status, r.text).toBe(200);
      expect(r.headers.get("x-inference-pod")).toBe(r.pod!.pod);
      expect((JSON.parse(r.text) as { model: string }).model).toBe(ALIAS);
      const body = Buffer.from(chat(BASE, "z".repeat(220_000)));
      const big = await call(e, body, auth);
      expect(big.status, big.text.slice(0, 200)).toBe(200);
      expect(big.pod!.sha).toBe(sha(body));
    });

    it("passes Envoy's own 413 through when a BUFFERED body overflows the 32 KiB buffer", async () => {
      const buffered = await envoyFor(
        { template: "envoy-gateway-like", requestBodyMode: "BUFFERED", responseBodyMode: "BUFFERED" },
        tlsEpp.port,
      );
      try {
        const small = await call(buffered, chat(ALIAS, "small"), auth);
        expect(small.status, small.text).toBe(200);
        expect((JSON.parse(small.text) as { model: string }).model).toBe(ALIAS);
        const big = await call(buffered, chat(BASE, "w".repeat(100_000)), auth);
        expect(big.status).toBe(413);
        expect(big.pod).toBeUndefined();
      } finally {
        await stopEnvoy(buffered);
      }
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  // Failures: a dedicated EPP per scenario, since each one ends it.

  describe("EPP drain and crash", () => {
    it("SIGTERM lets streaming generations finish while the EPP drains", async () => {
      const own = await startEpp("epp-drain");
      const e = await envoyFor({}, own.port);
      try {
        const streams = await Promise.all(
          Array.from({ length: 3 }, async (_, i) => {
            const res = await fetch(`${e.url}/v1/chat/completions`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: chat(BASE, `long ${i}`, { stream: true, max_tokens: 200 }),
              signal: AbortSignal.timeout(60_000),
            });
            const reader = res.body!.getReader();
            const first = await reader.read();
            return { res, reader, first: Buffer.from(first.value ?? new Uint8Array()).toString("utf8") };
          }),
        );
        own.child.process.kill("SIGTERM");
        for (const s of streams) {
          expect(s.res.status).toBe(200);
          let text = s.first;
          for (;;) {
            const { done, value } = await s.reader.read();
            if (done) break;
            text += Buffer.from(value).toString("utf8");
          }
          expect(sseData(text).at(-1)).toBe("[DONE]");
        }
      } finally {
        own.child.process.kill("SIGKILL");
        await stopEnvoy(e);
      }
    }, 90_000);

    it("fail-close: with the EPP killed a request gets a 5xx, never a hang", async () => {
      const own = await startEpp("epp-crash");
      const e = await envoyFor({}, own.port);
      try {
        expect((await call(e, chat(BASE, "before"))).status).toBe(200);
        own.child.process.kill("SIGKILL");
        await own.child.exited;
        const r = await call(e, chat(BASE, "after"));
        expect(r.status).toBeGreaterThanOrEqual(500);
        expect(r.pod).toBeUndefined();
      } finally {
        await stopEnvoy(e);
      }
    }, 90_000);

    it("the documented fail-open set-up: BUFFERED, failure_mode_allow and a fallback endpoint keep serving", async () => {
      const own = await startEpp("epp-open");
      const fallback = pods[0]!;
      const e = await envoyFor(
        {
          requestBodyMode: "BUFFERED",
          responseBodyMode: "BUFFERED",
          failureModeAllow: true,
          fallbackEndpoint: `${fallback.address}:${port}`,
        },
        own.port,
      );
      try {
        const routed = await call(e, chat(ALIAS, "picker up"));
        expect(routed.status, routed.text).toBe(200);
        expect((JSON.parse(routed.text) as { model: string }).model).toBe(ALIAS);
        own.child.process.kill("SIGKILL");
        await own.child.exited;
        // A client-chosen destination is ignored: the fallback serves.
        const r = await call(e, chat(BASE, "picker down"), {
          "x-gateway-destination-endpoint": `${pods[1]!.address}:${port}`,
        });
        expect(r.status, r.text).toBe(200);
        expect(r.pod?.pod).toBe(fallback.name);
      } finally {
        await stopEnvoy(e);
      }
    }, 90_000);
  });
});
