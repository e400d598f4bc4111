/**
 * The metrics scraper the EPP runs (docs/design/model-servers.md §4, §6, §9): every endpoint's `/metrics` polled at
 * `--refresh-metrics-interval`, its numbers written into `endpoint.metrics` for the scorers to read synchronously.
 *
 * Scraping must never delay a request, and at fleet scale it cannot share the request path's event loop: with 1,000
 * pods at 50 ms, the HTTP, parsing and extraction alone took more than a core, and sequential ext_proc requests
 * waited 29 ms (p50) behind it. So by default the poll loops (scrape-loop.ts) run in `--scrape-workers` worker
 * threads, each owning the endpoints whose key hashes to it, and each doing its own HTTP (http-get.ts). What the main
 * thread does per scrape is apply one fixed-size record: a fresh EndpointMetrics object from a few numbers, plus the
 * adapter/served-model sets only when they changed (scrape-wire.ts). Why records and not a SharedArrayBuffer the
 * request path reads in place: the scorers read `endpoint.metrics` as a plain object, many times per request, and
 * the Endpoint contract is that it is replaced wholesale per scrape, never mutated in place; a slot read in place
 * would need an object built per read or a new scorer interface, and the variable-length parts need a message
 * anyway (docs/design/model-servers.md §9). Applying a record is
 * a few microseconds, hooks included (3 % of a core for ~11,000 records a second at 1,000 pods, bench/README.md,
 * "Scraping at scale"), and records are applied in slices of
 * APPLY_SLICE, with the event loop free for requests in between.
 *
 * `workers: 0` keeps the loops on the main event loop, writing straight into the endpoints (small fleets, tests).
 *
 * In both modes this front is what the datastore calls with endpoint changes, on the request path's thread. A
 * resource reload hands it every added and removed endpoint in one call (20k each way), so a change of more than
 * JOIN_BURST endpoints is only queued there, in O(1), and forwarded (to the workers, or to the in-process loops) in
 * order, at most CHANGE_SLICE entries and about CHANGE_SLICE_MS per event-loop turn; the loops spread the first
 * scrapes of a large join (scrape-loop.ts, change(); docs/security.md, "Resource files").
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { ConfigError } from "../common/errors.js";
import type { Endpoint, EndpointMetrics } from "../datastore/types.js";
import { type Logger, silentLogger } from "../observability/logger.js";
import type { EngineRegistry } from "./engines.js";
import {
  type Deferred,
  deferred,
  type EndpointSource,
  JOIN_BURST,
  type JoinSpread,
  ScrapeError,
  type ScrapeLoopOptions,
  ScrapeLoops,
  type ScraperHooks,
  type ScrapeSettings,
} from "./scrape-loop.js";
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

export {
  DEFAULT_IDLE_SCRAPE_INTERVAL_MS,
  DEFAULT_JOIN_RATE_PER_SECOND,
  DEFAULT_MAX_METRICS_BODY_BYTES,
  DEFAULT_MAX_SCRAPE_BACKOFF_MS,
  DEFAULT_MODELS_INTERVAL_MS,
  type EndpointSource,
  JOIN_BURST,
  type JoinSpread,
  MAX_MODEL_IDS,
  MAX_MODELS_BODY_BYTES,
  METRICS_ACCEPT_HEADER,
  MODELS_PATH,
  parseModelList,
  SCRAPE_FAILURE_REASONS,
  ScrapeError,
  type ScrapeFailureReason,
  type ScrapeResult,
  type ScraperHooks,
} from "./scrape-loop.js";

/**
 * Default `--scrape-workers`: one thread per core beyond the first, at most 2, at least 1. On a 2-core box that is
 * one worker, which leaves the other core to the request path; more threads than cores only add switching.
 */
export const DEFAULT_SCRAPE_WORKERS = Math.max(1, Math.min(2, availableParallelism() - 1));
/** Upper bound of `--scrape-workers`. */
export const MAX_SCRAPE_WORKERS = 64;
/** Records the main thread applies per event-loop turn: ≈ 0.3 ms of work, so a request waits at most that long. */
export const APPLY_SLICE = 256;
/**
 * Queued endpoint removals and additions forwarded per event-loop turn at most (docs/security.md, "Resource files"):
 * each costs the main thread a few µs (an id, or a copy for the worker; with workers: 0, a target, or a socket close).
 */
