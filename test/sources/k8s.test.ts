import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Datastore } from "../../src/datastore/datastore.js";
import {
  apiVersionOfPath,
  backoffDelay,
  fillListTypeMeta,
  KubernetesForbiddenError,
  KubernetesSource,
  selectorString,
} from "../../src/sources/kubernetes.js";
import {
  FakeApiServer,
  type FakeObject,
  modelObject,
  objectiveObject,
  podObject,
  poolObject,
} from "../helpers/fake-apiserver.js";

const NS = "default";
const POOL_API = "inference.networking.k8s.io/v1";
const X_API = "inference.networking.x-k8s.io/v1alpha2";
const WAIT = { timeout: 15_000, interval: 20 };

let server: FakeApiServer;
let dir: string;
let kubeconfig: string;
const cleanups: (() => unknown)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sy-k8s-"));
});

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

async function startServer(omit?: string[]): Promise<void> {
  server = await FakeApiServer.start(omit ? { omit } : {});
  kubeconfig = await server.writeKubeconfig(dir);
}

function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

function newSource(
  extra: Partial<ConstructorParameters<typeof KubernetesSource>[0]> = {},
  poolName = "pool",
): { source: KubernetesSource; ds: Datastore } {
  const ds = new Datastore({ poolName, poolNamespace: NS });
  const source = new KubernetesSource({ kubeconfig, namespace: NS, poolName, datastore: ds, ...extra });
  cleanups.push(() => source.stop());
  return { source, ds };
}

function keys(ds: Datastore): string[] {
  return ds
    .endpoints()
    .map((e) => e.key)
    .sort();
}

const vllm = { app: "vllm" };

function seedPool(ports = [8000]): void {
  server.create(poolObject("pool", { matchLabels: vllm, ports }));
  server.create(podObject("p1", { ip: "10.0.0.1", labels: vllm }));
  server.create(podObject("p2", { ip: "10.0.0.2", labels: vllm }));
  server.create(podObject("other", { ip: "10.0.0.9", labels: { app: "other" } }));
}

function podLists(): number {
  return server.requests.filter((r) => r.path === `/api/v1/namespaces/${NS}/pods` && !r.watch && r.method === "GET")
    .length;
}

