import { join, relative } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseFlags } from "../../src/cli/flags.js";
import { SIM_FLAGS } from "../../src/cli/sim.js";
import { normalizeObject } from "../../src/sources/normalize.js";
import { type CrdVersion, loadCrds, nonStructural, ROOT, validateObject, yamlDocs, yamlFiles } from "./crd-schema.js";

const DEPLOY = join(ROOT, "deploy");
let crds: Map<string, CrdVersion>;

beforeAll(() => {
  crds = loadCrds();
});

/**
 * Every parsed document outside the Helm chart and the Envoy bootstraps (templates are not YAML until rendered;
 * deploy/envoy is checked rendered, by a real Envoy, in test/deploy/envoy-config.test.ts).
 */
function manifests(): { file: string; doc: Record<string, unknown> }[] {
  const out: { file: string; doc: Record<string, unknown> }[] = [];
  for (const file of yamlFiles(DEPLOY)) {
    if (
      file.includes(`${join("deploy", "helm")}`) ||
      file.includes(join("deploy", "crds")) ||
      file.includes(join("deploy", "envoy"))
    )
      continue;
    for (const doc of yamlDocs(file)) if (doc !== null) out.push({ file: relative(ROOT, file), doc: doc as never });
  }
  return out;
}

/** Kubernetes objects (helm values files have no metadata) keyed by `Kind/name`. */
function objectsByName(): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const { doc } of manifests()) {
    const name = (doc.metadata as { name?: string } | undefined)?.name;
    if (typeof doc.kind === "string" && name !== undefined) out.set(`${doc.kind}/${name}`, doc);
  }
  return out;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

describe("deploy/crds", () => {
  it("serves every GIE resource switchyard reads, with structural schemas", () => {
    expect([...crds.keys()].sort()).toEqual([
      "inference.networking.k8s.io/v1 InferencePool",
      "inference.networking.x-k8s.io/v1alpha2 InferenceModel",
      "inference.networking.x-k8s.io/v1alpha2 InferenceModelRewrite",
      "inference.networking.x-k8s.io/v1alpha2 InferenceObjective",
      "inference.networking.x-k8s.io/v1alpha2 InferencePool",
    ]);
    for (const crd of crds.values()) expect(nonStructural(crd.schema), crd.file).toEqual([]);
  });

  it("only the protected k8s.io group carries the API-approval annotation", () => {
    for (const file of yamlFiles(join(DEPLOY, "crds"))) {
      const crd = yamlDocs(file)[0] as { metadata: { annotations?: Record<string, string> }; spec: { group: string } };
      const approved = crd.metadata.annotations?.["api-approved.kubernetes.io"];
      if (crd.spec.group === "inference.networking.k8s.io") expect(approved, file).toBeDefined();
      else expect(approved, file).toBeUndefined();
    }
  });
});

