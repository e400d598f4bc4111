/**
 * Differential test: GIE v1.5.0's own EPP (`gie-epp`) and switchyard's, on the same real kube-apiserver, the same
 * InferencePool and the same fake vLLM pods, get identical ext_proc streams; everything a drop-in must match is
 * compared: destination header and `envoy.lb` metadata format, status codes (bad JSON, unknown model, no endpoint,
 * shed), gRPC health answers, and the labels of the metric names both expose. Deliberate differences are listed in
 * README.md ("Differences from GIE's EPP") and in DELIBERATE below, each with its reason.
 *
 * GIE's CRDs come from its Go module (what `npm run setup:tools` leaves in the Go cache when it builds gie-epp).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CHAT_HEADERS, chatBody } from "../helpers/epp-harness.js";
import { connect, type FakeEnvoyClient, type RoundTripResult } from "../helpers/extproc-client.js";
import { KubeApiServer } from "../helpers/kube-apiserver.js";
import { freePorts } from "../helpers/relay.js";
import { describeWithTools, REQUIRE_TOOLS, SKIPPED_PREFIX, SKIPPED_SUFFIX } from "../helpers/tools.js";
import {
  type CapturedEpp,
  createPods,
  GIE_MODULE,
  gieCrdDir,
  healthCheck,
  keys,
  type ModelServers,
  poolManifest,
  startKubeEpp,
  startModelServers,
} from "./helpers.js";

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** metric name → sorted label names, for families whose name starts with one of `prefixes`. */
function metricLabels(text: string, prefixes: readonly string[]): Map<string, string[]> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s/.exec(line);
    if (!m) continue;
    let name = m[1]!;
    if (!prefixes.some((p) => name.startsWith(p))) continue;
    const labels = new Set<string>();
    for (const pair of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(pair[1]!);
    // Histogram and summary series belong to their family; `le`/`quantile` are not family labels.
    for (const suffix of ["_bucket", "_sum", "_count"]) if (name.endsWith(suffix)) name = name.slice(0, -suffix.length);
    labels.delete("le");
    labels.delete("quantile");
    const set = out.get(name) ?? new Set<string>();
    for (const l of labels) set.add(l);
    out.set(name, set);
  }
  return new Map([...out].map(([k, v]) => [k, [...v].sort()]));
}

interface Outcome {
  readonly kind: "routed" | "immediate";
  readonly status?: number;
}

function outcome(r: RoundTripResult): Outcome {
  return r.status === "routed" ? { kind: "routed" } : { kind: "immediate", status: r.immediate?.status };
}

