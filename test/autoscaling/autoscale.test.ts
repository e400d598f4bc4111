import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAdmissionConfig } from "../../src/admission/config.js";
import {
  AutoscaleLoop,
  type AutoscalingSettings,
  KubernetesScaler,
  parseScaleTarget,
  ReplicaRecommender,
  type ReplicaScaler,
} from "../../src/autoscaling/autoscale.js";
import { ConfigError } from "../../src/common/errors.js";
import type { Endpoint, PoolSpec } from "../../src/datastore/types.js";
import { silentLogger } from "../../src/observability/logger.js";
import { loadKubeConfig } from "../../src/sources/kubernetes.js";
import { FakeApiServer, workloadObject } from "../helpers/fake-apiserver.js";
import { endpoint, metrics } from "../scheduling/helpers.js";

const STALE_MS = 2_000;

function settings(init: Partial<AutoscalingSettings> = {}): AutoscalingSettings {
  return { ...parseAdmissionConfig({ file: undefined, featureGates: [], sections: {} }).autoscaling, ...init };
}

const POOL: PoolSpec = {
  name: "pool",
  namespace: "default",
  creationTimestamp: 0,
  selector: { app: "vllm" },
  targetPorts: [8000],
  appProtocol: "http",
  failureMode: "FailClose",
};

/** `n` pods at `kv` KV use, scraped at `now`. */
function pods(kvs: readonly number[], now: number, age = 0): Endpoint[] {
  return kvs.map((kv, i) => endpoint(`10.2.0.${i + 1}`, metrics({ kvCacheUsagePercent: kv }, now - age)));
}

describe("replica recommendation (HPA formula on KV-cache utilisation)", () => {
  it("is ceil(ready × avgKV / target) clamped to [min, max]", () => {
    const r = new ReplicaRecommender(settings({ scaleDownStabilizationMs: 0 }), STALE_MS);
    // 4 pods at 0.9 with target 0.75: ceil(4 × 1.2) = 5.
    expect(r.recommend(pods([0.9, 0.9, 0.9, 0.9], 1000), POOL, 1000)).toMatchObject({
      replicas: 5,
      ready: 4,
      target: 0.75,
    });
    // 4 pods at 0.3: ceil(4 × 0.4) = 2.
    expect(r.recommend(pods([0.3, 0.3, 0.3, 0.3], 2000), POOL, 2000)?.replicas).toBe(2);
    // Exact multiples do not round up through floating-point noise: 2 × 0.9 / 0.6 = 3.
    const exact = new ReplicaRecommender(
      settings({ targetGpuCacheUtilization: 0.6, scaleDownStabilizationMs: 0 }),
      STALE_MS,
    );
    expect(exact.recommend(pods([0.9, 0.9], 1000), POOL, 1000)?.replicas).toBe(3);
    const clamped = new ReplicaRecommender(
      settings({ minReplicas: 3, maxReplicas: 6, scaleDownStabilizationMs: 0 }),
      STALE_MS,
    );
    expect(clamped.recommend(pods([1, 1, 1, 1, 1], 1000), POOL, 1000)?.replicas).toBe(6); // ceil(6.67) → max
    expect(clamped.recommend(pods([0.05], 2000), POOL, 2000)?.replicas).toBe(3); // → min
  });

  it("keeps the ready count within the 10% tolerance", () => {
    const r = new ReplicaRecommender(settings({ scaleDownStabilizationMs: 0 }), STALE_MS);
    expect(r.recommend(pods([0.8, 0.8, 0.8], 1000), POOL, 1000)?.replicas).toBe(3); // ratio 1.067
    expect(r.recommend(pods([0.85, 0.85, 0.85], 2000), POOL, 2000)?.replicas).toBe(4); // ratio 1.133
  });

  it("counts and averages only endpoints with fresh metrics", () => {
    const r = new ReplicaRecommender(settings({ scaleDownStabilizationMs: 0 }), STALE_MS);
    const now = 10_000;
    const eps = [...pods([0.9, 0.9], now), ...pods([0, 0], now, STALE_MS + 1), endpoint("10.2.9.9")];
    // Ready = 2 fresh pods at 0.9: ceil(2 × 1.2) = 3 (the stale idle pods would have dragged it to 2).
    expect(r.recommend(eps, POOL, now)).toMatchObject({ replicas: 3, ready: 2, averageKv: 0.9 });
    // Endpoints exist but none is fresh: no recommendation (hold the previous value).
    expect(r.recommend(pods([0.9], now, STALE_MS + 1), POOL, now)).toBeUndefined();
    // An empty pool asks for the minimum.
    expect(r.recommend([], POOL, now)?.replicas).toBe(1);
  });

  it("honours the pool's hints when the config section does not set them", () => {
    const hinted: PoolSpec = { ...POOL, minReplicas: 3, maxReplicas: 10, targetGpuCacheUtilization: 0.5 };
    const r = new ReplicaRecommender(settings({ scaleDownStabilizationMs: 0 }), STALE_MS);
    expect(r.recommend(pods([0.1], 1000), hinted, 1000)).toMatchObject({ replicas: 3, min: 3, max: 10, target: 0.5 });
    expect(r.recommend(pods([0.9, 0.9, 0.9, 0.9, 0.9, 0.9], 2000), hinted, 2000)?.replicas).toBe(10);
    const configured = new ReplicaRecommender(settings({ maxReplicas: 4, scaleDownStabilizationMs: 0 }), STALE_MS);
    expect(configured.recommend(pods([0.9, 0.9, 0.9], 1000), hinted, 1000)?.max).toBe(4);
  });

  it("scales up at once and down only after the stabilisation window (highest value in the window)", () => {
    const r = new ReplicaRecommender(settings({ scaleDownStabilizationMs: 300_000 }), STALE_MS);
    const at = (kv: number, t: number) => r.recommend(pods([kv, kv, kv, kv], t), POOL, t)!;
    expect(at(0.9, 0).replicas).toBe(5);
    const low = at(0.3, 60_000);
    expect(low.desired).toBe(2);
    expect(low.replicas).toBe(5); // held by the window
    expect(at(0.3, 299_000).replicas).toBe(5);
    expect(at(0.3, 300_001).replicas).toBe(2); // the 5 has aged out
    expect(at(1.0, 300_002).replicas).toBe(6); // up: immediate
  });
});

