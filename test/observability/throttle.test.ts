import { afterEach, describe, expect, it } from "vitest";
import { MetricsScraper } from "../../src/datalayer/scraper.js";
import { LogThrottle } from "../../src/observability/throttle.js";
import { type FakePod, FakeSource, makeEndpoint, startPods, vllmBody } from "../datalayer/fake-pods.js";
import { freshAddresses } from "../helpers/epp-harness.js";
import { captureLogger } from "./helpers.js";

describe("LogThrottle", () => {
  it("logs the first event, then one per interval per key with the suppressed count", () => {
    let now = 1_000;
    const t = new LogThrottle({ intervalMs: 30_000, now: () => now });
    expect(t.take("a")).toBe(0);
    expect(t.take("b")).toBe(0); // keys are independent
    for (let i = 0; i < 5; i++) {
      now += 1_000;
      expect(t.take("a")).toBeUndefined();
    }
    now = 1_000 + 29_999;
    expect(t.take("a")).toBeUndefined();
    now = 1_000 + 30_000;
    expect(t.take("a")).toBe(6);
    expect(t.take("a")).toBeUndefined();
    now += 30_000;
    expect(t.take("a")).toBe(1);
  });

  it("reset() makes the next event log at once and reports what was suppressed", () => {
    const now = 0;
    const t = new LogThrottle({ intervalMs: 30_000, now: () => now });
    t.take("a");
    t.take("a");
    t.take("a");
    expect(t.reset("a")).toBe(2);
    expect(t.take("a")).toBe(0);
    expect(t.reset("never-seen")).toBe(0);
  });

  it("bounds the number of keys it remembers", () => {
    const t = new LogThrottle({ maxKeys: 3, now: () => 0 });
    for (const k of ["a", "b", "c", "d", "e"]) t.take(k);
    expect(t.size).toBe(3);
    // "a" was forgotten first, so it logs again.
    expect(t.take("a")).toBe(0);
  });

  it("rejects invalid options with the option named", () => {
    expect(() => new LogThrottle({ intervalMs: -1 })).toThrow(/intervalMs/);
    expect(() => new LogThrottle({ intervalMs: Number.NaN })).toThrow(/intervalMs/);
    expect(() => new LogThrottle({ maxKeys: 0 })).toThrow(/maxKeys/);
  });
});

describe("scrape failure logging", () => {
  let pods: FakePod[] = [];
  let scraper: MetricsScraper | undefined;
  afterEach(async () => {
    await scraper?.stop();
    scraper = undefined;
    await Promise.all(pods.map((p) => p.close()));
    pods = [];
  });

  it("warns once per failing endpoint within the interval, counting failures, and logs the recovery", async () => {
    const started = await startPods(freshAddresses(2), () => ({
      status: 500,
      body: "boom",
      delayMs: 0,
    }));
    pods = started.pods;
    const source = new FakeSource(pods.map((p) => makeEndpoint(p.address, started.port)));
    const log = captureLogger("info");
    scraper = new MetricsScraper({
      source,
      intervalMs: 5,
      maxBackoffMs: 10,
      logger: log.logger,
      // Far longer than the test, so "at most one line per interval" is exact, whatever the machine's speed.
      failureLogIntervalMs: 3_600_000,
    });
    scraper.start();
    const deadline = Date.now() + 10_000;
    while (pods.some((p) => p.requests < 6)) {
      if (Date.now() > deadline) throw new Error("pods were not scraped 6 times within 10 s");
      await new Promise((r) => setTimeout(r, 10));
    }
    const warns = log.records().filter((r) => r.msg === "metrics scrape failing");
    expect(warns.map((w) => w.endpoint).sort()).toEqual(pods.map((p) => `${p.address}:${started.port}`).sort());
    expect(warns.every((w) => w.level === 40 && w.reason === "status" && w.failures === 1 && w.suppressed === 0)).toBe(
      true,
    );

    const requests = pods[0]!.requests;
    pods[0]!.behaviour = { status: 200, body: vllmBody(0, 0, 0.1), delayMs: 0 };
    while (!log.records().some((r) => r.msg === "metrics scrape recovered")) {
      if (Date.now() > deadline) throw new Error(`no recovery line after ${pods[0]!.requests - requests} scrapes`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const recovered = log.records().find((r) => r.msg === "metrics scrape recovered")!;
    expect(recovered.endpoint).toBe(`${pods[0]!.address}:${started.port}`);
    expect(recovered.failures as number).toBeGreaterThanOrEqual(6);
  });
});
