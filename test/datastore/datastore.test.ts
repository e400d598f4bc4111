import { describe, expect, it } from "vitest";
import { ACTIVE_PORTS_ANNOTATION, ENGINE_TYPE_LABEL } from "../../src/common/constants.js";
import { ConfigError } from "../../src/common/errors.js";
import { Datastore, pickWeighted, STANDALONE_POOL_NAME } from "../../src/datastore/datastore.js";
import type {
  Endpoint,
  ModelSpec,
  ObjectiveSpec,
  PodSpec,
  PoolSpec,
  ResourceSet,
  RewriteSpec,
} from "../../src/datastore/types.js";
import { createRandom } from "../../src/scheduling/index.js";

const NS = "llm";

function poolSpec(over: Partial<PoolSpec> = {}): PoolSpec {
  return {
    name: "pool",
    namespace: NS,
    creationTimestamp: 0,
    selector: { app: "vllm" },
    targetPorts: [8000],
    appProtocol: "http",
    failureMode: "FailClose",
    ...over,
  };
}

function podSpec(name: string, ip: string, over: Partial<PodSpec> = {}): PodSpec {
  return {
    name,
    namespace: NS,
    creationTimestamp: 0,
    labels: { app: "vllm" },
    annotations: {},
    podIP: ip,
    ready: true,
    deleting: false,
    ...over,
  };
}

function modelSpec(name: string, modelName: string, over: Partial<ModelSpec> = {}): ModelSpec {
  return {
    name,
    namespace: NS,
    creationTimestamp: 0,
    modelName,
    criticality: "Standard",
    targetModels: [],
    poolRef: "pool",
    ...over,
  };
}

function rewriteSpec(name: string, rules: RewriteSpec["rules"], over: Partial<RewriteSpec> = {}): RewriteSpec {
  return { name, namespace: NS, creationTimestamp: 0, poolRef: "pool", rules, ...over };
}

function set(over: Partial<ResourceSet> = {}): ResourceSet {
  return { pools: [poolSpec()], models: [], objectives: [], rewrites: [], pods: [], ...over };
}

function keys(eps: readonly Endpoint[]): string[] {
  return eps.map((e) => e.key);
}

function newStore(): Datastore {
  return new Datastore({ poolName: "pool", poolNamespace: NS });
}

