/**
 * Shared pieces of the real-API-server suites (test/k8s/*.test.ts): fake model servers on 127.0.1.x serving vLLM
 * metrics, an in-process EPP in Kubernetes mode with a log capture, gRPC health checks, and the minimal Role the
 * EPP needs (docs/kubernetes.md "Minimal Role"; the chart grants the same).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { type RunningEpp, startEpp } from "../../src/cli/epp.js";
import { healthService } from "../../src/extproc/proto.js";
import { type FakePod, startPods } from "../datalayer/fake-pods.js";
import { freshAddresses, LOOPBACK_EPP_FLAGS, type PodState, vllmMetrics } from "../helpers/epp-harness.js";
import type { KubeApiServer, PolicyRule } from "../helpers/kube-apiserver.js";

export const WAIT = { timeout: 30_000, interval: 50 };

/** deploy/crds files this suite installs: the pool, plus the x-k8s.io kinds (objectives, rewrites, legacy models). */
export function crdFiles(): string[] {
  const dir = new URL("../../deploy/crds/", import.meta.url).pathname;
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .filter((f) => !f.startsWith("inference.networking.x-k8s.io_inferencepool"))
    .map((f) => join(dir, f));
}

export interface ModelServers {
  readonly addresses: string[];
  readonly port: number;
  readonly pods: FakePod[];
  set(index: number, state: PodState): void;
  close(): Promise<void>;
}

/** `n` fake vLLM servers on fresh 127.0.1.x addresses, one port. */
export async function startModelServers(n: number, initial: PodState = { waiting: 0, running: 0, kv: 0.1 }) {
  const addresses = freshAddresses(n);
  const { port, pods } = await startPods(addresses, () => ({ status: 200, body: "", delayMs: 0 }));
  const servers: ModelServers = {
    addresses,
    port,
    pods,
    set(index, state) {
      pods[index]!.behaviour = { status: 200, body: vllmMetrics(state), delayMs: 0 };
    },
    async close() {
      await Promise.all(pods.map((p) => p.close()));
    },
  };
  for (let i = 0; i < n; i++) servers.set(i, initial);
  return servers;
}

/** An InferencePool with upstream v1 fields only (selector.matchLabels, targetPorts, endpointPickerRef). */
export function poolManifest(name: string, matchLabels: Record<string, string>, port: number) {
  return {
    apiVersion: "inference.networking.k8s.io/v1",
    kind: "InferencePool",
    metadata: { name, namespace: "default" },
    spec: {
      selector: { matchLabels },
      targetPorts: [{ number: port }],
      endpointPickerRef: { name: `${name}-epp`, port: { number: 9002 } },
    },
  };
}

export interface CapturedEpp {
  readonly epp: RunningEpp;
  readonly lines: Record<string, unknown>[];
  /** Log lines whose msg contains `text`. */
  logged(text: string): Record<string, unknown>[];
  stop(): Promise<void>;
}

/** An in-process `switchyard epp` against the API server, logging into memory. */
export async function startKubeEpp(kubeconfig: string, flags: readonly string[]): Promise<CapturedEpp> {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const epp = await startEpp(
    ["--kubeconfig", kubeconfig, ...LOOPBACK_EPP_FLAGS, "--refresh-metrics-interval", "50ms", ...flags],
    { logger },
  );
  return {
    epp,
    lines,
    logged: (text) => lines.filter((l) => typeof l.msg === "string" && l.msg.includes(text)),
    stop: () => epp.stop(100),
  };
}

/** grpc.health.v1 Check; resolves with the status name (SERVING, NOT_SERVING, …) or the gRPC error code. */
export async function healthCheck(address: string, service: string, timeoutMs = 3000): Promise<string> {
  const Client = healthService();
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check(
      req: { service: string },
      options: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: { status: number }) => void,
    ): void;
  };
  try {
    return await new Promise((resolve) => {
      client.Check(
        { service },
        { deadline: Date.now() + timeoutMs },
        (err: grpc.ServiceError | null, res: { status: number | string }) => {
          if (err) resolve(`error:${grpc.status[err.code]}`);
          else
            resolve(
              typeof res.status === "string"
                ? res.status
                : (["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"][res.status] ?? String(res.status)),
            );
        },
      );
    });
  } finally {
    client.close();
  }
}

/**
 * The minimal Role (docs/kubernetes.md "Minimal Role"): read what the EPP watches, patch the status it owns, and the
 * named Lease for leader election.
 */
export function minimalRole(leaseName?: string): PolicyRule[] {
  const read = ["get", "list", "watch"];
  const rules: PolicyRule[] = [
    { apiGroups: [""], resources: ["pods"], verbs: read },
    { apiGroups: ["inference.networking.k8s.io"], resources: ["inferencepools"], verbs: read },
    {
      apiGroups: ["inference.networking.x-k8s.io"],
      resources: ["inferencemodels", "inferenceobjectives", "inferencemodelrewrites"],
      verbs: read,
    },
    { apiGroups: ["inference.networking.x-k8s.io"], resources: ["inferencemodels/status"], verbs: ["patch"] },
  ];
  if (leaseName !== undefined) {
    rules.push(
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create"] },
      {
        apiGroups: ["coordination.k8s.io"],
        resources: ["leases"],
        resourceNames: [leaseName],
        verbs: ["get", "update"],
      },
    );
  }
  return rules;
}

/** Ready pod objects for the test's label. */
export async function createPods(
  kube: KubeApiServer,
  prefix: string,
  labels: Record<string, string>,
  addresses: readonly string[],
): Promise<void> {
  for (const [i, ip] of addresses.entries()) await kube.createPod(`${prefix}-${i}`, { ip, labels });
}

export function keys(epp: RunningEpp): string[] {
  return epp.datastore
    .endpoints()
    .map((e) => e.key)
    .sort();
}

export const GIE_MODULE = "sigs.k8s.io/gateway-api-inference-extension@v1.5.0";

/** Where GIE v1.5.0's CRDs are: $SWITCHYARD_GIE_CRDS, else the Go module cache, else undefined. */
export function gieCrdDir(): string | undefined {
  const explicit = process.env.SWITCHYARD_GIE_CRDS;
  if (explicit) return existsSync(explicit) ? explicit : undefined;
  try {
    const cache = execFileSync("go", ["env", "GOMODCACHE"], { encoding: "utf8", timeout: 20_000 }).trim();
    const dir = join(cache, GIE_MODULE, "config/crd/bases");
    return existsSync(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}
