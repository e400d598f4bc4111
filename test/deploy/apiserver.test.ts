/**
 * Every manifest in deploy/ against a REAL kube-apiserver (test/helpers/kube-apiserver.ts) with GIE v1.5.0's CRDs
 * installed (deploy/crds/, byte-identical to upstream), switchyard's own, and the upstream CRDs of the third-party
 * objects deploy/ uses (Gateway API, Envoy Gateway, KEDA, prometheus-operator, Istio; `npm run setup:tools`
 * fetches them as `third-party-crds`). Each file goes through `kubectl apply --dry-run=server --validate=strict`,
 * as a user would apply it; the rendered chart too, in each of its shapes. The chart's Role is then bound to a
 * ServiceAccount token and exercised call by call (docs/kubernetes-rbac.md).
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { Agent, fetch } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { leaseNameFor } from "../../src/sources/leader.js";
import { KubeApiServer } from "../helpers/kube-apiserver.js";
import { describeWithTools } from "../helpers/tools.js";
import { healthCheck, keys, startKubeEpp, startModelServers } from "../k8s/helpers.js";
import { ROOT, yamlFiles } from "./crd-schema.js";

const run = promisify(execFile);
const DEPLOY = join(ROOT, "deploy");
const CHART = join(DEPLOY, "helm", "switchyard");
const NS = "llm";
const RELEASE = "llama4-pool";

/**
 * YAML files in deploy/ that are not Kubernetes objects, and why; everything else must apply. (deploy/dashboards/ is
 * a Grafana dashboard in JSON, deploy/crds/ is installed rather than applied, deploy/helm/ is applied rendered.)
 */
const NOT_API_OBJECTS: Readonly<Record<string, string>> = {
  "deploy/gateway/envoy-gateway/envoy-gateway-values.yaml": "Helm values for Envoy Gateway's chart",
  "deploy/gateway/envoy-gateway-policies/envoy-gateway-values.yaml": "Helm values for Envoy Gateway's chart",
  "deploy/examples/profiles/gie-default.yaml":
    "an EndpointPickerConfig: the EPP's --config-file format (mounted from a ConfigMap), which no CRD serves, in GIE either",
  "deploy/examples/profiles/recommended.yaml": "an EndpointPickerConfig (as above)",
  "deploy/examples/profiles/predictive.yaml": "an EndpointPickerConfig (as above)",
  "deploy/envoy/envoy.yaml":
    "an Envoy bootstrap (static config for `envoy -c`), checked by test/deploy/envoy-config.test.ts",
  "deploy/envoy/envoy-gateway-like.yaml": "an Envoy bootstrap shaped like Envoy Gateway's (as above)",
};

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
}

function docs(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null && typeof o === "object");
}