describe("Datastore endpoints", () => {
  it("selects ready, non-deleting pods with an IP that match the selector in the pool namespace", () => {
    const ds = newStore();
    expect(ds.synced()).toBe(false);
    const report = ds.apply(
      set({
        pods: [
          podSpec("a", "10.0.0.1"),
          podSpec("b", "10.0.0.2", { ready: false }),
          podSpec("c", "10.0.0.3", { deleting: true }),
          podSpec("d", ""),
          podSpec("e", "10.0.0.5", { labels: { app: "other" } }),
          podSpec("f", "10.0.0.6", { namespace: "elsewhere" }),
          podSpec("g", "10.0.0.7", { labels: { app: "vllm", extra: "yes" } }),
        ],
      }),
    );
    expect(ds.synced()).toBe(true);
    expect(keys(ds.endpoints())).toEqual(["10.0.0.1:8000", "10.0.0.7:8000"]);
    expect(ds.endpoints().map((e) => e.name)).toEqual(["a-rank-0", "g-rank-0"]);
    expect(report.accepted).toMatchObject({ pools: 1, pods: 2, endpoints: 2 });
    expect(ds.endpointByKey("10.0.0.7:8000")?.podName).toBe("g");
    expect(ds.endpointByKey("10.0.0.2:8000")).toBeUndefined();
  });

  it("makes one endpoint per target port, restricted by the active-ports annotation, and brackets IPv6", () => {
    const ds = newStore();
    ds.apply(
      set({
        pools: [poolSpec({ targetPorts: [8000, 8001, 8002] })],
        pods: [
          podSpec("a", "10.0.0.1"),
          podSpec("b", "10.0.0.2", { annotations: { [ACTIVE_PORTS_ANNOTATION]: "8002, 8000,junk,99999" } }),
          podSpec("c", "fd00::3", { annotations: { [ACTIVE_PORTS_ANNOTATION]: "" } }),
          podSpec("d", "fd00::4", { labels: { app: "vllm", [ENGINE_TYPE_LABEL]: "sglang" } }),
        ],
      }),
    );
    const eps = ds.endpoints();
    expect(eps.map((e) => `${e.name}@${e.key}`)).toEqual([
      "a-rank-0@10.0.0.1:8000",
      "a-rank-1@10.0.0.1:8001",
      "a-rank-2@10.0.0.1:8002",
      "b-rank-0@10.0.0.2:8000",
      "b-rank-2@10.0.0.2:8002",
      "d-rank-0@[fd00::4]:8000",
      "d-rank-1@[fd00::4]:8001",
      "d-rank-2@[fd00::4]:8002",
    ]);
    expect(eps[0]).toMatchObject({ address: "10.0.0.1", port: 8000, rank: 0, engine: "vllm", namespace: NS });
    expect(eps[5]!.engine).toBe("sglang");
  });

  it("reuses endpoint objects across applies and caches the array until something changes", () => {
    const ds = newStore();
    const events: [string[], string[]][] = [];
    ds.onEndpointsChanged((added, removed) => events.push([keys(added), keys(removed)]));
    ds.apply(set({ pods: [podSpec("a", "10.0.0.1"), podSpec("b", "10.0.0.2")] }));
    const first = ds.endpoints();
    const a = ds.endpointByKey("10.0.0.1:8000")!;
    a.inflightRequests = 3;
    a.metrics = {
      waitingQueueSize: 1,
      runningRequestsSize: 2,
      kvCacheUsagePercent: 0.5,
      activeModels: new Set(),
      waitingModels: new Set(),
      maxActiveModels: 0,
      cacheBlockSize: 0,
      cacheNumBlocks: 0,
      updateTime: 1,
    };
    // Same pods again, plus a relabel that keeps the selector matching: nothing is added or removed.
    ds.apply(set({ pods: [podSpec("a", "10.0.0.1", { labels: { app: "vllm", v: "2" } }), podSpec("b", "10.0.0.2")] }));
    expect(ds.endpoints()).toBe(first);
    expect(ds.endpointByKey("10.0.0.1:8000")).toBe(a);
    expect(a.inflightRequests).toBe(3);
    expect(a.metrics?.runningRequestsSize).toBe(2);
    expect(a.labels).toEqual({ app: "vllm", v: "2" });
    expect(events).toEqual([[["10.0.0.1:8000", "10.0.0.2:8000"], []]]);

    // IP change: remove + add in one notification; b survives untouched.
    const b = ds.endpointByKey("10.0.0.2:8000")!;
    ds.apply(set({ pods: [podSpec("a", "10.0.0.9"), podSpec("b", "10.0.0.2")] }));
    expect(events[1]).toEqual([["10.0.0.9:8000"], ["10.0.0.1:8000"]]);
    expect(ds.endpoints()).not.toBe(first);
    expect(ds.endpointByKey("10.0.0.2:8000")).toBe(b);
    expect(ds.endpointByKey("10.0.0.9:8000")).not.toBe(a);
    expect(ds.endpointByKey("10.0.0.9:8000")!.inflightRequests).toBe(0);
    expect(ds.endpointByKey("10.0.0.1:8000")).toBeUndefined();

    // Pod becomes unready: removed.
    ds.apply(set({ pods: [podSpec("a", "10.0.0.9"), podSpec("b", "10.0.0.2", { ready: false })] }));
    expect(events[2]).toEqual([[], ["10.0.0.2:8000"]]);
    expect(keys(ds.endpoints())).toEqual(["10.0.0.9:8000"]);
  });

  it("drops every endpoint and unsyncs when the pool disappears; unsubscribed listeners hear nothing", () => {
    const ds = newStore();
    const seen: number[] = [];
    const off = ds.onEndpointsChanged((added, removed) => seen.push(added.length - removed.length));
    const broken = ds.onEndpointsChanged(() => {
      throw new Error("listener bug");
    });
    ds.apply(set({ pods: [podSpec("a", "10.0.0.1")] }));
    expect(seen).toEqual([1]);
    ds.apply(set({ pools: [], pods: [podSpec("a", "10.0.0.1")] }));
    expect(ds.synced()).toBe(false);
    expect(ds.pool()).toBeUndefined();
    expect(ds.endpoints()).toEqual([]);
    expect(seen).toEqual([1, -1]);
    off();
    broken();
    ds.apply(set({ pods: [podSpec("a", "10.0.0.1")] }));
    expect(seen).toEqual([1, -1]);
    expect(ds.synced()).toBe(true);
  });

  it("keeps the oldest pod when two claim the same address", () => {
    const ds = newStore();
    const report = ds.apply(
      set({
        pods: [
          podSpec("young", "10.0.0.1", { creationTimestamp: 20 }),
          podSpec("old", "10.0.0.1", { creationTimestamp: 10 }),
        ],
      }),
    );
    expect(ds.endpoints().map((e) => e.podName)).toEqual(["old"]);
    expect(report.rejected).toEqual([
      expect.objectContaining({ kind: "Pod", name: `${NS}/young`, reason: "DuplicateAddress" }),
    ]);
  });

  it("ignores pools of other names or namespaces", () => {
    const ds = newStore();
    const report = ds.apply(
      set({
        pools: [poolSpec({ name: "other" }), poolSpec({ namespace: "x", selector: { app: "x" } })],
        pods: [podSpec("a", "10.0.0.1")],
      }),
    );
    expect(ds.synced()).toBe(false);
    expect(ds.endpoints()).toEqual([]);
    expect(report.ignored).toBe(2);
  });
});