describeWithTools(["etcd", "kube-apiserver", "gie-epp"], "switchyard vs GIE v1.5.0's EPP, side by side", (tools) => {
  const crdDir = gieCrdDir();
  if (crdDir === undefined) {
    // gie-epp found but not its CRDs (e.g. the Go module cache was cleaned): the same rule as a missing tool.
    const what = `GIE v1.5.0's CRDs (${GIE_MODULE} in the Go module cache, or $SWITCHYARD_GIE_CRDS)`;
    if (REQUIRE_TOOLS) {
      it("has GIE's CRDs", () => {
        throw new Error(`${what} not found`);
      });
    } else it.skip(`${SKIPPED_PREFIX}${what}${SKIPPED_SUFFIX}`, () => {});
    return;
  }
  let kube: KubeApiServer;
  let servers: ModelServers;
  let ours: CapturedEpp;
  let gie: ChildProcess;
  let gieLog: string;
  const giePorts = { grpc: 0, health: 0, metrics: 0 };
  let oursClient: FakeEnvoyClient;
  let gieClient: FakeEnvoyClient;
  const labels = { app: "diff" };

  beforeAll(async () => {
    kube = await KubeApiServer.start({ etcd: tools.etcd, kubeApiserver: tools["kube-apiserver"] });
    const legacyModel = fileURLToPath(
      new URL("../../deploy/crds/inference.networking.x-k8s.io_inferencemodels.yaml", import.meta.url),
    );
    await kube.applyCrdFiles([
      ...readdirSync(crdDir)
        .filter((f) => f.endsWith(".yaml"))
        .map((f) => join(crdDir, f)),
      legacyModel,
    ]);
    servers = await startModelServers(2, { waiting: 0, running: 1, kv: 0.2 });
    await kube.apply(poolManifest("diff", labels, servers.port));
    await createPods(kube, "diff", labels, servers.addresses);

    ours = await startKubeEpp(kube.kubeconfig, ["--pool-name", "diff", "--pool-namespace", "default"]);
    [giePorts.grpc, giePorts.health, giePorts.metrics] = (await freePorts(3)) as [number, number, number];
    gieLog = join(kube.dir, "gie-epp.log");
    gie = spawn(
      tools["gie-epp"],
      [
        "--pool-name",
        "diff",
        "--pool-namespace",
        "default",
        "--secure-serving=false",
        `--grpc-port=${giePorts.grpc}`,
        `--grpc-health-port=${giePorts.health}`,
        `--metrics-port=${giePorts.metrics}`,
        "--metrics-endpoint-auth=false",
        "--enable-pprof=false",
        "--tracing=false",
        "--zap-devel=false",
      ],
      { env: { ...process.env, KUBECONFIG: kube.kubeconfig }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const out = createWriteStream(gieLog);
    gie.stdout?.pipe(out);
    gie.stderr?.pipe(out);
    await until("gie-epp ready", async () => {
      if (gie.exitCode !== null) throw new Error(`gie-epp exited: ${readFileSync(gieLog, "utf8").slice(-3000)}`);
      return (await healthCheck(`127.0.0.1:${giePorts.health}`, "readiness", 1000)) === "SERVING";
    });
    oursClient = connect(`127.0.0.1:${ours.epp.grpcPort}`);
    gieClient = connect(`127.0.0.1:${giePorts.grpc}`);
  }, 180_000);

  afterAll(async () => {
    oursClient?.close();
    gieClient?.close();
    if (gie !== undefined && gie.exitCode === null) {
      const exited = new Promise((r) => gie.once("exit", r));
      gie.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (gie.exitCode === null) gie.kill("SIGKILL");
    }
    await ours?.stop();
    await servers?.close();
    await kube?.close();
  }, 60_000);

  async function both(
    options: Parameters<FakeEnvoyClient["roundTrip"]>[0],
  ): Promise<{ ours: RoundTripResult; gie: RoundTripResult }> {
    return { ours: await oursClient.roundTrip(options), gie: await gieClient.roundTrip(options) };
  }

  it("routes with the same destination header and envoy.lb metadata format", async () => {
    const dests = servers.addresses.map((a) => `${a}:${servers.port}`);
    await until("both see 2 endpoints", () => keys(ours.epp).length === 2);
    const r = await both({ headers: CHAT_HEADERS, body: chatBody("any-model") });
    console.log(
      `[gie-diff] routed headers: ours ${[...r.ours.setHeaders.keys()]} | gie ${[...r.gie.setHeaders.keys()]}`,
    );
    console.log(`[gie-diff] metadata: ours ${JSON.stringify(r.ours.metadata)} | gie ${JSON.stringify(r.gie.metadata)}`);
    for (const x of [r.ours, r.gie]) {
      expect(x.status).toBe("routed");
      expect(dests).toContain(x.destination);
      expect(x.metadataDestination).toBe(x.destination);
    }
    expect(Object.keys(r.ours.metadata)).toEqual(Object.keys(r.gie.metadata));
    expect(Object.keys(r.ours.metadata["envoy.lb"] ?? {})).toEqual(Object.keys(r.gie.metadata["envoy.lb"] ?? {}));
  });

  it("answers bad JSON and an unknown model the same way", async () => {
    const bad = await both({ headers: CHAT_HEADERS, body: "{not json" });
    console.log(
      `[gie-diff] bad JSON: ours ${JSON.stringify(outcome(bad.ours))} | gie ${JSON.stringify(outcome(bad.gie))}`,
    );
    expect(outcome(bad.ours)).toEqual(outcome(bad.gie));
    const unknown = await both({ headers: CHAT_HEADERS, body: chatBody("no-such-model") });
    console.log(
      `[gie-diff] unknown model: ours ${JSON.stringify(outcome(unknown.ours))} | gie ${JSON.stringify(outcome(unknown.gie))}`,
    );
    expect(outcome(unknown.ours)).toEqual(outcome(unknown.gie));
  });

  it("sheds a negative-priority objective's request the same way when the pool is saturated", async () => {
    await kube.apply({
      apiVersion: "inference.networking.x-k8s.io/v1alpha2",
      kind: "InferenceObjective",
      metadata: { name: "batch", namespace: "default" },
      spec: { priority: -1, poolRef: { name: "diff", group: "inference.networking.k8s.io" } },
    });
    await until("objective seen", () => ours.epp.datastore.objective("batch") !== undefined);
    for (let i = 0; i < 2; i++) servers.set(i, { waiting: 50, running: 8, kv: 0.99 });
    await until("ours saturated", () => ours.epp.snapshot().saturated);
    const headers = { ...CHAT_HEADERS, "x-gateway-inference-objective": "batch" };
    // GIE refreshes metrics every 50 ms; give it the same chance to see saturation, then compare.
    let last: { ours: RoundTripResult; gie: RoundTripResult } | undefined;
    await until(
      "gie sheds",
      async () => {
        last = await both({ headers, body: chatBody("any-model") });
        return last.gie.status === "immediate";
      },
      15_000,
    ).catch(() => undefined);
    console.log(
      `[gie-diff] shed: ours ${JSON.stringify(outcome(last!.ours))} | gie ${JSON.stringify(outcome(last!.gie))}`,
    );
    expect(outcome(last!.ours)).toEqual(outcome(last!.gie));
    for (let i = 0; i < 2; i++) servers.set(i, { waiting: 0, running: 1, kv: 0.2 });
    await until("ours unsaturated", () => !ours.epp.snapshot().saturated);
  });

  it("answers the same when no endpoint is ready", async () => {
    for (let i = 0; i < 2; i++) await kube.setPodStatus(`diff-${i}`, { ready: false });
    await until("ours has no endpoints", () => keys(ours.epp).length === 0);
    let last: { ours: RoundTripResult; gie: RoundTripResult } | undefined;
    await until(
      "gie has no endpoint",
      async () => {
        last = await both({ headers: CHAT_HEADERS, body: chatBody("any-model") });
        return last.gie.status === "immediate";
      },
      15_000,
    ).catch(() => undefined);
    console.log(
      `[gie-diff] no endpoint: ours ${JSON.stringify(outcome(last!.ours))} | gie ${JSON.stringify(outcome(last!.gie))}`,
    );
    expect(outcome(last!.ours)).toEqual(outcome(last!.gie));
    for (let i = 0; i < 2; i++) await kube.setPodStatus(`diff-${i}`, { ready: true });
    await until("ours has endpoints again", () => keys(ours.epp).length === 2);
  });

  it("answers gRPC health checks the same for every service name", async () => {
    const names = [
      "",
      "liveness",
      "readiness",
      "inference-extension",
      "envoy.service.ext_proc.v3.ExternalProcessor",
      "bogus",
    ];
    const rows: string[] = [];
    const oursAnswers: string[] = [];
    const gieAnswers: string[] = [];
    for (const n of names) {
      oursAnswers.push(await healthCheck(`127.0.0.1:${ours.epp.healthPort}`, n));
      gieAnswers.push(await healthCheck(`127.0.0.1:${giePorts.health}`, n));
      rows.push(`"${n}": ours ${oursAnswers.at(-1)} | gie ${gieAnswers.at(-1)}`);
    }
    console.log(`[gie-diff] health:\n  ${rows.join("\n  ")}`);
    expect(oursAnswers).toEqual(gieAnswers);
  });

  it("exposes the shared metric names with the same labels", async () => {
    const prefixes = ["inference_objective_", "inference_pool_", "inference_extension_"];
    const ourText = await (await fetch(`http://127.0.0.1:${ours.epp.metricsPort}/metrics`)).text();
    const gieText = await (await fetch(`http://127.0.0.1:${giePorts.metrics}/metrics`)).text();
    const a = metricLabels(ourText, prefixes);
    const b = metricLabels(gieText, prefixes);
    const shared = [...b.keys()].filter((k) => a.has(k)).sort();
    const gieOnly = [...b.keys()].filter((k) => !a.has(k)).sort();
    const oursOnly = [...a.keys()].filter((k) => !b.has(k)).sort();
    console.log(
      `[gie-diff] metrics: ${shared.length} shared; GIE only: ${gieOnly.join(", ") || "-"}; ours only: ${oursOnly.join(", ") || "-"}`,
    );
    const mismatched = shared
      .filter((k) => JSON.stringify(a.get(k)) !== JSON.stringify(b.get(k)))
      .map((k) => `${k}: ours [${a.get(k)}] gie [${b.get(k)}]`);
    expect(mismatched).toEqual([]);
    expect(shared.length).toBeGreaterThan(0);
  });
});