describeWithTools(
  ["etcd", "kube-apiserver", "kubectl", "helm", "third-party-crds"],
  "deploy/ on a real kube-apiserver with GIE's CRDs",
  (tools) => {
    let kube: KubeApiServer;

    async function kubectl(args: readonly string[], input?: string): Promise<string> {
      return await kube.kubectl(args, input);
    }

    /** `kubectl apply --dry-run=server --validate=strict`; resolves with the applied object names. */
    async function dryRun(file: string): Promise<string[]> {
      const out = await kubectl(["apply", "--dry-run=server", "--validate=strict", "-o", "name", "-f", file]);
      return out.split("\n").filter((l) => l !== "");
    }

    /** A 1 h token for the chart's ServiceAccount (TokenRequest API). */
    async function chartToken(): Promise<string> {
      const req = (await kube.request("POST", `/api/v1/namespaces/${NS}/serviceaccounts/${RELEASE}-epp/token`, {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { expirationSeconds: 3600 },
      })) as { status: { token: string } };
      return req.status.token;
    }

    async function render(...set: string[]): Promise<string> {
      const args = ["template", RELEASE, CHART, "--namespace", NS, ...set.flatMap((s) => ["--set", s])];
      return (await run(tools.helm, args, { timeout: 60_000, maxBuffer: 16 << 20 })).stdout;
    }

    beforeAll(async () => {
      kube = await KubeApiServer.start({
        etcd: tools.etcd,
        kubeApiserver: tools["kube-apiserver"],
        kubectl: tools.kubectl,
      });
      const thirdParty = (await run(tools["third-party-crds"], [])).stdout.trim();
      await kube.applyCrdFiles([
        ...yamlFiles(join(DEPLOY, "crds")),
        ...readdirSync(thirdParty)
          .filter((f) => f.endsWith(".yaml"))
          .map((f) => join(thirdParty, f)),
      ]);
      await kube.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: NS } });
    }, 240_000);

    afterAll(async () => {
      await kube?.close();
    });

    it("serves GIE's InferencePool CRD as API-approved (the protected k8s.io group)", async () => {
      const crd = JSON.parse(
        await kubectl(["get", "crd", "inferencepools.inference.networking.k8s.io", "-o", "json"]),
      ) as { status: { conditions: { type: string; status: string }[] } };
      const conditions = Object.fromEntries(crd.status.conditions.map((c) => [c.type, c.status]));
      expect(conditions).toMatchObject({ Established: "True", KubernetesAPIApprovalPolicyConformant: "True" });
    });

    it("accepts every manifest in deploy/ with strict field validation", async () => {
      const files = yamlFiles(DEPLOY)
        .map((f) => relative(ROOT, f))
        .filter((f) => !f.startsWith("deploy/crds/") && !f.startsWith("deploy/helm/"));
      const applied: string[] = [];
      for (const file of files) {
        if (Object.hasOwn(NOT_API_OBJECTS, file)) continue;
        const objects = docs(readFileSync(join(ROOT, file), "utf8"));
        expect(objects.length, `${file} has no Kubernetes object`).toBeGreaterThan(0);
        const names = await dryRun(join(ROOT, file));
        expect(names, file).toHaveLength(objects.length);
        applied.push(...names);
      }
      // Every exclusion is still a file (a renamed file must not silently escape the check).
      for (const file of Object.keys(NOT_API_OBJECTS)) expect(files, file).toContain(file);
      // Each kind deploy/ ships reached the server (kubectl prints lower-case kind.group/name).
      for (const kind of [
        "inferencepool.inference.networking.k8s.io/llama4-pool",
        "inferencemodel.inference.networking.x-k8s.io/llama4-17b-instruct",
        "inferenceobjective.inference.networking.x-k8s.io/interactive",
        "inferencemodelrewrite.inference.networking.x-k8s.io/llama4-canary",
        "httproute.gateway.networking.k8s.io/",
        "gateway.gateway.networking.k8s.io/",
        "envoyextensionpolicy.gateway.envoyproxy.io/",
        "envoypatchpolicy.gateway.envoyproxy.io/",
        "backend.gateway.envoyproxy.io/",
        "scaledobject.keda.sh/",
        "horizontalpodautoscaler.autoscaling/",
        "prometheusrule.monitoring.coreos.com/",
        "deployment.apps/llama4-17b-sim",
      ]) {
        expect(
          applied.some((n) => n.startsWith(kind)),
          kind,
        ).toBe(true);
      }
    });

    it("rejects the seed article's forked pool fields (the check is strict, not vacuous)", async () => {
      const seed = docs(readFileSync(join(DEPLOY, "examples", "seed", "inferencepool.yaml"), "utf8"))[0]!;
      const forked = structuredClone(seed) as Obj & { spec: Record<string, unknown> };
      forked.spec.minReplicas = 3;
      forked.spec.maxReplicas = 10;
      forked.spec.targetLoad = { gpuCacheUtilization: 75 };
      const file = join(kube.dir, "forked-pool.yaml");
      writeFileSync(file, JSON.stringify(forked));
      const err = await dryRun(file).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/strict decoding error: unknown field "spec\.maxReplicas"/);
      expect(err?.message).toMatch(/unknown field "spec\.targetLoad"/);
    });

    it("accepts the rendered chart in each of its shapes", async () => {
      const shapes: [string, string[]][] = [
        ["defaults", []],
        [
          "HA, Istio, ServiceMonitor, autoscaling annotations",
          [
            "inferenceExtension.replicas=3",
            "provider.name=istio",
            "inferenceExtension.monitoring.prometheus.enabled=true",
            "inferencePool.autoscaling.minReplicas=2",
            "inferencePool.autoscaling.maxReplicas=8",
            "inferencePool.autoscaling.targetGpuCacheUtilization=80",
          ],
        ],
        ["legacy x-k8s.io pool", ["inferencePool.apiVersion=inference.networking.x-k8s.io/v1alpha2"]],
      ];
      for (const [label, set] of shapes) {
        const text = await render(...set);
        const file = join(kube.dir, `chart-${shapes.findIndex((s) => s[0] === label)}.yaml`);
        writeFileSync(file, text);
        const names = await dryRun(file);
        expect(names, label).toHaveLength(docs(text).length);
      }
    });

    it("the chart's Role allows exactly the EPP's calls, through a ServiceAccount token", async () => {
      const ha = docs(await render("inferenceExtension.replicas=3"));
      await kube.apply(ha.filter((o) => ["ServiceAccount", "Role", "RoleBinding", "InferencePool"].includes(o.kind)));
      await kube.apply([
        {
          apiVersion: "inference.networking.x-k8s.io/v1alpha2",
          kind: "InferenceModel",
          metadata: { name: "m", namespace: NS },
          spec: { modelName: "m", poolRef: { name: RELEASE } },
        },
      ]);
      const token = await chartToken();
      const agent = new Agent({ connect: { ca: kube.caCertPem } });
      const as = async (method: string, path: string, body?: unknown, contentType = "application/json") => {
        const res = await fetch(kube.url + path, {
          method,
          dispatcher: agent,
          headers: { authorization: `Bearer ${token}`, "content-type": contentType, accept: "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(30_000),
        });
        const text = await res.text(); // a watch with timeoutSeconds ends by itself
        return { status: res.status, text };
      };
      const code = async (method: string, path: string, body?: unknown, contentType?: string) =>
        (await as(method, path, body, contentType)).status;
      try {
        const pools = `/apis/inference.networking.k8s.io/v1/namespaces/${NS}/inferencepools`;
        const x = `/apis/inference.networking.x-k8s.io/v1alpha2/namespaces/${NS}`;
        const leases = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`;
        const lease = leaseNameFor(NS, RELEASE);
        const watch = "watch=true&timeoutSeconds=1";
        const allowed: [string, string][] = [
          ["GET", `/api/v1/namespaces/${NS}/pods`],
          ["GET", `/api/v1/namespaces/${NS}/pods?labelSelector=app%3Dvllm&${watch}`],
          ["GET", `${pools}?fieldSelector=metadata.name%3D${RELEASE}`],
          ["GET", `${pools}?fieldSelector=metadata.name%3D${RELEASE}&${watch}`],
          ["GET", `${x}/inferencemodels`],
          ["GET", `${x}/inferencemodels?${watch}`],
          ["GET", `${x}/inferenceobjectives`],
          ["GET", `${x}/inferenceobjectives?${watch}`],
          ["GET", `${x}/inferencemodelrewrites`],
          ["GET", `${x}/inferencemodelrewrites?${watch}`],
        ];
        for (const [method, path] of allowed) expect(await code(method, path), `${method} ${path}`).toBe(200);
        const listed = JSON.parse((await as("GET", `${pools}?fieldSelector=metadata.name%3D${RELEASE}`)).text) as {
          items: unknown[];
        };
        expect(listed.items).toHaveLength(1);

        const accepted = {
          type: "Accepted",
          status: "True",
          reason: "Accepted",
          message: "",
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        };
        const status = { status: { conditions: [accepted] } };
        // What the EPP writes: a merge patch of the status subresource.
        expect(await code("PATCH", `${x}/inferencemodels/m/status`, status, "application/merge-patch+json")).toBe(200);

        // Leader election: create the lease, read and renew it.
        const body = {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: lease, namespace: NS },
          spec: { holderIdentity: "epp-0", leaseDurationSeconds: 15 },
        };
        expect(await code("POST", leases, body)).toBe(201);
        const current = JSON.parse((await as("GET", `${leases}/${lease}`)).text) as { metadata: object };
        expect(await code("PUT", `${leases}/${lease}`, { ...current, spec: { holderIdentity: "epp-1" } })).toBe(200);

        const denied: [string, string, unknown?][] = [
          ["GET", `/api/v1/namespaces/${NS}/pods/any`], // no get
          ["DELETE", `/api/v1/namespaces/${NS}/pods/any`],
          ["GET", "/api/v1/namespaces/default/pods"], // another namespace
          ["GET", pools], // the pool rule needs its name as a field selector
          ["GET", `${pools}?fieldSelector=metadata.name%3Dsomeone-elses-pool`],
          ["GET", `${pools}/${RELEASE}`],
          ["PUT", `${x}/inferencemodels/m/status`, { metadata: { name: "m" } }], // no update
          ["PATCH", `${x}/inferencemodels/m`, { spec: { modelName: "x" } }],
          ["GET", `${leases}/another-lease`],
          ["DELETE", `${leases}/${lease}`],
        ];
        for (const [method, path, b] of denied) {
          const contentType = method === "PATCH" ? "application/merge-patch+json" : "application/json";
          expect(await code(method, path, b, contentType), `${method} ${path}`).toBe(403);
        }
      } finally {
        await agent.close();
      }
    });

    it("runs the EPP with the chart's own args, Role and ServiceAccount token (leader election on)", async () => {
      const servers = await startModelServers(2);
      let epp: Awaited<ReturnType<typeof startKubeEpp>> | undefined;
      try {
        const objs = docs(
          await render("inferenceExtension.replicas=2", `inferencePool.targetPorts[0].number=${servers.port}`),
        );
        await kube.apply(
          objs.filter((o) => ["ServiceAccount", "Role", "RoleBinding", "InferencePool"].includes(o.kind)),
        );
        const labels = (
          objs.find((o) => o.kind === "InferencePool") as unknown as {
            spec: { selector: { matchLabels: Record<string, string> } };
          }
        ).spec.selector.matchLabels;
        for (const [i, ip] of servers.addresses.entries()) {
          await kube.createPod(`vllm-${i}`, { ip, labels, namespace: NS });
        }
        await kube.apply({
          apiVersion: "inference.networking.x-k8s.io/v1alpha2",
          kind: "InferenceModel",
          metadata: { name: "chart-model", namespace: NS },
          spec: { modelName: "chart-model", poolRef: { name: RELEASE } },
        });
        const kubeconfig = join(kube.dir, "chart-sa.kubeconfig");
        writeFileSync(
          kubeconfig,
          JSON.stringify({
            apiVersion: "v1",
            kind: "Config",
            clusters: [
              {
                name: "c",
                cluster: {
                  server: kube.url,
                  "certificate-authority-data": Buffer.from(kube.caCertPem).toString("base64"),
                },
              },
            ],
            users: [{ name: "u", user: { token: await chartToken() } }],
            contexts: [{ name: "x", context: { cluster: "c", user: "u", namespace: NS } }],
            "current-context": "x",
          }),
        );
        // The pool, namespace, group and leader-election flags exactly as the chart passes them; ports and the
        // config file are the in-cluster ones, replaced by loopback ports and the built-in default profile.
        const deployment = objs.find((o) => o.kind === "Deployment") as unknown as {
          spec: { template: { spec: { containers: { args: string[] }[] } } };
        };
        const args = deployment.spec.template.spec.containers[0]!.args.filter((a) => /^--(pool-|ha-)/.test(a));
        expect(args).toContain("--ha-enable-leader-election=true");
        epp = await startKubeEpp(kubeconfig, args);
        const e = epp;
        const deadline = Date.now() + 60_000;
        const lease = leaseNameFor(NS, RELEASE);
        const done = async () => {
          const l = (await kube.get("coordination.k8s.io/v1", "Lease", lease, NS)) as
            | { spec?: { holderIdentity?: string } }
            | undefined;
          const m = (await kube.get("inference.networking.x-k8s.io/v1alpha2", "InferenceModel", "chart-model", NS)) as {
            status?: { conditions?: { type: string; status: string }[] };
          };
          return (
            keys(e.epp).length === 2 &&
            (l?.spec?.holderIdentity ?? "") !== "" &&
            m.status?.conditions?.some((c) => c.type === "Accepted" && c.status === "True") === true &&
            (await healthCheck(`127.0.0.1:${e.epp.healthPort}`, "readiness")) === "SERVING"
          );
        };
        while (!(await done())) {
          if (Date.now() > deadline) {
            throw new Error(
              `not synced, leading and ready with the chart's Role: ${JSON.stringify(e.lines.slice(-5))}`,
            );
          }
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(keys(e.epp)).toEqual(servers.addresses.map((a) => `${a}:${servers.port}`).sort());
        // Nothing was refused along the way.
        const refused = e.lines.filter((l) => (l.level as number) >= 40 && /forbidden|403/i.test(JSON.stringify(l)));
        expect(refused).toEqual([]);
      } finally {
        await epp?.stop();
        await servers.close();
      }
    }, 120_000);
  },
);