describe("Datastore models, objectives and rewrites", () => {
  it("resolves modelName conflicts: oldest wins, then name order; losers get ModelNameInUse", () => {
    const ds = newStore();
    const report = ds.apply(
      set({
        models: [
          modelSpec("zeta", "llama", { creationTimestamp: 100 }),
          modelSpec("beta", "llama", { creationTimestamp: 50 }),
          modelSpec("alpha", "llama", { creationTimestamp: 50 }),
          modelSpec("solo", "qwen", { criticality: "Critical" }),
          modelSpec("foreign", "mistral", { poolRef: "other-pool" }),
          modelSpec("foreign-ns", "gemma", { namespace: "x" }),
        ],
      }),
    );
    expect(ds.model("llama")?.name).toBe("alpha");
    expect(ds.model("qwen")?.criticality).toBe("Critical");
    expect(ds.model("mistral")).toBeUndefined();
    expect(ds.model("gemma")).toBeUndefined();
    expect(report.modelConflicts).toEqual([{ modelName: "llama", winner: "alpha", losers: ["beta", "zeta"] }]);
    expect(report.rejected.map((r) => [r.name, r.reason])).toEqual([
      [`${NS}/beta`, "ModelNameInUse"],
      [`${NS}/zeta`, "ModelNameInUse"],
    ]);
    expect(report.accepted.models).toBe(2);
    expect(report.ignored).toBe(2);
  });

  it("looks up objectives by name, only for this pool", () => {
    const ds = newStore();
    const o = (name: string, priority: number, poolRef = "pool"): ObjectiveSpec => ({
      name,
      namespace: NS,
      creationTimestamp: 0,
      priority,
      poolRef,
    });
    ds.apply(set({ objectives: [o("critical", 10), o("batch", -1), o("theirs", 5, "other")] }));
    expect(ds.objective("critical")?.priority).toBe(10);
    expect(ds.objective("batch")?.priority).toBe(-1);
    expect(ds.objective("theirs")).toBeUndefined();
    expect(ds.objective("toString")).toBeUndefined();
  });

  it("applies rewrite precedence: exact beats match-all, then oldest resource, then first rule", () => {
    const ds = newStore();
    const t = (m: string) => [{ modelRewrite: m, weight: 1 }];
    ds.apply(
      set({
        rewrites: [
          rewriteSpec("new-exact", [{ matches: ["gpt"], targets: t("from-new") }], { creationTimestamp: 200 }),
          rewriteSpec(
            "old",
            [
              { matches: [], targets: t("old-catch-all") },
              { matches: ["gpt"], targets: t("from-old-rule-2") },
              { matches: ["gpt", "o1"], targets: t("from-old-rule-3") },
            ],
            { creationTimestamp: 100 },
          ),
          rewriteSpec("newer-catch-all", [{ matches: [], targets: t("newer-catch-all") }], { creationTimestamp: 150 }),
          rewriteSpec("foreign", [{ matches: ["claude"], targets: t("x") }], { poolRef: "other" }),
        ],
      }),
    );
    expect(ds.resolveRewrite("gpt")).toEqual({ rewriteName: "old", targets: t("from-old-rule-2") });
    expect(ds.resolveRewrite("o1")).toEqual({ rewriteName: "old", targets: t("from-old-rule-3") });
    // Exact match from a newer resource still beats the older match-all.
    ds.apply(
      set({
        rewrites: [
          rewriteSpec("catch-all", [{ matches: [], targets: t("any") }], { creationTimestamp: 1 }),
          rewriteSpec("exact", [{ matches: ["gpt"], targets: t("exact") }], { creationTimestamp: 999 }),
        ],
      }),
    );
    expect(ds.resolveRewrite("gpt")?.rewriteName).toBe("exact");
    expect(ds.resolveRewrite("claude")?.rewriteName).toBe("catch-all");
    ds.apply(set());
    expect(ds.resolveRewrite("gpt")).toBeUndefined();
  });

  it("rejects duplicate objects in one snapshot, keeping the first", () => {
    const ds = newStore();
    const report = ds.apply(
      set({
        pools: [poolSpec({ origin: "a.yaml#1" }), poolSpec({ targetPorts: [9000], origin: "b.yaml#1" })],
        models: [modelSpec("m", "one"), modelSpec("m", "two")],
      }),
    );
    expect(ds.pool()?.targetPorts).toEqual([8000]);
    expect(ds.model("one")).toBeDefined();
    expect(ds.model("two")).toBeUndefined();
    expect(report.rejected.map((r) => `${r.kind} ${r.reason}`)).toEqual([
      "InferencePool Duplicate",
      "InferenceModel Duplicate",
    ]);
    expect(report.rejected[0]!.message).toContain("a.yaml#1");
  });
});

