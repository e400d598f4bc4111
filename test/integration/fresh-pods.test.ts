/**
 * A reachable pod whose metrics are incomplete is a candidate, not a failure (docs/design/model-servers.md §3.1):
 * a freshly started data-parallel vLLM exports no load gauges until its first request. Here a busy pod (8 waiting,
 * 8 running, KV 0.9) sits beside a fresh data-parallel simulator on the same port; the fresh pod must take the
 * traffic, and once it has served a request its gauges appear and it is scraped normally.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningEpp, startEpp } from "../../src/cli/epp.js";
import { silentLogger } from "../../src/observability/logger.js";
import { type Simulator, startSimulator } from "../../src/sim/index.js";
import { type FakePod, startPods } from "../datalayer/fake-pods.js";
import {
  CHAT_HEADERS,
  chatBody,
  freshAddresses,
  LOOPBACK_EPP_FLAGS,
  resourcesYaml,
  vllmMetrics,
} from "../helpers/epp-harness.js";
import { connect, type FakeEnvoyClient } from "../helpers/extproc-client.js";

describe("a fresh pod that reports no load gauges yet", () => {
  const [busyAddress, freshAddress] = freshAddresses(2) as [string, string];
  let busy: FakePod[] = [];
  let fresh: Simulator | undefined;
  let epp: RunningEpp;
  let client: FakeEnvoyClient;
  let port = 0;
  let dir: string;

  beforeAll(async () => {
    for (let attempt = 0; attempt < 10 && fresh === undefined; attempt++) {
      const started = await startPods([busyAddress], () => ({
        status: 200,
        body: vllmMetrics({ waiting: 8, running: 8, kv: 0.9 }),
        delayMs: 0,
      }));
      busy = started.pods;
      port = started.port;
      try {
        fresh = await startSimulator({
          model: "base",
          host: freshAddress,
          port,
          seed: 5,
          dataParallelSize: 2,
          interTokenLatencyMs: 1,
          prefillOverheadMs: 1,
        });
      } catch (err) {
        await Promise.all(busy.map((p) => p.close()));
        if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
      }
    }
    dir = mkdtempSync(join(tmpdir(), "switchyard-fresh-"));
    const file = join(dir, "resources.yaml");
    writeFileSync(file, resourcesYaml("pool", port, [busyAddress, freshAddress], []));
    epp = await startEpp(["--resources", file, "--pool-name", "pool", ...LOOPBACK_EPP_FLAGS], { logger: silentLogger });
    client = connect(`127.0.0.1:${epp.grpcPort}`);
  });

  afterAll(async () => {
    client?.close();
    await epp?.stop();
    await fresh?.close();
    await Promise.all(busy.map((p) => p.close()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const freshKey = () => `${freshAddress}:${port}`;

  it("is scraped as 'no load reported yet', not as a failed scrape", async () => {
    const ep = epp.datastore.endpoints().find((e) => e.key === freshKey())!;
    const deadline = Date.now() + 20_000;
    while (ep.metrics === undefined && ep.lastScrapeError === undefined) {
      if (Date.now() > deadline) throw new Error("the fresh pod was never scraped");
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(ep.lastScrapeError).toBeUndefined();
    expect(ep.metrics?.unreported).toBe(
      "vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc",
    );
  });

  it("takes the traffic the busy pod cannot, and reports its gauges once it has served", async () => {
    let toFresh = 0;
    for (let i = 0; i < 10; i++) {
      const r = await client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("base") });
      expect(r.status).toBe("routed");
      if (r.destination === freshKey()) toFresh++;
    }
    expect(toFresh).toBe(10);
    // Serve one request on the fresh pod directly: its engine 0 now exports gauges.
    await (
      await fetch(`http://${freshAddress}:${port}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "base", prompt: "x", max_tokens: 2 }),
      })
    ).text();
    const deadline = Date.now() + 20_000;
    const ep = () => epp.datastore.endpoints().find((e) => e.key === freshKey())!;
    while (ep().metrics?.unreported !== undefined) {
      if (Date.now() > deadline) throw new Error(`still unreported: ${ep().metrics?.unreported}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(ep().lastScrapeError).toBeUndefined();
  });
});
