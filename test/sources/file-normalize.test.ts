import { describe, expect, it } from "vitest";
import { normalizeObject, ResourceError } from "../../src/sources/normalize.js";

const V1 = "inference.networking.k8s.io/v1";
const X = "inference.networking.x-k8s.io/v1alpha2";

type Obj = Record<string, unknown>;

function pool(spec: Obj, meta: Obj = { name: "pool" }): Obj {
  return { apiVersion: V1, kind: "InferencePool", metadata: meta, spec };
}
const goodPoolSpec = { selector: { matchLabels: { app: "vllm" } }, targetPorts: [{ number: 8000 }] };
function legacyPool(spec: Obj): Obj {
  return { apiVersion: X, kind: "InferencePool", metadata: { name: "old" }, spec };
}
function model(spec: Obj): Obj {
  return { apiVersion: X, kind: "InferenceModel", metadata: { name: "m" }, spec };
}
const goodModelSpec = { modelName: "llama", poolRef: { name: "pool" } };
function objective(spec: Obj): Obj {
  return { apiVersion: X, kind: "InferenceObjective", metadata: { name: "o" }, spec };
}
function rewrite(spec: Obj): Obj {
  return { apiVersion: X, kind: "InferenceModelRewrite", metadata: { name: "r" }, spec };
}
function pod(meta: Obj, status?: unknown): Obj {
  return { apiVersion: "v1", kind: "Pod", metadata: { name: "p", ...meta }, status };
}

function failure(raw: unknown): ResourceError {
  try {
    normalizeObject(raw, "f.yaml#1");
  } catch (err) {
    expect(err).toBeInstanceOf(ResourceError);
    return err as ResourceError;
  }
  throw new Error("expected a ResourceError");
}

describe("normalizeObject: InferencePool v1", () => {
  // Autoscaling annotations: test/sources/pool-autoscaling.test.ts.
  it("fills defaults", () => {
    const out = normalizeObject(
      pool(
        { ...goodPoolSpec, targetPorts: [{ number: 8000 }, { number: 8001 }] },
        { name: "pool", namespace: "llm", creationTimestamp: "2025-01-02T03:04:05Z" },
      ),
      "a.yaml#1",
    );
    expect(out).toEqual({
      kind: "InferencePool",
      spec: {
        name: "pool",
        namespace: "llm",
        creationTimestamp: Date.UTC(2025, 0, 2, 3, 4, 5),
        origin: "a.yaml#1",
        selector: { app: "vllm" },
        targetPorts: [8000, 8001],
        appProtocol: "http",
        failureMode: "FailClose",
      },
    });
  });

  it("reads endpointPickerRef.failureMode, appProtocol and the default namespace option", () => {
    const out = normalizeObject(
      pool({
        ...goodPoolSpec,
        appProtocol: "kubernetes.io/h2c",
        endpointPickerRef: { name: "epp", port: { number: 9002 }, failureMode: "FailOpen" },
      }),
      "x",
      { defaultNamespace: "team-a" },
    );
    expect(out.kind).toBe("InferencePool");
    if (out.kind !== "InferencePool") return;
    expect(out.spec.failureMode).toBe("FailOpen");
    expect(out.spec.appProtocol).toBe("kubernetes.io/h2c");
    expect(out.spec.namespace).toBe("team-a");
    expect(out.spec.creationTimestamp).toBe(0);
  });

  it("accepts the legacy v1alpha2 pool", () => {
    const out = normalizeObject(
      legacyPool({
        selector: { app: "x" },
        targetPortNumber: 8000,
        extensionRef: { name: "epp", failureMode: "FailOpen" },
      }),
      "x",
    );
    expect(out).toMatchObject({
      kind: "InferencePool",
      spec: { name: "old", selector: { app: "x" }, targetPorts: [8000], appProtocol: "http", failureMode: "FailOpen" },
    });
  });
});

