import { afterEach, describe, expect, it, vi } from "vitest";
import { ConfigError } from "../../src/common/errors.js";
import {
  METRICS_ACCEPT_HEADER,
  MetricsScraper,
  type MetricsScraperOptions,
  type ScrapeResult,
} from "../../src/datalayer/scraper.js";
import type { Endpoint } from "../../src/datastore/types.js";
import { type FakePod, FakeSource, fixture, makeEndpoint, startPods, vllmBody } from "./fake-pods.js";

const ADDRESSES = ["127.0.1.1", "127.0.1.2", "127.0.1.3"];
const WAIT = { timeout: 15_000, interval: 10 };

let pods: FakePod[] = [];
let scrapers: MetricsScraper[] = [];

afterEach(async () => {
  await Promise.all(scrapers.map((s) => s.stop()));
  await Promise.all(pods.map((p) => p.close()));
  scrapers = [];
  pods = [];
});

interface Recorded {
  endpoint: Endpoint;
  result: ScrapeResult;
}

async function setup(options: Partial<MetricsScraperOptions> = {}, addresses = ADDRESSES) {
  const started = await startPods(addresses, () => ({ status: 200, body: vllmBody(1, 2, 0.5), delayMs: 0 }));
  pods = started.pods;
  const endpoints = addresses.map((a) => makeEndpoint(a, started.port));
  const source = new FakeSource(endpoints);
  const results: Recorded[] = [];
  const scraper = new MetricsScraper({
    source,
    intervalMs: 20,
    timeoutMs: 1_000,
    hooks: { onScrape: (endpoint, result) => results.push({ endpoint, result }) },
    ...options,
  });
  scrapers.push(scraper);
  const count = (ep: Endpoint, ok?: boolean) =>
    results.filter((r) => r.endpoint === ep && (ok === undefined || r.result.ok === ok)).length;
  return { port: started.port, endpoints, source, scraper, results, count };
}

/** What trtllm-serve answers at `/metrics`: JSON iteration stats, not Prometheus text (docs/design/model-servers.md §3.4). */
const TRTLLM_JSON = '[{"iterationCounter":12,"numActiveRequests":6,"kvCacheStats":{"usedNumBlocks":2990}}]';
const trtllmRoutes = (textPath: string) => ({
  "/metrics": { status: 200, body: TRTLLM_JSON, contentType: "application/json" },
  [textPath]: { status: 200, body: fixture("trtllm-serve.txt"), contentType: "text/plain; version=0.0.4" },
});
const TRTLLM_NUMBERS = {
  waitingQueueSize: 11,
  runningRequestsSize: 6,
  kvCacheUsagePercent: 0.73,
  cacheNumBlocks: 4096,
};

