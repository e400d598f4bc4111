/**
 * Measures what GIE v1.5.0's own EPP does through an API-server outage longer than its lease, with leader election
 * (two replicas) and without (one), for the comparison in docs/kubernetes.md ("Routing through an API-server
 * outage"). It asserts nothing about GIE; it prints what happened. Opt-in (`npm run measure:gie-ha`, outside `npm test`): it documents a third-party behaviour, it does not
 * guard ours (test/k8s/epp-ha.test.ts does, on every run).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, it } from "vitest";
import { CHAT_HEADERS, chatBody } from "../helpers/epp-harness.js";
import { connect } from "../helpers/extproc-client.js";
import { KubeApiServer } from "../helpers/kube-apiserver.js";
import { freePorts } from "../helpers/relay.js";
import { describeWithTools } from "../helpers/tools.js";
import {
  createPods,
  gieCrdDir,
  healthCheck,
  type ModelServers,
  poolManifest,
  startModelServers,
} from "../k8s/helpers.js";

const OUTAGE_MS = process.env.SWITCHYARD_K8S_LONG_OUTAGE === "1" ? 60_000 : 20_000;

describeWithTools(
  ["etcd", "kube-apiserver", "gie-epp"],
  "GIE v1.5.0's EPP with leader election through an outage",
  (tools) => {
    let kube: KubeApiServer;
    let servers: ModelServers;
    const children: ChildProcess[] = [];

    beforeAll(async () => {
      kube = await KubeApiServer.start({ etcd: tools.etcd, kubeApiserver: tools["kube-apiserver"] });
      const dir = gieCrdDir();
      if (dir === undefined)
        throw new Error(`GIE v1.5.0's CRDs not found (SWITCHYARD_GIE_CRDS or the Go module cache)`);
      await kube.applyCrdFiles(
        readdirSync(dir)
          .filter((f) => f.endsWith(".yaml"))
          .map((f) => join(dir, f)),
      );
      servers = await startModelServers(1);
      await kube.apply(poolManifest("gie-ha", { app: "gie-ha" }, servers.port));
      await createPods(kube, "gie-ha", { app: "gie-ha" }, servers.addresses);
    }, 120_000);

    afterAll(async () => {
      for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
      await servers?.close();
      await kube?.close();
    });

    it("two replicas with leader election", () => measure(["a", "b"], true), 240_000);
    it("one replica without leader election", () => measure(["single"], false), 240_000);

    /** Starts GIE replicas, stops the API server for OUTAGE_MS, prints readiness (and, for one replica, routing). */
    async function measure(names: readonly string[], leaderElection: boolean): Promise<void> {
      const replicas: { name: string; child: ChildProcess; health: number; grpc: number; exited: boolean }[] = [];
      for (const name of names) {
        const [grpc, health, metrics] = (await freePorts(3)) as [number, number, number];
        const child = spawn(
          tools["gie-epp"],
          [
            "--pool-name=gie-ha",
            "--pool-namespace=default",
            "--secure-serving=false",
            `--grpc-port=${grpc}`,
            `--grpc-health-port=${health}`,
            `--metrics-port=${metrics}`,
            "--metrics-endpoint-auth=false",
            "--enable-pprof=false",
            "--tracing=false",
            ...(leaderElection ? ["--ha-enable-leader-election"] : []),
          ],
          { env: { ...process.env, KUBECONFIG: kube.kubeconfig }, stdio: ["ignore", "pipe", "pipe"] },
        );
        const out = createWriteStream(join(kube.dir, `gie-${name}.log`));
        child.stdout?.pipe(out);
        child.stderr?.pipe(out);
        children.push(child);
        const r = { name, child, health, grpc, exited: false };
        child.once("exit", () => {
          r.exited = true;
        });
        replicas.push(r);
      }
      const readyNames = async () => {
        const out: string[] = [];
        for (const r of replicas) {
          if (!r.exited && (await healthCheck(`127.0.0.1:${r.health}`, "readiness", 1000)) === "SERVING")
            out.push(r.name);
        }
        return out;
      };
      const t0 = performance.now();
      while ((await readyNames()).length === 0 && performance.now() - t0 < 60_000)
        await new Promise((r) => setTimeout(r, 100));
      const before = await readyNames();
      console.log(`[gie-ha] ready before the outage: ${before} after ${Math.round(performance.now() - t0)} ms`);
      const leader = replicas.find((r) => r.name === before[0]) ?? replicas[0]!;
      const client = connect(`127.0.0.1:${leader.grpc}`);

      await kube.stopApiServer("SIGKILL");
      const t1 = performance.now();
      let samples = 0;
      let noneReady = 0;
      let routed = 0;
      let failed = 0;
      let firstNoneReadyAt: number | undefined;
      while (performance.now() - t1 < OUTAGE_MS) {
        samples++;
        if ((await readyNames()).length === 0) {
          noneReady++;
          firstNoneReadyAt ??= performance.now() - t1;
        }
        const r = await client
          .roundTrip({ headers: CHAT_HEADERS, body: chatBody("m"), timeoutMs: 2000 })
          .catch(() => undefined);
        if (r?.status === "routed") routed++;
        else failed++;
        await new Promise((res) => setTimeout(res, 200));
      }
      client.close();
      console.log(
        `[gie-ha] ${leaderElection ? "leader election" : "single replica"}, outage ${OUTAGE_MS / 1000} s: ` +
          `no replica ready in ${noneReady}/${samples} samples, first at ` +
          `${firstNoneReadyAt === undefined ? "-" : Math.round(firstNoneReadyAt)} ms; requests to ${leader.name}: ` +
          `${routed} routed, ${failed} failed; exited: ${replicas.filter((r) => r.exited).map((r) => r.name)}`,
      );
      await kube.startApiServer();
      const t2 = performance.now();
      while ((await readyNames()).length === 0 && performance.now() - t2 < 90_000)
        await new Promise((r) => setTimeout(r, 100));
      console.log(
        `[gie-ha] after the API server is back: ready ${await readyNames()} after ${Math.round(performance.now() - t2)} ms; ` +
          `exited: ${replicas.filter((r) => r.exited).map((r) => r.name)}`,
      );
      for (const r of replicas) if (!r.exited) r.child.kill("SIGKILL");
    }
  },
);