export const CHANGE_SLICE = 256;
/** ... and main-thread time per turn spent on them, about. */
const CHANGE_SLICE_MS = 2;
/**
 * A worker posts its records this long after the first one of a batch (≤ 200 messages a second per worker), and
 * never later than a tenth of the scrape interval, so batching adds at most 10 % to a record's age: 5 ms at the
 * default 50 ms, 1 ms at the 10 ms the time-scaled benchmark uses (bench/README.md, "Why the real-time bench misses
 * what virtual time meets").
 */
const FLUSH_MS = 5;
/** The flush delay for a scrape interval (see FLUSH_MS). */
export function flushDelayMs(intervalMs: number): number {
  return Math.max(0.5, Math.min(FLUSH_MS, intervalMs / 10));
}
/** Or as soon as this many are waiting. */
const MAX_BATCH = 1024;
/** A dead worker is restarted after 100 ms, doubling per consecutive death up to this. */
const MAX_RESTART_DELAY_MS = 5_000;
/**
 * The scrape workers' nice value (their threads only; Linux). When the cores are contended, the kernel then runs
 * the request path's thread before scraping, instead of sharing the time evenly: a late scrape costs freshness
 * (bounded by the staleness rules), a late request costs its latency.
 */
export const SCRAPE_WORKER_NICE = 10;
/** How long stop() waits for a worker to close its connections before terminating it. */
const STOP_GRACE_MS = 5_000;

export interface MetricsScraperHooks extends ScraperHooks {
  /** A scrape worker died (uncaught error or exit) and will be restarted. Must not throw (it is guarded). */
  onWorkerExit?(worker: number, error: Error): void;
}

export interface MetricsScraperOptions extends ScrapeLoopOptions {
  /**
   * Worker threads that scrape (`--scrape-workers`); 0 runs the loops on the main event loop. Default
   * DEFAULT_SCRAPE_WORKERS.
   */
  workers?: number;
  /**
   * CPUs each worker pins its own thread to when it starts (`--pin-threads`; src/common/affinity.ts). A restarted
   * worker would otherwise inherit the request thread's CPU from the thread that creates it.
   */
  workerCpus?: readonly number[];
  hooks?: MetricsScraperHooks;
}

const EMPTY: ReadonlySet<string> = new Set<string>();

function setOf(list: readonly string[]): ReadonlySet<string> {
  return list.length === 0 ? EMPTY : new Set(list);
}

/** Main-thread state of one endpoint scraped by a worker. */
interface Remote {
  readonly id: number;
  readonly endpoint: Endpoint;
  readonly shard: number;
  attempted: boolean;
  readonly firstAttempt: Deferred;
  /** The busy flag last sent to the worker. */
  busy: boolean;
  lora: "reported" | "pending" | undefined;
  unreported: string | undefined;
  activeModels: ReadonlySet<string>;
  waitingModels: ReadonlySet<string>;
  servedModels: ReadonlySet<string>;
}

interface Shard {
  readonly index: number;
  worker: Worker | undefined;
  /** Set by an `error` event, reported with the exit. */
  lastError: Error | undefined;
  /** Deaths since this shard's worker last delivered a batch. */
  deaths: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** Resolves when the current worker has exited. */
  exited: Promise<void>;
}

/** A datastore change, forwarded from its cursors on. */
interface QueuedChange {
  readonly added: readonly Endpoint[];
  readonly removed: readonly Endpoint[];
  /** Next index to forward in each list; removals go first. */
  addedAt: number;
  removedAt: number;
  /** performance.now() when the change arrived: its first scrapes are spread from then. */
  readonly startedAt: number;
}

/** Consecutive entries of one kind (and, for additions, of one change) bound for one shard: one message. */
type Run<R, A> =
  | { readonly kind: "remove"; readonly items: R[] }
  | { readonly kind: "add"; readonly items: A[]; readonly index: number[]; readonly change: QueuedChange };