describe("KubernetesSource: pool mode", () => {
  beforeEach(() => startServer());

  it("converges after the initial list and watches pods with the pool's selector", async () => {
    seedPool();
    server.create(modelObject("m1", { modelName: "llama", criticality: "Critical" }));
    server.create(objectiveObject("gold", { priority: 10 }));
    const { source, ds } = newSource();
    await source.start();
    expect(ds.synced()).toBe(true);
    expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);
    expect(ds.model("llama")?.criticality).toBe("Critical");
    expect(ds.objective("gold")?.priority).toBe(10);
    const podList = server.requests.find((r) => r.path === `/api/v1/namespaces/${NS}/pods` && !r.watch);
    expect(podList?.query.get("labelSelector")).toBe("app=vllm");
    const poolList = server.requests.find((r) => r.path.endsWith("/inferencepools") && !r.watch);
    expect(poolList?.query.get("fieldSelector")).toBe("metadata.name=pool");
  });

  it("follows adds, modifications and deletions", async () => {
    seedPool();
    server.create(modelObject("m1", { modelName: "llama" }));
    server.create(objectiveObject("gold", { priority: 10 }));
    const { source, ds } = newSource();
    await source.start();

    server.create(podObject("p3", { ip: "10.0.0.3", labels: vllm }));
    await vi.waitFor(() => expect(keys(ds)).toContain("10.0.0.3:8000"), WAIT);

    server.modify(X_API, "InferenceModel", NS, "m1", (o) => {
      (o.spec as Record<string, unknown>).criticality = "Sheddable";
    });
    await vi.waitFor(() => expect(ds.model("llama")?.criticality).toBe("Sheddable"), WAIT);

    server.remove("v1", "Pod", NS, "p1");
    server.remove(X_API, "InferenceObjective", NS, "gold");
    await vi.waitFor(() => {
      expect(keys(ds)).toEqual(["10.0.0.2:8000", "10.0.0.3:8000"]);
      expect(ds.objective("gold")).toBeUndefined();
    }, WAIT);
  });

  it("drops unready and terminating pods and follows pod IP changes", async () => {
    seedPool();
    server.create(podObject("p3", { ip: "10.0.0.3", labels: vllm }));
    const { source, ds } = newSource();
    await source.start();
    expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]);

    server.modify("v1", "Pod", NS, "p1", (o) => {
      (o.status as { conditions: unknown[] }).conditions = [{ type: "Ready", status: "False" }];
    });
    server.modify("v1", "Pod", NS, "p2", (o) => {
      o.metadata.deletionTimestamp = new Date().toISOString();
    });
    server.modify("v1", "Pod", NS, "p3", (o) => {
      (o.status as Record<string, unknown>).podIP = "10.0.0.33";
    });
    await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.0.33:8000"]), WAIT);

    server.modify("v1", "Pod", NS, "p1", (o) => {
      (o.status as { conditions: unknown[] }).conditions = [{ type: "Ready", status: "True" }];
    });
    await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.33:8000"]), WAIT);
  });

  it("serves several target ports and honours the active-ports annotation", async () => {
    seedPool([8000, 8001]);
    const { source, ds } = newSource();
    await source.start();
    expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.1:8001", "10.0.0.2:8000", "10.0.0.2:8001"]);
    server.modify("v1", "Pod", NS, "p2", (o) => {
      o.metadata.annotations = { "inference.networking.k8s.io/active-ports": "8001" };
    });
    await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.1:8001", "10.0.0.2:8001"]), WAIT);
  });

  it("re-creates the pod informer when the pool selector changes, and follows pool deletion", async () => {
    seedPool();
    const { source, ds } = newSource();
    await source.start();
    expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);

    server.modify(POOL_API, "InferencePool", NS, "pool", (o) => {
      (o.spec as { selector: unknown }).selector = { matchLabels: { app: "other" } };
    });
    await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.0.9:8000"]), WAIT);
    // The new pod informer watches with the new selector, and the old one is gone.
    await vi.waitFor(() => {
      const watches = server.requests.filter((r) => r.watch && r.path.endsWith("/pods"));
      expect(watches.at(-1)?.query.get("labelSelector")).toBe("app=other");
    }, WAIT);
    server.create(podObject("o2", { ip: "10.0.0.10", labels: { app: "other" } }));
    server.create(podObject("p4", { ip: "10.0.0.4", labels: vllm }));
    await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.0.10:8000", "10.0.0.9:8000"]), WAIT);

    server.remove(POOL_API, "InferencePool", NS, "pool");
    await vi.waitFor(() => {
      expect(ds.synced()).toBe(false);
      expect(keys(ds)).toEqual([]);
    }, WAIT);
    server.create(poolObject("pool", { matchLabels: vllm }));
    await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.4:8000"]), WAIT);
  });

  for (const via of ["event", "reconnect"] as const) {
    it(`re-lists after 410 Expired ${via === "event" ? "on an open watch" : "when re-watching from an old version"}`, async () => {
      seedPool();
      const { source, ds } = newSource();
      await source.start();
      const listsBefore = podLists();
      // These changes are never delivered as events: only a re-list can reveal them.
      server.expire({
        via,
        whileExpired: () => {
          server.remove("v1", "Pod", NS, "p1");
          server.create(podObject("p5", { ip: "10.0.0.5", labels: vllm }));
        },
      });
      await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.0.2:8000", "10.0.0.5:8000"]), WAIT);
      expect(podLists()).toBeGreaterThan(listsBefore);
      if (via === "reconnect") expect(server.requests.some((r) => r.watch && r.expired === true)).toBe(true);
    });
  }

  it("lists pods whose list items carry no kind/apiVersion (as the real API server sends a PodList)", async () => {
    seedPool();
    const { source, ds } = newSource();
    await source.start();
    // The fake strips them from built-in list items like kube-apiserver; this would be [] if items needed a kind.
    expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);
    // And after a selector change, which re-lists pods with the new selector.
    server.modify(POOL_API, "InferencePool", NS, "pool", (o) => {
      (o.spec as { selector: unknown }).selector = { matchLabels: { app: "other" } };
    });
    await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.0.9:8000"]), WAIT);
  });

  it("asks for watch bookmarks and resumes from the bookmarked version after a drop", async () => {
    seedPool();
    const { source } = newSource();
    await source.start();
    await vi.waitFor(() => expect(server.watchCount).toBe(5), WAIT);
    const podWatches = () => server.requests.filter((r) => r.watch && r.path === `/api/v1/namespaces/${NS}/pods`);
    expect(podWatches().every((r) => r.query.get("allowWatchBookmarks") === "true")).toBe(true);
    // Changes the pod watch never sees (other namespace-wide resources), then a bookmark at the newest version.
    server.create(objectiveObject("silver", { priority: 1 }));
    server.create(objectiveObject("bronze", { priority: 0 }));
    const rv = String(server.resourceVersion);
    const listsBefore = podLists();
    // Nothing outside says when the client has read the bookmark line, so: bookmark, let it be read, cut, and look
    // at where the pod watch resumed; repeat until it resumes at the bookmark (without bookmarks it never does).
    await vi.waitFor(async () => {
      server.bookmark();
      await new Promise((r) => setTimeout(r, 100));
      const before = podWatches().length;
      server.dropWatches();
      await vi.waitFor(() => expect(podWatches().length).toBeGreaterThan(before), WAIT);
      expect(podWatches().at(-1)?.query.get("resourceVersion")).toBe(rv);
    }, WAIT);
    expect(podLists()).toBe(listsBefore);
  });

  it("runs without an optional resource its Role does not grant (403), with one clear error, and picks it up once granted", async () => {
    seedPool();
    server.create(objectiveObject("gold", { priority: 10 }));
    const objectives = "inference.networking.x-k8s.io/v1alpha2/inferenceobjectives";
    server.forbid(objectives);
    const { logger, lines } = capture();
    const { source, ds } = newSource({ logger, backoff: { initialMs: 50, maxMs: 200 } });
    await source.start();
    expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);
    expect(ds.objective("gold")).toBeUndefined();
    // Retried (slowly) but reported once.
    await vi.waitFor(
      () => expect(server.requests.filter((r) => r.path.endsWith("/inferenceobjectives")).length).toBeGreaterThan(2),
      WAIT,
    );
    const errors = lines.filter((l) => l.level === 50 && String(l.msg).includes("inferenceobjectives"));
    expect(errors).toHaveLength(1);
    expect(String(errors[0]!.msg)).toContain(
      'add this rule to the EPP\'s Role: {apiGroups: ["inference.networking.x-k8s.io"], resources: ["inferenceobjectives"], verbs: ["list", "watch"]}',
    );
    server.forbid(objectives, false);
    await vi.waitFor(() => expect(ds.objective("gold")?.priority).toBe(10), WAIT);
  });

  it("fails start() naming resource, verb and Role rule when a required resource is forbidden (403)", async () => {
    seedPool();
    server.forbid("/v1/pods");
    const { source } = newSource();
    const err = await source.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KubernetesForbiddenError);
    expect((err as Error).message).toContain('cannot list pods in namespace "default"');
    expect((err as Error).message).toContain('{apiGroups: [""], resources: ["pods"], verbs: ["list", "watch"]}');
  });

  it("keeps its last view when a required resource becomes forbidden after the first sync, and recovers", async () => {
    seedPool();
    const { logger, lines } = capture();
    const { source, ds } = newSource({ logger, backoff: { initialMs: 50, maxMs: 200 } });
    await source.start();
    server.forbid("/v1/pods");
    server.dropWatches();
    await vi.waitFor(
      () =>
        expect(server.requests.filter((r) => r.path.endsWith("/pods") && r.status === 403).length).toBeGreaterThan(2),
      WAIT,
    );
    expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);
    expect(lines.some((l) => l.msg === "list/watch failed; restarting informer" && l.status === 403)).toBe(true);
    server.forbid("/v1/pods", false);
    server.create(podObject("p7", { ip: "10.0.0.7", labels: vllm }));
    await vi.waitFor(() => expect(keys(ds)).toContain("10.0.0.7:8000"), WAIT);
  });

  it("reconnects after the watch connections drop", async () => {
    seedPool();
    const { source, ds } = newSource();
    await source.start();
    await vi.waitFor(() => expect(server.watchCount).toBe(5), WAIT);
    server.dropWatches();
    expect(server.watchCount).toBe(0);
    server.create(podObject("p6", { ip: "10.0.0.6", labels: vllm }));
    await vi.waitFor(() => expect(keys(ds)).toContain("10.0.0.6:8000"), WAIT);
    await vi.waitFor(() => expect(server.watchCount).toBe(5), WAIT);
    server.remove("v1", "Pod", NS, "p6");
    await vi.waitFor(() => expect(keys(ds)).not.toContain("10.0.0.6:8000"), WAIT);
  });

  it("survives a burst of 500s at start-up", async () => {
    seedPool();
    server.failNext(7);
    const { source, ds } = newSource();
    await source.start();
    expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);
    expect(server.requests.filter((r) => r.status === 500)).toHaveLength(7);
  });

  it("backs off while the API server fails, keeps the last good view, and recovers", async () => {
    seedPool();
    const { source, ds } = newSource();
    await source.start();
    const before = server.requests.length;
    server.failNext(Number.POSITIVE_INFINITY);
    server.dropWatches();
    // It keeps retrying while the API server fails: waited for, not counted in a time window (a busy machine may
    // take any time to get there).
    await vi.waitFor(() => expect(server.requests.length - before).toBeGreaterThanOrEqual(5), WAIT);
    // Then a fixed observation window with an upper bound only: a slower machine can only make FEWER requests in
    // it, so this cannot flake. Five informers with equal-jitter backoff from 250 ms can start at most ~5 attempts
    // each within 1.5 s (0, ≥125, ≥375, ≥875 ms...); a tight restart loop would make thousands.
    const windowStart = server.requests.length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(server.requests.length - windowStart).toBeLessThanOrEqual(40);
    // Last-known-good: endpoints survive a control-plane outage.
    expect(keys(ds)).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);
    server.heal();
    server.create(podObject("p7", { ip: "10.0.0.7", labels: vllm }));
    await vi.waitFor(() => expect(keys(ds)).toContain("10.0.0.7:8000"), WAIT);
  });

  it("logs and ignores invalid objects without losing the valid ones", async () => {
    seedPool();
    server.create(modelObject("good", { modelName: "llama" }));
    const bad = modelObject("bad", { modelName: "x" });
    (bad.spec as Record<string, unknown>).criticality = "Urgent";
    server.create(bad);
    const { logger, lines } = capture();
    const { source, ds } = newSource({ logger });
    await source.start();
    expect(ds.model("llama")).toBeDefined();
    expect(ds.model("x")).toBeUndefined();
    const line = lines.find((l) => l.msg === "ignoring invalid object");
    expect(line).toMatchObject({ kind: "InferenceModel", name: "bad", field: "spec.criticality" });
    expect(String(line?.reason)).toContain("Urgent");
  });

  it("writes Accepted on models; the newer claimant of a modelName gets ModelNameInUse, without write loops", async () => {
    seedPool();
    server.create(modelObject("old", { modelName: "llama", created: "2024-01-01T00:00:00Z" }));
    server.create(modelObject("new", { modelName: "llama", created: "2024-06-01T00:00:00Z" }));
    server.create(modelObject("foreign", { modelName: "other", pool: "someone-else" }));
    const { source, ds } = newSource();
    await source.start();
    const accepted = (name: string) =>
      (server.get(X_API, "InferenceModel", NS, name)?.status as { conditions?: Record<string, unknown>[] } | undefined)
        ?.conditions?.[0];
    await vi.waitFor(() => {
      expect(accepted("old")).toMatchObject({ type: "Accepted", status: "True", reason: "Accepted" });
      expect(accepted("new")).toMatchObject({ type: "Accepted", status: "False", reason: "ModelNameInUse" });
    }, WAIT);
    expect(ds.model("llama")?.name).toBe("old");
    // Models of other pools belong to other EPPs.
    expect(accepted("foreign")).toBeUndefined();
    const w = server.statusWrites.find((s) => s.name === "new");
    expect(w).toMatchObject({
      method: "PATCH",
      contentType: "application/merge-patch+json",
      resource: "inferencemodels",
    });

    // Our own status writes come back as MODIFIED events; they must not trigger further writes.
    const writes = server.statusWrites.length;
    server.create(podObject("p8", { ip: "10.0.0.8", labels: vllm }));
    await vi.waitFor(() => expect(keys(ds)).toContain("10.0.0.8:8000"), WAIT);
    expect(server.statusWrites.length).toBe(writes);

    // The winner goes away: the former loser is accepted.
    server.remove(X_API, "InferenceModel", NS, "old");
    await vi.waitFor(() => expect(accepted("new")).toMatchObject({ status: "True", reason: "Accepted" }), WAIT);
  });

  it("writes no status when told not to (non-leader)", async () => {
    seedPool();
    server.create(modelObject("m1", { modelName: "llama" }));
    let leader = false;
    const { source, ds } = newSource({ writeStatus: () => leader });
    await source.start();
    server.create(podObject("p9", { ip: "10.0.0.19", labels: vllm }));
    await vi.waitFor(() => expect(keys(ds)).toContain("10.0.0.19:8000"), WAIT);
    expect(server.statusWrites).toHaveLength(0);
    leader = true;
    source.resync();
    await vi.waitFor(() => expect(server.statusWrites).toHaveLength(1), WAIT);
  });

  it("resolves start() with an empty pool when the pool does not exist yet, then picks it up", async () => {
    server.create(podObject("p1", { ip: "10.0.0.1", labels: vllm }));
    const { source, ds } = newSource();
    await source.start();
    expect(ds.synced()).toBe(false);
    server.create(poolObject("pool", { matchLabels: vllm }));
    await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.0.1:8000"]), WAIT);
  });

  it("rejects start() when stopped before the first sync", async () => {
    seedPool();
    server.failNext(Number.POSITIVE_INFINITY);
    const { source } = newSource();
    const started = source.start();
    await vi.waitFor(() => expect(server.requests.length).toBeGreaterThan(0), WAIT);
    source.stop();
    await expect(started).rejects.toThrow(/stopped before the first sync/);
  });
});

