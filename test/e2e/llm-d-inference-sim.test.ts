/**
 * Routing on the real llm-d-inference-sim (v0.10.2; `npm run setup:tools -- llm-d-inference-sim`): two simulator
 * pods behind the in-process EPP and the dev gateway. The simulator binds every interface on one port, so each
 * runs on its own port on 127.0.0.1 and a relay gives it a pod address 127.0.1.x on the pool's one port, the shape
 * real pods have (docs/design/model-servers.md §7).
 *
 * What it proves against the real simulator: an adapter request reaches the pod that has the adapter although the
 * simulator reports `max_lora ≥ 1` on every pod; an alias reaches the pod that serves it; base traffic follows the
 * load gauges; and the completions succeed end to end (no 404 from the simulator).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type RunningEpp, startEpp } from "../../src/cli/epp.js";
import { type Gateway, startGateway } from "../../src/gateway/index.js";
import { silentLogger } from "../../src/observability/logger.js";
import { CHAT_HEADERS, chatBody, freshAddresses, LOOPBACK_EPP_FLAGS, resourcesYaml } from "../helpers/epp-harness.js";
import { connect, type FakeEnvoyClient } from "../helpers/extproc-client.js";
import { closeRelays, freePorts, relayPods, until } from "../helpers/relay.js";
import { describeWithTools } from "../helpers/tools.js";

describeWithTools(["llm-d-inference-sim"], "routing on llm-d-inference-sim", (tools) => {
  const [loraAddress, plainAddress] = freshAddresses(2) as [string, string];
  const children: ChildProcess[] = [];
  const relays: Server[] = [];
  const logs: string[] = ["", ""];
  let simPorts: number[] = [];
  let poolPort = 0;
  let epp: RunningEpp;
  let client: FakeEnvoyClient;
  let gateway: Gateway;
  let dir: string;

  const startSim = (i: number, port: number, extra: string[]) => {
    const child = spawn(
      tools["llm-d-inference-sim"],
      [
        "--model",
        "tiny",
        "--port",
        String(port),
        "--force-dummy-tokenizer",
        "--zmq-endpoint=",
        "--max-num-seqs",
        "4",
        "--max-model-len",
        "32768",
        "--time-to-first-token",
        "5ms",
        "--inter-token-latency",
        "1ms",
        ...extra,
      ],
      { env: { ...process.env, POD_NAME: `pod-${i}`, POD_NAMESPACE: "default" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const keep = (b: Buffer) => {
      logs[i] = (logs[i] + b.toString()).slice(-4000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    children.push(child);
  };

  beforeAll(async () => {
    simPorts = await freePorts(2);
    startSim(0, simPorts[0]!, [
      "--served-model-name",
      "tiny",
      "tiny-alias",
      "--lora-modules",
      JSON.stringify({ name: "sql-lora", path: "/adapters/sql-lora", base_model_name: "tiny" }),
      "--max-loras",
      "2",
    ]);
    startSim(1, simPorts[1]!, ["--served-model-name", "tiny", "--max-loras", "1"]);
    for (const [i, port] of simPorts.entries())
      await until(`llm-d-inference-sim ${i} ready (log: ${logs[i]})`, async () => {
        return (await fetch(`http://127.0.0.1:${port}/health/ready`)).status === 200;
      });
    // Two distinct servers: the adapter pod lists sql-lora, the plain one does not.
    const lists = await Promise.all(simPorts.map(async (p) => (await fetch(`http://127.0.0.1:${p}/v1/models`)).text()));
    expect(lists[0]).toContain("sql-lora");
    expect(lists[1]).not.toContain("sql-lora");
    const pool = await relayPods([loraAddress, plainAddress], simPorts);
    poolPort = pool.port;
    relays.push(...pool.relays);
    dir = mkdtempSync(join(tmpdir(), "switchyard-llmd-"));
    const file = join(dir, "resources.yaml");
    writeFileSync(file, resourcesYaml("pool", poolPort, [loraAddress, plainAddress], []));
    epp = await startEpp(["--resources", file, "--pool-name", "pool", ...LOOPBACK_EPP_FLAGS], { logger: silentLogger });
    client = connect(`127.0.0.1:${epp.grpcPort}`);
    gateway = await startGateway({ port: 0, epp: `127.0.0.1:${epp.grpcPort}`, logger: silentLogger });
    // Both reads, not just one: the models read and the first scrape land separately, and on a busy core one can
    // trail the other by a while.
    await until("both pods' /v1/models read and /metrics scraped", () =>
      epp.datastore.endpoints().every((e) => e.models !== undefined && e.metrics !== undefined),
    );
  });

  afterAll(async () => {
    client?.close();
    await gateway?.close();
    await epp?.stop();
    for (const c of children) c.kill("SIGTERM");
    await closeRelays(relays);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const lora = () => `${loraAddress}:${poolPort}`;
  const plain = () => `${plainAddress}:${poolPort}`;
  const destinations = async (model: string, n: number): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await client.roundTrip({ headers: CHAT_HEADERS, body: chatBody(model) });
      expect(r.status).toBe("routed");
      out.push(r.destination!);
    }
    return out;
  };

  it("reads max_lora >= 1 from both pods, yet sends the adapter only to the pod that has it", async () => {
    const byKey = new Map(epp.datastore.endpoints().map((e) => [e.key, e]));
    expect(byKey.get(plain())!.metrics?.maxActiveModels).toBeGreaterThanOrEqual(1);
    expect(new Set(await destinations("sql-lora", 12))).toEqual(new Set([lora()]));
  });

  it("sends an alias only to the pod that serves it", async () => {
    expect(new Set(await destinations("tiny-alias", 12))).toEqual(new Set([lora()]));
  });

  it("completes adapter and alias requests end to end through the dev gateway (no 404 from the simulator)", async () => {
    for (const model of ["sql-lora", "tiny-alias", "tiny"]) {
      const res = await fetch(new URL("/v1/chat/completions", gateway.url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: chatBody(model),
      });
      const text = await res.text();
      expect(res.status, `${model}: ${text}`).toBe(200);
    }
  });

  it("steers base-model traffic away from the pod whose gauges report a queue", async () => {
    // Fill the adapter pod directly (4 running, 4 waiting): long generations that ignore end-of-sequence.
    const load = new AbortController();
    const streams = Array.from({ length: 8 }, () =>
      fetch(`http://127.0.0.1:${simPorts[0]}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny", prompt: "x", max_tokens: 20_000, ignore_eos: true, stream: true }),
        signal: load.signal,
      })
        .then((r) => r.body?.pipeTo(new WritableStream()))
        .catch(() => {}),
    );
    try {
      await until("the EPP to see the adapter pod's queue", () => {
        const m = epp.datastore.endpoints().find((e) => e.key === lora())?.metrics;
        return (m?.waitingQueueSize ?? 0) >= 2;
      });
      expect(new Set(await destinations("tiny", 12))).toEqual(new Set([plain()]));
    } finally {
      load.abort();
      await Promise.all(streams);
    }
  });
});
