/**
 * The seed article's autoscaling intent, carried by `autoscaling.switchyard.io/*` annotations on an unmodified GIE
 * InferencePool (docs/autoscaling.md), drives `switchyard_pool_recommended_replicas` end to end: from a resources
 * file, and from a real kube-apiserver with GIE's CRD installed. A bad annotation keeps the pool routing, ignores the
 * hints and counts `switchyard_autoscaling_hint_errors_total`.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningEpp, startEpp } from "../../src/cli/epp.js";
import { silentLogger } from "../../src/observability/logger.js";
import { AUTOSCALING_ANNOTATIONS } from "../../src/sources/normalize.js";
import { type FakePod, startPods } from "../datalayer/fake-pods.js";
import { freshAddresses, LOOPBACK_EPP_FLAGS, vllmMetrics } from "../helpers/epp-harness.js";
import { KubeApiServer } from "../helpers/kube-apiserver.js";
import { describeWithTools } from "../helpers/tools.js";

const MIN = AUTOSCALING_ANNOTATIONS.minReplicas;
const MAX = AUTOSCALING_ANNOTATIONS.maxReplicas;
const TARGET = AUTOSCALING_ANNOTATIONS.targetGpuCacheUtilization;
const GIE_POOL_CRD = join(
  import.meta.dirname,
  "..",
  "..",
  "deploy",
  "crds",
  "inference.networking.k8s.io_inferencepools.yaml",
);

/** Fast autoscale ticks, no scale-down hold; min/max/target left to the pool's annotations. */
const CONFIG = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
autoscaling:
  interval: 50ms
  scaleDownStabilizationWindow: 0s
`;

/** One sample of `name` whose pool label (GIE's gauges call it `name`, ours `inference_pool`) is `pool`. */
async function metric(epp: RunningEpp, name: string, pool: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${epp.metricsPort}/metrics`)).text();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    if (line.includes(`inference_pool="${pool}"`) || line.includes(`name="${pool}"`))
      return Number(line.split(" ").pop());
  }
  return undefined;
}

async function until(what: string, read: () => Promise<number | undefined>, want: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  let last: number | undefined;
  while (Date.now() < deadline) {
    last = await read();
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: wanted ${want}, last saw ${last}`);
}

/** Three vLLM pods at 90 % KV-cache use. */
async function busyPods(): Promise<{ addresses: string[]; port: number; pods: FakePod[] }> {
  const addresses = freshAddresses(3);
  const { port, pods } = await startPods(addresses, () => ({
    status: 200,
    body: vllmMetrics({ waiting: 0, running: 1, kv: 0.9 }),
    delayMs: 0,
  }));
  return { addresses, port, pods };
}

function poolYaml(port: number, annotations: Record<string, string>): string {
  const a = Object.entries(annotations)
    .map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`)
    .join("\n");
  return `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool
  namespace: default
${a === "" ? "" : `  annotations:\n${a}\n`}spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: ${port}}]
  endpointPickerRef: {name: pool-epp, port: {number: 9002}}
`;
}