/**
 * What one turn forwards, per shard, in order. A worker's port delivers in order, so a remove and a re-add of one key
 * (or an add and a later remove) arrive as they happened; runs only merge neighbours, never reorder them.
 */
class Outbox<R, A> {
  readonly #runs: (Run<R, A> | undefined)[];
  readonly #send: (shard: number, run: Run<R, A>) => void;

  constructor(shards: number, send: (shard: number, run: Run<R, A>) => void) {
    this.#runs = new Array<Run<R, A> | undefined>(shards).fill(undefined);
    this.#send = send;
  }

  remove(shard: number, item: R): void {
    let run = this.#runs[shard];
    if (run?.kind !== "remove") {
      this.#flush(shard);
      run = { kind: "remove", items: [] };
      this.#runs[shard] = run;
    }
    run.items.push(item);
  }

  add(shard: number, item: A, change: QueuedChange, index: number): void {
    let run = this.#runs[shard];
    if (run?.kind !== "add" || run.change !== change) {
      this.#flush(shard);
      run = { kind: "add", items: [], index: [], change };
      this.#runs[shard] = run;
    }
    run.items.push(item);
    run.index.push(index);
  }

  flush(): void {
    for (let shard = 0; shard < this.#runs.length; shard++) this.#flush(shard);
  }

  #flush(shard: number): void {
    const run = this.#runs[shard];
    if (run === undefined) return;
    this.#runs[shard] = undefined;
    this.#send(shard, run);
  }
}

interface Pending {
  readonly nums: Float64Array;
  readonly vars: readonly (OkVars | FailVars)[];
  at: number;
}