describe("KubernetesSource: legacy pool group", () => {
  beforeEach(() => startServer());

  it("reads a v1alpha2 InferencePool when --pool-group is inference.networking.x-k8s.io", async () => {
    server.create({
      apiVersion: X_API,
      kind: "InferencePool",
      metadata: { name: "pool", namespace: NS },
      spec: { selector: vllm, targetPortNumber: 8080, extensionRef: { name: "epp" } },
    } as FakeObject);
    server.create(podObject("p1", { ip: "10.0.0.1", labels: vllm }));
    const { source, ds } = newSource({ poolGroup: "inference.networking.x-k8s.io" });
    await source.start();
    expect(keys(ds)).toEqual(["10.0.0.1:8080"]);
  });
});

describe("KubernetesSource: standalone selector mode", () => {
  const crds = [
    "inference.networking.k8s.io/v1/inferencepools",
    "inference.networking.x-k8s.io/v1alpha2/inferencepools",
    "inference.networking.x-k8s.io/v1alpha2/inferencemodels",
    "inference.networking.x-k8s.io/v1alpha2/inferenceobjectives",
    "inference.networking.x-k8s.io/v1alpha2/inferencemodelrewrites",
  ];
  beforeEach(() => startServer(crds));

  it("watches pods by the flag selector on every target port, with no CRDs installed", async () => {
    server.create(podObject("a", { ip: "10.0.1.1", labels: { app: "sim", tier: "x" } }));
    server.create(podObject("b", { ip: "10.0.1.2", labels: { app: "sim" } }));
    server.create(podObject("c", { ip: "10.0.1.3", labels: { app: "nope" } }));
    const { source, ds } = newSource({ standalone: { selector: "app=sim", targetPorts: [8000, 8002] } }, "standalone");
    await source.start();
    expect(keys(ds)).toEqual(["10.0.1.1:8000", "10.0.1.1:8002", "10.0.1.2:8000", "10.0.1.2:8002"]);
    server.remove("v1", "Pod", NS, "a");
    await vi.waitFor(() => expect(keys(ds)).toEqual(["10.0.1.2:8000", "10.0.1.2:8002"]), WAIT);
    // Missing CRDs were asked for once each, not polled in a loop.
    const crdLists = server.requests.filter((r) => r.path.includes("inference.networking"));
    expect(crdLists.length).toBe(3);
  });

  it("picks up InferenceObjectives when their CRD is installed later", async () => {
    server.create(podObject("a", { ip: "10.0.1.1", labels: { app: "sim" } }));
    const { source, ds } = newSource(
      {
        standalone: { selector: { app: "sim" }, targetPorts: [8000] },
        // Fast re-checks so the test does not wait for the 30 s production cap.
        backoff: { initialMs: 50, maxMs: 200 },
      },
      "standalone",
    );
    await source.start();
    expect(ds.objective("gold")).toBeUndefined();
    server.setServed("inference.networking.x-k8s.io/v1alpha2/inferenceobjectives", true);
    server.create(objectiveObject("gold", { priority: 5, pool: "standalone" }));
    await vi.waitFor(() => expect(ds.objective("gold")?.priority).toBe(5), WAIT);
  });
});

