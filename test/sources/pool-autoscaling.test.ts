/**
 * The seed article's autoscaling intent as `autoscaling.switchyard.io/*` annotations on an unmodified GIE
 * InferencePool (docs/autoscaling.md): parsed for both pool groups, and a bad value never drops the pool.
 */
import { describe, expect, it } from "vitest";
import { parseAdmissionConfig } from "../../src/admission/config.js";
import { AutoscaleLoop, ReplicaRecommender } from "../../src/autoscaling/autoscale.js";
import type { PoolSpec } from "../../src/datastore/types.js";
import { AUTOSCALING_ANNOTATIONS, normalizeObject } from "../../src/sources/normalize.js";

const MIN = AUTOSCALING_ANNOTATIONS.minReplicas;
const MAX = AUTOSCALING_ANNOTATIONS.maxReplicas;
const TARGET = AUTOSCALING_ANNOTATIONS.targetGpuCacheUtilization;

function v1Pool(annotations?: Record<string, unknown>, extraSpec: Record<string, unknown> = {}): unknown {
  return {
    apiVersion: "inference.networking.k8s.io/v1",
    kind: "InferencePool",
    metadata: { name: "llama4-pool", namespace: "llm", ...(annotations ? { annotations } : {}) },
    spec: {
      selector: { matchLabels: { app: "vllm" } },
      targetPorts: [{ number: 8000 }],
      endpointPickerRef: { name: "epp", port: { number: 9002 } },
      ...extraSpec,
    },
  };
}

function poolSpec(raw: unknown, origin = "pools.yaml#2"): PoolSpec {
  const n = normalizeObject(raw, origin);
  if (n.kind !== "InferencePool") throw new Error(`expected a pool, got ${n.kind}`);
  return n.spec;
}

describe("InferencePool autoscaling annotations", () => {
  it("read the article's three values (percent target) on the v1 and the legacy pool", () => {
    const spec = poolSpec(v1Pool({ [MIN]: "2", [MAX]: "8", [TARGET]: "80", "unrelated.example/x": "y" }));
    expect(spec).toMatchObject({ minReplicas: 2, maxReplicas: 8, targetGpuCacheUtilization: 0.8 });
    expect(spec.autoscalingError).toBeUndefined();
    // The routing fields are untouched.
    expect(spec).toMatchObject({ selector: { app: "vllm" }, targetPorts: [8000] });

    const legacy = poolSpec({
      apiVersion: "inference.networking.x-k8s.io/v1alpha2",
      kind: "InferencePool",
      metadata: { name: "old", annotations: { [MAX]: " 3 ", [TARGET]: "62.5%" } },
      spec: { selector: { app: "vllm" }, targetPortNumber: 8000 },
    });
    expect(legacy).toMatchObject({ maxReplicas: 3, targetGpuCacheUtilization: 0.625 });
    expect(legacy.minReplicas).toBeUndefined();
  });

  it("without annotations there are no hints and no error", () => {
    const spec = poolSpec(v1Pool());
    expect([spec.minReplicas, spec.maxReplicas, spec.targetGpuCacheUtilization, spec.autoscalingError]).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });

  const invalid: [string, unknown, string, string][] = [
    [
      "negative min",
      v1Pool({ [MIN]: "-1" }),
      `metadata.annotations["${MIN}"]`,
      'must be an integer 0..1000000, got "-1"',
    ],
    ["fractional max", v1Pool({ [MAX]: "2.5" }), `metadata.annotations["${MAX}"]`, "must be an integer 1..1000000"],
    ["max 0", v1Pool({ [MAX]: "0" }), `metadata.annotations["${MAX}"]`, 'must be an integer 1..1000000, got "0"'],
    ["max below min", v1Pool({ [MIN]: "5", [MAX]: "4" }), `metadata.annotations["${MAX}"]`, `must be >= ${MIN} (5)`],
    [
      "target over 100",
      v1Pool({ [TARGET]: "150" }),
      `metadata.annotations["${TARGET}"]`,
      'must be a percentage in (0, 100], got "150"',
    ],
    ["target 0", v1Pool({ [TARGET]: "0%" }), `metadata.annotations["${TARGET}"]`, "must be a percentage in (0, 100]"],
    ["target words", v1Pool({ [TARGET]: "high" }), `metadata.annotations["${TARGET}"]`, 'got "high"'],
    ["unquoted number", v1Pool({ [MIN]: 2 }), `metadata.annotations["${MIN}"]`, "must be a string, got number 2"],
    [
      "misspelt key",
      v1Pool({ "autoscaling.switchyard.io/max-replica": "4" }),
      'metadata.annotations["autoscaling.switchyard.io/max-replica"]',
      "unknown autoscaling annotation; expected one of",
    ],
    [
      "the article's spec fields",
      v1Pool({ [MIN]: "1" }, { minReplicas: 3, maxReplicas: 10 }),
      "spec.minReplicas",
      `not an InferencePool field (GIE v1.5.0's schema has none for autoscaling); set the annotation ${MIN} instead`,
    ],
    [
      "the article's targetLoad",
      v1Pool(undefined, { targetLoad: { gpuCacheUtilization: 75 } }),
      "spec.targetLoad",
      `set the annotation ${TARGET} instead (docs/autoscaling.md)`,
    ],
  ];

  for (const [label, raw, field, detail] of invalid) {
    it(`${label}: the pool still loads, every hint is ignored, the error names file, object and field`, () => {
      const spec = poolSpec(raw);
      expect(spec.selector).toEqual({ app: "vllm" });
      expect(spec.minReplicas).toBeUndefined();
      expect(spec.maxReplicas).toBeUndefined();
      expect(spec.targetGpuCacheUtilization).toBeUndefined();
      expect(spec.autoscalingError?.field).toBe(field);
      expect(spec.autoscalingError?.message).toContain(`pools.yaml#2: InferencePool llm/llama4-pool: ${field}: `);
      expect(spec.autoscalingError?.message).toContain(detail);
      expect(spec.autoscalingError?.message).toMatch(/; autoscaling hints ignored$/);
    });
  }
});

