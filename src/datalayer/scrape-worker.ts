/**
 * Worker-thread entry of the scraper (docs/design/model-servers.md §9): runs the same poll loops as the in-process
 * mode (scrape-loop.ts: HTTP through http-get.ts, parse, extract, backoff, idle interval, `/v1/models`) on copies of its
 * shard's endpoints, and posts what each scrape wrote back to the main thread in batches (scrape-wire.ts). The
 * request path never runs a line of this: a fleet of thousands of pods scraped 20 times a second costs the main
 * event loop only the application of compact records.
 */
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { pinThreadSync, threadId } from "../common/affinity.js";
import type { Endpoint } from "../datastore/types.js";
import type { Logger } from "../observability/logger.js";
import { EngineRegistry } from "./engines.js";
import { type EndpointSource, ScrapeLoops, type ScrapeResult } from "./scrape-loop.js";
import {
  F_BLOCK_SIZE,
  F_DURATION,
  F_ID,
  F_KV,
  F_MAX_ACTIVE,
  F_NUM_BLOCKS,
  F_OK,
  F_RUNNING,
  F_UPDATE_TIME,
  F_VALID_UNTIL,
  F_VARS,
  F_WAITING,
  type FailVars,
  type FromWorker,
  monotonicMs,
  type OkVars,
  RECORD,
  type ScrapeWorkerData,
  type ToWorker,
  type WireEndpoint,
} from "./scrape-wire.js";

const port = parentPort;
if (port === null) throw new Error("scrape-worker.ts runs only as a worker thread");
const data = workerData as ScrapeWorkerData;
lowerPriority(data.nice);
/** Why the pin to `data.cpus` failed, logged once the logger below exists. */
const pinError = pinOwnThread(data.cpus);

/**
 * Lowers this thread's scheduling priority (Linux: setpriority on the thread id), so that when the cores are
 * contended the request path's thread runs first and scraping waits (docs/design/model-servers.md §9). Best effort:
 * elsewhere, or if refused, the thread keeps the process's priority.
 */
function lowerPriority(nice: number | undefined): void {
  if (nice === undefined) return;
  try {
    const tid = threadId();
    if (tid !== undefined) setPriority(tid, nice);
  } catch {
    // Not Linux, or not allowed: nothing to do.
  }
}
/**
 * Pins this thread to the CPUs the main thread chose for everything but requests (`--pin-threads`,
 * src/common/affinity.ts): a worker started or restarted after the main thread pinned itself would otherwise run
 * on the request CPU, inherited from it. Returns why it failed, or undefined.
 */
function pinOwnThread(cpus: readonly number[] | undefined): string | undefined {
  if (cpus === undefined || cpus.length === 0) return undefined;
  const tid = threadId();
  if (tid === undefined) return "this thread's id is unknown (not Linux, or /proc is not mounted)";
  return pinThreadSync(tid, cpus);
}

/** Adds to this thread's performance.now() to give the main thread's (both count from the same monotonic clock). */
const clockShift = monotonicMs() - performance.now() + data.mainClockShift;

function post(msg: FromWorker, transfer?: ArrayBuffer[]): void {
  port!.postMessage(msg, transfer);
}

// --- Logging: lines go to the main thread's logger; the loops already rate-limit them per endpoint.
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
const threshold = LEVELS[data.logLevel] ?? Number.POSITIVE_INFINITY;
function forward(level: string) {
  return (obj: unknown, msg?: string) => {
    if ((LEVELS[level] ?? 0) < threshold) return;
    // An Error inside `obj` clones fine; anything uncloneable is reduced to text rather than lost.
    try {
      post({ op: "log", level, obj, msg: msg ?? "" });
    } catch {
      post({ op: "log", level, obj: { detail: String(obj) }, msg: msg ?? "" });
    }
  };
}
const logger = {
  level: data.logLevel,
  trace: forward("trace"),
  debug: forward("debug"),
  info: forward("info"),
  warn: forward("warn"),
  error: forward("error"),
  fatal: forward("fatal"),
  isLevelEnabled: (level: string) => (LEVELS[level] ?? 0) >= threshold,
} as unknown as Logger;
if (pinError !== undefined)
  logger.warn({ cpus: data.cpus, err: pinError }, "--pin-threads: this scrape worker could not pin its thread");

// --- The shard's endpoints, as copies the loops write into.
const byId = new Map<number, Endpoint>();
const idOf = new Map<Endpoint, number>();
/** Per endpoint, the variable-length parts last sent: unchanged ones are not sent again. */
const lastVars = new Map<number, OkVars>();
/** The loops are fed through change() (start({ followSource: false })): this source is never read. */
const source: EndpointSource = {
  endpoints: () => [],
  onEndpointsChanged: () => () => {},
};

function copyOf(w: WireEndpoint): Endpoint {
  return {
    key: w.key,
    name: w.name,
    podName: w.podName,
    namespace: w.namespace,
    address: w.address,
    port: w.port,
    rank: w.rank,
    labels: w.labels,
    engine: w.engine,
    metrics: undefined,
    models: undefined,
    inflightRequests: 0,
    inflightTokens: 0,
    routedRequests: 0,
    lastScrapeError: undefined,
  };
}

// --- Batching: records accumulate in one buffer, posted (transferred) a short while after the first.
let buf = new Float64Array(RECORD * data.maxBatch);
let count = 0;
let vars: (OkVars | FailVars)[] = [];
let flushTimer: NodeJS.Timeout | undefined;