describe("deploy manifests", () => {
  it("parse, and every custom resource validates against our CRDs and normalises", () => {
    const all = manifests();
    const custom = all.filter(({ doc }) => crds.has(`${doc.apiVersion} ${doc.kind}`));
    // The seed set: 1 pool, 2 models, 2 objectives, 1 rewrite (a vacuous pass would validate nothing).
    expect(custom.length).toBeGreaterThanOrEqual(6);
    for (const { file, doc } of custom) {
      expect(validateObject(crds, doc), `${file} ${doc.kind}`).toEqual([]);
      expect(() => normalizeObject(doc, file), `${file} ${doc.kind}`).not.toThrow();
    }
  });

  it("include the seed examples with the documented shape", () => {
    const byName = objectsByName();
    const pool = normalizeObject(byName.get("InferencePool/llama4-pool"), "seed");
    expect(pool.kind === "InferencePool" && pool.spec.selector).toEqual({ app: "llm-inference", model: "llama4-17b" });
    const critical = normalizeObject(byName.get("InferenceModel/llama4-17b-instruct"), "seed");
    expect(critical.kind === "InferenceModel" && critical.spec.criticality).toBe("Critical");
    const models = [...byName.values()].filter((d) => d.kind === "InferenceModel");
    expect(models.some((m) => (m.spec as { criticality?: string }).criticality === "Sheddable")).toBe(true);
    expect([...byName.keys()].some((k) => k.startsWith("InferenceObjective/"))).toBe(true);
    // The example Deployments carry the pool's labels.
    for (const name of ["Deployment/llama4-17b-vllm", "Deployment/llama4-17b-sim"]) {
      const d = byName.get(name) as { spec: { template: { metadata: { labels: Record<string, string> } } } };
      expect(d.spec.template.metadata.labels, name).toMatchObject({ app: "llm-inference", model: "llama4-17b" });
    }
    const sim = byName.get("Deployment/llama4-17b-sim") as {
      spec: { template: { spec: { containers: { command: string[]; args: string[] }[] } } };
    };
    const container = sim.spec.template.spec.containers[0]!;
    expect(container.command).toEqual(["node", "/app/dist/cli.js", "sim"]);
    // The real `switchyard sim` accepts these args.
    const flags = parseFlags(SIM_FLAGS, container.args);
    expect(flags.port).toBe(8000);
    expect(flags.host).toBe("0.0.0.0");
  });

  it("reject what the API server would reject (the validator is not vacuous)", () => {
    const byName = objectsByName();
    const pool = byName.get("InferencePool/llama4-pool")!;
    const model = byName.get("InferenceModel/llama4-17b-instruct")!;
    const objective = byName.get("InferenceObjective/interactive")!;
    const bad: [string, unknown][] = [];
    const mutate = (base: unknown, label: string, fn: (o: { spec: Record<string, unknown> }) => void) => {
      const o = clone(base) as { spec: Record<string, unknown> };
      fn(o);
      bad.push([label, o]);
    };
    mutate(pool, "9 target ports", (o) => {
      o.spec.targetPorts = Array.from({ length: 9 }, (_, i) => ({ number: 8000 + i }));
    });
    mutate(pool, "port 0", (o) => {
      o.spec.targetPorts = [{ number: 0 }];
    });
    mutate(pool, "unknown field (typo)", (o) => {
      o.spec.targetPort = 8000;
    });
    mutate(pool, "bad failureMode", (o) => {
      (o.spec.endpointPickerRef as Record<string, unknown>).failureMode = "Open";
    });
    mutate(pool, "no selector", (o) => {
      delete o.spec.selector;
    });
    mutate(model, "bad criticality", (o) => {
      o.spec.criticality = "Urgent";
    });
    mutate(model, "weight 0", (o) => {
      (o.spec.targetModels as { weight?: number }[])[0]!.weight = 0;
    });
    mutate(model, "modelName too long", (o) => {
      o.spec.modelName = "m".repeat(257);
    });
    mutate(model, "no poolRef", (o) => {
      delete o.spec.poolRef;
    });
    mutate(objective, "priority not an integer", (o) => {
      o.spec.priority = "high";
    });
    for (const [label, obj] of bad) expect(validateObject(crds, obj), label).not.toEqual([]);
  });

  it("wire Envoy Gateway the way GIE data planes expect", () => {
    const docs = manifests();
    const find = (kind: string, dir: string) =>
      docs.filter((d) => d.doc.kind === kind && d.file.includes(dir)).map((d) => d.doc as unknown);

    const route = find("HTTPRoute", "envoy-gateway/")[0] as {
      spec: { rules: { backendRefs: Record<string, string>[]; timeouts: { request: string } }[] };
    };
    expect(route.spec.rules[0]!.backendRefs[0]).toEqual({
      group: "inference.networking.k8s.io",
      kind: "InferencePool",
      name: "llama4-pool",
    });
    expect(route.spec.rules[0]!.timeouts.request).toBe("300s");

    const values = docs.find((d) => d.file.endsWith(join("envoy-gateway", "envoy-gateway-values.yaml")))!.doc as {
      config: { envoyGateway: { extensionManager: { backendResources: unknown[] } } };
    };
    expect(values.config.envoyGateway.extensionManager.backendResources).toContainEqual({
      group: "inference.networking.k8s.io",
      kind: "InferencePool",
      version: "v1",
    });

    const policy = find("EnvoyExtensionPolicy", "envoy-gateway-policies")[0] as {
      spec: { extProc: Record<string, unknown>[] };
    };
    expect(policy.spec.extProc[0]).toMatchObject({
      processingMode: { request: { body: "FullDuplexStreamed" }, response: { body: "FullDuplexStreamed" } },
      messageTimeout: "300s",
      failOpen: false,
    });
    const backend = find("Backend", "envoy-gateway-policies")[0] as { spec: { tls: Record<string, unknown> } };
    expect(backend.spec.tls.insecureSkipVerify).toBe(true);

    const patch = find("EnvoyPatchPolicy", "envoy-gateway-policies")[0] as {
      spec: { jsonPatches: { operation: { value: Record<string, unknown> } }[] };
    };
    const cluster = patch.spec.jsonPatches.map((p) => p.operation.value).find((v) => v?.type === "ORIGINAL_DST");
    expect(cluster).toMatchObject({
      lb_policy: "CLUSTER_PROVIDED",
      original_dst_lb_config: { use_http_header: true, http_header_name: "x-gateway-destination-endpoint" },
    });
  });
});
