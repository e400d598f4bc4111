/**
 * `switchyard epp` in Kubernetes mode against a REAL kube-apiserver + etcd on loopback (test/helpers/kube-apiserver.ts):
 * pods are API objects whose status the test writes, pointing at fake vLLM servers on 127.0.1.x; real ext_proc
 * streams go through the EPP and the test asserts where they are routed. One API server for the whole file; every
 * scenario uses its own pool name and pod label so they do not see each other.
 *
 * Convergence times are printed (`[k8s] …`) for the record, never asserted.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { CHAT_HEADERS, chatBody } from "../helpers/epp-harness.js";
import { connect, type FakeEnvoyClient } from "../helpers/extproc-client.js";
import { KubeApiServer, type PolicyRule } from "../helpers/kube-apiserver.js";
import { describeWithTools } from "../helpers/tools.js";
import {
  type CapturedEpp,
  crdFiles,
  createPods,
  healthCheck,
  keys,
  type ModelServers,
  minimalRole,
  poolManifest,
  startKubeEpp,
  startModelServers,
  untilServing,
  WAIT,
} from "./helpers.js";

const X_API = "inference.networking.x-k8s.io/v1alpha2";
/** How long the single-replica outage lasts at least (SWITCHYARD_K8S_LONG_OUTAGE=1: 60 s, as in docs/kubernetes.md). */
const OUTAGE_MS = process.env.SWITCHYARD_K8S_LONG_OUTAGE === "1" ? 60_000 : 3_000;
const POOL_API = "inference.networking.k8s.io/v1";