describe("normalizeObject: other kinds", () => {
  it("InferenceModel: criticality default, BestEffort alias, weights", () => {
    expect(normalizeObject(model(goodModelSpec), "x")).toMatchObject({
      kind: "InferenceModel",
      spec: { modelName: "llama", criticality: "Standard", targetModels: [], poolRef: "pool" },
    });
    const out = normalizeObject(
      model({
        ...goodModelSpec,
        criticality: "BestEffort",
        targetModels: [
          { name: "a", weight: 10 },
          { name: "b", weight: 90 },
        ],
      }),
      "x",
    );
    expect(out).toMatchObject({
      spec: {
        criticality: "Sheddable",
        targetModels: [
          { name: "a", weight: 10 },
          { name: "b", weight: 90 },
        ],
      },
    });
    const equal = normalizeObject(model({ ...goodModelSpec, targetModels: [{ name: "a" }, { name: "b" }] }), "x");
    expect(equal).toMatchObject({
      spec: {
        targetModels: [
          { name: "a", weight: 1 },
          { name: "b", weight: 1 },
        ],
      },
    });
  });

  it("InferenceObjective: priority default 0, negative allowed", () => {
    expect(normalizeObject(objective({ poolRef: { name: "pool" } }), "x")).toMatchObject({
      kind: "InferenceObjective",
      spec: { name: "o", priority: 0, poolRef: "pool" },
    });
    expect(normalizeObject(objective({ priority: -5, poolRef: { name: "pool" } }), "x")).toMatchObject({
      spec: { priority: -5 },
    });
  });

  it("InferenceModelRewrite: exact matches and match-all rules", () => {
    const out = normalizeObject(
      rewrite({
        poolRef: { name: "pool" },
        rules: [
          {
            matches: [{ model: { value: "gpt" } }, { model: { type: "Exact", value: "gpt-4" } }],
            targets: [{ modelRewrite: "llama", weight: 3 }, { modelRewrite: "qwen" }],
          },
          { targets: [{ modelRewrite: "fallback", weight: 1 }] },
        ],
      }),
      "x",
    );
    expect(out).toMatchObject({
      kind: "InferenceModelRewrite",
      spec: {
        poolRef: "pool",
        rules: [
          {
            matches: ["gpt", "gpt-4"],
            targets: [
              { modelRewrite: "llama", weight: 3 },
              { modelRewrite: "qwen", weight: 0 },
            ],
          },
          { matches: [], targets: [{ modelRewrite: "fallback", weight: 1 }] },
        ],
      },
    });
  });

  it("Pod: readiness, deletion, IP, labels", () => {
    const ready = normalizeObject(
      pod(
        { labels: { app: "x" }, annotations: { a: "b" }, creationTimestamp: "2025-01-01T00:00:00.5+01:00" },
        {
          podIP: "fd00::1",
          conditions: [
            { type: "PodScheduled", status: "True" },
            { type: "Ready", status: "True" },
          ],
        },
      ),
      "x",
    );
    expect(ready).toMatchObject({
      kind: "Pod",
      spec: {
        name: "p",
        labels: { app: "x" },
        annotations: { a: "b" },
        podIP: "fd00::1",
        ready: true,
        deleting: false,
        creationTimestamp: Date.UTC(2024, 11, 31, 23, 0, 0, 500),
      },
    });
    const pending = normalizeObject(pod({ deletionTimestamp: "2025-01-01T00:00:00Z" }), "x");
    expect(pending).toMatchObject({ spec: { podIP: "", ready: false, deleting: true, labels: {} } });
    const notReady = normalizeObject(
      pod({}, { podIP: "10.0.0.1", conditions: [{ type: "Ready", status: "False" }] }),
      "x",
    );
    expect(notReady).toMatchObject({ spec: { ready: false } });
    // The Kubernetes client hands over Date objects.
    const dated = normalizeObject(pod({ creationTimestamp: new Date(1000) }), "x");
    expect(dated.spec.creationTimestamp).toBe(1000);
  });
});

const longName = "a".repeat(254);
const nine = Array.from({ length: 9 }, (_, i) => ({ number: 8000 + i }));
const eleven = Array.from({ length: 11 }, (_, i) => ({ name: `m${i}` }));