describe("MetricsScraper", () => {
  it("scrapes trtllm-serve at /prometheus/metrics, where it serves its text (its /metrics is JSON)", async () => {
    const { endpoints, scraper } = await setup({ modelsIntervalMs: 0 });
    (endpoints[1] as { engine: string }).engine = "trtllm-serve";
    pods[1]!.behaviour.routes = trtllmRoutes("/prometheus/metrics");
    scraper.start();
    await scraper.firstRound();
    await vi.waitFor(() => {
      for (const ep of endpoints) expect(ep.metrics, ep.lastScrapeError).toBeDefined();
    }, WAIT);
    expect(endpoints[1]!.metrics).toMatchObject(TRTLLM_NUMBERS);
    expect(endpoints[1]!.lastScrapeError).toBeUndefined();
    expect(pods[1]!.lastPath).toBe("/prometheus/metrics");
    expect(pods[0]!.lastPath).toBe("/metrics");
  });

  it("scrapes every engine at a configured path (metrics-data-source path)", async () => {
    const { endpoints, scraper } = await setup({ modelsIntervalMs: 0, path: "/custom/metrics" });
    (endpoints[1] as { engine: string }).engine = "trtllm-serve";
    for (const pod of pods) pod.behaviour.status = 404;
    pods[0]!.behaviour.routes = {
      "/custom/metrics": { status: 200, body: vllmBody(5, 6, 0.5), contentType: "text/plain" },
    };
    pods[1]!.behaviour.routes = trtllmRoutes("/custom/metrics");
    scraper.start();
    await scraper.firstRound();
    await vi.waitFor(() => {
      expect(endpoints[0]!.metrics).toMatchObject({ waitingQueueSize: 5, runningRequestsSize: 6 });
      expect(endpoints[1]!.metrics).toMatchObject(TRTLLM_NUMBERS);
    }, WAIT);
    expect(pods[1]!.lastPath).toBe("/custom/metrics");
  });

  it("scrapes an engine on its own metrics port (Triton serves metrics on 8002, inference on the target port)", async () => {
    const metricsPods = await startPods(ADDRESSES, () => ({ status: 200, body: vllmBody(4, 2, 0.3), delayMs: 0 }));
    const { endpoints, scraper } = await setup({
      modelsIntervalMs: 0,
      engines: [
        {
          name: "split",
          queuedRequestsSpec: "vllm:num_requests_waiting",
          runningRequestsSpec: "vllm:num_requests_running",
          kvUsageSpec: "vllm:kv_cache_usage_perc",
          metricsPort: metricsPods.port,
        },
      ],
    });
    pods.push(...metricsPods.pods);
    (endpoints[0] as { engine: string }).engine = "split";
    pods[0]!.behaviour.status = 404; // the target port has no metrics for it
    scraper.start();
    await scraper.firstRound();
    await vi.waitFor(() => {
      expect(endpoints[0]!.metrics).toMatchObject({ waitingQueueSize: 4, runningRequestsSize: 2 });
      expect(endpoints[1]!.metrics).toMatchObject({ waitingQueueSize: 1, runningRequestsSize: 2 });
    }, WAIT);
    expect(metricsPods.pods[0]!.requests).toBeGreaterThan(0);
    expect(metricsPods.pods[1]!.requests).toBe(0);
  });

  it("refuses a metrics path that is not absolute, or has spaces or a fragment", () => {
    const source = new FakeSource([]);
    for (const path of ["metrics", "/a b", "/m#x"])
      expect(() => new MetricsScraper({ source, path })).toThrow(/path.*absolute path/);
  });

  it("scrapes every endpoint on the shared port into endpoint.metrics", async () => {
    // /v1/models off here, so the last path each pod saw is the metrics path.
    const { endpoints, scraper, results } = await setup({ modelsIntervalMs: 0 });
    pods[0]!.behaviour.body = vllmBody(3, 4, 0.25);
    pods[2]!.behaviour.body = fixture("sglang.txt");
    (endpoints[2] as { engine: string }).engine = "sglang";
    const first = scraper.firstRound(); // before start(): waits for start and the round
    scraper.start();
    await first;
    for (const ep of endpoints) expect(ep.metrics ?? ep.lastScrapeError).toBeDefined();
    await vi.waitFor(() => {
      for (const ep of endpoints) expect(ep.metrics).toBeDefined();
    }, WAIT);
    expect(endpoints[0]!.metrics).toMatchObject({
      waitingQueueSize: 3,
      runningRequestsSize: 4,
      kvCacheUsagePercent: 0.25,
    });
    expect(endpoints[1]!.metrics).toMatchObject({
      waitingQueueSize: 1,
      runningRequestsSize: 2,
      kvCacheUsagePercent: 0.5,
    });
    expect(endpoints[2]!.metrics).toMatchObject({
      waitingQueueSize: 3,
      runningRequestsSize: 7,
      cacheNumBlocks: 200000,
    });
    for (const ep of endpoints) {
      expect(ep.lastScrapeError).toBeUndefined();
      expect(ep.metrics!.updateTime).toBeLessThanOrEqual(performance.now());
    }
    for (const pod of pods) {
      expect(pod.lastAccept).toBe(METRICS_ACCEPT_HEADER);
      expect(pod.lastPath).toBe("/metrics");
    }
    expect(results.some((r) => r.result.ok && r.result.durationMs >= 0)).toBe(true);
  });

  it("replaces metrics with a new object per scrape and reuses one keep-alive connection", async () => {
    const { endpoints, scraper, count } = await setup();
    scraper.start();
    await vi.waitFor(() => expect(count(endpoints[0]!, true)).toBeGreaterThanOrEqual(2), WAIT);
    const before = endpoints[0]!.metrics;
    pods[0]!.behaviour.body = vllmBody(9, 9, 0.9);
    await vi.waitFor(() => expect(endpoints[0]!.metrics?.waitingQueueSize).toBe(9), WAIT);
    expect(endpoints[0]!.metrics).not.toBe(before);
    expect(endpoints[0]!.metrics!.updateTime).toBeGreaterThan(before!.updateTime);
    expect(pods[0]!.requests).toBeGreaterThanOrEqual(3);
    expect(pods[0]!.connections).toBe(1);
  });

  it("on a garbage body keeps the old metrics (going stale), sets lastScrapeError, and leaves others alone", async () => {
    const { endpoints, scraper, count, results } = await setup();
    scraper.start();
    await scraper.firstRound();
    await vi.waitFor(() => expect(endpoints[1]!.metrics).toBeDefined(), WAIT);
    const otherBefore = endpoints[0]!.metrics;
    const failuresBefore = count(endpoints[1]!, false);
    pods[1]!.behaviour.body = "<html>this is not prometheus</html>\n{{{\n";
    // A scrape answered before the change may still land after it; from the first failure on, every scrape fails.
    await vi.waitFor(() => expect(count(endpoints[1]!, false)).toBeGreaterThanOrEqual(failuresBefore + 1), WAIT);
    const kept = endpoints[1]!.metrics;
    expect(kept).toBeDefined();
    await vi.waitFor(() => expect(count(endpoints[1]!, false)).toBeGreaterThanOrEqual(failuresBefore + 3), WAIT);
    expect(endpoints[1]!.metrics).toBe(kept);
    expect(endpoints[1]!.lastScrapeError).toMatch(/no vllm metric family \(.*\) in \/metrics/);
    const failure = results.findLast((r) => r.endpoint === endpoints[1] && !r.result.ok)!;
    expect(failure.result.error?.reason).toBe("parse");
    // Others keep refreshing.
    await vi.waitFor(() => expect(endpoints[0]!.metrics).not.toBe(otherBefore), WAIT);
    expect(endpoints[0]!.lastScrapeError).toBeUndefined();
    // Recovery clears the error.
    pods[1]!.behaviour.body = vllmBody(5, 5, 0.5);
    await vi.waitFor(() => expect(endpoints[1]!.metrics?.waitingQueueSize).toBe(5), WAIT);
    expect(endpoints[1]!.lastScrapeError).toBeUndefined();
  });

  it("drains non-200 bodies so the connection is reused, and reports the status", async () => {
    const { endpoints, scraper, count, results } = await setup();
    // Larger than a stream's buffer: an undrained body would stall the single connection.
    pods[0]!.behaviour = { status: 503, body: "x".repeat(100_000), delayMs: 0 };
    scraper.start();
    await vi.waitFor(() => expect(count(endpoints[0]!, false)).toBeGreaterThanOrEqual(3), WAIT);
    const failure = results.find((r) => r.endpoint === endpoints[0] && !r.result.ok)!;
    expect(failure.result.error?.reason).toBe("status");
    expect(failure.result.error?.statusCode).toBe(503);
    expect(endpoints[0]!.lastScrapeError).toMatch(/HTTP 503/);
    expect(endpoints[0]!.metrics).toBeUndefined();
    expect(pods[0]!.connections).toBe(1);
  });

  it("refuses a body over maxBodyBytes, and reports a huge error body as its status without draining it", async () => {
    const { endpoints, scraper, count, results } = await setup({ maxBodyBytes: 4096, modelsIntervalMs: 0 });
    pods[0]!.behaviour.body = `${vllmBody(1, 1, 0.1)}# ${"x".repeat(10_000)}\n`;
    pods[1]!.behaviour = { status: 500, body: "y".repeat(1_000_000), delayMs: 0 };
    scraper.start();
    await vi.waitFor(() => {
      expect(count(endpoints[0]!, false)).toBeGreaterThanOrEqual(2);
      expect(count(endpoints[1]!, false)).toBeGreaterThanOrEqual(2);
    }, WAIT);
    const big = results.find((r) => r.endpoint === endpoints[0] && !r.result.ok)!;
    expect(big.result.error?.reason).toBe("network");
    expect(endpoints[0]!.lastScrapeError).toMatch(/body larger than the limit/);
    expect(endpoints[0]!.metrics).toBeUndefined();
    const huge = results.find((r) => r.endpoint === endpoints[1] && !r.result.ok)!;
    expect(huge.result.error?.reason).toBe("status");
    expect(huge.result.error?.statusCode).toBe(500);
    // Not drained: each failure cost its connection.
    expect(pods[1]!.connections).toBeGreaterThanOrEqual(2);
    // The third pod is unaffected.
    expect(endpoints[2]!.metrics?.waitingQueueSize).toBe(1);
  });

  it("reports an unreachable endpoint as a connect error and still completes the first round", async () => {
    const { port, source, scraper, results } = await setup();
    const dead = makeEndpoint("127.0.1.4", port); // nothing listens there
    source.add(dead);
    scraper.start();
    await scraper.firstRound();
    expect(dead.metrics).toBeUndefined();
    expect(dead.lastScrapeError).toMatch(/cannot connect \(ECONNREFUSED\)/);
    expect(results.find((r) => r.endpoint === dead)?.result.error?.reason).toBe("connect");
  });

  it("times out a slow /metrics and never sends two concurrent requests to it", async () => {
    const { endpoints, scraper, count, results } = await setup({ timeoutMs: 300, intervalMs: 10 });
    pods[2]!.behaviour.delayMs = 10_000;
    scraper.start();
    await scraper.firstRound();
    await vi.waitFor(() => expect(count(endpoints[2]!, false)).toBeGreaterThanOrEqual(3), WAIT);
    const failure = results.find((r) => r.endpoint === endpoints[2] && !r.result.ok)!;
    expect(failure.result.error?.reason).toBe("timeout");
    expect(endpoints[2]!.lastScrapeError).toMatch(/no complete response within 300 ms/);
    // Every attempt reached the server: none was queued behind a still-running scrape of the same endpoint (the
    // client's single connection would hide such overlap from the server's concurrency count).
    const failures = count(endpoints[2]!, false);
    expect(failures).toBeLessThanOrEqual(pods[2]!.requests);
    expect(endpoints[2]!.metrics).toBeUndefined();
    expect(pods[2]!.maxConcurrent).toBe(1);
    // Fast pods were polled many times meanwhile, also one request at a time.
    expect(pods[0]!.requests).toBeGreaterThan(pods[2]!.requests);
    expect(pods[0]!.maxConcurrent).toBe(1);
  });

  it("stops an endpoint's loop and closes its connection when it is removed", async () => {
    const { endpoints, source, scraper, count } = await setup();
    scraper.start();
    await vi.waitFor(() => expect(pods[2]!.openSockets).toBe(1), WAIT);
    source.remove(endpoints[2]!);
    expect(scraper.size).toBe(2);
    await vi.waitFor(() => expect(pods[2]!.openSockets).toBe(0), WAIT);
    const frozen = pods[2]!.requests;
    const barrier = count(endpoints[0]!);
    // Other loops keep going; the removed one sends nothing more in the meantime.
    await vi.waitFor(() => expect(count(endpoints[0]!)).toBeGreaterThanOrEqual(barrier + 5), WAIT);
    expect(pods[2]!.requests).toBe(frozen);
    expect(count(endpoints[2]!)).toBeLessThanOrEqual(frozen);
    // Re-adding starts polling again.
    source.add(endpoints[2]!);
    await vi.waitFor(() => expect(pods[2]!.requests).toBeGreaterThan(frozen), WAIT);
  });

  for (const workers of [0, 1])
    it(`tells onRemoved once a removed endpoint is no longer scraped, and never scrapes it after (workers: ${workers})`, async () => {
      const events: string[] = [];
      const { endpoints, source, scraper, count } = await setup({
        workers,
        hooks: {
          onScrape: (e) => events.push(`scrape ${e.key}`),
          onRemoved: (e) => events.push(`removed ${e.key}`),
        },
      });
      scraper.start();
      await scraper.firstRound();
      const gone = endpoints[2]!;
      source.remove(gone);
      await vi.waitFor(() => expect(events).toContain(`removed ${gone.key}`), WAIT);
      // Another endpoint scraped several times since: anything still coming for the removed one would have landed.
      const seen = events.filter((e) => e === `scrape ${endpoints[0]!.key}`).length;
      await vi.waitFor(
        () => expect(events.filter((e) => e === `scrape ${endpoints[0]!.key}`).length).toBeGreaterThan(seen + 5),
        WAIT,
      );
      const at = events.indexOf(`removed ${gone.key}`);
      expect(events.slice(at + 1)).not.toContain(`scrape ${gone.key}`);
      expect(events.filter((e) => e.startsWith("removed "))).toEqual([`removed ${gone.key}`]);
      expect(count(gone)).toBe(0); // the default recorder was replaced by the hooks above
      // stop() is not a removal.
      await scraper.stop();
      expect(events.filter((e) => e.startsWith("removed "))).toHaveLength(1);
    });

  it("stop() closes every connection, unsubscribes, and sends nothing afterwards", async () => {
    const { source, scraper, endpoints, count } = await setup();
    pods[1]!.behaviour.delayMs = 5_000; // one scrape in flight while stopping
    scraper.start();
    await vi.waitFor(() => {
      expect(pods[0]!.openSockets).toBe(1);
      expect(pods[1]!.concurrent).toBe(1);
      expect(count(endpoints[0]!, true)).toBeGreaterThanOrEqual(1);
    }, WAIT);
    await scraper.stop();
    expect(source.listenerCount).toBe(0);
    await vi.waitFor(() => {
      for (const pod of pods) expect(pod.openSockets).toBe(0);
    }, WAIT);
    const frozen = pods.map((p) => p.requests);
    const hooks = count(endpoints[0]!);
    // A window several intervals long: a surviving timer would send requests or fire hooks in it.
    await new Promise((r) => setTimeout(r, 200));
    expect(pods.map((p) => p.requests)).toEqual(frozen);
    expect(count(endpoints[0]!)).toBe(hooks);
    await scraper.stop(); // idempotent
    expect(() => scraper.start()).toThrow(/after stop/);
  });

  it("reports an unknown engine type as an error instead of reading the wrong metrics", async () => {
    const { endpoints, scraper, results } = await setup();
    (endpoints[0] as { engine: string }).engine = "mystery";
    scraper.start();
    await scraper.firstRound();
    expect(endpoints[0]!.lastScrapeError).toMatch(/no metric mapping for engine "mystery" \(known: .*vllm/);
    expect(results.find((r) => r.endpoint === endpoints[0])?.result.error?.reason).toBe("engine");
    expect(endpoints[1]!.metrics).toBeDefined();
  });

  it("honours path, metricsPort and custom engine configs", async () => {
    const { endpoints, scraper } = await setup({
      path: "/custom/metrics",
      engines: [{ name: "vllm", queuedRequestsSpec: "q", runningRequestsSpec: "r", kvUsageSpec: "kv" }],
      // No /v1/models reads here, so the last path each pod saw is the metrics path.
      modelsIntervalMs: 0,
    });
    for (const pod of pods) pod.behaviour.body = "q 4\nr 5\nkv 0.5\n";
    scraper.start();
    await vi.waitFor(() => expect(endpoints[0]!.metrics?.waitingQueueSize).toBe(4), WAIT);
    expect(pods[0]!.lastPath).toBe("/custom/metrics");
    await scraper.stop();
    // metricsPort: the endpoint's target port is wrong, the metrics port is right.
    const wrongPort = makeEndpoint("127.0.1.1", 1);
    const other = new MetricsScraper({
      source: new FakeSource([wrongPort]),
      metricsPort: endpoints[0]!.port,
      path: "/custom/metrics",
      engines: [{ name: "vllm", queuedRequestsSpec: "q", runningRequestsSpec: "r", kvUsageSpec: "kv" }],
    });
    scrapers.push(other);
    other.start();
    await other.firstRound();
    expect(wrongPort.metrics?.runningRequestsSize).toBe(5);
  });

  it("scrapes an IPv6 endpoint (bracketed origin)", async () => {
    const started = await startPods(["::1"], () => ({ status: 200, body: vllmBody(6, 1, 0.1), delayMs: 0 }));
    pods = started.pods;
    const ep = makeEndpoint("::1", started.port);
    expect(ep.key).toBe(`[::1]:${started.port}`);
    const scraper = new MetricsScraper({ source: new FakeSource([ep]), intervalMs: 20 });
    scrapers.push(scraper);
    scraper.start();
    await scraper.firstRound();
    expect(ep.lastScrapeError).toBeUndefined();
    expect(ep.metrics?.waitingQueueSize).toBe(6);
  });

  it("validates options with clear errors", () => {
    const source = new FakeSource([]);
    expect(() => new MetricsScraper({ source, intervalMs: 0 })).toThrow(ConfigError);
    expect(() => new MetricsScraper({ source, intervalMs: Number.NaN })).toThrow(/intervalMs/);
    expect(() => new MetricsScraper({ source, timeoutMs: -1 })).toThrow(/timeoutMs/);
    expect(() => new MetricsScraper({ source, path: "metrics" })).toThrow(/path/);
    expect(() => new MetricsScraper({ source, scheme: "ftp" as "http" })).toThrow(/scheme/);
    expect(() => new MetricsScraper({ source, metricsPort: 70_000 })).toThrow(/metricsPort/);
    expect(() => new MetricsScraper({ source: {} as FakeSource })).toThrow(/source/);
    expect(() => new MetricsScraper({ source, engines: [{ name: "default" }] })).toThrow(/reserved/);
  });

  it("keeps scraping when a hook throws", async () => {
    const { endpoints } = await setup();
    let calls = 0;
    const scraper = new MetricsScraper({
      source: new FakeSource([endpoints[0]!]),
      intervalMs: 20,
      hooks: {
        onScrape: () => {
          calls++;
          throw new Error("hook bug");
        },
      },
    });
    scrapers.push(scraper);
    scraper.start();
    await vi.waitFor(() => expect(calls).toBeGreaterThanOrEqual(3), WAIT);
    expect(endpoints[0]!.metrics).toBeDefined();
  });
});
