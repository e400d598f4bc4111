/**
 * Two `switchyard epp --ha-enable-leader-election` processes (the compiled CLI) against a real kube-apiserver: one
 * is ready, the other stands by; the leader keeps routing through an API-server outage longer than the lease, and
 * a standby takes over after the leader's SIGTERM (lease released) or SIGKILL (lease expires). Times are printed
 * (`[k8s] …`), never asserted.
 *
 * The outage lasts 20 s here (longer than the 15 s lease); SWITCHYARD_K8S_LONG_OUTAGE=1 makes it 60 s.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loopbackEppFlags } from "../../src/local/stack.js";
import { leaseNameFor } from "../../src/sources/leader.js";
import { DIST_CLI, requireBuild } from "../e2e/helpers.js";
import { CHAT_HEADERS, chatBody } from "../helpers/epp-harness.js";
import { connect } from "../helpers/extproc-client.js";
import { KubeApiServer } from "../helpers/kube-apiserver.js";
import { freePorts } from "../helpers/relay.js";
import { describeWithTools } from "../helpers/tools.js";
import { createPods, healthCheck, type ModelServers, minimalRole, poolManifest, startModelServers } from "./helpers.js";

const OUTAGE_MS = process.env.SWITCHYARD_K8S_LONG_OUTAGE === "1" ? 60_000 : 20_000;

interface Replica {
  readonly name: string;
  readonly child: ChildProcess;
  readonly grpc: number;
  readonly health: number;
  readonly log: string;
  ready(): Promise<boolean>;
  /** The readiness answer as given (SERVING, NOT_SERVING, or an error text). */
  answer(): Promise<string>;
  /** /debug/endpoints says the pool synced with both endpoints (standbys sync too; only readiness differs). */
  synced(): Promise<boolean>;
}

