/**
 * Renders the chart with the real `helm` binary and checks the objects. `npm run setup:tools` installs helm;
 * without it the group is skipped with one line (a failure under SWITCHYARD_REQUIRE_TOOLS=1, as in CI).
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { parseFlags } from "../../src/common/flags.js";
import { EPP_FLAGS } from "../../src/epp/flags.js";
import { leaseNameFor } from "../../src/sources/leader.js";
import { normalizeObject } from "../../src/sources/normalize.js";
import { describeWithTools } from "../helpers/tools.js";
import { type CrdVersion, loadCrds, ROOT, validateObject } from "./crd-schema.js";

const run = promisify(execFile);
const CHART = join(ROOT, "deploy", "helm", "switchyard");
const NS = "llm";
const RELEASE = "llama4-pool";

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
  rules?: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[];
  [k: string]: unknown;
}

/** The Role's rules without leader election (docs/kubernetes-rbac.md). */
function baseRules(pool: string, poolGroup: string): K8sObject["rules"] {
  return [
    { apiGroups: [""], resources: ["pods"], verbs: ["list", "watch"] },
    { apiGroups: [poolGroup], resources: ["inferencepools"], resourceNames: [pool], verbs: ["list", "watch"] },
    {
      apiGroups: ["inference.networking.x-k8s.io"],
      resources: ["inferencemodels", "inferenceobjectives", "inferencemodelrewrites"],
      verbs: ["list", "watch"],
    },
    { apiGroups: ["inference.networking.x-k8s.io"], resources: ["inferencemodels/status"], verbs: ["patch"] },
  ];
}

let helm: string | undefined;
let crds: Map<string, CrdVersion>;

