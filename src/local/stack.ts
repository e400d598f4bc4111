/**
 * The simulated fleet shared by `switchyard up`, the e2e tests and the benchmark: which simulators run where, the
 * InferencePool / InferenceModel / Pod documents that describe them to the EPP's file source, and the command line
 * of the EPP that serves them.
 */

export interface SimPod {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** Latency multiplier (1 = baseline, 2 = twice as slow). */
  readonly speed: number;
  readonly loras: readonly string[];
  readonly maxLoras: number;
}

export interface FleetOptions {
  readonly count: number;
  /** First three octets, e.g. "127.0.1" → 127.0.1.1, 127.0.1.2, … */
  readonly addressPrefix: string;
  readonly port: number;
  /** Speeds cycled over the pods. */
  readonly speeds?: readonly number[];
  /** Adapters served by the first `loraPods` pods. */
  readonly loras?: readonly string[];
  readonly loraPods?: number;
  readonly maxLoras?: number;
}

export const BASE_MODEL = "meta-llama/Llama-3.1-8B-Instruct";
export const POOL_NAME = "local-pool";
export const POOL_NAMESPACE = "default";

export function fleet(options: FleetOptions): SimPod[] {
  const speeds = options.speeds ?? [1];
  const loras = options.loras ?? ["sql-lora", "tweet-summary-lora"];
  const loraPods = options.loraPods ?? 2;
  return Array.from({ length: options.count }, (_, i) => ({
    name: `sim-${i + 1}`,
    address: `${options.addressPrefix}.${i + 1}`,
    port: options.port,
    speed: speeds[i % speeds.length]!,
    loras: i < loraPods ? loras : [],
    maxLoras: options.maxLoras ?? 2,
  }));
}

/** The `switchyard sim` arguments for one pod (set env POD_NAME=pod.name for the x-inference-pod header). */
export function simArgs(pod: SimPod, extra: readonly string[] = []): string[] {
  const args = ["--host", pod.address, "--port", String(pod.port), "--model", BASE_MODEL, "--speed", String(pod.speed)];
  if (pod.loras.length > 0) args.push("--lora-modules", pod.loras.join(","), "--max-loras", String(pod.maxLoras));
  return [...args, ...extra];
}

/** Multi-document YAML for the EPP's `--resources`. Models: one per criticality, plus the LoRA adapters. */
export function fleetResources(
  pods: readonly SimPod[],
  loras: readonly string[] = ["sql-lora", "tweet-summary-lora"],
  /** Pool target ports (default: the first pod's port). Servers that cannot bind one address each (e.g.
   * llm-d-inference-sim, which listens on all interfaces) share one address on several ports, up to GIE's 8. */
  targetPorts: readonly number[] = [pods[0]?.port ?? 8000],
): string {
  const now = "2026-01-01T00:00:00Z";
  const docs: string[] = [
    `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: ${POOL_NAME}
  namespace: ${POOL_NAMESPACE}
spec:
  selector:
    matchLabels:
      app: switchyard-sim
  targetPorts:
${targetPorts.map((p) => `    - number: ${p}`).join("\n")}
  endpointPickerRef:
    name: switchyard-epp
    port:
      number: 9002
    failureMode: FailOpen`,
    model("llama3", "Critical", BASE_MODEL, now),
    model("llama3-standard", "Standard", BASE_MODEL, now),
    model("llama3-batch", "Sheddable", BASE_MODEL, now),
    model(BASE_MODEL, "Standard", undefined, now),
    ...loras.map((l) => model(l, "Standard", undefined, now)),
    `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: batch
  namespace: ${POOL_NAMESPACE}
spec:
  priority: -1
  poolRef:
    name: ${POOL_NAME}`,
    `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata:
  name: interactive
  namespace: ${POOL_NAMESPACE}
spec:
  priority: 10
  poolRef:
    name: ${POOL_NAME}`,
  ];
  const seen = new Set<string>();
  for (const pod of pods) {
    // One Pod per address: pods sharing an address are ranks of one Pod reached on different target ports.
    if (seen.has(pod.address)) continue;
    seen.add(pod.address);
    docs.push(`apiVersion: v1
kind: Pod
metadata:
  name: ${pod.name}
  namespace: ${POOL_NAMESPACE}
  labels:
    app: switchyard-sim
status:
  podIP: ${pod.address}
  conditions:
    - type: Ready
      status: "True"`);
  }
  return `${docs.join("\n---\n")}\n`;
}

function model(modelName: string, criticality: string, target: string | undefined, created: string): string {
  const name = modelName
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/^-+|-+$/g, "");
  const targets = target ? `\n  targetModels:\n    - name: ${target}\n      weight: 100` : "";
  return `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata:
  name: ${name}
  namespace: ${POOL_NAMESPACE}
  creationTimestamp: "${created}"
spec:
  modelName: ${modelName}
  criticality: ${criticality}${targets}
  poolRef:
    name: ${POOL_NAME}`;
}

/**
 * The EPP's flags for plaintext on loopback with the given ports (0 = any): how the local stack, the benchmarks and
 * the tests run it beside their own pods.
 */
export function loopbackEppFlags(ports: { grpc: number; health: number; metrics: number }): string[] {
  return [
    "--secure-serving=false",
    "--host",
    "127.0.0.1",
    "--grpc-port",
    String(ports.grpc),
    "--grpc-health-port",
    String(ports.health),
    "--metrics-port",
    String(ports.metrics),
  ];
}

/**
 * `switchyard epp …` for the local fleet: the pool of fleetResources() read from `resources`, loopback ports, and
 * /debug/endpoints on (the live table, `switchyard top` and the benchmark's readiness wait read it).
 */
export function localEppArgs(o: {
  resources: string;
  ports: { grpc: number; health: number; metrics: number };
  logLevel: string;
}): string[] {
  return [
    "epp",
    "--resources",
    o.resources,
    "--pool-name",
    POOL_NAME,
    "--pool-namespace",
    POOL_NAMESPACE,
    ...loopbackEppFlags(o.ports),
    "--enable-debug-endpoints",
    "--log-level",
    o.logLevel,
  ];
}
