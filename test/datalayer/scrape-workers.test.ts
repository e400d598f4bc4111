/**
 * The scraper's worker threads (docs/design/model-servers.md §9), against real loopback pods: scraping runs in
 * workers by default and its results land in the main thread's endpoints (LoRA lists and served models included);
 * a worker that dies is logged, counted and restarted without taking the EPP down, and its endpoints are scraped
 * again; stop() leaves no thread, port or socket behind. The existing scraper tests (scraper.test.ts,
 * idle-scrape.test.ts, served-models.test.ts) run against the default, worker, mode too.
 */

import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import { afterEach, describe, expect, it, vi } from "vitest";
import { allowedCpus, threadCpus } from "../../src/common/affinity.js";
import {
  DEFAULT_SCRAPE_WORKERS,
  flushDelayMs,
  MetricsScraper,
  SCRAPE_WORKER_NICE,
} from "../../src/datalayer/scraper.js";
import { captureLogger } from "../observability/helpers.js";
import { type FakePod, FakeSource, fixture, makeEndpoint, startPods, vllmBody } from "./fake-pods.js";

// Generous: on a shared 2-core box a worker can take seconds to come up, and the restart test starts two.
const WAIT = { timeout: 60_000, interval: 10 };
const ADDRESSES = ["127.0.1.71", "127.0.1.72", "127.0.1.73", "127.0.1.74"];

let pods: FakePod[] = [];
let scrapers: MetricsScraper[] = [];

afterEach(async () => {
  await Promise.all(scrapers.map((s) => s.stop()));
  await Promise.all(pods.map((p) => p.close()));
  scrapers = [];
  pods = [];
});

/** Worker threads and message ports alive in this process (a worker's port shows as a MessagePort resource). */
function threadResources(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "MessagePort" || r === "Worker").length;
}

