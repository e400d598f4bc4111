/**
 * `switchyard epp --pool-name P --pool-namespace N` against a fake Kubernetes API server routes exactly as with
 * files: pool, pods and models come from informers, metrics from fake vLLM pods on 127.0.1.x.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningEpp, startEpp } from "../../src/cli/epp.js";
import { silentLogger } from "../../src/observability/logger.js";
import { type FakePod, startPods } from "../datalayer/fake-pods.js";
import { CHAT_HEADERS, chatBody, freshAddresses, LOOPBACK_EPP_FLAGS, vllmMetrics } from "../helpers/epp-harness.js";
import { connect, type FakeEnvoyClient } from "../helpers/extproc-client.js";
import { FakeApiServer, modelObject, podObject, poolObject } from "../helpers/fake-apiserver.js";
import { healthCheck } from "../k8s/helpers.js";

describe("epp in Kubernetes mode", () => {
  let api: FakeApiServer;
  let epp: RunningEpp;
  let pods: FakePod[];
  let port: number;
  let client: FakeEnvoyClient;
  let dir: string;
  const addresses = freshAddresses(3);

  beforeAll(async () => {
    ({ port, pods } = await startPods(addresses, () => ({ status: 200, body: "", delayMs: 0 })));
    for (const [i, p] of pods.entries())
      p.behaviour = {
        status: 200,
        body: vllmMetrics({ waiting: i === 2 ? 0 : 6, running: 2, kv: i === 2 ? 0.1 : 0.6 }),
        delayMs: 0,
      };
    api = await FakeApiServer.start();
    api.create(
      poolObject("llama4-pool", { namespace: "team-a", matchLabels: { app: "llm-inference" }, ports: [port] }),
    );
    for (const [i, a] of addresses.entries())
      api.create(podObject(`pod-${i}`, { namespace: "team-a", ip: a, labels: { app: "llm-inference" } }));
    api.create(
      modelObject("batch", { namespace: "team-a", modelName: "batch", pool: "llama4-pool", criticality: "Sheddable" }),
    );
    dir = mkdtempSync(join(tmpdir(), "switchyard-k8s-"));
    const kubeconfig = await api.writeKubeconfig(dir, "team-a");
    epp = await startEpp(
      [
        "--pool-name",
        "llama4-pool",
        "--pool-namespace",
        "team-a",
        "--kubeconfig",
        kubeconfig,
        ...LOOPBACK_EPP_FLAGS,
        "--refresh-metrics-interval",
        "20ms",
      ],
      { logger: silentLogger },
    );
    client = connect(`127.0.0.1:${epp.grpcPort}`);
  });

  afterAll(async () => {
    client?.close();
    await epp?.stop(100);
    await api?.close();
    await Promise.all((pods ?? []).map((p) => p.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("routes to the least loaded pod the informers found, and follows pod changes", async () => {
    await expect.poll(() => epp.snapshot().endpoints.filter((e) => e.fresh).length, { timeout: 10_000 }).toBe(3);
    for (let i = 0; i < 5; i++) {
      const r = await client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("any") });
      expect(r.destination).toBe(`${addresses[2]}:${port}`);
    }
    // The idle pod becomes unready: the EPP stops sending traffic there.
    api.update(
      podObject("pod-2", { namespace: "team-a", ip: addresses[2], labels: { app: "llm-inference" }, ready: false }),
    );
    await expect.poll(() => epp.snapshot().endpoints.length, { timeout: 10_000 }).toBe(2);
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("any") });
    expect([`${addresses[0]}:${port}`, `${addresses[1]}:${port}`]).toContain(r.destination);
  });

  it("applies InferenceModel criticality from the API server", async () => {
    for (const p of pods)
      p.behaviour = { status: 200, body: vllmMetrics({ waiting: 9, running: 4, kv: 0.95 }), delayMs: 0 };
    await expect.poll(() => epp.snapshot().saturated, { timeout: 10_000 }).toBe(true);
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("batch") });
    expect(r.immediate?.status).toBe(429);
  });
});

describe("epp in Kubernetes mode: readiness follows the pool", () => {
  it("is not ready while its pool does not exist, becomes ready when it appears, and unready when it goes", async () => {
    const addresses = freshAddresses(1);
    const { port, pods } = await startPods(addresses, () => ({
      status: 200,
      body: vllmMetrics({ waiting: 0, running: 0, kv: 0.1 }),
      delayMs: 0,
    }));
    const api = await FakeApiServer.start();
    const dir = mkdtempSync(join(tmpdir(), "switchyard-k8s-"));
    let epp: RunningEpp | undefined;
    try {
      api.create(podObject("late-0", { ip: addresses[0], labels: { app: "late" } }));
      const kubeconfig = await api.writeKubeconfig(dir);
      epp = await startEpp(
        [
          "--pool-name",
          "late",
          "--kubeconfig",
          kubeconfig,
          ...LOOPBACK_EPP_FLAGS,
          "--refresh-metrics-interval",
          "20ms",
        ],
        { logger: silentLogger },
      );
      const ready = () => healthCheck(`127.0.0.1:${epp!.healthPort}`, "readiness");
      expect(epp.snapshot().endpoints).toHaveLength(0);
      expect(await ready()).toBe("NOT_SERVING");
      api.create(poolObject("late", { matchLabels: { app: "late" }, ports: [port] }));
      await expect.poll(ready, { timeout: 10_000 }).toBe("SERVING");
      api.remove("inference.networking.k8s.io/v1", "InferencePool", "default", "late");
      await expect.poll(ready, { timeout: 10_000 }).toBe("NOT_SERVING");
      // A pool that selects no pod yet is still a synced pool: ready, as GIE, with no endpoint to route to.
      api.create(poolObject("late", { matchLabels: { app: "nobody" }, ports: [port] }));
      await expect.poll(ready, { timeout: 10_000 }).toBe("SERVING");
      expect(epp.snapshot().endpoints).toHaveLength(0);
      api.remove("inference.networking.k8s.io/v1", "InferencePool", "default", "late");
      await expect.poll(ready, { timeout: 10_000 }).toBe("NOT_SERVING");
    } finally {
      await epp?.stop(100);
      await api.close();
      await Promise.all(pods.map((p) => p.close()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