describe("--autoscale-target", () => {
  it("parses deployment and statefulset targets and rejects others with the flag name", () => {
    expect(parseScaleTarget("deployment/vllm")).toEqual({ kind: "deployment", name: "vllm" });
    expect(parseScaleTarget("sts/vllm-0")).toEqual({ kind: "statefulset", name: "vllm-0" });
    expect(() => parseScaleTarget("daemonset/x")).toThrow(ConfigError);
    expect(() => parseScaleTarget("vllm")).toThrow(/--autoscale-target/);
  });
});

describe("--autoscale against a fake API server", () => {
  let api: FakeApiServer;
  let dir: string;
  let kubeconfig: string;
  beforeAll(async () => {
    api = await FakeApiServer.start();
    dir = mkdtempSync(join(tmpdir(), "switchyard-autoscale-"));
    kubeconfig = await api.writeKubeconfig(dir);
    api.create(workloadObject("Deployment", "vllm", 2));
    api.create(workloadObject("StatefulSet", "vllm-sts", 2));
  });
  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("patches the scale subresource only when the recommendation changes", async () => {
    const scaler = new KubernetesScaler({
      kubeConfig: loadKubeConfig(kubeconfig),
      namespace: "default",
      target: parseScaleTarget("deployment/vllm"),
    });
    let t = 1_000;
    let kv = 0.9;
    const published: number[] = [];
    const loop = new AutoscaleLoop({
      recommender: new ReplicaRecommender(settings({ scaleDownStabilizationMs: 0 }), STALE_MS),
      endpoints: () => pods([kv, kv, kv, kv], t),
      pool: () => POOL,
      publish: (_pool, n) => published.push(n),
      scaler,
      logger: silentLogger,
      intervalMs: 1000,
      now: () => t,
    });
    expect((await loop.tick())?.replicas).toBe(5);
    expect(api.scaleWrites.map((w) => [w.resource, w.name, w.replicas, w.contentType])).toEqual([
      ["deployments", "vllm", 5, "application/json-patch+json"],
    ]);
    expect(api.get("apps/v1", "Deployment", "default", "vllm")?.spec).toMatchObject({ replicas: 5 });
    t += 1000;
    await loop.tick(); // unchanged: no second patch
    expect(api.scaleWrites).toHaveLength(1);
    kv = 0.3;
    t += 1000;
    await loop.tick();
    expect(api.scaleWrites.map((w) => w.replicas)).toEqual([5, 2]);
    expect(loop.patched).toBe(2);
    expect(published).toEqual([5, 5, 2]);
    loop.stop();
  });

  it("patches statefulsets too and retries after a failed patch", async () => {
    const scaler = new KubernetesScaler({
      kubeConfig: loadKubeConfig(kubeconfig),
      namespace: "default",
      target: parseScaleTarget("statefulset/vllm-sts"),
    });
    const loop = new AutoscaleLoop({
      recommender: new ReplicaRecommender(settings({ scaleDownStabilizationMs: 0 }), STALE_MS),
      endpoints: () => pods([0.9, 0.9, 0.9], 1000),
      pool: () => POOL,
      scaler,
      logger: silentLogger,
      intervalMs: 1000,
      now: () => 1000,
    });
    const before = api.scaleWrites.length;
    api.failNext(1, (r) => r.path.endsWith("/scale"));
    await loop.tick();
    expect(loop.patched).toBeUndefined();
    await loop.tick();
    expect(loop.patched).toBe(4);
    expect(api.scaleWrites.slice(before).map((w) => [w.resource, w.name, w.replicas])).toEqual([
      ["statefulsets", "vllm-sts", 4],
    ]);
  });

  it("does not patch while not the leader", async () => {
    const writes: number[] = [];
    const scaler: ReplicaScaler = { target: "deployment/x", scale: async (n) => void writes.push(n) };
    let leader = false;
    const loop = new AutoscaleLoop({
      recommender: new ReplicaRecommender(settings({ scaleDownStabilizationMs: 0 }), STALE_MS),
      endpoints: () => pods([0.9, 0.9], 1000),
      pool: () => POOL,
      scaler,
      isLeader: () => leader,
      intervalMs: 1000,
      now: () => 1000,
    });
    await loop.tick();
    expect(writes).toEqual([]);
    leader = true;
    await loop.tick();
    expect(writes).toEqual([3]);
  });
});