function hashKey(key: string): number {
  // FNV-1a: the same key always lands on the same worker, so a remove and a re-add stay in one ordered channel.
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class MetricsScraper {
  /** The in-process loops (workers: 0), or the validated settings holder whose `settings` the workers start from. */
  readonly #loops: ScrapeLoops;
  readonly #workers: number;
  readonly #workerCpus: readonly number[] | undefined;
  readonly #settings: ScrapeSettings;
  readonly #source: EndpointSource;
  readonly #logger: Logger;
  readonly #hooks: MetricsScraperHooks;
  readonly #mainClockShift = performance.now() - monotonicMs();

  readonly #targets = new Map<string, Remote>();
  readonly #byId = new Map<number, Remote>();
  readonly #shards: Shard[] = [];
  readonly #queue: Pending[] = [];
  #draining = false;
  #nextId = 1;
  #busyTimer: NodeJS.Timeout | undefined;
  readonly #started = deferred();
  #state: "new" | "running" | "stopped" = "new";
  #unsubscribe: (() => void) | undefined;
  #stopping: Promise<void> | undefined;
  /** Endpoint changes not forwarded yet, oldest first; #changes[0] is forwarded from its cursors on. */
  #changes: QueuedChange[] = [];
  #changeScheduled: NodeJS.Immediate | undefined;
  /** Where forwarded entries gather until the end of a turn: the in-process loops (workers: 0), or the workers. */
  readonly #toLoops: Outbox<Endpoint, Endpoint> | undefined;
  readonly #toWorkers: Outbox<number, WireEndpoint> | undefined;

  constructor(options: MetricsScraperOptions) {
    // Validates every option (ConfigError naming it), in either mode.
    this.#loops = new ScrapeLoops(options);
    const workers = options.workers ?? DEFAULT_SCRAPE_WORKERS;
    if (!Number.isInteger(workers) || workers < 0 || workers > MAX_SCRAPE_WORKERS) {
      throw new ConfigError(`must be an integer 0-${MAX_SCRAPE_WORKERS}, got ${String(workers)}`, undefined, "workers");
    }
    this.#workers = workers;
    this.#workerCpus = options.workerCpus;
    this.#settings = this.#loops.settings;
    this.#source = options.source;
    this.#logger = options.logger ?? silentLogger;
    this.#hooks = options.hooks ?? {};
    if (workers === 0) {
      this.#toLoops = new Outbox<Endpoint, Endpoint>(1, (_shard, run) => {
        if (run.kind === "remove") this.#loops.change([], run.items);
        else this.#loops.change(run.items, [], joinOf(run.change, run.index));
      });
    } else {
      this.#toWorkers = new Outbox<number, WireEndpoint>(workers, (shard, run) => {
        const w = this.#shards[shard]?.worker;
        if (w === undefined) return; // restarting: #spawn sends the shard's current endpoints
        if (run.kind === "remove") w.postMessage({ op: "remove", ids: run.items } satisfies ToWorker);
        else w.postMessage({ op: "add", endpoints: run.items, join: joinOf(run.change, run.index) } satisfies ToWorker);
      });
    }
  }

  get engines(): EngineRegistry {
    return this.#loops.engines;
  }

  /** Number of endpoints being polled: queued removals still are, queued additions not yet. */
  get size(): number {
    return this.#workers === 0 ? this.#loops.size : this.#targets.size;
  }

  /** Queued additions not forwarded to the loops yet (tests, bench/reload/join-cost.ts). */
  get joining(): number {
    let n = 0;
    for (const c of this.#changes) n += c.added.length - c.addedAt;
    return n;
  }

  /** Queued removals not forwarded to the loops yet: those endpoints are still polled. */
  get retiring(): number {
    let n = 0;
    for (const c of this.#changes) n += c.removed.length - c.removedAt;
    return n;
  }

  /** Worker threads currently alive (0 in in-process mode and after stop()). */
  get liveWorkers(): number {
    let n = 0;
    for (const s of this.#shards) if (s.worker !== undefined) n++;
    return n;
  }

  /** Starts polling the source's current endpoints and follows its changes. Idempotent; throws after stop(). */
  start(): void {
    if (this.#state === "running") return;
    if (this.#state === "stopped") throw new Error("MetricsScraper: start() after stop()");
    this.#state = "running";
    if (this.#workers === 0) {
      this.#loops.start({ followSource: false });
      this.#startFollowing();
      this.#started.resolve();
      return;
    }
    for (let i = 0; i < this.#workers; i++) {
      const shard: Shard = {
        index: i,
        worker: undefined,
        lastError: undefined,
        deaths: 0,
        restartTimer: undefined,
        exited: Promise.resolve(),
      };
      this.#shards.push(shard);
      this.#spawn(shard);
    }
    this.#startFollowing();
    if (this.#settings.idleIntervalMs > 0) {
      // The loops need to know when this EPP routes to an idle endpoint (it ends the idleness); the worker cannot
      // see the main thread's in-flight counters, so their zero / non-zero state is mirrored once per interval.
      this.#busyTimer = setInterval(() => this.#syncBusy(), this.#settings.intervalMs);
      this.#busyTimer.unref();
    }
    this.#started.resolve();
  }

  /**
   * Resolves once every endpoint known when this is called (or, before start(), when start() runs) has had one
   * scrape attempt, successful or not. Endpoints removed in the meantime count as done. Used for readiness.
   */
  async firstRound(): Promise<void> {
    await this.#started.promise;
    if (this.#workers === 0) return this.#loops.firstRound();
    const pending: Promise<void>[] = [];
    for (const t of this.#targets.values()) if (!t.attempted) pending.push(t.firstAttempt.promise);
    await Promise.all(pending);
  }

  /** Stops every loop and worker, closing every connection. No timer, socket or thread survives it. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /** Tests: makes worker `index` throw an uncaught error, as a bug in it would. */
  crashWorkerForTest(index: number): void {
    this.#shards[index]?.worker?.postMessage({ op: "crash" } satisfies ToWorker);
  }

  async #stop(): Promise<void> {
    const wasRunning = this.#state === "running";
    this.#state = "stopped";
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    // Queued removals' endpoints are still polled and stop with the rest; queued additions never started.
    if (this.#changeScheduled !== undefined) clearImmediate(this.#changeScheduled);
    this.#changeScheduled = undefined;
    this.#changes = [];
    if (this.#workers === 0) {
      this.#started.resolve(); // a firstRound() awaiting a start() that never comes
      await this.#loops.stop();
      return;
    }
    if (this.#busyTimer !== undefined) clearInterval(this.#busyTimer);
    this.#busyTimer = undefined;
    this.#queue.length = 0;
    for (const t of this.#targets.values()) t.firstAttempt.resolve();
    this.#targets.clear();
    this.#byId.clear();
    this.#started.resolve();
    if (!wasRunning) return;
    await Promise.all(
      this.#shards.map(async (shard) => {
        if (shard.restartTimer !== undefined) clearTimeout(shard.restartTimer);
        shard.restartTimer = undefined;
        const w = shard.worker;
        if (w === undefined) return;
        // The worker stops its loops (aborting scrapes, closing its connections), says so and exits.
        const stopped = new Promise<void>((resolve) => {
          const grace = setTimeout(resolve, STOP_GRACE_MS);
          grace.unref();
          w.on("message", (m: FromWorker) => {
            if (m.op === "stopped") {
              clearTimeout(grace);
              resolve();
            }
          });
          void shard.exited.then(() => {
            clearTimeout(grace);
            resolve();
          });
        });
        w.postMessage({ op: "stop" } satisfies ToWorker);
        await stopped;
        await w.terminate();
        await shard.exited;
      }),
    );
  }

  #spawn(shard: Shard): void {
    const data: ScrapeWorkerData = {
      settings: this.#settings,
      logLevel: this.#logger.level,
      mainClockShift: this.#mainClockShift,
      flushMs: flushDelayMs(this.#settings.intervalMs),
      maxBatch: MAX_BATCH,
      nice: SCRAPE_WORKER_NICE,
      cpus: this.#workerCpus,
    };
    let w: Worker;
    try {
      w = spawnWorker(data);
    } catch (err) {
      this.#died(shard, err instanceof Error ? err : new Error(String(err)));
      return;
    }
    // A scraper that was never stopped must not keep the process alive.
    w.unref();
    shard.worker = w;
    shard.lastError = undefined;
    let exited!: () => void;
    shard.exited = new Promise<void>((r) => {
      exited = r;
    });
    w.on("message", (m: FromWorker) => this.#onMessage(shard, w, m));
    w.on("error", (err) => {
      shard.lastError = err;
    });
    w.on("exit", (code) => {
      exited();
      if (shard.worker !== w) return;
      shard.worker = undefined;
      if (this.#state !== "running") return;
      this.#died(shard, shard.lastError ?? new Error(`scrape worker exited with code ${code}`));
    });
    // Every endpoint of this shard, again after a restart: the new worker starts from nothing.
    const endpoints: WireEndpoint[] = [];
    for (const t of this.#targets.values()) {
      if (t.shard !== shard.index) continue;
      t.busy = false;
      endpoints.push(wire(t.id, t.endpoint));
    }
    if (endpoints.length > 0) w.postMessage({ op: "add", endpoints } satisfies ToWorker);
  }

  /** Logs and counts a dead worker and restarts it after a backoff; its endpoints keep their metrics meanwhile. */
  #died(shard: Shard, error: Error): void {
    shard.deaths++;
    const delay = Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** Math.min(shard.deaths - 1, 16));
    // One line per death: deaths are spaced by the growing restart delay, so this cannot flood.
    this.#logger.error(
      { worker: shard.index, err: error, restartInMs: delay, endpoints: this.#shardSize(shard.index) },
      "scrape worker died; restarting it (its endpoints keep their last metrics and go stale meanwhile)",
    );
    try {
      this.#hooks.onWorkerExit?.(shard.index, error);
    } catch (err) {
      this.#logger.error({ err }, "onWorkerExit hook threw");
    }
    shard.restartTimer = setTimeout(() => {
      shard.restartTimer = undefined;
      if (this.#state === "running") this.#spawn(shard);
    }, delay);
    shard.restartTimer.unref();
  }

  #shardSize(index: number): number {
    let n = 0;
    for (const t of this.#targets.values()) if (t.shard === index) n++;
    return n;
  }

  /**
   * Start-up: every current endpoint at once, not queued, so that firstRound() (readiness) waits on all of them;
   * their first scrapes are spread like any large join. Then the datastore's changes.
   */
  #startFollowing(): void {
    this.#unsubscribe = this.#source.onEndpointsChanged((added, removed) => this.#onChanged(added, removed));
    this.#forwardAll({
      added: this.#source.endpoints(),
      removed: [],
      addedAt: 0,
      removedAt: 0,
      startedAt: performance.now(),
    });
  }

  /**
   * The datastore's listener, on the request path's thread. A resource reload may add and remove 20k endpoints in
   * one call; turning them into targets (or worker messages) here took 20-33 ms of CPU at 20k (bench/README.md,
   * "Resource reloads"). So a change of more than JOIN_BURST endpoints, or any change while others wait, is only
   * queued here (O(1)) and forwarded in order by #forwardSome, a slice per event-loop turn. Until its removal is
   * forwarded a removed endpoint may be scraped once more, which is harmless: its object is no longer in the
   * datastore (docs/security.md, "Resource files"). A pod or two (an informer event) is forwarded at once.
   */
  #onChanged(added: readonly Endpoint[], removed: readonly Endpoint[]): void {
    if (this.#state !== "running" || (added.length === 0 && removed.length === 0)) return;
    const change: QueuedChange = { added, removed, addedAt: 0, removedAt: 0, startedAt: performance.now() };
    if (this.#changes.length === 0 && added.length + removed.length <= JOIN_BURST) {
      this.#forwardAll(change);
      return;
    }
    this.#changes.push(change);
    this.#changeScheduled ??= setImmediate(() => this.#forwardSome());
  }

  /** Forwards up to CHANGE_SLICE queued entries (and about CHANGE_SLICE_MS), oldest change first, then yields. */
  #forwardSome(): void {
    this.#changeScheduled = undefined;
    if (this.#state !== "running") return;
    const start = performance.now();
    let budget = CHANGE_SLICE;
    while (budget > 0 && this.#changes.length > 0) {
      const c = this.#changes[0]!;
      budget -= this.#forwardEntries(c, Math.min(budget, 32));
      if (c.removedAt >= c.removed.length && c.addedAt >= c.added.length) this.#changes.shift();
      // In-process, the loops do the work when handed the entries, and closing a socket costs tens of µs: hand
      // them over per 32 and bound the turn by time as well as by count. Workers get one message per run instead.
      this.#toLoops?.flush();
      if (performance.now() - start > CHANGE_SLICE_MS) break;
    }
    this.#flush();
    if (this.#changes.length > 0) this.#changeScheduled = setImmediate(() => this.#forwardSome());
  }

  /** Forwards all of `change` now. */
  #forwardAll(change: QueuedChange): void {
    this.#forwardEntries(change, Number.POSITIVE_INFINITY);
    this.#flush();
  }

  #flush(): void {
    this.#toLoops?.flush();
    this.#toWorkers?.flush();
  }

  /** Forwards up to `limit` entries of `c`, removals first; returns how many. */
  #forwardEntries(c: QueuedChange, limit: number): number {
    const loops = this.#toLoops;
    let done = 0;
    while (done < limit && c.removedAt < c.removed.length) {
      const endpoint = c.removed[c.removedAt++]!;
      if (loops !== undefined) loops.remove(0, endpoint);
      else {
        const t = this.#targets.get(endpoint.key);
        if (t !== undefined && t.endpoint === endpoint) {
          this.#retire(t);
          const hook = this.#hooks.onRemoved;
          if (hook !== undefined) this.#guard(() => hook(endpoint), "onRemoved");
        }
      }
      done++;
    }
    while (done < limit && c.addedAt < c.added.length) {
      const i = c.addedAt++;
      const endpoint = c.added[i]!;
      if (loops !== undefined) loops.add(0, endpoint, c, i);
      else this.#join(endpoint, c, i);
      done++;
    }
    return done;
  }

  /** The endpoint is no longer scraped: its worker is told to drop it; readiness stops waiting on it. */
  #retire(t: Remote): void {
    this.#targets.delete(t.endpoint.key);
    this.#byId.delete(t.id);
    t.firstAttempt.resolve();
    this.#toWorkers?.remove(t.shard, t.id);
  }

  #join(endpoint: Endpoint, change: QueuedChange, index: number): void {
    const existing = this.#targets.get(endpoint.key);
    if (existing !== undefined) {
      if (existing.endpoint === endpoint) return;
      this.#retire(existing);
    }
    const t: Remote = {
      id: this.#nextId++,
      endpoint,
      shard: hashKey(endpoint.key) % this.#workers,
      attempted: false,
      firstAttempt: deferred(),
      busy: false,
      lora: undefined,
      unreported: undefined,
      activeModels: EMPTY,
      waitingModels: EMPTY,
      servedModels: EMPTY,
    };
    this.#targets.set(endpoint.key, t);
    this.#byId.set(t.id, t);
    this.#toWorkers?.add(t.shard, wire(t.id, endpoint), change, index);
  }

  #syncBusy(): void {
    let ids: number[][] | undefined;
    let busy: number[][] | undefined;
    for (const t of this.#targets.values()) {
      const now = t.endpoint.inflightRequests > 0;
      if (now === t.busy) continue;
      t.busy = now;
      ids ??= this.#shards.map(() => []);
      busy ??= this.#shards.map(() => []);
      ids[t.shard]!.push(t.id);
      busy[t.shard]!.push(now ? 1 : 0);
    }
    if (ids === undefined || busy === undefined) return;
    for (const shard of this.#shards) {
      const list = ids[shard.index]!;
      if (list.length > 0)
        shard.worker?.postMessage({ op: "busy", ids: list, busy: busy[shard.index]! } satisfies ToWorker);
    }
  }

  #onMessage(shard: Shard, w: Worker, m: FromWorker): void {
    if (this.#state !== "running" || shard.worker !== w) return;
    switch (m.op) {
      case "batch":
        shard.deaths = 0;
        this.#queue.push({ nums: m.nums, vars: m.vars, at: 0 });
        if (!this.#draining) {
          this.#draining = true;
          setImmediate(() => this.#drain());
        }
        return;
      case "models": {
        const t = this.#byId.get(m.id);
        if (t === undefined) return;
        t.endpoint.models =
          m.ids === null ? undefined : { ids: new Set(m.ids), adapters: new Map(m.adapters), updateTime: m.updateTime };
        this.#guard(() => this.#hooks.onModels?.(t.endpoint), "onModels");
        return;
      }
      case "log":
        this.#log(m.level, m.obj, m.msg);
        return;
      case "stopped":
        return;
    }
  }

  #log(level: string, obj: unknown, msg: string): void {
    const l = this.#logger;
    switch (level) {
      case "error":
      case "fatal":
        l.error(obj, msg);
        return;
      case "warn":
        l.warn(obj, msg);
        return;
      case "info":
        l.info(obj, msg);
        return;
      default:
        l.debug(obj, msg);
    }
  }

  /** Applies queued records, at most APPLY_SLICE per event-loop turn, so requests run between slices. */
  #drain(): void {
    if (this.#state !== "running") {
      this.#draining = false;
      return;
    }
    let budget = APPLY_SLICE;
    while (budget > 0 && this.#queue.length > 0) {
      const p = this.#queue[0]!;
      const records = p.nums.length / RECORD;
      while (budget > 0 && p.at < records) {
        this.#apply(p.nums, p.at * RECORD, p.vars);
        p.at++;
        budget--;
      }
      if (p.at >= records) this.#queue.shift();
    }
    if (this.#queue.length > 0) setImmediate(() => this.#drain());
    else this.#draining = false;
  }

  #apply(nums: Float64Array, o: number, vars: readonly (OkVars | FailVars)[]): void {
    const t = this.#byId.get(nums[o + F_ID]!);
    if (t === undefined) return; // removed since: its outcome no longer matters
    const endpoint = t.endpoint;
    const varIndex = nums[o + F_VARS]!;
    const durationMs = nums[o + F_DURATION]!;
    let result: { ok: boolean; durationMs: number; error?: ScrapeError };
    if (nums[o + F_OK] === 1) {
      if (varIndex >= 0) {
        const v = vars[varIndex] as OkVars;
        t.lora = v.lora;
        t.unreported = v.unreported;
        t.activeModels = setOf(v.active);
        t.waitingModels = setOf(v.waiting);
        t.servedModels = setOf(v.served);
      }
      // Same fields in the same order as extractMetrics builds them: one object shape for the scorers.
      const metrics: EndpointMetrics = {
        waitingQueueSize: nums[o + F_WAITING]!,
        runningRequestsSize: nums[o + F_RUNNING]!,
        kvCacheUsagePercent: nums[o + F_KV]!,
        activeModels: t.activeModels,
        waitingModels: t.waitingModels,
        maxActiveModels: nums[o + F_MAX_ACTIVE]!,
        servedModels: t.servedModels,
        cacheBlockSize: nums[o + F_BLOCK_SIZE]!,
        cacheNumBlocks: nums[o + F_NUM_BLOCKS]!,
        updateTime: nums[o + F_UPDATE_TIME]!,
        lora: t.lora,
        unreported: t.unreported,
      };
      endpoint.metrics = metrics;
      endpoint.lastScrapeError = undefined;
      const until = nums[o + F_VALID_UNTIL]!;
      endpoint.metricsValidUntil = Number.isNaN(until) ? undefined : until;
      result = { ok: true, durationMs };
    } else {
      const v = vars[varIndex] as FailVars | undefined;
      const message = v?.error ?? "scrape failed";
      endpoint.lastScrapeError = message;
      endpoint.metricsValidUntil = undefined;
      const error = new ScrapeError(
        v?.reason ?? "network",
        message,
        v?.statusCode === undefined ? undefined : { statusCode: v.statusCode },
      );
      result = { ok: false, durationMs, error };
    }
    if (!t.attempted) {
      t.attempted = true;
      t.firstAttempt.resolve();
    }
    const hook = this.#hooks.onScrape;
    if (hook !== undefined) this.#guard(() => hook(endpoint, result), "onScrape");
  }

  #guard(fn: () => void, name: string): void {
    try {
      fn();
    } catch (err) {
      this.#logger.error({ err }, `${name} hook threw`);
    }
  }
}