describe("Datastore construction and standalone pool", () => {
  it("validates options", () => {
    expect(() => new Datastore({ poolName: "", poolNamespace: NS })).toThrow(ConfigError);
    expect(() => new Datastore({ poolName: "p", poolNamespace: "" })).toThrow(/poolNamespace/);
  });

  it("synthesises a pool from --endpoint-selector and --endpoint-target-ports", () => {
    const pool = Datastore.standalonePool("app=vllm, tier==gpu", [8000, 8001], NS);
    expect(pool).toMatchObject({
      name: STANDALONE_POOL_NAME,
      namespace: NS,
      selector: { app: "vllm", tier: "gpu" },
      targetPorts: [8000, 8001],
      failureMode: "FailClose",
    });
    const ds = new Datastore({ poolName: STANDALONE_POOL_NAME, poolNamespace: NS });
    ds.apply({
      pools: [pool],
      models: [],
      objectives: [],
      rewrites: [],
      pods: [podSpec("a", "10.0.0.1", { labels: { app: "vllm", tier: "gpu" } })],
    });
    expect(keys(ds.endpoints())).toEqual(["10.0.0.1:8000", "10.0.0.1:8001"]);
    expect(Datastore.standalonePool({ app: "x" }, [1], NS, "mine").name).toBe("mine");
    expect(() => Datastore.standalonePool("", [8000], NS)).toThrow(
      "--endpoint-selector: must select at least one label (k=v)",
    );
    expect(() => Datastore.standalonePool("=x", [8000], NS)).toThrow(
      '--endpoint-selector: expected k=v[,k2=v2], got "=x"',
    );
    expect(() => Datastore.standalonePool("a=b", [], NS)).toThrow(
      "--endpoint-target-ports: must list 1..8 ports, got 0",
    );
    expect(() => Datastore.standalonePool("a=b", [8000, 8000], NS)).toThrow(
      "--endpoint-target-ports: duplicate port 8000",
    );
    expect(() => Datastore.standalonePool("a=b", [0], NS)).toThrow(
      "--endpoint-target-ports: port must be an integer 1..65535, got 0",
    );
  });
});