async function render(...set: string[]): Promise<K8sObject[]> {
  const args = ["template", RELEASE, CHART, "--namespace", NS, ...set.flatMap((s) => ["--set", s])];
  const { stdout } = await run(helm!, args, { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((d): d is K8sObject => d !== null);
}

function one(objs: K8sObject[], kind: string): K8sObject {
  const found = objs.filter((o) => o.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0]!;
}

interface Container {
  args: string[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { grpc: { port: number; service: string } };
  readinessProbe: { grpc: { port: number; service: string } };
  securityContext: Record<string, unknown>;
  command?: string[];
}

function podSpec(objs: K8sObject[]): {
  securityContext: Record<string, unknown>;
  containers: Container[];
  serviceAccountName: string;
} {
  const d = one(objs, "Deployment") as unknown as { spec: { template: { spec: never } } };
  return d.spec.template.spec;
}

describeWithTools(["helm"], "helm chart deploy/helm/switchyard", (tools) => {
  beforeAll(() => {
    helm = tools.helm;
    crds = loadCrds();
  });

  it("renders the single-replica install with GIE's wiring", async () => {
    const objs = await render();
    expect(objs.map((o) => o.kind).sort()).toEqual(
      [
        "ConfigMap",
        "Deployment",
        "InferencePool",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
      ].sort(),
    );
    for (const o of objs) expect(o.metadata.namespace, o.kind).toBe(NS);

    const pod = podSpec(objs);
    const c = pod.containers[0]!;
    expect(c.args).toEqual([
      `--pool-name=${RELEASE}`,
      `--pool-namespace=${NS}`,
      "--pool-group=inference.networking.k8s.io",
      "--grpc-port=9002",
      "--grpc-health-port=9003",
      "--metrics-port=9090",
      "--config-file=/config/default-plugins.yaml",
      "--metrics-endpoint-auth=false",
    ]);
    expect(c.ports.map((p) => [p.name, p.containerPort])).toEqual([
      ["grpc", 9002],
      ["grpc-health", 9003],
      ["metrics", 9090],
    ]);
    // The real `switchyard epp` accepts exactly these args.
    const flags = parseFlags(EPP_FLAGS, c.args);
    expect(flags["pool-name"]).toBe(RELEASE);
    expect(flags["grpc-health-port"]).toBe(9003);
    expect(flags.$args).toEqual([]);
    expect(c.livenessProbe.grpc).toEqual({ port: 9003, service: "liveness" });
    expect(c.readinessProbe.grpc).toEqual({ port: 9003, service: "readiness" });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
    expect(pod.serviceAccountName).toBe(`${RELEASE}-epp`);
    expect((one(objs, "Deployment").spec as { strategy: { type: string } }).strategy.type).toBe("RollingUpdate");

    const svc = one(objs, "Service") as unknown as {
      metadata: { name: string };
      spec: { ports: { name: string; port: number }[] };
    };
    expect(svc.metadata.name).toBe(`${RELEASE}-epp`);
    expect(svc.spec.ports.map((p) => [p.name, p.port])).toEqual([
      ["grpc", 9002],
      ["grpc-health", 9003],
      ["metrics", 9090],
    ]);

    const pool = one(objs, "InferencePool");
    expect(validateObject(crds, pool)).toEqual([]);
    expect(pool.metadata.name).toBe(RELEASE);
    expect(pool.spec).toMatchObject({
      selector: { matchLabels: { app: "vllm-llama3-8b-instruct" } },
      targetPorts: [{ number: 8000 }],
      endpointPickerRef: { name: `${RELEASE}-epp`, port: { number: 9002 }, failureMode: "FailOpen" },
    });

    const config = parseYaml(one(objs, "ConfigMap").data!["default-plugins.yaml"]!) as {
      kind: string;
      plugins: { type: string }[];
      schedulingProfiles: { plugins: { pluginRef: string; weight?: number }[] }[];
    };
    expect(config.kind).toBe("EndpointPickerConfig");
    expect(config.schedulingProfiles[0]!.plugins).toEqual([
      { pluginRef: "served-model-filter" },
      { pluginRef: "queue-scorer", weight: 2 },
      { pluginRef: "kv-cache-utilization-scorer", weight: 2 },
      { pluginRef: "lora-affinity-scorer", weight: 1 },
      { pluginRef: "max-score-picker" },
    ]);
    // The rendered config is the EPP's own default profile, so it must load as one.
    const { loadPickerConfig } = await import("../../src/scheduling/index.js");
    const loaded = loadPickerConfig({ text: one(objs, "ConfigMap").data!["default-plugins.yaml"]!, file: "chart" });
    expect(loaded.warnings).toEqual([]);
  });

  it("grants exactly the calls the EPP makes: list/watch, status patch, its own pool by name", async () => {
    const objs = await render();
    const role = one(objs, "Role");
    // What src/sources/kubernetes.ts calls (GET list + watch, PATCH status), nothing more: no get, no update, no
    // wildcard. The pool is listed with fieldSelector metadata.name=<pool>, so the rule can name it.
    expect(role.rules).toEqual(baseRules(RELEASE, "inference.networking.k8s.io"));
    const binding = one(objs, "RoleBinding") as unknown as {
      subjects: { kind: string; name: string }[];
      roleRef: { kind: string; name: string };
    };
    expect(binding.roleRef).toMatchObject({ kind: "Role", name: role.metadata.name });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: `${RELEASE}-epp`, namespace: NS }]);
    // Namespace-scoped only.
    expect(objs.some((o) => o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding")).toBe(false);
  });

  it("turns on HA for replicas > 1 and Istio's DestinationRule for provider istio", async () => {
    const objs = await render("inferenceExtension.replicas=3", "provider.name=istio");
    expect(objs.map((o) => o.kind).sort()).toEqual(
      [
        "ConfigMap",
        "Deployment",
        "DestinationRule",
        "InferencePool",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
      ].sort(),
    );
    const deploy = one(objs, "Deployment");
    expect(deploy.spec).toMatchObject({ replicas: 3, strategy: { type: "Recreate" } });
    const haArgs = podSpec(objs).containers[0]!.args;
    expect(haArgs).toContain("--ha-enable-leader-election=true");
    expect(parseFlags(EPP_FLAGS, haArgs)["ha-enable-leader-election"]).toBe(true);

    const pdb = one(objs, "PodDisruptionBudget");
    expect(pdb.spec).toMatchObject({ minAvailable: 1, unhealthyPodEvictionPolicy: "AlwaysAllow" });
    const podLabels = (deploy.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata
      .labels;
    expect(podLabels).toMatchObject(
      (pdb.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels,
    );

    // Leases: create (cannot be name-scoped: the real API server refuses a name-scoped create with 403) plus
    // get/update on exactly GIE's lease name; the rest as without HA.
    expect(one(objs, "Role").rules!.slice(0, 4)).toEqual(baseRules(RELEASE, "inference.networking.k8s.io"));
    const leaseRules = one(objs, "Role").rules!.slice(4);
    expect(leaseRules).toEqual([
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create"] },
      {
        apiGroups: ["coordination.k8s.io"],
        resources: ["leases"],
        resourceNames: [leaseNameFor(NS, RELEASE)],
        verbs: ["get", "update"],
      },
    ]);

    const dr = one(objs, "DestinationRule");
    expect(dr.spec).toEqual({
      host: `${RELEASE}-epp.${NS}.svc.cluster.local`,
      trafficPolicy: { tls: { mode: "SIMPLE", insecureSkipVerify: true } },
    });
    expect(validateObject(crds, one(objs, "InferencePool"))).toEqual([]);
  });

  it("renders a legacy v1alpha2 pool that validates, with matching RBAC and --pool-group", async () => {
    const objs = await render("inferencePool.apiVersion=inference.networking.x-k8s.io/v1alpha2");
    const pool = one(objs, "InferencePool");
    expect(validateObject(crds, pool)).toEqual([]);
    expect(pool.spec).toMatchObject({ targetPortNumber: 8000, extensionRef: { portNumber: 9002 } });
    expect(podSpec(objs).containers[0]!.args).toContain("--pool-group=inference.networking.x-k8s.io");
    expect(one(objs, "Role").rules).toEqual(baseRules(RELEASE, "inference.networking.x-k8s.io"));
  });

  it("renders a ServiceMonitor that selects the EPP Service, flags, and custom plugin configs", async () => {
    const objs = await render(
      "inferenceExtension.monitoring.prometheus.enabled=true",
      "inferenceExtension.flags.refresh-metrics-interval=100ms",
      "inferenceExtension.pluginsConfigFile=mine.yaml",
      "inferenceExtension.pluginsCustomConfig.mine\\.yaml=kind: EndpointPickerConfig",
      "inferencePool.targetPorts[0].number=8000",
      "inferencePool.targetPorts[1].number=8001",
    );
    const sm = one(objs, "ServiceMonitor") as unknown as {
      spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] };
    };
    expect(one(objs, "Service").metadata.labels).toMatchObject(sm.spec.selector.matchLabels);
    expect(sm.spec.endpoints[0]!.port).toBe("metrics");
    const args = podSpec(objs).containers[0]!.args;
    expect(args).toContain("--refresh-metrics-interval=100ms");
    expect(parseFlags(EPP_FLAGS, args)["refresh-metrics-interval"]).toBe(100);
    expect(args).toContain("--config-file=/config/mine.yaml");
    expect(one(objs, "ConfigMap").data!["mine.yaml"]).toContain("EndpointPickerConfig");
    const pool = one(objs, "InferencePool");
    expect(pool.spec!.targetPorts).toEqual([{ number: 8000 }, { number: 8001 }]);
    expect(validateObject(crds, pool)).toEqual([]);
  });

  it("writes the pool's autoscaling intent as annotations the EPP reads, and none by default", async () => {
    expect(one(await render(), "InferencePool").metadata).not.toHaveProperty("annotations");
    const pool = one(
      await render(
        "inferencePool.autoscaling.minReplicas=0",
        "inferencePool.autoscaling.maxReplicas=8",
        "inferencePool.autoscaling.targetGpuCacheUtilization=62.5",
      ),
      "InferencePool",
    );
    expect((pool.metadata as { annotations?: unknown }).annotations).toEqual({
      "autoscaling.switchyard.io/min-replicas": "0",
      "autoscaling.switchyard.io/max-replicas": "8",
      "autoscaling.switchyard.io/target-gpu-cache-utilization": "62.5",
    });
    expect(validateObject(crds, pool)).toEqual([]);
    const spec = normalizeObject(pool, "chart");
    expect(spec.kind === "InferencePool" && spec.spec).toMatchObject({
      minReplicas: 0,
      maxReplicas: 8,
      targetGpuCacheUtilization: 0.625,
    });
    expect(spec.kind === "InferencePool" && spec.spec.autoscalingError).toBeUndefined();
  });

  it("keeps the EPP's ports to the cluster with a NetworkPolicy, and wires metrics auth to the Prometheus switch", async () => {
    const objs = await render();
    const np = one(objs, "NetworkPolicy") as unknown as {
      spec: {
        podSelector: { matchLabels: Record<string, string> };
        policyTypes: string[];
        ingress: { ports: { port: number }[]; from?: unknown[] }[];
      };
    };
    const podLabels = (one(objs, "Deployment").spec as { template: { metadata: { labels: Record<string, string> } } })
      .template.metadata.labels;
    expect(podLabels).toMatchObject(np.spec.podSelector.matchLabels);
    expect(np.spec.policyTypes).toEqual(["Ingress"]);
    expect(np.spec.ingress.map((r) => r.ports.map((p) => p.port))).toEqual([[9002], [9090], [9003]]);
    expect(np.spec.ingress[0]!.from).toEqual([{ namespaceSelector: {} }]);
    expect(
      (await render("inferenceExtension.networkPolicy.enabled=false")).some((o) => o.kind === "NetworkPolicy"),
    ).toBe(false);

    const authed = await render(
      "inferenceExtension.monitoring.prometheus.enabled=true",
      "inferenceExtension.monitoring.prometheus.auth.enabled=true",
    );
    const args = podSpec(authed).containers[0]!.args;
    expect(parseFlags(EPP_FLAGS, args)["metrics-endpoint-auth"]).toBe(true);
    const clusterRoles = authed.filter((o) => o.kind === "ClusterRole");
    expect(
      clusterRoles.flatMap((r) => r.rules!.map((x) => `${x.apiGroups?.[0] ?? ""}/${x.resources?.[0] ?? ""}`)),
    ).toEqual(
      expect.arrayContaining(["authentication.k8s.io/tokenreviews", "authorization.k8s.io/subjectaccessreviews"]),
    );
    expect(clusterRoles.some((r) => JSON.stringify(r.rules).includes('"nonResourceURLs":["/metrics"]'))).toBe(true);
    const binding = one(authed, "ClusterRoleBinding") as unknown as { subjects: { name: string }[] };
    expect(binding.subjects[0]!.name).toBe(`${RELEASE}-epp`);
  });

  it("fails the render with a clear message for invalid values", async () => {
    for (const [set, message] of [
      ["provider.name=gke", /provider.name must be none or istio/],
      ["inferenceExtension.replicas=0", /replicas must be >= 1/],
      ["inferenceExtension.pluginsConfigFile=missing.yaml", /neither default-plugins.yaml nor a key/],
      ["inferencePool.modelServerType=tgi", /modelServerType must be/],
      ["inferencePool.autoscaling.maxReplica=3", /inferencePool.autoscaling.maxReplica is not a key/],
    ] as const) {
      await expect(render(set), set).rejects.toThrow(message);
    }
  });
});
