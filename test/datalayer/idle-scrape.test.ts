/**
 * Idle endpoints are scraped at the idle interval, not every tick: after two quiet scrapes (nothing running or
 * waiting) and with nothing in flight from this EPP, the scraper lets ticks pass; the first request routed there, or
 * load reported by the pod, puts it back on the base interval. The idle interval here is a minute, so "no further
 * scrape" holds on any machine however slow; resumption is waited for as a condition.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { MetricsScraper } from "../../src/datalayer/scraper.js";
import { isFresh } from "../../src/datastore/types.js";
import { type FakePod, FakeSource, makeEndpoint, startPods, vllmBody } from "./fake-pods.js";

const WAIT = { timeout: 15_000, interval: 10 };
let pods: FakePod[] = [];
let scrapers: MetricsScraper[] = [];

afterEach(async () => {
  await Promise.all(scrapers.map((s) => s.stop()));
  await Promise.all(pods.map((p) => p.close()));
  scrapers = [];
  pods = [];
});

async function setup(idleIntervalMs: number) {
  const started = await startPods(["127.0.1.61"], () => ({ status: 200, body: vllmBody(0, 0, 0.1), delayMs: 0 }));
  pods = started.pods;
  const ep = makeEndpoint("127.0.1.61", started.port);
  const scraper = new MetricsScraper({
    source: new FakeSource([ep]),
    intervalMs: 20,
    idleIntervalMs,
    modelsIntervalMs: 0,
  });
  scrapers.push(scraper);
  scraper.start();
  return { ep, pod: pods[0]! };
}

describe("idle scraping", () => {
  it("stops scraping a quiet endpoint each tick, and keeps its metrics fresh until the idle scrape is late", async () => {
    const { ep, pod } = await setup(60_000);
    await vi.waitFor(() => expect(pod.requests).toBeGreaterThanOrEqual(2), WAIT);
    const settled = pod.requests;
    await new Promise((r) => setTimeout(r, 400));
    // At most the scrape that was already running when the second quiet answer arrived.
    expect(pod.requests).toBeLessThanOrEqual(settled + 1);
    // 400 ms old, beyond a 200 ms staleness bound, yet fresh: the next scrape is not due for a minute.
    expect(isFresh(ep, performance.now(), 200)).toBe(true);
  });

  it("resumes at once when this EPP routes a request there", async () => {
    const { ep, pod } = await setup(60_000);
    // Two quiet scrapes make it idle; the third tick onwards passes without one.
    await vi.waitFor(() => expect(pod.requests).toBeGreaterThanOrEqual(2), WAIT);
    const before = pod.requests;
    ep.inflightRequests = 1;
    await vi.waitFor(() => expect(pod.requests).toBeGreaterThanOrEqual(before + 3), WAIT);
  });

  it("scrapes every tick while the pod reports load, and every tick with the idle interval off", async () => {
    const loaded = await setup(60_000);
    loaded.pod.behaviour.body = vllmBody(1, 2, 0.5);
    await vi.waitFor(() => expect(loaded.pod.requests).toBeGreaterThanOrEqual(5), WAIT);
    await Promise.all(scrapers.map((s) => s.stop()));
    await Promise.all(pods.map((p) => p.close()));
    scrapers = [];
    const off = await setup(0);
    await vi.waitFor(() => expect(off.pod.requests).toBeGreaterThanOrEqual(5), WAIT);
  });
});