describe("autoscaling annotations from a resources file", () => {
  let dir: string;
  let epp: RunningEpp;
  let pods: FakePod[];
  let file: string;
  let podsYaml: string;
  let port: number;

  beforeAll(async () => {
    let addresses: string[];
    ({ addresses, port, pods } = await busyPods());
    dir = mkdtempSync(join(tmpdir(), "switchyard-autoscale-"));
    file = join(dir, "resources.yaml");
    podsYaml = addresses
      .map(
        (ip, i) => `---
apiVersion: v1
kind: Pod
metadata: {name: pod-${i}, namespace: default, labels: {app: vllm}}
status: {podIP: ${ip}, conditions: [{type: Ready, status: "True"}]}
`,
      )
      .join("");
    writeFileSync(file, poolYaml(port, { [MIN]: "1", [MAX]: "2", [TARGET]: "50" }) + podsYaml);
    writeFileSync(join(dir, "config.yaml"), CONFIG);
    epp = await startEpp(
      [
        "--resources",
        file,
        "--pool-name",
        "pool",
        "--config-file",
        join(dir, "config.yaml"),
        ...LOOPBACK_EPP_FLAGS,
        "--refresh-metrics-interval",
        "20ms",
      ],
      { logger: silentLogger },
    );
  });

  afterAll(async () => {
    await epp?.stop(100);
    await Promise.all((pods ?? []).map((p) => p.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("clamps to max-replicas, falls back on a bad value while routing on, and recovers", async () => {
    const recommended = () => metric(epp, "switchyard_pool_recommended_replicas", "pool");
    const errors = async () => (await metric(epp, "switchyard_autoscaling_hint_errors_total", "pool")) ?? 0;
    // 3 pods at 0.9 against a 50 % target want ceil(3 × 1.8) = 6; the annotation caps it at 2.
    await until("the annotated maximum", recommended, 2);
    expect(await errors()).toBe(0);

    writeFileSync(file, poolYaml(port, { [MIN]: "1", [MAX]: "two", [TARGET]: "50" }) + podsYaml);
    // Hints ignored: the default 75 % target and no maximum give ceil(3 × 1.2) = 4.
    await until("the defaults after a bad annotation", recommended, 4);
    await until("one counted hint error", errors, 1);
    // The pool still routes: its three endpoints are still known.
    expect(await metric(epp, "inference_pool_ready_pods", "pool")).toBe(3);

    writeFileSync(file, poolYaml(port, { [MAX]: "3" }) + podsYaml);
    await until("the fixed annotation", recommended, 3);
    expect(await errors()).toBe(1);
  }, 120_000);
});

describeWithTools(["etcd", "kube-apiserver"], "autoscaling annotations from a real kube-apiserver", (tools) => {
  let kube: KubeApiServer;
  let epp: RunningEpp;
  let pods: FakePod[];
  let port: number;

  beforeAll(async () => {
    let addresses: string[];
    ({ addresses, port, pods } = await busyPods());
    kube = await KubeApiServer.start({ etcd: tools.etcd, kubeApiserver: tools["kube-apiserver"] });
    // GIE's own InferencePool CRD, as shipped unchanged in deploy/crds/.
    await kube.applyCrdFiles([GIE_POOL_CRD]);
    await kube.apply(poolYaml(port, { [MIN]: "1", [MAX]: "2", [TARGET]: "50" }));
    for (const [i, ip] of addresses.entries()) await kube.createPod(`pod-${i}`, { ip, labels: { app: "vllm" } });
    const config = join(kube.dir, "config.yaml");
    writeFileSync(config, CONFIG);
    epp = await startEpp(
      [
        "--kubeconfig",
        kube.kubeconfig,
        "--pool-name",
        "pool",
        "--pool-namespace",
        "default",
        "--config-file",
        config,
        ...LOOPBACK_EPP_FLAGS,
        "--refresh-metrics-interval",
        "20ms",
      ],
      { logger: silentLogger },
    );
  }, 180_000);

  afterAll(async () => {
    await epp?.stop(100);
    await Promise.all((pods ?? []).map((p) => p.close()));
    await kube?.close();
  });

  it("reads the annotations of GIE's pool and follows their changes", async () => {
    const recommended = () => metric(epp, "switchyard_pool_recommended_replicas", "pool");
    const errors = async () => (await metric(epp, "switchyard_autoscaling_hint_errors_total", "pool")) ?? 0;
    await until("the annotated maximum", recommended, 2);

    await kube.patch("inference.networking.k8s.io/v1", "InferencePool", "pool", {
      metadata: { annotations: { [MAX]: "-1" } },
    });
    await until("the defaults after a bad annotation", recommended, 4);
    await until("one counted hint error", errors, 1);
    expect(await metric(epp, "inference_pool_ready_pods", "pool")).toBe(3);

    await kube.patch("inference.networking.k8s.io/v1", "InferencePool", "pool", {
      metadata: { annotations: { [MAX]: "3", [TARGET]: null, [MIN]: null } },
    });
    await until("the fixed annotation", recommended, 3);
    expect(await errors()).toBe(1);
  }, 120_000);
});