function flush(): void {
  if (flushTimer !== undefined) {
    clearTimeout(flushTimer);
    flushTimer = undefined;
  }
  if (count === 0) return;
  const nums = buf.slice(0, count * RECORD);
  post({ op: "batch", nums, vars }, [nums.buffer]);
  count = 0;
  vars = [];
}

/** The set holds exactly the array's members, in its iteration order (sets built from the same text keep it). */
function sameMembers(set: ReadonlySet<string>, list: readonly string[]): boolean {
  if (set.size !== list.length) return false;
  let i = 0;
  for (const v of set) if (v !== list[i++]) return false;
  return true;
}

const EMPTY: ReadonlySet<string> = new Set();

function onScrape(endpoint: Endpoint, result: ScrapeResult): void {
  const id = idOf.get(endpoint);
  if (id === undefined) return;
  if (count === data.maxBatch) flush();
  const o = count * RECORD;
  count++;
  buf.fill(0, o, o + RECORD);
  buf[o + F_ID] = id;
  buf[o + F_DURATION] = result.durationMs;
  buf[o + F_VARS] = -1;
  const m = endpoint.metrics;
  if (result.ok && m !== undefined) {
    buf[o + F_OK] = 1;
    buf[o + F_UPDATE_TIME] = m.updateTime + clockShift;
    const until = endpoint.metricsValidUntil;
    buf[o + F_VALID_UNTIL] = until === undefined ? Number.NaN : until + clockShift;
    buf[o + F_WAITING] = m.waitingQueueSize;
    buf[o + F_RUNNING] = m.runningRequestsSize;
    buf[o + F_KV] = m.kvCacheUsagePercent;
    buf[o + F_MAX_ACTIVE] = m.maxActiveModels;
    buf[o + F_BLOCK_SIZE] = m.cacheBlockSize;
    buf[o + F_NUM_BLOCKS] = m.cacheNumBlocks;
    // Compared in place, not joined into a key: this runs 20 times a second per endpoint, and the parts rarely change.
    const last = lastVars.get(id);
    const served = m.servedModels ?? EMPTY;
    if (
      last === undefined ||
      last.lora !== m.lora ||
      last.unreported !== m.unreported ||
      !sameMembers(m.activeModels, last.active) ||
      !sameMembers(m.waitingModels, last.waiting) ||
      !sameMembers(served, last.served)
    ) {
      const next: OkVars = {
        lora: m.lora,
        unreported: m.unreported,
        active: [...m.activeModels],
        waiting: [...m.waitingModels],
        served: [...served],
      };
      lastVars.set(id, next);
      buf[o + F_VARS] = vars.length;
      vars.push(next);
    }
  } else {
    const err = result.error;
    buf[o + F_VARS] = vars.length;
    vars.push({
      error: endpoint.lastScrapeError ?? err?.message ?? "scrape failed",
      reason: err?.reason ?? "network",
      statusCode: err?.statusCode,
    } satisfies FailVars);
  }
  flushTimer ??= setTimeout(flush, data.flushMs);
}

function onModels(endpoint: Endpoint): void {
  const id = idOf.get(endpoint);
  if (id === undefined) return;
  const models = endpoint.models;
  post(
    models === undefined
      ? { op: "models", id, ids: null, adapters: [], updateTime: 0 }
      : {
          op: "models",
          id,
          ids: [...models.ids],
          adapters: [...models.adapters],
          updateTime: models.updateTime + clockShift,
        },
  );
}

const s = data.settings;
const loops = new ScrapeLoops({
  source,
  intervalMs: s.intervalMs,
  timeoutMs: s.timeoutMs,
  path: s.path,
  scheme: s.scheme,
  ...(s.metricsPort === undefined ? {} : { metricsPort: s.metricsPort }),
  insecureSkipVerify: s.insecureSkipVerify,
  engines: new EngineRegistry(s.engines),
  maxBackoffMs: s.maxBackoffMs,
  maxBodyBytes: s.maxBodyBytes,
  modelsIntervalMs: s.modelsIntervalMs,
  maxSeries: s.maxSeries,
  idleIntervalMs: s.idleIntervalMs,
  failureLogIntervalMs: s.failureLogIntervalMs,
  joinRatePerSecond: s.joinRatePerSecond,
  logger,
  hooks: { onScrape, onModels },
});
loops.start({ followSource: false });

port.on("message", (msg: ToWorker) => {
  switch (msg.op) {
    case "add": {
      const added: Endpoint[] = [];
      for (const w of msg.endpoints) {
        const copy = copyOf(w);
        byId.set(w.id, copy);
        idOf.set(copy, w.id);
        added.push(copy);
      }
      const join = msg.join;
      loops.change(
        added,
        [],
        join === undefined ? undefined : { size: join.size, startedAt: join.startedAt - clockShift, index: join.index },
      );
      return;
    }
    case "remove": {
      const removed: Endpoint[] = [];
      for (const id of msg.ids) {
        const copy = byId.get(id);
        if (copy === undefined) continue;
        byId.delete(id);
        idOf.delete(copy);
        lastVars.delete(id);
        removed.push(copy);
      }
      loops.change([], removed);
      return;
    }
    case "busy":
      msg.ids.forEach((id, i) => {
        const copy = byId.get(id);
        if (copy !== undefined) copy.inflightRequests = msg.busy[i] ?? 0;
      });
      return;
    case "stop":
      void loops.stop().then(() => {
        flush();
        buf = new Float64Array(0);
        post({ op: "stopped" });
        port.close();
      });
      return;
    case "crash":
      setImmediate(() => {
        throw new Error("scrape worker crash requested");
      });
      return;
  }
});