function note(what: string, ms: number): void {
  console.log(`[k8s] ${what}: ${Math.round(ms)} ms`);
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describeWithTools(["etcd", "kube-apiserver"], "EPP leader election against a real kube-apiserver", (tools) => {
  let kube: KubeApiServer;
  let servers: ModelServers;
  let kubeconfig: string;
  const replicas: Replica[] = [];

  beforeAll(async () => {
    requireBuild();
    kube = await KubeApiServer.start({ etcd: tools.etcd, kubeApiserver: tools["kube-apiserver"] });
    await kube.applyCrdFiles([
      fileURLToPath(new URL("../../deploy/crds/inference.networking.k8s.io_inferencepools.yaml", import.meta.url)),
    ]);
    servers = await startModelServers(2);
    await kube.apply(poolManifest("ha", { app: "ha" }, servers.port));
    await createPods(kube, "ha", { app: "ha" }, servers.addresses);
    // The replicas run as a ServiceAccount with the minimal Role including the named lease.
    kubeconfig = await kube.serviceAccountKubeconfig("epp-ha", { rules: minimalRole(leaseNameFor("default", "ha")) });
  }, 120_000);

  afterAll(async () => {
    for (const r of replicas) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL");
    await servers?.close();
    await kube?.close();
  }, 60_000);

  async function replica(name: string): Promise<Replica> {
    const [grpc, health, metrics] = (await freePorts(3)) as [number, number, number];
    const synced = async () => {
      try {
        const res = await fetch(`http://127.0.0.1:${metrics}/debug/endpoints`, { signal: AbortSignal.timeout(2000) });
        const snap = (await res.json()) as { synced: boolean; endpoints: unknown[] };
        return snap.synced && snap.endpoints.length === 2;
      } catch {
        return false;
      }
    };
    const log = join(kube.dir, `${name}.log`);
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(DIST_CLI),
        "epp",
        "--kubeconfig",
        kubeconfig,
        "--pool-name",
        "ha",
        "--ha-enable-leader-election",
        ...loopbackEppFlags({ grpc, health, metrics }),
        // This test reads /debug/endpoints without a token (docs/security.md).
        "--enable-debug-endpoints",
        "--metrics-endpoint-auth=false",
        "--refresh-metrics-interval",
        "50ms",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const out = createWriteStream(log);
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    const r: Replica = {
      name,
      child,
      grpc,
      health,
      log,
      ready: async () => (await healthCheck(`127.0.0.1:${health}`, "readiness", 2000)) === "SERVING",
      // An explicit answer only: a health RPC that times out on a busy machine says nothing about readiness.
      answer: () => healthCheck(`127.0.0.1:${health}`, "readiness", 2000),
      synced,
    };
    replicas.push(r);
    // Up when its health port answers at all.
    await until(`${name} to answer health checks`, async () => {
      if (child.exitCode !== null) throw new Error(`${name} exited: ${readFileSync(log, "utf8").slice(-2000)}`);
      return !(await healthCheck(`127.0.0.1:${health}`, "liveness", 1000)).startsWith("error");
    });
    return r;
  }

  async function readySet(rs: readonly Replica[]): Promise<string[]> {
    const out: string[] = [];
    for (const r of rs)
      if (r.child.exitCode === null && r.child.signalCode === null && (await r.ready())) out.push(r.name);
    return out;
  }

  it("one leader is ready, the standby is not; the leader routes through an API-server outage longer than the lease; standbys take over after SIGTERM and SIGKILL", async () => {
    const a = await replica("a");
    await until("a ready", () => a.ready());
    const b = await replica("b");
    // b has synced the pool but is not the leader.
    await until("b up and synced", () => b.synced());
    expect(await readySet([a, b])).toEqual(["a"]);

    // --- outage -------------------------------------------------------------------------------------------------
    const client = connect(`127.0.0.1:${a.grpc}`);
    const dests = servers.addresses.map((x) => `${x}:${servers.port}`);
    let routed = 0;
    let failed = 0;
    let standbyReady = 0;
    let leaderUnready = 0;
    await kube.stopApiServer("SIGKILL");
    const t0 = performance.now();
    while (performance.now() - t0 < OUTAGE_MS) {
      const r = await client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
      if (r.status === "routed" && dests.includes(r.destination ?? "")) routed++;
      else failed++;
      if ((await a.answer()) === "NOT_SERVING") leaderUnready++;
      if ((await b.answer()) === "SERVING") standbyReady++;
      await new Promise((res) => setTimeout(res, 20));
    }
    note(
      `outage ${OUTAGE_MS / 1000} s with leader election: ${routed} routed, ${failed} failed, leader unready ${leaderUnready}x, standby ready ${standbyReady}x`,
      performance.now() - t0,
    );
    expect(failed).toBe(0);
    expect(leaderUnready).toBe(0);
    expect(standbyReady).toBe(0);
    await kube.startApiServer();
    // Back: a renews, b still stands by (several renew periods).
    const lease = async () =>
      (
        (await kube.get("coordination.k8s.io/v1", "Lease", leaseNameFor("default", "ha"))) as unknown as {
          spec: { holderIdentity: string; renewTime: string };
        }
      ).spec;
    const holder = (await lease()).holderIdentity;
    const renew = (await lease()).renewTime;
    await until("two more renewals", async () => (await lease()).renewTime !== renew);
    const renew2 = (await lease()).renewTime;
    await until("two more renewals", async () => (await lease()).renewTime !== renew2);
    expect((await lease()).holderIdentity).toBe(holder);
    expect(await readySet([a, b])).toEqual(["a"]);
    client.close();

    // --- SIGTERM: the leader releases the lease -----------------------------------------------------------------
    let t = performance.now();
    a.child.kill("SIGTERM");
    await until("b ready after SIGTERM", () => b.ready());
    note("failover after leader SIGTERM (kill to standby ready)", performance.now() - t);
    const cb = connect(`127.0.0.1:${b.grpc}`);
    const r1 = await cb.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
    cb.close();
    expect(dests).toContain(r1.destination);

    // --- SIGKILL: the lease must expire ---------------------------------------------------------------------------
    const c = await replica("c");
    await until("c up and synced", () => c.synced());
    expect(await readySet([b, c])).toEqual(["b"]);
    t = performance.now();
    b.child.kill("SIGKILL");
    await until("c ready after SIGKILL", () => c.ready(), 90_000);
    note("failover after leader SIGKILL (kill to standby ready)", performance.now() - t);
    const cc = connect(`127.0.0.1:${c.grpc}`);
    const r2 = await cc.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
    cc.close();
    expect(dests).toContain(r2.destination);
  }, 240_000);
});