// [description, raw, field, exact message]
const errorCases: [string, unknown, string, string][] = [
  ["null document", null, "", "document must be a mapping with apiVersion and kind, got null"],
  ["list document", [1], "", "document must be a mapping with apiVersion and kind, got a list"],
  ["missing kind", { apiVersion: "v1" }, "kind", "kind: required"],
  ["non-string kind", { apiVersion: "v1", kind: 3 }, "kind", "kind: must be a string, got number 3"],
  ["missing apiVersion", { kind: "Pod" }, "apiVersion", "apiVersion: required"],
  ["non-string apiVersion", { kind: "Pod", apiVersion: 1 }, "apiVersion", "apiVersion: must be a string, got number 1"],
  [
    "unknown kind",
    { apiVersion: "v1", kind: "Service", metadata: { name: "s" } },
    "kind",
    'kind: unsupported kind "Service" (apiVersion "v1"); expected one of InferencePool, InferenceModel, InferenceObjective, InferenceModelRewrite, Pod',
  ],
  [
    "prototype key as kind",
    { apiVersion: "v1", kind: "toString" },
    "kind",
    'kind: unsupported kind "toString" (apiVersion "v1"); expected one of InferencePool, InferenceModel, InferenceObjective, InferenceModelRewrite, Pod',
  ],
  [
    "wrong apiVersion for kind",
    { ...model(goodModelSpec), apiVersion: V1 },
    "apiVersion",
    'apiVersion: InferenceModel must have apiVersion "inference.networking.x-k8s.io/v1alpha2", got "inference.networking.k8s.io/v1"',
  ],
  [
    "wrong pool apiVersion",
    { ...pool(goodPoolSpec), apiVersion: "inference.networking.x-k8s.io/v1alpha1" },
    "apiVersion",
    'apiVersion: InferencePool must have apiVersion "inference.networking.k8s.io/v1" or "inference.networking.x-k8s.io/v1alpha2", got "inference.networking.x-k8s.io/v1alpha1"',
  ],
  ["missing metadata", { apiVersion: "v1", kind: "Pod" }, "metadata", "metadata: required"],
  [
    "metadata not a mapping",
    { apiVersion: "v1", kind: "Pod", metadata: "x" },
    "metadata",
    'metadata: must be a mapping, got "x"',
  ],
  ["missing name", pod({ name: undefined }), "metadata.name", "metadata.name: required"],
  ["non-string name", pod({ name: 7 }), "metadata.name", "metadata.name: must be a string, got number 7"],
  ["long name", pod({ name: longName }), "metadata.name", "metadata.name: must be at most 253 characters, got 254"],
  [
    "invalid name",
    pod({ name: "My_Pod" }),
    "metadata.name",
    "metadata.name: must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'), got \"My_Pod\"",
  ],
  [
    "invalid namespace",
    pod({ namespace: "a.b" }),
    "metadata.namespace",
    "metadata.namespace: must be a lowercase RFC 1123 label (a-z, 0-9, '-'), got \"a.b\"",
  ],
  [
    "bad creationTimestamp",
    pod({ creationTimestamp: "yesterday" }),
    "metadata.creationTimestamp",
    'metadata.creationTimestamp: must be an RFC 3339 timestamp, got "yesterday"',
  ],
  // InferencePool v1
  ["pool without spec", { apiVersion: V1, kind: "InferencePool", metadata: { name: "p" } }, "spec", "spec: required"],
  ["pool without selector", pool({ targetPorts: [{ number: 1 }] }), "spec.selector", "spec.selector: required"],
  [
    "pool without matchLabels",
    pool({ selector: {}, targetPorts: [{ number: 1 }] }),
    "spec.selector.matchLabels",
    "spec.selector.matchLabels: required",
  ],
  [
    "empty matchLabels",
    pool({ selector: { matchLabels: {} }, targetPorts: [{ number: 1 }] }),
    "spec.selector.matchLabels",
    "spec.selector.matchLabels: must have at least one label",
  ],
  [
    "numeric label value",
    pool({ selector: { matchLabels: { version: 1 } }, targetPorts: [{ number: 1 }] }),
    "spec.selector.matchLabels.version",
    "spec.selector.matchLabels.version: must be a string, got number 1 (quote it)",
  ],
  ["missing targetPorts", pool({ selector: goodPoolSpec.selector }), "spec.targetPorts", "spec.targetPorts: required"],
  [
    "targetPorts not a list",
    pool({ ...goodPoolSpec, targetPorts: 8000 }),
    "spec.targetPorts",
    "spec.targetPorts: must be a list, got number 8000",
  ],
  [
    "no targetPorts",
    pool({ ...goodPoolSpec, targetPorts: [] }),
    "spec.targetPorts",
    "spec.targetPorts: must list 1..8 ports, got 0",
  ],
  [
    "nine targetPorts",
    pool({ ...goodPoolSpec, targetPorts: nine }),
    "spec.targetPorts",
    "spec.targetPorts: must list 1..8 ports, got 9",
  ],
  [
    "port entry not a mapping",
    pool({ ...goodPoolSpec, targetPorts: [8000] }),
    "spec.targetPorts[0]",
    "spec.targetPorts[0]: must be a mapping, got number 8000",
  ],
  [
    "port out of range",
    pool({ ...goodPoolSpec, targetPorts: [{ number: 8000 }, { number: 70000 }] }),
    "spec.targetPorts[1].number",
    "spec.targetPorts[1].number: must be an integer 1..65535, got number 70000",
  ],
  [
    "port missing",
    pool({ ...goodPoolSpec, targetPorts: [{ number: 8000 }, {}] }),
    "spec.targetPorts[1].number",
    "spec.targetPorts[1].number: must be an integer 1..65535",
  ],
  [
    "port as string",
    pool({ ...goodPoolSpec, targetPorts: [{ number: "8000" }] }),
    "spec.targetPorts[0].number",
    'spec.targetPorts[0].number: must be an integer 1..65535, got "8000"',
  ],
  [
    "duplicate port",
    pool({ ...goodPoolSpec, targetPorts: [{ number: 8000 }, { number: 8001 }, { number: 8000 }] }),
    "spec.targetPorts[2].number",
    "spec.targetPorts[2].number: duplicate port 8000 (also spec.targetPorts[0])",
  ],
  [
    "bad appProtocol",
    pool({ ...goodPoolSpec, appProtocol: "grpc" }),
    "spec.appProtocol",
    'spec.appProtocol: must be one of "http", "kubernetes.io/h2c", got "grpc"',
  ],
  [
    "endpointPickerRef without name",
    pool({ ...goodPoolSpec, endpointPickerRef: { port: { number: 9002 } } }),
    "spec.endpointPickerRef.name",
    "spec.endpointPickerRef.name: required",
  ],
  [
    "endpointPickerRef Service without port",
    pool({ ...goodPoolSpec, endpointPickerRef: { name: "epp" } }),
    "spec.endpointPickerRef.port",
    "spec.endpointPickerRef.port: required when kind is Service",
  ],
  [
    "endpointPickerRef bad port",
    pool({ ...goodPoolSpec, endpointPickerRef: { name: "epp", port: { number: 0 } } }),
    "spec.endpointPickerRef.port.number",
    "spec.endpointPickerRef.port.number: must be an integer 1..65535, got number 0",
  ],
  [
    "endpointPickerRef empty kind",
    pool({ ...goodPoolSpec, endpointPickerRef: { name: "epp", kind: "" } }),
    "spec.endpointPickerRef.kind",
    'spec.endpointPickerRef.kind: must be a non-empty string, got ""',
  ],
  [
    "bad failureMode",
    pool({ ...goodPoolSpec, endpointPickerRef: { name: "epp", port: { number: 9002 }, failureMode: "failopen" } }),
    "spec.endpointPickerRef.failureMode",
    'spec.endpointPickerRef.failureMode: must be one of "FailOpen", "FailClose", got "failopen"',
  ],
  // legacy pool
  ["legacy pool without selector", legacyPool({ targetPortNumber: 8000 }), "spec.selector", "spec.selector: required"],
  [
    "legacy pool without port",
    legacyPool({ selector: { app: "x" } }),
    "spec.targetPortNumber",
    "spec.targetPortNumber: must be an integer 1..65535",
  ],
  [
    "legacy extensionRef without name",
    legacyPool({ selector: { app: "x" }, targetPortNumber: 8000, extensionRef: {} }),
    "spec.extensionRef.name",
    "spec.extensionRef.name: required",
  ],
  [
    "legacy extensionRef bad port",
    legacyPool({ selector: { app: "x" }, targetPortNumber: 8000, extensionRef: { name: "e", portNumber: 1.5 } }),
    "spec.extensionRef.portNumber",
    "spec.extensionRef.portNumber: must be an integer 1..65535, got number 1.5",
  ],
  [
    "legacy bad failureMode",
    legacyPool({ selector: { app: "x" }, targetPortNumber: 8000, extensionRef: { name: "e", failureMode: "Open" } }),
    "spec.extensionRef.failureMode",
    'spec.extensionRef.failureMode: must be one of "FailOpen", "FailClose", got "Open"',
  ],
  // InferenceModel
  ["model without modelName", model({ poolRef: { name: "p" } }), "spec.modelName", "spec.modelName: required"],
  [
    "model name too long",
    model({ ...goodModelSpec, modelName: "m".repeat(257) }),
    "spec.modelName",
    "spec.modelName: must be at most 256 characters, got 257",
  ],
  [
    "bad criticality",
    model({ ...goodModelSpec, criticality: "High" }),
    "spec.criticality",
    'spec.criticality: must be one of "Critical", "Standard", "Sheddable", "BestEffort", got "High"',
  ],
  [
    "eleven target models",
    model({ ...goodModelSpec, targetModels: eleven }),
    "spec.targetModels",
    "spec.targetModels: must list at most 10 models, got 11",
  ],
  [
    "target model without name",
    model({ ...goodModelSpec, targetModels: [{ weight: 1 }] }),
    "spec.targetModels[0].name",
    "spec.targetModels[0].name: required",
  ],
  [
    "weight set then unset",
    model({ ...goodModelSpec, targetModels: [{ name: "a", weight: 1 }, { name: "b" }] }),
    "spec.targetModels[1].weight",
    "spec.targetModels[1].weight: weights must be set for all target models or none (spec.targetModels[0] has one)",
  ],
  [
    "weight unset then set",
    model({ ...goodModelSpec, targetModels: [{ name: "a" }, { name: "b", weight: 5 }] }),
    "spec.targetModels[1].weight",
    "spec.targetModels[1].weight: weights must be set for all target models or none (spec.targetModels[0] has none)",
  ],
  [
    "weight too large",
    model({ ...goodModelSpec, targetModels: [{ name: "a", weight: 1_000_001 }] }),
    "spec.targetModels[0].weight",
    "spec.targetModels[0].weight: must be an integer 1..1000000, got number 1000001",
  ],
  ["model without poolRef", model({ modelName: "x" }), "spec.poolRef", "spec.poolRef: required"],
  ["poolRef without name", model({ modelName: "x", poolRef: {} }), "spec.poolRef.name", "spec.poolRef.name: required"],
  [
    "poolRef to another kind",
    model({ modelName: "x", poolRef: { name: "p", kind: "Service" } }),
    "spec.poolRef.kind",
    'spec.poolRef.kind: must be "InferencePool", got "Service"',
  ],
  // InferenceObjective
  [
    "fractional priority",
    objective({ priority: 1.5, poolRef: { name: "p" } }),
    "spec.priority",
    `spec.priority: must be an integer ${Number.MIN_SAFE_INTEGER}..${Number.MAX_SAFE_INTEGER}, got number 1.5`,
  ],
  ["objective without poolRef", objective({}), "spec.poolRef", "spec.poolRef: required"],
  // InferenceModelRewrite
  ["rewrite without rules", rewrite({ poolRef: { name: "p" } }), "spec.rules", "spec.rules: required"],
  [
    "rewrite with no rules",
    rewrite({ poolRef: { name: "p" }, rules: [] }),
    "spec.rules",
    "spec.rules: must list at least one rule",
  ],
  [
    "rule not a mapping",
    rewrite({ poolRef: { name: "p" }, rules: ["x"] }),
    "spec.rules[0]",
    'spec.rules[0]: must be a mapping, got "x"',
  ],
  [
    "match without model",
    rewrite({ poolRef: { name: "p" }, rules: [{ matches: [{}], targets: [{ modelRewrite: "a" }] }] }),
    "spec.rules[0].matches[0].model",
    "spec.rules[0].matches[0].model: required",
  ],
  [
    "match type not Exact",
    rewrite({
      poolRef: { name: "p" },
      rules: [{ matches: [{ model: { type: "Prefix", value: "a" } }], targets: [{ modelRewrite: "a" }] }],
    }),
    "spec.rules[0].matches[0].model.type",
    'spec.rules[0].matches[0].model.type: must be one of "Exact", got "Prefix"',
  ],
  [
    "match without value",
    rewrite({
      poolRef: { name: "p" },
      rules: [{ matches: [{ model: { value: "" } }], targets: [{ modelRewrite: "a" }] }],
    }),
    "spec.rules[0].matches[0].model.value",
    "spec.rules[0].matches[0].model.value: required",
  ],
  [
    "rule without targets",
    rewrite({ poolRef: { name: "p" }, rules: [{ matches: [] }] }),
    "spec.rules[0].targets",
    "spec.rules[0].targets: required",
  ],
  [
    "rule with empty targets",
    rewrite({ poolRef: { name: "p" }, rules: [{ targets: [] }] }),
    "spec.rules[0].targets",
    "spec.rules[0].targets: must list at least one target",
  ],
  [
    "target without modelRewrite",
    rewrite({ poolRef: { name: "p" }, rules: [{ targets: [{ weight: 1 }] }] }),
    "spec.rules[0].targets[0].modelRewrite",
    "spec.rules[0].targets[0].modelRewrite: required",
  ],
  [
    "target zero weight",
    rewrite({ poolRef: { name: "p" }, rules: [{ targets: [{ modelRewrite: "a", weight: 0 }] }] }),
    "spec.rules[0].targets[0].weight",
    "spec.rules[0].targets[0].weight: must be an integer 1..1000000, got number 0",
  ],
  // Pod
  [
    "numeric pod label",
    pod({ labels: { gpu: true } }),
    "metadata.labels.gpu",
    "metadata.labels.gpu: must be a string, got boolean true (quote it)",
  ],
  [
    "annotations not a mapping",
    pod({ annotations: ["a"] }),
    "metadata.annotations",
    "metadata.annotations: must be a mapping, got a list",
  ],
  ["status not a mapping", pod({}, "Running"), "status", 'status: must be a mapping, got "Running"'],
  [
    "bad podIP",
    pod({}, { podIP: "10.0.0.300" }),
    "status.podIP",
    'status.podIP: must be an IPv4 or IPv6 address, got "10.0.0.300"',
  ],
  [
    "conditions not a list",
    pod({}, { conditions: { type: "Ready" } }),
    "status.conditions",
    "status.conditions: must be a list, got a mapping",
  ],
  [
    "condition not a mapping",
    pod({}, { conditions: ["Ready"] }),
    "status.conditions[0]",
    'status.conditions[0]: must be a mapping, got "Ready"',
  ],
];

describe("normalizeObject: errors", () => {
  it.each(errorCases)("%s", (_desc, raw, field, message) => {
    const err = failure(raw);
    expect(err.message).toBe(message);
    expect(err.field).toBe(field);
    expect(err.origin).toBe("f.yaml#1");
  });

  it("attributes errors to the object kind, name and namespace", () => {
    const err = failure(pool({ ...goodPoolSpec, targetPorts: [{ number: 0 }] }, { name: "web", namespace: "llm" }));
    expect(err.kind).toBe("InferencePool");
    expect(err.name).toBe("web");
    expect(err.namespace).toBe("llm");
    expect(err.detail).toBe("must be an integer 1..65535, got number 0");
  });

  it("falls back to the default namespace in error identity", () => {
    const err = failure(model({ modelName: "x" }));
    expect(err.kind).toBe("InferenceModel");
    expect(err.name).toBe("m");
    expect(err.namespace).toBe("default");
  });
});