describe("scrape workers", { timeout: 120_000 }, () => {
  it("scrape in worker threads by default, and the results land in the endpoints", async () => {
    expect(DEFAULT_SCRAPE_WORKERS).toBeGreaterThanOrEqual(1);
    const started = await startPods(ADDRESSES, () => ({ status: 200, body: vllmBody(2, 3, 0.4), delayMs: 0 }));
    pods = started.pods;
    pods[1]!.behaviour.body = fixture("vllm-lora.txt");
    const endpoints = ADDRESSES.map((a) => makeEndpoint(a, started.port));
    // No `workers` option: the default.
    const scraper = new MetricsScraper({ source: new FakeSource(endpoints), intervalMs: 20 });
    scrapers.push(scraper);
    scraper.start();
    expect(scraper.liveWorkers).toBe(DEFAULT_SCRAPE_WORKERS);
    await scraper.firstRound();
    await vi.waitFor(() => {
      for (const ep of endpoints) expect(ep.metrics).toBeDefined();
    }, WAIT);
    expect(endpoints[0]!.metrics).toMatchObject({
      waitingQueueSize: 2,
      runningRequestsSize: 3,
      kvCacheUsagePercent: 0.4,
    });
    expect([...endpoints[0]!.metrics!.servedModels!]).toEqual(["m"]);
    // The variable-length parts cross the thread boundary too: the same as the in-process extraction gives.
    const inProcess = makeEndpoint(ADDRESSES[1]!, started.port);
    const local = new MetricsScraper({ source: new FakeSource([inProcess]), intervalMs: 20, workers: 0 });
    scrapers.push(local);
    local.start();
    expect(local.liveWorkers).toBe(0);
    await local.firstRound();
    const a = endpoints[1]!.metrics!;
    const b = inProcess.metrics!;
    expect(b.lora).toBe("reported");
    expect({ ...a, updateTime: 0 }).toEqual({ ...b, updateTime: 0 });
    // Times are on the main thread's clock.
    expect(a.updateTime).toBeLessThanOrEqual(performance.now());
    expect(endpoints[1]!.metricsValidUntil).toBeGreaterThan(a.updateTime);
  });

  it("carries every change of an endpoint's adapter lists across the thread, and back again", async () => {
    const lora = (running: string, waiting: string) =>
      `${vllmBody(0, 1, 0.1)}# TYPE vllm:lora_requests_info gauge\nvllm:lora_requests_info{max_lora="2",running_lora_adapters="${running}",waiting_lora_adapters="${waiting}"} 1.0\n`;
    const started = await startPods([ADDRESSES[0]!], () => ({ status: 200, body: lora("a", ""), delayMs: 0 }));
    pods = started.pods;
    const endpoint = makeEndpoint(ADDRESSES[0]!, started.port);
    const scraper = new MetricsScraper({
      source: new FakeSource([endpoint]),
      intervalMs: 20,
      workers: 1,
      modelsIntervalMs: 0,
    });
    scrapers.push(scraper);
    scraper.start();
    const lists = () => [[...(endpoint.metrics?.activeModels ?? [])], [...(endpoint.metrics?.waitingModels ?? [])]];
    // Each step changes one list only (same size, other member; then order; then the other list), and the last
    // goes back to the first state, which the worker sent before.
    for (const [running, waiting] of [
      ["a", ""],
      ["b", ""],
      ["b,c", ""],
      ["c,b", ""],
      ["c,b", "d"],
      ["a", ""],
    ] as const) {
      pods[0]!.behaviour.body = lora(running, waiting);
      await vi.waitFor(
        () => expect(lists()).toEqual([running.split(","), waiting === "" ? [] : waiting.split(",")]),
        WAIT,
      );
    }
  });

  it("logs, counts and restarts a worker that dies, and its endpoints are scraped again", async () => {
    const started = await startPods(ADDRESSES, () => ({ status: 200, body: vllmBody(1, 1, 0.1), delayMs: 0 }));
    pods = started.pods;
    const endpoints = ADDRESSES.map((a) => makeEndpoint(a, started.port));
    const log = captureLogger("info");
    const exits: number[] = [];
    const scraper = new MetricsScraper({
      source: new FakeSource(endpoints),
      intervalMs: 20,
      workers: 1,
      modelsIntervalMs: 0,
      logger: log.logger,
      hooks: { onWorkerExit: (worker) => exits.push(worker) },
    });
    scrapers.push(scraper);
    scraper.start();
    await vi.waitFor(() => expect(endpoints[0]!.metrics?.waitingQueueSize).toBe(1), WAIT);
    scraper.crashWorkerForTest(0);
    await vi.waitFor(() => expect(exits).toEqual([0]), WAIT);
    const line = log
      .records()
      .find(
        (r) =>
          r["msg"] ===
          "scrape worker died; restarting it (its endpoints keep their last metrics and go stale meanwhile)",
      );
    expect(line).toMatchObject({ level: 50, worker: 0, endpoints: 4 });
    expect(JSON.stringify(line?.["err"])).toMatch(/crash requested/);
    // The replacement picks up every endpoint: a change on each pod shows up in its endpoint.
    for (const pod of pods) pod.behaviour.body = vllmBody(7, 1, 0.1);
    await vi.waitFor(() => {
      for (const ep of endpoints) expect(ep.metrics?.waitingQueueSize).toBe(7);
    }, WAIT);
    expect(scraper.liveWorkers).toBe(1);
    expect(exits).toEqual([0]);
  });

  it("stop() ends every worker and closes every connection", async () => {
    const before = threadResources();
    const started = await startPods(ADDRESSES, () => ({ status: 200, body: vllmBody(1, 1, 0.1), delayMs: 0 }));
    pods = started.pods;
    pods[3]!.behaviour.delayMs = 5_000; // a scrape in flight while stopping
    const endpoints = ADDRESSES.map((a) => makeEndpoint(a, started.port));
    const scraper = new MetricsScraper({ source: new FakeSource(endpoints), intervalMs: 20, workers: 2 });
    scrapers.push(scraper);
    scraper.start();
    await vi.waitFor(() => {
      expect(endpoints[0]!.metrics).toBeDefined();
      expect(pods[3]!.concurrent).toBe(1);
    }, WAIT);
    expect(threadResources()).toBeGreaterThan(before);
    await scraper.stop();
    expect(scraper.liveWorkers).toBe(0);
    expect(threadResources()).toBe(before);
    await vi.waitFor(() => {
      for (const pod of pods) expect(pod.openSockets).toBe(0);
    }, WAIT);
    const frozen = pods.map((p) => p.requests);
    await new Promise((r) => setTimeout(r, 200));
    expect(pods.map((p) => p.requests)).toEqual(frozen);
  });

  it.runIf(process.platform === "linux")("runs its workers at a lower priority than the request path", async () => {
    const niced = () =>
      readdirSync("/proc/self/task").filter((tid) => {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
        // Field 19 of stat is the nice value; the fields after the command name start at field 3.
        return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]) === SCRAPE_WORKER_NICE;
      }).length;
    const before = niced();
    const scraper = new MetricsScraper({ source: new FakeSource([]), workers: 2 });
    scrapers.push(scraper);
    scraper.start();
    await vi.waitFor(() => expect(niced()).toBe(before + 2), WAIT);
    expect(os.getPriority()).not.toBe(SCRAPE_WORKER_NICE);
  });

  const pinnable = process.platform === "linux" && spawnSync("taskset", ["--version"]).status === 0;
  it.runIf(pinnable)("pins each worker's thread to the CPUs it is given, again after a restart", async () => {
    const cpu = (allowedCpus() ?? [0]).at(-1)!;
    // This process is not pinned, so a thread whose mask is exactly [cpu] is a worker that pinned itself.
    const pinned = () =>
      readdirSync("/proc/self/task").filter((tid) => {
        const mask = threadCpus(process.pid, Number(tid));
        return mask !== undefined && mask.length === 1 && mask[0] === cpu;
      });
    const before = new Set(pinned());
    const mine = () => pinned().filter((t) => !before.has(t));
    const scraper = new MetricsScraper({ source: new FakeSource([]), workers: 2, workerCpus: [cpu] });
    scrapers.push(scraper);
    scraper.start();
    await vi.waitFor(() => expect(mine()).toHaveLength(2), WAIT);
    const first = mine();
    scraper.crashWorkerForTest(0);
    // The replacement is created by this (unpinned) thread and pins itself.
    await vi.waitFor(() => {
      const now = mine();
      expect(now).toHaveLength(2);
      expect(now).not.toEqual(first);
    }, WAIT);
  });

  it("refuses an invalid worker count", () => {
    const source = new FakeSource([]);
    expect(() => new MetricsScraper({ source, workers: -1 })).toThrow(/workers/);
    expect(() => new MetricsScraper({ source, workers: 1.5 })).toThrow(/workers/);
    expect(() => new MetricsScraper({ source, workers: 1000 })).toThrow(/workers/);
  });
});

describe("record batching", () => {
  it("posts a batch within a tenth of the scrape interval, 5 ms at most", () => {
    expect(flushDelayMs(50)).toBe(5);
    expect(flushDelayMs(1_000)).toBe(5);
    expect(flushDelayMs(10)).toBe(1);
    expect(flushDelayMs(1)).toBe(0.5);
  });
});
