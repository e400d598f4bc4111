/**
 * An in-process EPP wired to fake vLLM pods on 127.0.1.x (same port, different addresses, like real pods) through
 * a resources file, plus the fake-Envoy ext_proc client. Shared by integration and e2e tests.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunningEpp, type StartEppOverrides, startEpp } from "../../src/cli/epp.js";
import { loopbackEppFlags } from "../../src/local/stack.js";
import { silentLogger } from "../../src/observability/logger.js";
import { type FakePod, type PodBehaviour, startPods } from "../datalayer/fake-pods.js";
import { connect, type FakeEnvoyClient } from "./extproc-client.js";

export interface PodState {
  waiting: number;
  running: number;
  kv: number;
  runningLoras?: readonly string[];
  waitingLoras?: readonly string[];
  maxLora?: number;
}

/** vLLM exposition text for one pod state, with vLLM's label shapes. */
export function vllmMetrics(s: PodState): string {
  const lines = [
    "# TYPE vllm:num_requests_running gauge",
    `vllm:num_requests_running{engine="0",model_name="base"} ${s.running}`,
    "# TYPE vllm:num_requests_waiting gauge",
    `vllm:num_requests_waiting{engine="0",model_name="base"} ${s.waiting}`,
    "# TYPE vllm:kv_cache_usage_perc gauge",
    `vllm:kv_cache_usage_perc{engine="0",model_name="base"} ${s.kv}`,
    'vllm:cache_config_info{block_size="16",num_gpu_blocks="2048",engine="0"} 1',
  ];
  if (s.maxLora !== undefined)
    lines.push(
      `vllm:lora_requests_info{max_lora="${s.maxLora}",running_lora_adapters="${(s.runningLoras ?? []).join(",")}",waiting_lora_adapters="${(s.waitingLoras ?? []).join(",")}"} ${Date.now() / 1000}`,
    );
  return `${lines.join("\n")}\n`;
}

export interface ModelDoc {
  name: string;
  criticality?: "Critical" | "Standard" | "Sheddable";
  targets?: readonly { name: string; weight: number }[];
}

export function resourcesYaml(
  poolName: string,
  port: number,
  pods: readonly string[],
  models: readonly ModelDoc[],
  extra = "",
): string {
  const docs = [
    `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: ${poolName}, namespace: default}
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: ${port}}]`,
    ...pods.map(
      (ip, i) => `apiVersion: v1
kind: Pod
metadata: {name: pod-${i + 1}, namespace: default, labels: {app: vllm}}
status:
  podIP: ${ip}
  conditions: [{type: Ready, status: "True"}]`,
    ),
    ...models.map(
      (m, i) => `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: model-${i}, namespace: default}
spec:
  modelName: ${JSON.stringify(m.name)}
  criticality: ${m.criticality ?? "Standard"}
  poolRef: {name: ${poolName}}${m.targets ? `\n  targetModels:\n${m.targets.map((t) => `    - {name: ${JSON.stringify(t.name)}, weight: ${t.weight}}`).join("\n")}` : ""}`,
    ),
  ];
  return `${docs.join("\n---\n")}\n${extra}`;
}

/** Plaintext, loopback-only, every port chosen by the OS: how tests run an in-process EPP. */
export const LOOPBACK_EPP_FLAGS: readonly string[] = [
  ...loopbackEppFlags({ grpc: 0, health: 0, metrics: 0 }),
  // Tests read /debug/endpoints; it is off by default (docs/security.md).
  "--enable-debug-endpoints",
  // Kubernetes-mode tests scrape without a token; test/observability/scrape-auth.test.ts turns the check back on.
  "--metrics-endpoint-auth=false",
];

