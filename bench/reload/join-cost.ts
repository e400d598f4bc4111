/**
 * `npx tsx bench/reload/join-cost.ts`: the main-thread CPU one endpoint change costs inside the scraper's listener
 * (the call the datastore makes at the swap of a reload), for the baseline build and the new one, interleaved.
 * N endpoints are added in one change, then removed in one change; the scrape interval is an hour, so no scrape
 * runs during the measurement (their addresses are loopback ports nothing listens on). CPU is the main thread's
 * around the synchronous call; the work a build defers to later turns is measured separately as the largest single
 * turn until its queue is empty (garbage collections that land in a turn included).
 *
 * Env: RELOAD_BASE (default /tmp/reload-base), RELOAD_NEW (default this checkout), JOIN_SIZES (default
 * 2000,10000,20000), JOIN_ROUNDS (default 5).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

type Endpoint = Record<string, unknown> & { key: string };
type Listener = (added: readonly Endpoint[], removed: readonly Endpoint[]) => void;

const HERE = fileURLToPath(new URL(".", import.meta.url));
const ROOTS: Record<string, string> = {
  base: process.env.RELOAD_BASE ?? "/tmp/reload-base",
  new: process.env.RELOAD_NEW ?? join(HERE, "..", ".."),
};
const SIZES = (process.env.JOIN_SIZES ?? "2000,10000,20000").split(",").map(Number);
const ROUNDS = Number(process.env.JOIN_ROUNDS ?? "5");

function endpoint(i: number): Endpoint {
  const address = `127.1.${(i >> 8) & 255}.${i & 255}`;
  return {
    key: `${address}:9`,
    name: `p${i}-rank-0`,
    podName: `p${i}`,
    namespace: "default",
    address,
    port: 9,
    rank: 0,
    labels: {},
    engine: "vllm",
    metrics: undefined,
    inflightRequests: 0,
    inflightTokens: 0,
    routedRequests: 0,
    lastScrapeError: undefined,
    metricsValidUntil: undefined,
    models: undefined,
  };
}

/**
 * Main-thread CPU in ms (Linux schedstat, as bench/reload/probe.mjs), else the whole process's: process.cpuUsage()
 * also counts V8's GC helper threads, which do not hold up the event loop.
 */
const threadMs = (): number => {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").split(" ", 1)[0]) / 1e6;
  } catch {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
};
const cpuMs = (since: number) => threadMs() - since;

/** The largest CPU of one event-loop turn until `done()` holds (what a build defers, sliced or not). */
async function deferredWorst(done: () => boolean): Promise<number> {
  let worst = 0;
  for (let turns = 0; turns < 100_000 && !done(); turns++) {
    const c = threadMs();
    await new Promise((r) => setImmediate(r));
    worst = Math.max(worst, cpuMs(c));
  }
  return worst;
}

async function once(build: string, n: number): Promise<{ add: number; remove: number; deferred: number }> {
  const { MetricsScraper } = (await import(pathToFileURL(join(ROOTS[build]!, "dist/datalayer/scraper.js")).href)) as {
    MetricsScraper: new (
      o: object,
    ) => { start(): void; stop(): Promise<void>; readonly joining?: number; readonly retiring?: number };
  };
  const listeners: Listener[] = [];
  let current: Endpoint[] = [];
  const source = {
    endpoints: () => current,
    onEndpointsChanged: (l: Listener) => {
      listeners.push(l);
      return () => undefined;
    },
  };
  const scraper = new MetricsScraper({ source, intervalMs: 3_600_000, modelsIntervalMs: 0 });
  scraper.start();
  const eps = Array.from({ length: n }, (_, i) => endpoint(i));
  const queued = () => (scraper.joining ?? 0) + (scraper.retiring ?? 0) === 0;
  let c = threadMs();
  current = eps;
  for (const l of listeners) l(eps, []);
  const add = cpuMs(c);
  let deferred = await deferredWorst(queued);
  c = threadMs();
  current = [];
  for (const l of listeners) l([], eps);
  const remove = cpuMs(c);
  deferred = Math.max(deferred, await deferredWorst(queued));
  await scraper.stop();
  return { add, remove, deferred };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const f = (x: number) => x.toFixed(1);
console.log("| endpoints | build | listener CPU, add (ms) | listener CPU, remove (ms) | largest deferred turn (ms) |");
console.log("|---|---|---|---|---|");
for (const n of SIZES) {
  const r: Record<string, { add: number[]; remove: number[]; deferred: number[] }> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const build of round % 2 === 0 ? ["base", "new"] : ["new", "base"]) {
      const x = await once(build, n);
      r[build] ??= { add: [], remove: [], deferred: [] };
      r[build].add.push(x.add);
      r[build].remove.push(x.remove);
      r[build].deferred.push(x.deferred);
    }
  }
  for (const build of ["base", "new"]) {
    const x = r[build]!;
    const cell = (xs: number[]) => `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
    console.log(`| ${n} | ${build} | ${cell(x.add)} | ${cell(x.remove)} | ${cell(x.deferred)} |`);
  }
}