function note(what: string, ms: number): void {
  console.log(`[k8s] ${what}: ${Math.round(ms)} ms`);
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = WAIT.timeout): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describeWithTools(["etcd", "kube-apiserver"], "EPP against a real kube-apiserver", (tools) => {
  let kube: KubeApiServer;
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  let crdsInstalled = false;

  beforeAll(async () => {
    const t0 = performance.now();
    kube = await KubeApiServer.start({ etcd: tools.etcd, kubeApiserver: tools["kube-apiserver"] });
    note("etcd + kube-apiserver ready", performance.now() - t0);
  }, 120_000);

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    await kube?.close();
  }, 60_000);

  async function ensureCrds(): Promise<void> {
    if (crdsInstalled) return;
    await kube.applyCrdFiles(crdFiles());
    crdsInstalled = true;
  }

  async function servers(n: number): Promise<ModelServers> {
    const s = await startModelServers(n);
    cleanups.push(() => s.close());
    return s;
  }

  async function epp(kubeconfig: string, flags: readonly string[]): Promise<CapturedEpp> {
    const e = await startKubeEpp(kubeconfig, flags);
    cleanups.push(() => e.stop());
    return e;
  }

  function client(e: CapturedEpp): FakeEnvoyClient {
    const c = connect(`127.0.0.1:${e.epp.grpcPort}`);
    cleanups.push(() => c.close());
    return c;
  }

  // First, while no CRD is installed: GIE's standalone mode needs none.
  it("--endpoint-selector mode routes to selected Ready pods with no CRDs installed", async () => {
    const s = await servers(2);
    await createPods(kube, "sel", { app: "sel" }, s.addresses);
    await kube.createPod("sel-other", { ip: "127.0.0.99", labels: { app: "other" } });
    const t0 = performance.now();
    const e = await epp(kube.kubeconfig, ["--endpoint-selector", "app=sel", "--endpoint-target-ports", String(s.port)]);
    await until("2 endpoints", () => keys(e.epp).length === 2);
    note("standalone: start to 2 endpoints", performance.now() - t0);
    expect(keys(e.epp)).toEqual(s.addresses.map((a) => `${a}:${s.port}`).sort());
    const c = client(e);
    const r = await c.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
    expect(s.addresses.map((a) => `${a}:${s.port}`)).toContain(r.destination);
    expect(r.metadataDestination).toBe(r.destination);
    // The optional CRDs are simply absent: no error about them.
    expect(e.lines.filter((l) => l.level === 50)).toEqual([]);
  });

  it("starts with existing pods and follows pods added, NotReady, deleted and terminating", async () => {
    await ensureCrds();
    const s = await servers(4);
    const labels = { app: "life" };
    await kube.apply(poolManifest("life", labels, s.port));
    await createPods(kube, "life", labels, s.addresses.slice(0, 2));
    const t0 = performance.now();
    const e = await epp(kube.kubeconfig, ["--pool-name", "life", "--pool-namespace", "default"]);
    note("existing pods: start() to synced", performance.now() - t0);
    // The regression this suite exists for: a real PodList's items carry no kind; they must not be dropped.
    expect(keys(e.epp)).toEqual(
      s.addresses
        .slice(0, 2)
        .map((a) => `${a}:${s.port}`)
        .sort(),
    );
    await untilServing(`127.0.0.1:${e.epp.healthPort}`);
    const c = client(e);
    const dest = (await c.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") })).destination;
    expect(s.addresses.slice(0, 2).map((a) => `${a}:${s.port}`)).toContain(dest);

    const k = (i: number) => `${s.addresses[i]}:${s.port}`;
    let t = performance.now();
    await kube.createPod("life-2", { ip: s.addresses[2], labels });
    note("pod added: to endpoint", await until("pod added", () => keys(e.epp).includes(k(2))));

    t = performance.now();
    await kube.setPodStatus("life-0", { ready: false });
    await until("NotReady dropped", () => !keys(e.epp).includes(k(0)));
    note("pod NotReady: to dropped", performance.now() - t);
    for (let i = 0; i < 6; i++) {
      const r = await c.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
      expect(r.destination).not.toBe(k(0));
    }
    await kube.setPodStatus("life-0", { ready: true });
    await until("Ready again", () => keys(e.epp).includes(k(0)));

    t = performance.now();
    await kube.deletePod("life-1");
    await until("deleted dropped", () => !keys(e.epp).includes(k(1)));
    note("pod deleted: to dropped", performance.now() - t);

    t = performance.now();
    await kube.deletePod("life-2", { terminating: true });
    await until("terminating dropped", () => !keys(e.epp).includes(k(2)));
    note("pod terminating: to dropped", performance.now() - t);
    expect((await kube.get("v1", "Pod", "life-2"))?.metadata).toHaveProperty("deletionTimestamp");
    await kube.finishTerminating("life-2");

    // A pod without an IP yet is not an endpoint; it becomes one when the IP arrives.
    await kube.request("POST", "/api/v1/namespaces/default/pods", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "life-3", labels },
      spec: { containers: [{ name: "server", image: "vllm" }] },
    });
    await kube.setPodStatus("life-3", { ready: true, phase: "Running" });
    await kube.setPodStatus("life-3", { ip: s.addresses[3] });
    await until("IP arrives", () => keys(e.epp).includes(k(3)));
    expect(keys(e.epp)).toEqual([k(0), k(3)].sort());
  });

  it("follows a pool selector change", async () => {
    await ensureCrds();
    const s = await servers(3);
    await kube.apply(poolManifest("sel-change", { app: "blue" }, s.port));
    await createPods(kube, "blue", { app: "blue" }, s.addresses.slice(0, 1));
    await createPods(kube, "green", { app: "green" }, s.addresses.slice(1));
    const e = await epp(kube.kubeconfig, ["--pool-name", "sel-change"]);
    expect(keys(e.epp)).toEqual([`${s.addresses[0]}:${s.port}`]);
    const t = performance.now();
    await kube.apply(poolManifest("sel-change", { app: "green" }, s.port));
    await until(
      "selector switch",
      () => keys(e.epp).length === 2 && !keys(e.epp).includes(`${s.addresses[0]}:${s.port}`),
    );
    note("pool selector change: to new endpoints", performance.now() - t);
    const r = await client(e).roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
    expect(s.addresses.slice(1).map((a) => `${a}:${s.port}`)).toContain(r.destination);
  });

  it("applies InferenceModel, InferenceObjective and InferenceModelRewrite changes and writes the Accepted condition", async () => {
    await ensureCrds();
    const s = await servers(2);
    const labels = { app: "models" };
    await kube.apply(poolManifest("models", labels, s.port));
    await createPods(kube, "models", labels, s.addresses);
    const model = (criticality: string) => ({
      apiVersion: X_API,
      kind: "InferenceModel",
      metadata: { name: "chat", namespace: "default" },
      spec: { modelName: "chat", criticality, poolRef: { name: "models" } },
    });
    await kube.apply(model("Standard"));
    const e = await epp(kube.kubeconfig, ["--pool-name", "models"]);
    expect(e.epp.datastore.model("chat")?.criticality).toBe("Standard");

    let t = performance.now();
    await kube.apply(model("Sheddable"));
    await until("criticality change", () => e.epp.datastore.model("chat")?.criticality === "Sheddable");
    note("InferenceModel change: applied", performance.now() - t);

    // Status: the EPP (single replica: it writes) marks the model Accepted through the status subresource.
    await until("Accepted written", async () => {
      const m = (await kube.get(X_API, "InferenceModel", "chat")) as {
        status?: { conditions?: { type: string; status: string; reason: string }[] };
      };
      return m.status?.conditions?.some((c) => c.type === "Accepted" && c.status === "True") === true;
    });
    // A second model claiming the same modelName later loses with ModelNameInUse.
    await kube.apply({
      apiVersion: X_API,
      kind: "InferenceModel",
      metadata: { name: "chat-dup", namespace: "default" },
      spec: { modelName: "chat", poolRef: { name: "models" } },
    });
    await until("ModelNameInUse written", async () => {
      const m = (await kube.get(X_API, "InferenceModel", "chat-dup")) as {
        status?: { conditions?: { type: string; status: string; reason: string }[] };
      };
      return m.status?.conditions?.some((c) => c.reason === "ModelNameInUse" && c.status === "False") === true;
    });

    t = performance.now();
    await kube.apply({
      apiVersion: X_API,
      kind: "InferenceObjective",
      metadata: { name: "gold", namespace: "default" },
      spec: { priority: 7, poolRef: { name: "models", group: "inference.networking.k8s.io" } },
    });
    await until("objective", () => e.epp.datastore.objective("gold")?.priority === 7);
    note("InferenceObjective created: applied", performance.now() - t);
    await kube.patch(X_API, "InferenceObjective", "gold", { spec: { priority: 9 } });
    await until("objective change", () => e.epp.datastore.objective("gold")?.priority === 9);

    t = performance.now();
    await kube.apply({
      apiVersion: X_API,
      kind: "InferenceModelRewrite",
      metadata: { name: "alias", namespace: "default" },
      spec: {
        poolRef: { name: "models", group: "inference.networking.k8s.io" },
        rules: [{ matches: [{ model: { type: "Exact", value: "old-name" } }], targets: [{ modelRewrite: "chat" }] }],
      },
    });
    await until("rewrite", () => e.epp.datastore.resolveRewrite("old-name") !== undefined);
    note("InferenceModelRewrite created: applied", performance.now() - t);
    const r = await client(e).roundTrip({ headers: CHAT_HEADERS, body: chatBody("old-name") });
    expect(r.status).toBe("routed");
    expect(JSON.parse(r.body.toString()).model).toBe("chat");
    await kube.remove(X_API, "InferenceModelRewrite", "alias");
    await until("rewrite removed", () => e.epp.datastore.resolveRewrite("old-name") === undefined);
    await kube.remove(X_API, "InferenceObjective", "gold");
    await until("objective removed", () => e.epp.datastore.objective("gold") === undefined);
  });

  it("keeps routing on the last known pods while the API server is down, re-lists after its restart (410), and follows changes again", async () => {
    await ensureCrds();
    const s = await servers(3);
    const labels = { app: "outage" };
    await kube.apply(poolManifest("outage", labels, s.port));
    await createPods(kube, "outage", labels, s.addresses.slice(0, 2));
    const e = await epp(kube.kubeconfig, ["--pool-name", "outage"]);
    const c = client(e);
    const known = s.addresses.slice(0, 2).map((a) => `${a}:${s.port}`);
    // The outage starts once the EPP is Ready (its first scrape round, which worker threads make later than the
    // pods' listing): the claim is that an outage never makes a Ready EPP unready.
    await untilServing(`127.0.0.1:${e.epp.healthPort}`);

    await kube.stopApiServer("SIGKILL");
    let routed = 0;
    let failed = 0;
    // Traffic during the outage, for OUTAGE_MS and until the EPP has certainly noticed it (a failed re-watch).
    const t0 = performance.now();
    let unready = 0;
    while (e.logged("list/watch failed").length === 0 || routed < 20 || performance.now() - t0 < OUTAGE_MS) {
      const r = await c.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
      if (r.status === "routed" && known.includes(r.destination ?? "")) routed++;
      else failed++;
      if ((await healthCheck(`127.0.0.1:${e.epp.healthPort}`, "readiness")) !== "SERVING") unready++;
      if (performance.now() - t0 > OUTAGE_MS + 60_000) throw new Error("the EPP never noticed the outage");
      await new Promise((res) => setTimeout(res, 20));
    }
    note(
      `API server down (single replica): ${routed} routed, ${failed} failed, unready ${unready}x over`,
      performance.now() - t0,
    );
    expect(failed).toBe(0);
    expect(unready).toBe(0);

    const t1 = performance.now();
    await kube.startApiServer();
    note("kube-apiserver restart", performance.now() - t1);
    // Other writes moved etcd on, so the restarted server's watch cache starts past the EPP's resourceVersion.
    await until("410 logged", () => e.logged("watch expired (410 Expired)").length > 0, 60_000);
    const t2 = performance.now();
    await kube.createPod("outage-2", { ip: s.addresses[2], labels });
    await until("pod after restart", () => keys(e.epp).includes(`${s.addresses[2]}:${s.port}`), 60_000);
    note("after restart: new pod to endpoint", performance.now() - t2);
  }, 240_000);

  it("paused (SIGSTOP) API server: connections hang, routing continues, and the EPP recovers after SIGCONT", async () => {
    await ensureCrds();
    const s = await servers(2);
    const labels = { app: "paused" };
    await kube.apply(poolManifest("paused", labels, s.port));
    await createPods(kube, "paused", labels, s.addresses.slice(0, 1));
    const e = await epp(kube.kubeconfig, ["--pool-name", "paused"]);
    const c = client(e);
    kube.pauseApiServer();
    try {
      for (let i = 0; i < 20; i++) {
        const r = await c.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
        expect(r.destination).toBe(`${s.addresses[0]}:${s.port}`);
      }
    } finally {
      kube.resumeApiServer();
    }
    await kube.createPod("paused-1", { ip: s.addresses[1], labels });
    await until("pod after resume", () => keys(e.epp).includes(`${s.addresses[1]}:${s.port}`), 90_000);
  }, 120_000);

  it("works with a ServiceAccount token bound to the minimal Role (not admin)", async () => {
    await ensureCrds();
    const s = await servers(1);
    const labels = { app: "rbac" };
    await kube.apply(poolManifest("rbac", labels, s.port));
    await createPods(kube, "rbac", labels, s.addresses);
    await kube.apply({
      apiVersion: X_API,
      kind: "InferenceModel",
      metadata: { name: "rbac-model", namespace: "default" },
      spec: { modelName: "rbac-model", poolRef: { name: "rbac" } },
    });
    const sa = await kube.serviceAccountKubeconfig("epp-rbac", { rules: minimalRole() });
    const e = await epp(sa, ["--pool-name", "rbac"]);
    expect(keys(e.epp)).toEqual([`${s.addresses[0]}:${s.port}`]);
    expect(e.epp.datastore.model("rbac-model")).toBeDefined();
    // The status patch is allowed by inferencemodels/status: patch.
    await until("Accepted written with the SA token", async () => {
      const m = (await kube.get(X_API, "InferenceModel", "rbac-model")) as {
        status?: { conditions?: { type: string; status: string }[] };
      };
      return m.status?.conditions?.some((x) => x.type === "Accepted" && x.status === "True") === true;
    });
    expect(e.lines.filter((l) => (l.level as number) >= 40 && String(l.msg).includes("forbidden"))).toEqual([]);
  });

  // The chart's own Role, rendered by the real helm: what a user actually deploys.
  describeWithTools(["helm"], "with the Helm chart's Role", ({ helm }) => {
    it("routes and writes model status with a ServiceAccount bound to the rendered chart Role", async () => {
      await ensureCrds();
      const chart = fileURLToPath(new URL("../../deploy/helm/switchyard", import.meta.url));
      const rendered = execFileSync(helm, ["template", "chartrole", chart, "--namespace", "default"], {
        encoding: "utf8",
        timeout: 60_000,
      });
      const role = parseAllDocuments(rendered)
        .map((d) => d.toJS() as { kind?: string; rules?: PolicyRule[] } | null)
        .find((o) => o?.kind === "Role");
      expect(role?.rules?.length).toBeGreaterThan(0);
      const s = await servers(1);
      const labels = { app: "chartrole" };
      await kube.apply(poolManifest("chartrole", labels, s.port));
      await createPods(kube, "chartrole", labels, s.addresses);
      await kube.apply({
        apiVersion: X_API,
        kind: "InferenceModel",
        metadata: { name: "chartrole-model", namespace: "default" },
        spec: { modelName: "chartrole-model", poolRef: { name: "chartrole" } },
      });
      const sa = await kube.serviceAccountKubeconfig("epp-chartrole", { rules: role!.rules! });
      const e = await epp(sa, ["--pool-name", "chartrole"]);
      expect(keys(e.epp)).toEqual([`${s.addresses[0]}:${s.port}`]);
      await until("Accepted written with the chart Role", async () => {
        const m = (await kube.get(X_API, "InferenceModel", "chartrole-model")) as {
          status?: { conditions?: { type: string; status: string }[] };
        };
        return m.status?.conditions?.some((x) => x.type === "Accepted" && x.status === "True") === true;
      });
      expect(e.lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
    });
  });

  it("a Role without objectives and rewrites: runs without them, one clear error each", async () => {
    await ensureCrds();
    const s = await servers(1);
    const labels = { app: "rbac-opt" };
    await kube.apply(poolManifest("rbac-opt", labels, s.port));
    await createPods(kube, "rbac-opt", labels, s.addresses);
    const rules = minimalRole().map((r) =>
      r.resources.includes("inferenceobjectives") ? { ...r, resources: ["inferencemodels"] } : r,
    );
    const sa = await kube.serviceAccountKubeconfig("epp-rbac-opt", { rules });
    const e = await epp(sa, ["--pool-name", "rbac-opt"]);
    expect(keys(e.epp)).toEqual([`${s.addresses[0]}:${s.port}`]);
    await untilServing(`127.0.0.1:${e.epp.healthPort}`);
    const errors = e.lines.filter((l) => l.level === 50).map((l) => String(l.msg));
    expect(errors).toHaveLength(2);
    expect(errors.join("\n")).toContain('resources: ["inferenceobjectives"], verbs: ["list", "watch"]');
    expect(errors.join("\n")).toContain('resources: ["inferencemodelrewrites"], verbs: ["list", "watch"]');
  });

  it("a Role without pods: start fails naming resource, verb and the rule to add", async () => {
    await ensureCrds();
    const s = await servers(1);
    await kube.apply(poolManifest("rbac-req", { app: "rbac-req" }, s.port));
    const rules = minimalRole().filter((r) => !r.resources.includes("pods"));
    const sa = await kube.serviceAccountKubeconfig("epp-rbac-req", { rules });
    const err = await startKubeEpp(sa, ["--pool-name", "rbac-req"]).then(
      async (e) => {
        await e.stop();
        return undefined;
      },
      (x: unknown) => x as Error,
    );
    expect(err?.message).toContain('cannot list pods in namespace "default"');
    expect(err?.message).toContain('{apiGroups: [""], resources: ["pods"], verbs: ["list", "watch"]}');
  });

  it("does not report ready before the pool and its pods have listed", async () => {
    await ensureCrds();
    const s = await servers(1);
    const labels = { app: "late" };
    await createPods(kube, "late", labels, s.addresses);
    // No pool yet: start() resolves (the pool may be created later) but the EPP is not ready and routes nothing.
    const e = await epp(kube.kubeconfig, ["--pool-name", "late"]);
    expect(await healthCheck(`127.0.0.1:${e.epp.healthPort}`, "readiness")).toBe("NOT_SERVING");
    await kube.apply(poolManifest("late", labels, s.port));
    const ready = () => healthCheck(`127.0.0.1:${e.epp.healthPort}`, "readiness");
    await until("ready", async () => (await ready()) === "SERVING");
    expect(keys(e.epp)).toEqual([`${s.addresses[0]}:${s.port}`]);
    // The pool deleted: unready again (GIE's readiness follows its pool too).
    await kube.remove(POOL_API, "InferencePool", "late");
    await until("unready", async () => (await ready()) === "NOT_SERVING");
  });
});