describe("KubernetesSource: options", () => {
  beforeEach(() => startServer());

  it("rejects bad options with the flag name", () => {
    const ds = new Datastore({ poolName: "p", poolNamespace: NS });
    expect(() => new KubernetesSource({ kubeconfig, namespace: "", poolName: "p", datastore: ds })).toThrow(
      /--pool-namespace/,
    );
    expect(() => new KubernetesSource({ kubeconfig, namespace: NS, datastore: ds })).toThrow(/--pool-name/);
    expect(
      () => new KubernetesSource({ kubeconfig, namespace: NS, poolName: "p", poolGroup: "example.com", datastore: ds }),
    ).toThrow(/--pool-group/);
    expect(
      () =>
        new KubernetesSource({
          kubeconfig,
          namespace: NS,
          datastore: ds,
          standalone: { selector: "app=x", targetPorts: [] },
        }),
    ).toThrow(/--endpoint-target-ports/);
  });

  it("fails start() clearly for a missing kubeconfig file", async () => {
    const ds = new Datastore({ poolName: "p", poolNamespace: NS });
    const source = new KubernetesSource({ kubeconfig: join(dir, "nope"), namespace: NS, poolName: "p", datastore: ds });
    await expect(source.start()).rejects.toThrow(/kubeconfig file not found/);
  });

  it("fills kind/apiVersion of list items from the list, else from the collection asked for", () => {
    const list = {
      kind: "PodList",
      apiVersion: "v1",
      items: [{ metadata: { name: "a" } }, { kind: "Pod", apiVersion: "v1", metadata: { name: "b" } }, null],
    };
    fillListTypeMeta(list, "Pod", "v1");
    expect(list.items.slice(0, 2)).toEqual([
      { kind: "Pod", apiVersion: "v1", metadata: { name: "a" } },
      { kind: "Pod", apiVersion: "v1", metadata: { name: "b" } },
    ]);
    const bare = { items: [{ metadata: { name: "m" } }] as unknown[] };
    fillListTypeMeta(bare, "InferenceModel", apiVersionOfPath(`/apis/${X_API}/namespaces/x/inferencemodels`));
    expect(bare.items[0]).toEqual({ kind: "InferenceModel", apiVersion: X_API, metadata: { name: "m" } });
    expect(apiVersionOfPath("/api/v1/namespaces/default/pods")).toBe("v1");
  });

  it("computes jittered exponential backoff within [d/2, d] and caps it", () => {
    expect(backoffDelay(1, 250, 30_000, () => 0)).toBe(125);
    expect(backoffDelay(1, 250, 30_000, () => 1)).toBe(250);
    expect(backoffDelay(3, 250, 30_000, () => 1)).toBe(1000);
    expect(backoffDelay(50, 250, 30_000, () => 1)).toBe(30_000);
    expect(backoffDelay(50, 250, 30_000, () => 0)).toBe(15_000);
    expect(selectorString({ b: "2", a: "1" })).toBe("a=1,b=2");
  });
});
