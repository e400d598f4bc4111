/**
 * What a pod can serve comes from the pod: two vLLM simulators on one port (like pods), one serving `tiny` and its
 * alias `tiny-alias`, the other serving `tiny` with the LoRA adapter `sql-lora`. The EPP reads each pod's
 * /v1/models, so an alias request never lands on the pod without the alias (vLLM would answer 404 there) and an
 * adapter request never lands on the pod without the adapter — even while the adapter pod's LoRA gauge has no
 * sample yet (a fresh vLLM), which used to starve it.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningEpp, startEpp } from "../../src/cli/epp.js";
import { silentLogger } from "../../src/observability/logger.js";
import { type Simulator, startSimulator } from "../../src/sim/index.js";
import { CHAT_HEADERS, chatBody, freshAddresses, LOOPBACK_EPP_FLAGS, resourcesYaml } from "../helpers/epp-harness.js";
import { connect, type FakeEnvoyClient } from "../helpers/extproc-client.js";

describe("served models learned from /v1/models", () => {
  const [aliasPod, loraPod] = freshAddresses(2) as [string, string];
  let sims: Simulator[] = [];
  let epp: RunningEpp;
  let client: FakeEnvoyClient;
  let port = 0;
  let dir: string;

  beforeAll(async () => {
    for (let attempt = 0; attempt < 20 && sims.length < 2; attempt++) {
      port = 20_000 + Math.floor(Math.random() * 20_000);
      sims = [];
      try {
        const common = { model: "tiny", port, seed: 3, interTokenLatencyMs: 1, prefillOverheadMs: 1 };
        sims.push(await startSimulator({ ...common, host: aliasPod, servedModelNames: ["tiny", "tiny-alias"] }));
        sims.push(
          await startSimulator({
            ...common,
            host: loraPod,
            loraModules: [{ name: "sql-lora", path: "/adapters/sql", base_model_name: "tiny" }],
            maxLoras: 2,
          }),
        );
      } catch (err) {
        await Promise.all(sims.map((s) => s.close()));
        sims = [];
        if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
      }
    }
    dir = mkdtempSync(join(tmpdir(), "switchyard-served-"));
    const file = join(dir, "resources.yaml");
    writeFileSync(file, resourcesYaml("pool", port, [aliasPod, loraPod], []));
    epp = await startEpp(["--resources", file, "--pool-name", "pool", ...LOOPBACK_EPP_FLAGS], { logger: silentLogger });
    client = connect(`127.0.0.1:${epp.grpcPort}`);
    // Both lists read: the scraper fetches /v1/models right after each pod's first successful scrape.
    const deadline = Date.now() + 20_000;
    while (epp.datastore.endpoints().some((e) => e.models === undefined)) {
      if (Date.now() > deadline) throw new Error("the EPP never read both pods' /v1/models");
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  afterAll(async () => {
    client?.close();
    await epp?.stop();
    await Promise.all(sims.map((s) => s.close()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const destinations = async (model: string, n: number): Promise<Set<string>> => {
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) {
      const r = await client.roundTrip({ headers: CHAT_HEADERS, body: chatBody(model) });
      expect(r.status).toBe("routed");
      seen.add(r.destination!);
    }
    return seen;
  };

  it("records each pod's base models, aliases and adapters", () => {
    const byKey = new Map(epp.datastore.endpoints().map((e) => [e.key, e.models]));
    expect([...byKey.get(`${aliasPod}:${port}`)!.ids].sort()).toEqual(["tiny", "tiny-alias"]);
    const lora = byKey.get(`${loraPod}:${port}`)!;
    expect([...lora.ids].sort()).toEqual(["sql-lora", "tiny"]);
    expect(lora.adapters.get("sql-lora")).toBe("tiny");
  });

  it("routes an alias only to the pod that serves the alias", async () => {
    expect([...(await destinations("tiny-alias", 16))]).toEqual([`${aliasPod}:${port}`]);
  });

  it("routes an adapter only to the pod that has it, before that pod reported any LoRA activity", async () => {
    expect([...(await destinations("sql-lora", 16))]).toEqual([`${loraPod}:${port}`]);
  });

  it("spreads the base model over both pods", async () => {
    expect((await destinations("tiny", 40)).size).toBe(2);
  });
});