/** The spread of a change's first scrapes, for the part of its additions in one message. */
function joinOf(change: QueuedChange, index: readonly number[]): JoinSpread {
  return { size: change.added.length, startedAt: change.startedAt, index };
}

function wire(id: number, e: Endpoint): WireEndpoint {
  return {
    id,
    key: e.key,
    name: e.name,
    podName: e.podName,
    namespace: e.namespace,
    address: e.address,
    port: e.port,
    rank: e.rank,
    engine: e.engine,
    labels: { ...e.labels },
  };
}

function spawnWorker(data: ScrapeWorkerData): Worker {
  const here = import.meta.url;
  if (here.endsWith(".js")) return new Worker(new URL("./scrape-worker.js", here), { workerData: data });
  // Running from TypeScript sources (tests, tsx). Every EPP a test starts spawns a worker, and a worker that loads
  // tsx first takes ~0.9 s to come up (~0.15 s from one bundled script), so the entry is bundled once per process;
  // if that is not possible the worker registers tsx itself.
  const bundle = bundledWorker(fileURLToPath(new URL("./scrape-worker.ts", here)));
  if (bundle !== undefined) return new Worker(bundle, { eval: true, workerData: data });
  const entry = JSON.stringify(new URL("./scrape-worker.ts", here).href);
  return new Worker(`import("tsx/esm/api").then(({ register }) => { register(); return import(${entry}); })`, {
    eval: true,
    workerData: data,
  });
}

let bundled: string | null | undefined;

/** The worker entry and its imports as one CommonJS script (esbuild, which tsx brings), or undefined. */
function bundledWorker(entry: string): string | undefined {
  if (bundled === undefined) {
    try {
      const esbuild = createRequire(import.meta.url)("esbuild") as {
        buildSync(options: Record<string, unknown>): { outputFiles: { text: string }[] };
      };
      const out = esbuild.buildSync({
        entryPoints: [entry],
        bundle: true,
        platform: "node",
        format: "cjs",
        target: "node20",
        write: false,
        logLevel: "silent",
      });
      bundled = out.outputFiles[0]?.text ?? null;
    } catch {
      bundled = null;
    }
  }
  return bundled ?? undefined;
}