describe("the autoscale loop and the annotations", () => {
  const settings = parseAdmissionConfig({ file: undefined, featureGates: [], sections: {} }).autoscaling;

  it("uses the hints, reports an invalid pool once per change, and recovers", async () => {
    let pool = poolSpec(v1Pool({ [MIN]: "3", [MAX]: "4" }));
    const errors: string[] = [];
    const warnings: unknown[] = [];
    const logger = {
      warn: (o: unknown) => warnings.push(o),
      info: () => {},
    } as unknown as ConstructorParameters<typeof AutoscaleLoop>[0]["logger"];
    const loop = new AutoscaleLoop({
      recommender: new ReplicaRecommender({ ...settings, scaleDownStabilizationMs: 0 }, 2_000),
      endpoints: () => [],
      pool: () => pool,
      onHintError: (name) => errors.push(name),
      ...(logger ? { logger } : {}),
      intervalMs: 1_000,
      now: () => 1_000,
    });
    // An empty pool asks for the minimum: the annotation's 3, not the default 1.
    expect((await loop.tick())?.replicas).toBe(3);
    expect(errors).toEqual([]);

    pool = poolSpec(v1Pool({ [MIN]: "3", [MAX]: "two" }));
    expect((await loop.tick())?.replicas).toBe(1);
    await loop.tick();
    expect(errors).toEqual(["llama4-pool"]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ pool: "llama4-pool", field: `metadata.annotations["${MAX}"]` });

    pool = poolSpec(v1Pool({ [MIN]: "3", [MAX]: "-2" }));
    await loop.tick();
    expect(errors).toHaveLength(2);

    pool = poolSpec(v1Pool({ [MIN]: "2" }));
    expect((await loop.tick())?.replicas).toBe(2);
    expect(errors).toHaveLength(2);
    loop.stop();
  });
});
