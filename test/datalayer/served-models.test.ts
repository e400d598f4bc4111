/**
 * The scraper's `/v1/models` reads against a real loopback server: the list is read after the first successful
 * metrics scrape, re-read on its own interval, kept on a transient failure, cleared by a 404, and never taken from
 * a body that is not a model list.
 */
import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MetricsScraper, parseModelList } from "../../src/datalayer/scraper.js";
import { FakeSource, makeEndpoint, vllmBody } from "./fake-pods.js";

const WAIT = { timeout: 10_000, interval: 10 };
let servers: Server[] = [];
let scrapers: MetricsScraper[] = [];

afterEach(async () => {
  await Promise.all(scrapers.map((s) => s.stop()));
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  servers = [];
  scrapers = [];
});

interface ModelsServer {
  port: number;
  models: { status: number; body: string };
  modelReads: number;
}

async function serve(): Promise<ModelsServer> {
  const state: ModelsServer = {
    port: 0,
    models: { status: 200, body: JSON.stringify({ object: "list", data: [{ id: "m", parent: null }] }) },
    modelReads: 0,
  };
  const server = createServer((req, res) => {
    if (req.url === "/v1/models") {
      state.modelReads++;
      res.writeHead(state.models.status, { "content-type": "application/json" });
      res.end(state.models.body);
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(vllmBody(0, 1, 0.1));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  state.port = (server.address() as { port: number }).port;
  return state;
}

describe("parseModelList", () => {
  it("reads ids and adapters' parents, and refuses what is not a model list", () => {
    const list = parseModelList(
      JSON.stringify({
        object: "list",
        data: [
          { id: "tiny", parent: null },
          { id: "tiny-alias", parent: null },
          { id: "sql-lora", parent: "tiny" },
        ],
      }),
      5,
    )!;
    expect([...list.ids]).toEqual(["tiny", "tiny-alias", "sql-lora"]);
    expect([...list.adapters]).toEqual([["sql-lora", "tiny"]]);
    expect(list.updateTime).toBe(5);
    for (const bad of ["", "not json", "{}", '{"data":{}}', '{"data":[{"id":""}]}', '{"data":[{"id":3}]}', "null"])
      expect(parseModelList(bad, 0), bad).toBeUndefined();
    const huge = JSON.stringify({ data: Array.from({ length: 5000 }, (_, i) => ({ id: `m${i}` })) });
    expect(parseModelList(huge, 0)).toBeUndefined();
  });
});

describe("the scraper's /v1/models reads", () => {
  it("reads the list after the first scrape, keeps it on a 500, clears it on a 404 and ignores a non-list", async () => {
    const srv = await serve();
    const ep = makeEndpoint("127.0.0.1", srv.port);
    const scraper = new MetricsScraper({ source: new FakeSource([ep]), intervalMs: 20, modelsIntervalMs: 30 });
    scrapers.push(scraper);
    scraper.start();
    await vi.waitFor(() => expect([...(ep.models?.ids ?? [])]).toEqual(["m"]), WAIT);
    const first = ep.models;

    srv.models = { status: 500, body: "oops" };
    const reads = srv.modelReads;
    await vi.waitFor(() => expect(srv.modelReads).toBeGreaterThan(reads + 1), WAIT);
    expect(ep.models).toBe(first);

    srv.models = { status: 200, body: "<html>not a list</html>" };
    const reads2 = srv.modelReads;
    await vi.waitFor(() => expect(srv.modelReads).toBeGreaterThan(reads2 + 1), WAIT);
    expect(ep.models).toBe(first);

    srv.models = { status: 404, body: "{}" };
    await vi.waitFor(() => expect(ep.models).toBeUndefined(), WAIT);
    expect(ep.lastScrapeError).toBeUndefined();
  });

  it("reads the list on the serving port when metrics are scraped on another one", async () => {
    const metricsSrv = await serve();
    const servingSrv = await serve();
    servingSrv.models = { status: 200, body: JSON.stringify({ data: [{ id: "served-here" }] }) };
    metricsSrv.models = { status: 200, body: JSON.stringify({ data: [{ id: "wrong-port" }] }) };
    const ep = makeEndpoint("127.0.0.1", servingSrv.port);
    const scraper = new MetricsScraper({ source: new FakeSource([ep]), intervalMs: 20, metricsPort: metricsSrv.port });
    scrapers.push(scraper);
    scraper.start();
    await vi.waitFor(() => expect([...(ep.models?.ids ?? [])]).toEqual(["served-here"]), WAIT);
    expect(metricsSrv.modelReads).toBe(0);
  });

  it("never reads the list with modelsIntervalMs 0", async () => {
    const srv = await serve();
    const ep = makeEndpoint("127.0.0.1", srv.port);
    const scraper = new MetricsScraper({ source: new FakeSource([ep]), intervalMs: 20, modelsIntervalMs: 0 });
    scrapers.push(scraper);
    scraper.start();
    await scraper.firstRound();
    await vi.waitFor(() => expect(ep.metrics).toBeDefined(), WAIT);
    expect(srv.modelReads).toBe(0);
    expect(ep.models).toBeUndefined();
  });
});
