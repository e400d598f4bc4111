import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, relative } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { SIM_FLAGS } from "../../src/cli/sim.js";
import { parseFlags } from "../../src/common/flags.js";
import { normalizeObject } from "../../src/sources/normalize.js";
import { type CrdVersion, loadCrds, nonStructural, ROOT, validateObject, yamlDocs, yamlFiles } from "./crd-schema.js";

const DEPLOY = join(ROOT, "deploy");

/**
 * SHA-256 of config/crd/bases/<file> in sigs.k8s.io/gateway-api-inference-extension@v1.5.0 (deploy/crds/README.md):
 * the files are shipped unchanged, so this is also what a cluster with GIE installed already has.
 */
const GIE_CRDS: Readonly<Record<string, string>> = {
  "inference.networking.k8s.io_inferencepools.yaml": "0bc3ddd94db6f588a5cecc627c39e3d12b4343d51c48d47ffa68c50fa73c290c",
  "inference.networking.x-k8s.io_inferenceobjectives.yaml":
    "e06a3e13e91f7a3a71a9d4146fb56076a247f43ad72b6401f8039ccf9cfa3700",
  "inference.networking.x-k8s.io_inferencemodelrewrites.yaml":
    "887abbc047e7e36633f2f28ee47dc59cae5293ebef110e57cc286ab4605d8a97",
};

/** The module's folder when `go mod download` (or building gie-epp) has put it in the cache. */
function gieModuleDir(): string | undefined {
  const cache = process.env.GOMODCACHE || join(process.env.GOPATH || join(homedir(), "go"), "pkg", "mod");
  const dir = join(cache, "sigs.k8s.io", "gateway-api-inference-extension@v1.5.0");
  return existsSync(dir) ? dir : undefined;
}
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

  it("ships GIE v1.5.0's three CRDs byte for byte (approval annotation included) and ours without it", () => {
    for (const [name, sha] of Object.entries(GIE_CRDS)) {
      const text = readFileSync(join(DEPLOY, "crds", name));
      expect(createHash("sha256").update(text).digest("hex"), `${name} differs from GIE v1.5.0`).toBe(sha);
    }
    const pool = yamlDocs(join(DEPLOY, "crds", "inference.networking.k8s.io_inferencepools.yaml"))[0] as {
      metadata: { annotations: Record<string, string> };
    };
    expect(pool.metadata.annotations["api-approved.kubernetes.io"]).toMatch(/^https:\/\/github.com\//);
    for (const file of yamlFiles(join(DEPLOY, "crds"))) {
      if (Object.hasOwn(GIE_CRDS, relative(join(DEPLOY, "crds"), file))) continue;
      const crd = yamlDocs(file)[0] as { metadata: { annotations?: Record<string, string> }; spec: { group: string } };
      // Ours are all in the x-k8s.io group, which needs no approval, and must not claim GIE's bundle version.
      expect(crd.spec.group, file).toBe("inference.networking.x-k8s.io");
      expect(crd.metadata.annotations ?? {}, file).toEqual({});
    }
  });

  it("match the GIE v1.5.0 module in Go's module cache when it is there", (ctx) => {
    const dir = gieModuleDir();
    if (dir === undefined) return ctx.skip();
    for (const name of Object.keys(GIE_CRDS)) {
      expect(readFileSync(join(DEPLOY, "crds", name), "utf8"), name).toBe(
        readFileSync(join(dir, "config", "crd", "bases", name), "utf8"),
      );
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
    // The article's autoscaling intent, as annotations on the unmodified pool (docs/autoscaling.md).
    expect(pool.kind === "InferencePool" && pool.spec).toMatchObject({
      minReplicas: 2,
      maxReplicas: 8,
      targetGpuCacheUtilization: 0.8,
    });
    expect(pool.kind === "InferencePool" && pool.spec.autoscalingError).toBeUndefined();
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
    // The seed article's sketch: GIE's schema has no such fields (a real API server answers "strict decoding
    // error: unknown field"; test/deploy/apiserver.test.ts). They are annotations now (docs/autoscaling.md).
    mutate(pool, "the article's maxReplicas", (o) => {
      o.spec.maxReplicas = 10;
    });
    mutate(pool, "the article's targetLoad", (o) => {
      o.spec.targetLoad = { gpuCacheUtilization: 75 };
    });
    mutate(pool, "no endpointPickerRef (required by GIE v1.5.0)", (o) => {
      delete o.spec.endpointPickerRef;
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