export interface Harness {
  readonly epp: RunningEpp;
  readonly pods: FakePod[];
  readonly port: number;
  readonly client: FakeEnvoyClient;
  readonly dir: string;
  /** Sets a pod's metrics; the next scrape picks it up. */
  setPod(index: number, state: PodState): void;
  /** Resolves once every endpoint's metrics reflect the current pod states. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  readonly addresses?: readonly string[];
  readonly models?: readonly ModelDoc[];
  readonly extraResources?: string;
  readonly flags?: readonly string[];
  readonly overrides?: StartEppOverrides;
  readonly initial?: PodState;
}

let addressBlock = 0;

/** Each harness gets its own 127.0.1.x block so concurrent test files never collide. */
export function freshAddresses(n: number): string[] {
  addressBlock = (addressBlock + 1) % 50;
  const base = 10 + (((process.pid % 4) * 50 + addressBlock) % 240);
  return Array.from({ length: n }, (_, i) => `127.0.${1 + ((base + i) >> 8)}.${((base + i) % 254) + 1}`);
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const addresses = options.addresses ?? freshAddresses(3);
  const states: PodState[] = addresses.map(() => ({ ...(options.initial ?? { waiting: 0, running: 0, kv: 0.1 }) }));
  const { port, pods } = await startPods(addresses, () => ({ status: 200, body: "", delayMs: 0 }));
  const synced: PodBehaviour[] = [];
  const sync = () => {
    for (const [i, p] of pods.entries()) {
      p.behaviour = { status: 200, body: vllmMetrics(states[i]!), delayMs: 0 };
      synced[i] = p.behaviour;
    }
  };
  sync();
  const dir = mkdtempSync(join(tmpdir(), "switchyard-it-"));
  const file = join(dir, "resources.yaml");
  writeFileSync(file, resourcesYaml("pool", port, addresses, options.models ?? [], options.extraResources));
  const epp = await startEpp(
    [
      "--resources",
      file,
      "--pool-name",
      "pool",
      ...LOOPBACK_EPP_FLAGS,
      "--refresh-metrics-interval",
      "20ms",
      ...(options.flags ?? []),
    ],
    { logger: silentLogger, ...options.overrides },
  );
  const client = connect(`127.0.0.1:${epp.grpcPort}`);
  const harness: Harness = {
    epp,
    pods,
    port,
    client,
    dir,
    setPod(index, state) {
      states[index] = state;
      sync();
    },
    async settle() {
      const start = pods.map((p) => p.requests);
      // Two requests per pod after the change mean a scrape started after it; the pod having answered is not the
      // EPP having applied the answer (scrapes run in worker threads and a busy core delays the hand-over), so the
      // wait ends when the EPP's own view shows every pod's current state.
      const deadline = Date.now() + 10_000;
      const reflected = () => {
        const view = new Map(epp.snapshot().endpoints.map((e) => [e.key, e.metrics]));
        return pods.every((p, i) => {
          // A test that set a pod's behaviour itself gets the request-count wait only.
          if (p.behaviour !== synced[i]) return true;
          const m = view.get(`${p.address}:${port}`);
          const s = states[i]!;
          return (
            m != null &&
            m.queue === s.waiting &&
            m.running === s.running &&
            m.kvCacheUsage === s.kv &&
            (s.maxLora === undefined || m.maxLoras === s.maxLora)
          );
        });
      };
      while (pods.some((p, i) => p.requests < start[i]! + 2) || !reflected()) {
        if (Date.now() > deadline) throw new Error("pods' metrics did not reach the EPP within 10 s");
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async close() {
      client.close();
      await epp.stop(100);
      await Promise.all(pods.map((p) => p.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  // Start-up waits for one scrape per pod to land, whatever it said: some tests point the EPP at other metric
  // names, so the pods' vLLM texts need not parse.
  const deadline = Date.now() + 10_000;
  while (epp.snapshot().endpoints.filter((e) => e.ageMs !== null || e.lastScrapeError !== null).length < pods.length) {
    if (Date.now() > deadline) throw new Error("the pods were not scraped within 10 s of start-up");
    await new Promise((r) => setTimeout(r, 10));
  }
  return harness;
}

export function chatBody(model: string, content = "Hello there", extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ model, messages: [{ role: "user", content }], max_tokens: 16, ...extra });
}

export const CHAT_HEADERS = { ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json" };