describe("pickWeighted", () => {
  function split(targets: { name: string; weight: number }[], picks = 1000): Record<string, number> {
    const random = createRandom(42);
    const counts: Record<string, number> = {};
    for (let i = 0; i < picks; i++) {
      const t = pickWeighted(targets, random)!;
      counts[t.name] = (counts[t.name] ?? 0) + 1;
    }
    return counts;
  }

  it("splits by weight within tolerance over 1000 picks", () => {
    const counts = split([
      { name: "a", weight: 70 },
      { name: "b", weight: 20 },
      { name: "c", weight: 10 },
    ]);
    expect(counts["a"]).toBeGreaterThan(640);
    expect(counts["a"]).toBeLessThan(760);
    expect(counts["b"]).toBeGreaterThan(160);
    expect(counts["b"]).toBeLessThan(240);
    expect(counts["c"]).toBeGreaterThan(70);
    expect(counts["c"]).toBeLessThan(130);
  });

  it("never picks a zero-weight target when others have weight", () => {
    const counts = split([
      { name: "zero", weight: 0 },
      { name: "one", weight: 1 },
    ]);
    expect(counts).toEqual({ one: 1000 });
  });

  it("picks uniformly when the total weight is 0, and handles edges", () => {
    const counts = split([
      { name: "a", weight: 0 },
      { name: "b", weight: 0 },
    ]);
    expect(counts["a"]).toBeGreaterThan(430);
    expect(counts["b"]).toBeGreaterThan(430);
    expect(pickWeighted([], Math.random)).toBeUndefined();
    const only = { weight: 5 };
    expect(pickWeighted([only], () => 0.99)).toBe(only);
    const last = { weight: 1 };
    // random() just below 1 must still land on a real target.
    expect(pickWeighted([{ weight: 1 }, last], () => 1 - Number.EPSILON)).toBe(last);
  });
});

describe("Datastore.applyInSlices", () => {
  const set = (tag: string, n: number, creationTimestamp = 0): ResourceSet => ({
    pools: [poolSpec()],
    models: [modelSpec(`m-${tag}`, `model-${tag}`)],
    objectives: [],
    rewrites: [],
    // Reverse order and shared timestamps: the sort in slices must give the same order as apply().
    pods: Array.from({ length: n }, (_, i) =>
      podSpec(`${tag}-${String(n - i).padStart(5, "0")}`, `10.${tag === "a" ? 1 : 2}.${(i >> 8) & 255}.${i & 255}`, {
        creationTimestamp,
      }),
    ),
  });

  it("lets the event loop run while it computes, and swaps the whole view in at once", async () => {
    const ds = new Datastore({ poolName: "pool", poolNamespace: NS });
    ds.apply(set("a", 3000));
    const reference = new Datastore({ poolName: "pool", poolNamespace: NS });
    reference.apply(set("b", 3000));
    let turns = 0;
    let mixed = 0;
    let sawOld = 0;
    const watch = () => {
      turns++;
      const eps = ds.endpoints();
      const newModel = ds.model("model-b") !== undefined;
      const allNew = eps.every((e) => e.podName.startsWith("b-"));
      const allOld = eps.every((e) => e.podName.startsWith("a-"));
      if (newModel ? !allNew : !allOld) mixed++;
      if (!newModel) sawOld++;
    };
    let running = true;
    const spin = () => {
      watch();
      if (running) setImmediate(spin);
    };
    setImmediate(spin);
    const report = await ds.applyInSlices(set("b", 3000), 0);
    running = false;
    watch();
    expect(report.accepted.endpoints).toBe(3000);
    expect(turns).toBeGreaterThan(2);
    expect(sawOld).toBeGreaterThan(0);
    expect(mixed).toBe(0);
    expect(ds.model("model-a")).toBeUndefined();
    expect(ds.endpoints().map((e) => e.name)).toEqual(reference.endpoints().map((e) => e.name));
  });

  it("starts over when another apply lands while it is computing", async () => {
    const ds = new Datastore({ poolName: "pool", poolNamespace: NS });
    const pending = ds.applyInSlices(set("a", 3000), 0);
    ds.apply(set("b", 10));
    await pending;
    // The slow apply was computed against an outdated view, so it was redone; its result is what stays.
    expect(ds.endpoints()).toHaveLength(3000);
    expect(ds.model("model-a")).toBeDefined();
  });

  it("logs 10k duplicate addresses as a few lines plus one summary", async () => {
    const { captureLogger } = await import("../observability/helpers.js");
    const log = captureLogger("warn");
    const ds = new Datastore({ poolName: "pool", poolNamespace: NS, logger: log.logger });
    const pods = Array.from({ length: 10_001 }, (_, i) => podSpec(`p-${i}`, "10.9.9.9"));
    const report = ds.apply({ pools: [poolSpec()], models: [], objectives: [], rewrites: [], pods });
    log.logger.flush();
    expect(report.rejected.filter((r) => r.reason === "DuplicateAddress")).toHaveLength(10_000);
    const warnings = log.records().filter((r) => r.level === 40);
    expect(warnings.length).toBeLessThanOrEqual(6);
    expect(warnings.at(-1)).toMatchObject({ more: 9995, byReason: { DuplicateAddress: 9995 } });
  });
});
