// A resource reload hands the scraper thousands of added and removed endpoints in one call, on the request path's
// thread (docs/security.md, "Resource files"). These tests pin down the structure that keeps that call short:
// the change is queued and forwarded (to the scrape workers, or to the in-process loops) a slice per turn, in order,
// and the first scrapes of a large join are spread out, at start-up too. Every case runs in both modes, with two
// workers so that a join split between shards is still spread as one. No timing assertions: order of events and
// counts only.
import { createServer } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CHANGE_SLICE, type EndpointSource, JOIN_BURST, MetricsScraper } from "../../src/datalayer/scraper.js";
import type { Endpoint } from "../../src/datastore/types.js";
import { type FakePod, makeEndpoint, startPods, vllmBody } from "./fake-pods.js";

// Generous: on a shared 2-core box a worker can take seconds to come up.
const WAIT = { timeout: 60_000, interval: 10 };

/** A source whose changes carry many endpoints at once, as the datastore's do after a reload. */
class BatchSource implements EndpointSource {
  #endpoints: Endpoint[] = [];
  readonly #listeners = new Set<(added: readonly Endpoint[], removed: readonly Endpoint[]) => void>();

  endpoints(): readonly Endpoint[] {
    return this.#endpoints;
  }

  onEndpointsChanged(listener: (added: readonly Endpoint[], removed: readonly Endpoint[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  change(added: readonly Endpoint[], removed: readonly Endpoint[]): void {
    const gone = new Set(removed);
    this.#endpoints = [...this.#endpoints.filter((e) => !gone.has(e)), ...added];
    for (const l of this.#listeners) l(added, removed);
  }
}

/** A loopback port nothing listens on: scrapes there are refused at once. */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

let pods: FakePod[] = [];
let scrapers: MetricsScraper[] = [];

afterEach(async () => {
  await Promise.all(scrapers.map((s) => s.stop()));
  await Promise.all(pods.map((p) => p.close()));
  scrapers = [];
  pods = [];
});

describe.each([
  { mode: "in-process", workers: 0 },
  { mode: "two workers", workers: 2 },
])("MetricsScraper under a large endpoint change ($mode)", { timeout: 120_000 }, ({ workers }) => {
  it("spreads the first scrapes of a large join; a small join still starts at once", async () => {
    const batch = Array.from({ length: 128 }, (_, i) => `127.0.5.${i + 1}`);
    const marker = "127.0.5.250";
    const started = await startPods([...batch, marker], () => ({ status: 200, body: vllmBody(0, 0, 0), delayMs: 0 }));
    pods = started.pods;
    const source = new BatchSource();
    // An hour's interval spreads the join over an hour: endpoint i's first scrape is due at i × 28 s, whichever
    // worker it lands on.
    const scraper = new MetricsScraper({ source, intervalMs: 3_600_000, modelsIntervalMs: 0, workers });
    scrapers.push(scraper);
    scraper.start();
    source.change(
      batch.map((a) => makeEndpoint(a, started.port)),
      [],
    );
    // Joined after the batch, alone: due at once. Before the fix all 128 were scraped before it.
    source.change([makeEndpoint(marker, started.port)], []);
    const markerPod = pods.at(-1)!;
    await vi.waitFor(() => expect(markerPod.requests).toBeGreaterThan(0), WAIT);
    const scraped = pods.slice(0, batch.length).filter((p) => p.requests > 0).length;
    expect(scraped).toBeLessThanOrEqual(1);
    expect(scraper.size).toBe(batch.length + 1);
    expect(batch.length).toBeGreaterThan(JOIN_BURST);
  });

  it("spreads the first scrapes at start-up too", async () => {
    const batch = Array.from({ length: 128 }, (_, i) => `127.0.8.${i + 1}`);
    const marker = "127.0.8.250";
    const started = await startPods([...batch, marker], () => ({ status: 200, body: vllmBody(0, 0, 0), delayMs: 0 }));
    pods = started.pods;
    const source = new BatchSource();
    source.change(
      batch.map((a) => makeEndpoint(a, started.port)),
      [],
    );
    const scraper = new MetricsScraper({ source, intervalMs: 3_600_000, modelsIntervalMs: 0, workers });
    scrapers.push(scraper);
    scraper.start();
    // Start-up is not queued: readiness waits on every endpoint known then.
    expect(scraper.size).toBe(batch.length);
    expect(scraper.joining).toBe(0);
    source.change([makeEndpoint(marker, started.port)], []);
    const markerPod = pods.at(-1)!;
    await vi.waitFor(() => expect(markerPod.requests).toBeGreaterThan(0), WAIT);
    expect(pods.slice(0, batch.length).filter((p) => p.requests > 0).length).toBeLessThanOrEqual(1);
  });

  it("applies a large change a slice per event-loop turn, and stop() lets go of everything", async () => {
    const port = await closedPort();
    const source = new BatchSource();
    const scraper = new MetricsScraper({ source, intervalMs: 3_600_000, modelsIntervalMs: 0, workers });
    scrapers.push(scraper);
    scraper.start();
    const n = 3 * 256 + 10;
    expect(CHANGE_SLICE).toBe(256);
    const endpoints = Array.from({ length: n }, (_, i) =>
      makeEndpoint(`127.0.6.${(i % 250) + 1}`, port + Math.floor(i / 250)),
    );
    // The change itself only queues: it is applied at most 256 entries per turn, at least one.
    source.change(endpoints, []);
    expect(scraper.size).toBe(0);
    expect(scraper.joining).toBe(n);
    await new Promise((r) => setImmediate(r));
    expect(scraper.joining).toBeGreaterThanOrEqual(n - 256);
    expect(scraper.joining).toBeLessThan(n);
    await vi.waitFor(() => expect(scraper.joining).toBe(0), WAIT);
    expect(scraper.size).toBe(n);
    source.change([], endpoints);
    expect(scraper.retiring).toBe(n);
    await new Promise((r) => setImmediate(r));
    expect(scraper.retiring).toBeGreaterThanOrEqual(n - 256);
    expect(scraper.retiring).toBeLessThan(n);
    expect(scraper.size).toBe(scraper.retiring);
    // stop() lets go of everything, queued or not.
    await scraper.stop();
    expect(scraper.size).toBe(0);
    expect(scraper.retiring).toBe(0);
  });

  it("applies queued changes in order: an endpoint added then removed is not left behind", async () => {
    const port = await closedPort();
    const source = new BatchSource();
    const scraper = new MetricsScraper({ source, intervalMs: 3_600_000, modelsIntervalMs: 0, workers });
    scrapers.push(scraper);
    scraper.start();
    const endpoints = Array.from({ length: 300 }, (_, i) =>
      makeEndpoint(`127.0.7.${(i % 250) + 1}`, port + (i >= 250 ? 1 : 0)),
    );
    source.change(endpoints, []);
    source.change([], endpoints.slice(0, 100));
    await vi.waitFor(() => expect([scraper.joining, scraper.retiring]).toEqual([0, 0]), WAIT);
    expect(scraper.size).toBe(200);
  });

  it("forwards an addition and a removal queued in one turn in that order, down to the loops", async () => {
    const batch = Array.from({ length: 70 }, (_, i) => `127.0.9.${i + 1}`);
    const marker = "127.0.9.250";
    const started = await startPods([...batch, marker], () => ({ status: 200, body: vllmBody(0, 0, 0), delayMs: 0 }));
    pods = started.pods;
    const source = new BatchSource();
    const scraper = new MetricsScraper({ source, intervalMs: 20, modelsIntervalMs: 0, idleIntervalMs: 0, workers });
    scrapers.push(scraper);
    scraper.start();
    const endpoints = batch.map((a) => makeEndpoint(a, started.port));
    expect(endpoints.length).toBeGreaterThan(JOIN_BURST);
    // Both changes are forwarded on the same turn (140 entries); a worker told to remove before it was told to add
    // would scrape all 70 forever.
    source.change(endpoints, []);
    source.change([], endpoints);
    await vi.waitFor(() => expect([scraper.joining, scraper.retiring]).toEqual([0, 0]), WAIT);
    expect(scraper.size).toBe(0);
    // On a busy core the two changes can reach the loops on different turns, and a first scrape may fall between
    // them, or still be on its way to the pod when the removal is done: harmless. What must not happen is scraping
    // after the removal. The marker pod orders it: once it has been scraped twice, whatever was sent before the
    // removal has arrived; four more of its scrapes later, any of the batch left behind would have been scraped again.
    source.change([makeEndpoint(marker, started.port)], []);
    const markerPod = pods.at(-1)!;
    await vi.waitFor(() => expect(markerPod.requests).toBeGreaterThanOrEqual(2), WAIT);
    const after = pods.slice(0, batch.length).map((p) => p.requests);
    const markerAt = markerPod.requests;
    await vi.waitFor(() => expect(markerPod.requests).toBeGreaterThanOrEqual(markerAt + 4), WAIT);
    expect(pods.slice(0, batch.length).map((p) => p.requests)).toEqual(after);
  });

  it("finishes tearing down removed endpoints on its own", async () => {
    const started = await startPods(["127.0.5.251", "127.0.5.252"], () => ({
      status: 200,
      body: vllmBody(0, 0, 0),
      delayMs: 0,
    }));
    pods = started.pods;
    const source = new BatchSource();
    const scraper = new MetricsScraper({ source, intervalMs: 20, modelsIntervalMs: 0, workers });
    scrapers.push(scraper);
    scraper.start();
    const endpoints = pods.map((p) => makeEndpoint(p.address, started.port));
    source.change(endpoints, []);
    await vi.waitFor(() => expect(pods.every((p) => p.requests > 1)).toBe(true), WAIT);
    source.change([], endpoints);
    // The removed endpoints' keep-alive connections are closed without stop().
    await vi.waitFor(() => expect(pods.map((p) => p.openSockets)).toEqual([0, 0]), WAIT);
    expect(scraper.retiring).toBe(0);
  });
});
