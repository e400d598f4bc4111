/**
 * The per-endpoint poll loops: polls every endpoint's `/metrics` and replaces `endpoint.metrics` with what it reads
 * (docs/design/model-servers.md §4, §6). By default these loops run inside scrape worker threads, on endpoint
 * copies whose results scraper.ts carries back to the main thread (docs/design/model-servers.md §9); with
 * `--scrape-workers 0` they run on the main event loop on the endpoints themselves.
 *
 * Scheduling never waits on this: it only reads `endpoint.metrics` and judges freshness by `updateTime`.
 *
 * Design rules, each a lesson from GIE's poller:
 * - One setTimeout chain per endpoint, scheduled only after the previous scrape settled, so two scrapes of one
 *   endpoint can never overlap; a scrape slower than the interval simply skips ticks.
 * - One keep-alive connection per origin, one GET at a time (http-get.ts), so 20 scrapes/s reuse one socket; a
 *   connect that does not complete within the scrape deadline fails as `connect`.
 * - The body is always consumed (a non-200 one drained up to 128 KiB, past that its connection is dropped), otherwise
 *   the socket is never returned.
 * - On failure the previous metrics object is kept untouched, so it ages into staleness instead of reading as 0,
 *   and retries back off exponentially up to `maxBackoffMs` (default 2 s, the pool staleness threshold, so a pod that
 *   recovers is fresh again within one staleness window).
 * - The per-request deadline is our own cleared timer calling GetCall.abort() rather than AbortSignal.timeout: the
 *   timer is gone the moment the scrape ends, so stop() leaves nothing behind, and removal aborts the same way.
 */
import { hostPort } from "../common/address.js";
import { errorCode, isConnectFailure } from "../common/connect.js";
import { DEFAULT_REFRESH_METRICS_INTERVAL_MS, DEFAULT_SCRAPE_TIMEOUT_MS } from "../common/constants.js";
import { ConfigError } from "../common/errors.js";
import type { Endpoint, ServedModels } from "../datastore/types.js";
import { type Logger, silentLogger } from "../observability/logger.js";
import { DEFAULT_LOG_THROTTLE_MS, LogThrottle } from "../observability/throttle.js";
import {
  DEFAULT_MAX_SERIES_PER_SIGNAL,
  type EngineConfig,
  EngineRegistry,
  type EngineRegistryOptions,
  extractMetrics,
  ImplausibleMetricsError,
  metricsPathProblem,
} from "./engines.js";
import { createGetClient, type GetCall, type GetClient, GetError } from "./http-get.js";

/** What the scraper needs from the datastore: the current endpoints and a change feed. */
export interface EndpointSource {
  endpoints(): readonly Endpoint[];
  /** Subscribes to membership changes; returns the unsubscribe function. */
  onEndpointsChanged(listener: (added: readonly Endpoint[], removed: readonly Endpoint[]) => void): () => void;
}

export type ScrapeFailureReason =
  /** No response (headers and body) within `timeoutMs`. */
  | "timeout"
  /** TCP/TLS connection could not be established (refused, unreachable, connect timeout). */
  | "connect"
  /** The server answered with a status other than 200. */
  | "status"
  /** The connection failed mid-request or the body was cut short / too large. */
  | "network"
  /** The body lacked a required signal (or was not an exposition at all). */
  | "parse"
  /** The body's numbers cannot be true: negative, too many series, a series twice (ImplausibleMetricsError). */
  | "implausible"
  /** The endpoint's engine type has no metric mapping. */
  | "engine"
  /** The endpoint cannot be turned into a URL. */
  | "target";

/** Every ScrapeFailureReason, e.g. to drop a departed endpoint's error series. */
export const SCRAPE_FAILURE_REASONS: readonly ScrapeFailureReason[] = [
  "timeout",
  "connect",
  "status",
  "network",
  "parse",
  "implausible",
  "engine",
  "target",
];

export class ScrapeError extends Error {
  override readonly name = "ScrapeError";
  constructor(
    readonly reason: ScrapeFailureReason,
    message: string,
    options?: { cause?: unknown; statusCode?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.statusCode = options?.statusCode;
  }
  readonly statusCode: number | undefined;
}

export interface ScrapeResult {
  readonly ok: boolean;
  /** From request start to body completion (or failure). */
  readonly durationMs: number;
  readonly error?: ScrapeError;
}

export interface ScraperHooks {
  /**
   * Called after every scrape attempt, e.g. to count errors and observe latency, once the endpoint's metrics,
   * error and freshness are written. Must not throw (it is guarded).
   */
  onScrape?(endpoint: Endpoint, result: ScrapeResult): void;
  /** Called when a `/v1/models` read replaced or cleared `endpoint.models`. Must not throw (it is guarded). */
  onModels?(endpoint: Endpoint): void;
  /**
   * Called once an endpoint the source removed is no longer scraped: no onScrape for it follows. Also called when
   * the same change put another object under its key (ask the source), never at stop(). Must not throw (it is
   * guarded).
   */
  onRemoved?(endpoint: Endpoint): void;
}

export interface ScrapeLoopOptions {
  source: EndpointSource;
  /** Poll interval per endpoint. Default 50 ms (GIE `--refresh-metrics-interval`). */
  intervalMs?: number;
  /** Deadline for one scrape, connect included. Default 1000 ms. */
  timeoutMs?: number;
  /**
   * Metrics path for every engine (GIE's metrics-data-source `path`). Default: each engine's `metricsPath`
   * (`/metrics` but for trtllm-serve's `/prometheus/metrics`, engines.ts).
   */
  path?: string;
  /** Default `http`. */
  scheme?: "http" | "https";
  /**
   * Scrape this port for every engine instead of the endpoint's target port (GIE `--model-server-metrics-port`,
   * metrics-data-source `port`). Default: each engine's `metricsPort` (Triton's 8002), else the target port.
   */
  metricsPort?: number;
  /** Skip TLS verification for `https` (GIE's `insecureSkipVerify`, default true: pods serve self-signed certs). */
  insecureSkipVerify?: boolean;
  /** Engine mappings: a registry, or custom engine configs merged over the built-ins. Default: built-ins only. */
  engines?: EngineRegistry | readonly EngineConfig[];
  /** Upper bound of the retry backoff after repeated failures. Default 2000 ms. */
  maxBackoffMs?: number;
  /** Largest accepted `/metrics` body. Default 16 MiB. */
  maxBodyBytes?: number;
  /**
   * How often each endpoint's `/v1/models` is read (what it serves: base models, aliases, adapters); 0 = never.
   * Default 10 s: the list changes only when adapters are loaded or unloaded, and one small GET per pod every
   * 10 s costs the server far less than its `/metrics`.
   */
  modelsIntervalMs?: number;
  /** Series of one signal accepted in one body (`--scrape-max-series`); more refuses the scrape. Default 256. */
  maxSeries?: number;
  /**
   * How often an idle endpoint is scraped (`--refresh-metrics-idle-interval`); 0, or anything not above
   * `intervalMs`, scrapes every endpoint at `intervalMs` always. Default 500 ms. An endpoint is idle after two
   * consecutive scrapes with nothing running or waiting while this EPP has nothing in flight there; the first request
   * routed to it (or any load it reports) puts it back on `intervalMs` at the next tick.
   */
  idleIntervalMs?: number;
  /** Default: a silent logger. */
  logger?: Logger;
  /** A failing endpoint logs its first failure at warn, then at most one warn line per this many ms. Default 30 s. */
  failureLogIntervalMs?: number;
  /**
   * When more than JOIN_BURST endpoints join at once (start-up, a resource reload), their first scrapes are spread
   * over max(intervalMs, count / this rate) instead of all starting on the same timer tick. Default 2000 per second.
   */
  joinRatePerSecond?: number;
  hooks?: ScraperHooks;
}

/**
 * Where the endpoints of one change() call stand in a larger join whose first scrapes are spread: the scraper front
 * forwards a large datastore change in slices, and with worker threads each slice is split between shards, so no
 * single call sees the whole join (docs/security.md, "Resource files").
 */
export interface JoinSpread {
  /** Endpoints added by the whole change (start-up: every endpoint). */
  readonly size: number;
  /** performance.now() of this thread when the change arrived; first scrapes are spread from then. */
  readonly startedAt: number;
  /** Each added endpoint's position in the whole change, same length as `added`. */
  readonly index: readonly number[];
}

/** Endpoints joining in one change that all start scraping at once; the first scrapes of more are spread. */
export const JOIN_BURST = 64;
/** First scrapes per second when many endpoints join at once: 20k pods start over 10 s, not on one timer tick. */
export const DEFAULT_JOIN_RATE_PER_SECOND = 2_000;

export const DEFAULT_MAX_SCRAPE_BACKOFF_MS = 2_000;
export const DEFAULT_MODELS_INTERVAL_MS = 10_000;
/**
 * An idle pod's scrape interval. Rendering /metrics is not free for the server (a real vLLM spends ≈ 7–10 ms of its
 * API server's CPU per 50 KB scrape, 13–19 % of a core at 50 ms; docs/design/model-servers.md §8), and an idle pod's
 * gauges say nothing new: 500 ms cuts that ten-fold while the EPP's own in-flight count wakes the scraper the moment
 * it routes there (bench/scrape/cost.ts).
 */
export const DEFAULT_IDLE_SCRAPE_INTERVAL_MS = 500;
/** Consecutive quiet scrapes before an endpoint counts as idle. */
const QUIET_SCRAPES_FOR_IDLE = 2;
/** A `/v1/models` answer larger than this, or listing more ids, is ignored (the list stays unknown). */
export const MAX_MODELS_BODY_BYTES = 1024 * 1024;
export const MAX_MODEL_IDS = 4096;
export const MODELS_PATH = "/v1/models";
export const DEFAULT_MAX_METRICS_BODY_BYTES = 16 * 1024 * 1024;
/** `text/plain; version=0.0.4` keeps servers on the classic format instead of OpenMetrics (§5). */
export const METRICS_ACCEPT_HEADER = "text/plain; version=0.0.4";

/** A promise with its resolver; the main-thread front (scraper.ts) uses it too. */
export interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
}

export function deferred(): Deferred {
  // Promise.withResolvers is Node 22+; this runs on Node 20 too.
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

interface SharedClient {
  readonly client: GetClient;
  refs: number;
}

/** Per-endpoint loop state. */
interface Target {
  readonly endpoint: Endpoint;
  readonly origin: string;
  readonly host: string;
  /** The port scraped for metrics (the endpoint's, or the engine's or configured metrics port). */
  readonly port: number;
  shared: SharedClient | undefined;
  timer: NodeJS.Timeout | undefined;
  /** The in-flight scrape, if any; stop() awaits it so no hook fires after stop() resolves. */
  inflight: Promise<void> | undefined;
  /** The in-flight `/v1/models` read and its abort handle (apart from the metrics scrape's). */
  modelsInflight: Promise<void> | undefined;
  modelsAbort: GetCall | undefined;
  abort: GetCall | undefined;
  stopped: boolean;
  failures: number;
  readonly firstAttempt: Deferred;
  attempted: boolean;
  warnedEngine: boolean;
  /** Origin of the serving port (differs from `origin` when metrics are scraped on their own port). */
  readonly modelsOrigin: string;
  /** A client of our own when `modelsOrigin` differs from `origin`. */
  modelsClient: GetClient | undefined;
  /** performance.now() at which `/v1/models` is next due. */
  modelsDueAt: number;
  /** The last scrape named absent load families (logged once per transition). */
  incomplete: boolean;
  /** Consecutive successful scrapes that showed nothing running or waiting. */
  quietScrapes: number;
  /** performance.now() when the last scrape started. */
  lastScrapeAt: number;
}

function checkPositive(name: string, value: number | undefined, fallback: number, unit = "milliseconds"): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(`must be a positive finite number of ${unit}, got ${String(value)}`, undefined, name);
  }
  return value;
}

function classify(err: unknown, url: string): ScrapeError {
  if (err instanceof ScrapeError) return err;
  const code = errorCode(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (isConnectFailure(err)) {
    return new ScrapeError("connect", `GET ${url}: cannot connect (${code})`, { cause: err });
  }
  if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
    return new ScrapeError("timeout", `GET ${url}: ${detail}`, { cause: err });
  }
  if (code === "UND_ERR_RES_EXCEEDED_MAX_SIZE" || (err instanceof GetError && err.code === "SY_HTTP_BODY_TOO_LARGE")) {
    return new ScrapeError("network", `GET ${url}: body larger than the limit`, { cause: err });
  }
  return new ScrapeError("network", `GET ${url}: ${code ? `${code} ` : ""}${detail}`, { cause: err });
}

/** The resolved, structured-cloneable settings of a ScrapeLoops (what a scrape worker is started with). */
export interface ScrapeSettings {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly path: string | undefined;
  readonly scheme: "http" | "https";
  readonly metricsPort: number | undefined;
  readonly insecureSkipVerify: boolean;
  readonly maxBackoffMs: number;
  readonly maxBodyBytes: number;
  readonly modelsIntervalMs: number;
  readonly maxSeries: number;
  readonly idleIntervalMs: number;
  readonly failureLogIntervalMs: number;
  readonly joinRatePerSecond: number;
  readonly engines: EngineRegistryOptions;
}

export class ScrapeLoops {
  readonly #source: EndpointSource;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  /** The metrics path for every engine, when configured; else each engine's own. */
  readonly #path: string | undefined;
  readonly #scheme: "http" | "https";
  readonly #metricsPort: number | undefined;
  readonly #insecureSkipVerify: boolean;
  readonly #engines: EngineRegistry;
  readonly #maxBackoffMs: number;
  readonly #maxBodyBytes: number;
  readonly #modelsIntervalMs: number;
  readonly #maxSeries: number;
  /** 0 when idle endpoints are scraped like busy ones. */
  readonly #idleIntervalMs: number;
  readonly #logger: Logger;
  readonly #hooks: ScraperHooks;
  readonly #failureLog: LogThrottle;
  readonly #failureLogIntervalMs: number;
  readonly #joinRate: number;

  readonly #targets = new Map<string, Target>();
  readonly #clients = new Map<string, SharedClient>();
  /** Clients being destroyed; stop() awaits them so no socket outlives it. */
  readonly #closing = new Set<Promise<void>>();
  readonly #started = deferred();
  #state: "new" | "running" | "stopped" = "new";
  #unsubscribe: (() => void) | undefined;

  constructor(options: ScrapeLoopOptions) {
    if (options === null || typeof options !== "object") throw new ConfigError("options must be an object");
    const { source } = options;
    if (
      source === null ||
      typeof source !== "object" ||
      typeof source.endpoints !== "function" ||
      typeof source.onEndpointsChanged !== "function"
    ) {
      throw new ConfigError("must implement endpoints() and onEndpointsChanged()", undefined, "source");
    }
    this.#source = source;
    this.#intervalMs = checkPositive("intervalMs", options.intervalMs, DEFAULT_REFRESH_METRICS_INTERVAL_MS);
    this.#timeoutMs = checkPositive("timeoutMs", options.timeoutMs, DEFAULT_SCRAPE_TIMEOUT_MS);
    this.#maxBackoffMs = Math.max(
      this.#intervalMs,
      checkPositive("maxBackoffMs", options.maxBackoffMs, DEFAULT_MAX_SCRAPE_BACKOFF_MS),
    );
    this.#maxBodyBytes = checkPositive("maxBodyBytes", options.maxBodyBytes, DEFAULT_MAX_METRICS_BODY_BYTES);
    const modelsInterval = options.modelsIntervalMs ?? DEFAULT_MODELS_INTERVAL_MS;
    if (typeof modelsInterval !== "number" || !Number.isFinite(modelsInterval) || modelsInterval < 0) {
      throw new ConfigError(
        `must be a finite number of milliseconds >= 0, got ${String(modelsInterval)}`,
        undefined,
        "modelsIntervalMs",
      );
    }
    this.#modelsIntervalMs = modelsInterval;
    this.#maxSeries = checkPositive("maxSeries", options.maxSeries, DEFAULT_MAX_SERIES_PER_SIGNAL);
    const idle = options.idleIntervalMs ?? DEFAULT_IDLE_SCRAPE_INTERVAL_MS;
    if (typeof idle !== "number" || !Number.isFinite(idle) || idle < 0) {
      throw new ConfigError(
        `must be a finite number of milliseconds >= 0, got ${String(idle)}`,
        undefined,
        "idleIntervalMs",
      );
    }
    this.#idleIntervalMs = idle > this.#intervalMs ? idle : 0;
    const path = options.path;
    const problem = path === undefined ? undefined : metricsPathProblem(path);
    if (problem !== undefined) throw new ConfigError(problem, undefined, "path");
    this.#path = path;
    const scheme = options.scheme ?? "http";
    if (scheme !== "http" && scheme !== "https") {
      throw new ConfigError(`must be "http" or "https", got ${JSON.stringify(scheme)}`, undefined, "scheme");
    }
    this.#scheme = scheme;
    const port = options.metricsPort;
    if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
      throw new ConfigError(`must be an integer port 1-65535, got ${String(port)}`, undefined, "metricsPort");
    }
    this.#metricsPort = port;
    this.#insecureSkipVerify = options.insecureSkipVerify ?? true;
    this.#engines =
      options.engines instanceof EngineRegistry
        ? options.engines
        : new EngineRegistry({ engineConfigs: options.engines ?? [] });
    this.#logger = options.logger ?? silentLogger;
    this.#hooks = options.hooks ?? {};
    this.#failureLogIntervalMs = checkPositive(
      "failureLogIntervalMs",
      options.failureLogIntervalMs,
      DEFAULT_LOG_THROTTLE_MS,
    );
    this.#failureLog = new LogThrottle({ intervalMs: this.#failureLogIntervalMs });
    this.#joinRate = checkPositive(
      "joinRatePerSecond",
      options.joinRatePerSecond,
      DEFAULT_JOIN_RATE_PER_SECOND,
      "endpoints per second",
    );
  }

  /** What a scrape worker needs to run the same loops: every option resolved, nothing that cannot be cloned. */
  get settings(): ScrapeSettings {
    return {
      intervalMs: this.#intervalMs,
      timeoutMs: this.#timeoutMs,
      path: this.#path,
      scheme: this.#scheme,
      metricsPort: this.#metricsPort,
      insecureSkipVerify: this.#insecureSkipVerify,
      maxBackoffMs: this.#maxBackoffMs,
      maxBodyBytes: this.#maxBodyBytes,
      modelsIntervalMs: this.#modelsIntervalMs,
      maxSeries: this.#maxSeries,
      idleIntervalMs: this.#idleIntervalMs,
      failureLogIntervalMs: this.#failureLogIntervalMs,
      joinRatePerSecond: this.#joinRate,
      engines: this.#engines.options,
    };
  }

  get engines(): EngineRegistry {
    return this.#engines;
  }

  /** Number of endpoints being polled. */
  get size(): number {
    return this.#targets.size;
  }

  /**
   * Starts polling the source's current endpoints and follows its changes. Idempotent; throws after stop().
   * `followSource: false`: the source is neither read nor followed; the caller (the scraper front, or a scrape
   * worker) feeds every endpoint through change() instead, in slices it chooses.
   */
  start(options: { followSource?: boolean } = {}): void {
    if (this.#state === "running") return;
    if (this.#state === "stopped") throw new Error("MetricsScraper: start() after stop()");
    this.#state = "running";
    if (options.followSource !== false) {
      this.#unsubscribe = this.#source.onEndpointsChanged((added, removed) => this.change(added, removed));
      this.change(this.#source.endpoints(), []);
    }
    this.#started.resolve();
  }

  /**
   * Resolves once every endpoint known when this is called (or, before start(), when start() runs) has had one
   * scrape attempt, successful or not. Endpoints removed in the meantime count as done. Used for readiness.
   */
  async firstRound(): Promise<void> {
    await this.#started.promise;
    const pending: Promise<void>[] = [];
    for (const t of this.#targets.values()) {
      if (!t.attempted) pending.push(t.firstAttempt.promise);
    }
    await Promise.all(pending);
  }

  /** Stops every loop, aborts in-flight scrapes and closes every connection. No timer or socket survives it. */
  async stop(): Promise<void> {
    if (this.#state === "stopped") {
      await Promise.all(this.#closing);
      return;
    }
    this.#state = "stopped";
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    const inflight: Promise<void>[] = [];
    for (const t of this.#targets.values()) {
      if (t.inflight) inflight.push(t.inflight);
      if (t.modelsInflight) inflight.push(t.modelsInflight);
      this.#stopTarget(t);
    }
    this.#targets.clear();
    this.#started.resolve(); // a firstRound() awaiting a start() that never comes
    await Promise.all(inflight);
    await Promise.all(this.#closing);
  }

  /**
   * Stops polling `removed` and starts polling `added`, removals first (a datastore replacing an endpoint object under
   * the same key sends both in one call). Ignored unless running. The work is O(added + removed) in this call; the
   * scraper front bounds that on the request path's thread by forwarding a large change in slices.
   *
   * First scrapes are due at once for a join of at most JOIN_BURST endpoints. A larger one has them spread evenly
   * over max(interval, size / joinRatePerSecond) from when the join began, so thousands of connects never start on
   * one timer tick (a 10k pod reload measured multi-second stalls from exactly that; docs/security.md, "Resource
   * files"). `join` places `added` in a larger join split over several calls; without it, `added` is the whole join.
   */
  change(added: readonly Endpoint[], removed: readonly Endpoint[], join?: JoinSpread): void {
    if (this.#state !== "running") return;
    for (const endpoint of removed) {
      const t = this.#targets.get(endpoint.key);
      if (t !== undefined && t.endpoint === endpoint) {
        this.#targets.delete(endpoint.key);
        this.#stopTarget(t);
        this.#removed(endpoint);
      }
    }
    const n = added.length;
    if (n === 0) return;
    const size = join?.size ?? n;
    if (size <= JOIN_BURST) {
      for (const endpoint of added) this.#add(endpoint, 0);
      return;
    }
    const spreadMs = Math.max(this.#intervalMs, (size * 1000) / this.#joinRate);
    const now = performance.now();
    const startedAt = join?.startedAt ?? now;
    for (let i = 0; i < n; i++) {
      const at = join === undefined ? i : (join.index[i] ?? 0);
      const dueAt = startedAt + (at * spreadMs) / size;
      this.#add(added[i]!, Math.max(0, Math.floor(dueAt - now)));
    }
  }

  #add(endpoint: Endpoint, firstDelayMs: number): void {
    const existing = this.#targets.get(endpoint.key);
    if (existing !== undefined) {
      if (existing.endpoint === endpoint) return;
      this.#stopTarget(existing);
    }
    const port = this.#metricsPort ?? this.#engines.resolve(endpoint)?.metricsPort ?? endpoint.port;
    const t: Target = {
      endpoint,
      origin: `${this.#scheme}://${hostPort(endpoint.address, port)}`,
      host: endpoint.address,
      port,
      modelsOrigin: `${this.#scheme}://${hostPort(endpoint.address, endpoint.port)}`,
      modelsClient: undefined,
      modelsInflight: undefined,
      modelsAbort: undefined,
      modelsDueAt: 0,
      incomplete: false,
      quietScrapes: 0,
      lastScrapeAt: 0,
      shared: undefined,
      timer: undefined,
      inflight: undefined,
      abort: undefined,
      stopped: false,
      failures: 0,
      firstAttempt: deferred(),
      attempted: false,
      warnedEngine: false,
    };
    this.#targets.set(endpoint.key, t);
    // First scrape right away (readiness waits on it), unless it joined with thousands of others.
    this.#schedule(t, firstDelayMs);
  }

  #stopTarget(t: Target): void {
    t.stopped = true;
    this.#failureLog.reset(t.endpoint.key);
    if (t.timer !== undefined) {
      clearTimeout(t.timer);
      t.timer = undefined;
    }
    t.abort?.abort(new ScrapeError("network", "endpoint removed"));
    t.modelsAbort?.abort(new ScrapeError("network", "endpoint removed"));
    this.#release(t);
    if (t.modelsClient !== undefined) {
      const closing = t.modelsClient.destroy().catch(() => {});
      t.modelsClient = undefined;
      this.#closing.add(closing);
      void closing.finally(() => this.#closing.delete(closing));
    }
    t.firstAttempt.resolve();
  }

  #schedule(t: Target, delayMs: number): void {
    if (t.stopped) return;
    t.timer = setTimeout(() => {
      t.timer = undefined;
      if (t.stopped || t.inflight !== undefined) return;
      if (this.#idleSkip(t)) {
        this.#schedule(t, this.#intervalMs);
        return;
      }
      t.inflight = this.#scrape(t).finally(() => {
        t.inflight = undefined;
      });
    }, delayMs);
    t.timer.unref();
  }

  /**
   * An idle endpoint's tick passes without a scrape until its idle interval is up. The check is a few comparisons
   * on the timer, no I/O; the first request this EPP routes there (its in-flight count) ends the idleness.
   */
  #idleSkip(t: Target): boolean {
    return (
      this.#idleIntervalMs > 0 &&
      t.quietScrapes >= QUIET_SCRAPES_FOR_IDLE &&
      t.endpoint.inflightRequests === 0 &&
      performance.now() - t.lastScrapeAt < this.#idleIntervalMs
    );
  }

  #acquire(t: Target): GetClient {
    if (t.shared !== undefined) return t.shared.client;
    let shared = this.#clients.get(t.origin);
    if (shared === undefined) {
      shared = { client: this.#client(t.host, t.port), refs: 0 };
      this.#clients.set(t.origin, shared);
    }
    shared.refs++;
    t.shared = shared;
    return shared.client;
  }

  #client(host: string, port: number): GetClient {
    return createGetClient({
      scheme: this.#scheme,
      host,
      port,
      // Idle well past the interval, so consecutive scrapes reuse the connection.
      keepAliveTimeoutMs: Math.max(4_000, 4 * this.#intervalMs),
      connectTimeoutMs: this.#timeoutMs,
      rejectUnauthorized: !this.#insecureSkipVerify,
    });
  }

  #release(t: Target): void {
    const shared = t.shared;
    if (shared === undefined) return;
    t.shared = undefined;
    shared.refs--;
    if (shared.refs > 0) return;
    if (this.#clients.get(t.origin) === shared) this.#clients.delete(t.origin);
    // destroy, not close: an in-flight scrape of a removed endpoint is worthless, so do not wait for it.
    const closing = shared.client.destroy().catch(() => {});
    this.#closing.add(closing);
    void closing.finally(() => this.#closing.delete(closing));
  }

  async #scrape(t: Target): Promise<void> {
    const endpoint = t.endpoint;
    let url = t.origin;
    const started = performance.now();
    t.lastScrapeAt = started;
    let error: ScrapeError | undefined;
    let finished = started;
    try {
      const mapping = this.#engines.resolve(endpoint);
      if (mapping === undefined) {
        const name = endpoint.engine || this.#engines.engineFor(endpoint.labels);
        throw new ScrapeError(
          "engine",
          `no metric mapping for engine "${name}" (known: ${this.#engines.names().join(", ")})`,
        );
      }
      const path = this.#path ?? mapping.metricsPath;
      url = `${t.origin}${path}`;
      let client: GetClient;
      try {
        client = this.#acquire(t);
      } catch (err) {
        throw new ScrapeError("target", `cannot scrape ${url}: ${err instanceof Error ? err.message : String(err)}`, {
          cause: err,
        });
      }
      const get = client.get(path, METRICS_ACCEPT_HEADER, this.#maxBodyBytes);
      t.abort = get;
      const deadline = setTimeout(() => {
        get.abort(
          get.connecting
            ? new ScrapeError("connect", `GET ${url}: cannot connect (no connection within ${this.#timeoutMs} ms)`)
            : new ScrapeError("timeout", `GET ${url}: no complete response within ${this.#timeoutMs} ms`),
        );
      }, this.#timeoutMs);
      deadline.unref();
      let text: string;
      try {
        const res = await get.done;
        if (res.statusCode !== 200) {
          // The body was drained, so the connection is reusable (a huge one had the socket closed instead).
          throw new ScrapeError("status", `GET ${url}: HTTP ${res.statusCode}`, { statusCode: res.statusCode });
        }
        text = res.text;
        finished = performance.now();
      } catch (err) {
        throw get.reason instanceof ScrapeError ? get.reason : classify(err, url);
      } finally {
        clearTimeout(deadline);
        t.abort = undefined;
      }
      if (t.stopped) return;
      try {
        endpoint.metrics = extractMetrics(mapping, text, finished, path, this.#maxSeries);
      } catch (err) {
        const reason = err instanceof ImplausibleMetricsError ? "implausible" : "parse";
        throw new ScrapeError(reason, `${url}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      endpoint.lastScrapeError = undefined;
      this.#noteIncomplete(t);
      // Not awaited: the model list has its own cadence and must never delay the next metrics tick.
      if (this.#modelsIntervalMs > 0 && finished >= t.modelsDueAt && t.modelsInflight === undefined) {
        t.modelsDueAt = finished + this.#modelsIntervalMs;
        t.modelsInflight = this.#readModels(t, client).finally(() => {
          t.modelsInflight = undefined;
        });
        // Except the first time: the first round (readiness) includes what the pod serves, or the first requests
        // after start-up could be sent to a pod that does not serve their model (docs/design/model-servers.md §3.5).
        // In worker mode this also orders the models message before the first metrics record.
        if (!t.attempted) await t.modelsInflight.catch(() => {});
      }
    } catch (err) {
      error = err instanceof ScrapeError ? err : classify(err, url);
      finished = performance.now();
    }
    if (t.stopped) return; // removed mid-scrape: its outcome no longer matters, and its client is gone
    t.attempted = true;
    t.firstAttempt.resolve();
    const durationMs = finished - started;
    if (error === undefined) {
      if (t.failures > 0) {
        this.#failureLog.reset(endpoint.key);
        this.#logger.info({ endpoint: endpoint.key, failures: t.failures }, "metrics scrape recovered");
      }
      t.failures = 0;
      // Align to the tick grid: a scrape that overran the interval skips the ticks it missed.
      const next = this.#intervalMs - (durationMs % this.#intervalMs);
      const m = endpoint.metrics;
      t.quietScrapes =
        m !== undefined && m.waitingQueueSize === 0 && m.runningRequestsSize === 0 ? t.quietScrapes + 1 : 0;
      // Until the next scrape is late (its tick plus its timeout) these numbers are the newest there can be; an idle
      // endpoint's next scrape is due an idle interval later, not a tick later.
      const due = this.#idleIntervalMs > 0 && t.quietScrapes >= QUIET_SCRAPES_FOR_IDLE ? this.#idleIntervalMs : next;
      endpoint.metricsValidUntil = finished + due + this.#timeoutMs;
      this.#report(endpoint, { ok: true, durationMs });
      this.#schedule(t, next);
      return;
    }
    endpoint.lastScrapeError = error.message;
    endpoint.metricsValidUntil = undefined;
    t.quietScrapes = 0;
    t.failures++;
    if (error.reason === "engine") {
      if (!t.warnedEngine) this.#logger.warn({ endpoint: endpoint.key, err: error.message }, "metrics scrape failing");
      t.warnedEngine = true;
    } else {
      // Rate-limited per endpoint: the first failure, then one line per interval with the suppressed count.
      const suppressed = this.#failureLog.take(endpoint.key);
      if (suppressed !== undefined)
        this.#logger.warn(
          {
            endpoint: endpoint.key,
            pod: endpoint.podName,
            reason: error.reason,
            err: error.message,
            failures: t.failures,
            suppressed,
          },
          "metrics scrape failing",
        );
      else if (this.#logger.isLevelEnabled("debug"))
        this.#logger.debug(
          { endpoint: endpoint.key, reason: error.reason, err: error.message },
          "metrics scrape failed",
        );
    }
    this.#report(endpoint, { ok: false, durationMs, error });
    const backoff = this.#intervalMs * 2 ** Math.min(t.failures - 1, 30);
    this.#schedule(t, Math.min(this.#maxBackoffMs, backoff));
  }

  /** One info line when an endpoint's scrapes start or stop lacking load families, not one per scrape. */
  #noteIncomplete(t: Target): void {
    const missing = t.endpoint.metrics?.unreported;
    if ((missing !== undefined) === t.incomplete) return;
    t.incomplete = missing !== undefined;
    // warn, not info: a custom engine spec naming a metric the server does not have looks exactly like this too.
    if (missing !== undefined)
      this.#logger.warn(
        { endpoint: t.endpoint.key, unreported: missing },
        "metrics carry no load gauges yet; the endpoint stays a candidate, scored as reporting no load",
      );
    else this.#logger.info({ endpoint: t.endpoint.key }, "metrics now carry every load gauge");
  }

  /**
   * Reads `/v1/models` (docs/design/model-servers.md §3.5). Any failure leaves the previous list in place when there
   * was one (a transient error must not widen what the endpoint is thought to serve) and unknown otherwise; only
   * a 404 clears it, since the server then has no such list. Never throws.
   */
  async #readModels(t: Target, metricsClient: GetClient): Promise<void> {
    let client = metricsClient;
    if (t.modelsOrigin !== t.origin) {
      t.modelsClient ??= this.#client(t.host, t.endpoint.port);
      client = t.modelsClient;
    }
    const call = client.get(MODELS_PATH, "application/json", MAX_MODELS_BODY_BYTES);
    t.modelsAbort = call;
    const deadline = setTimeout(
      () => call.abort(new ScrapeError("timeout", "GET /v1/models timed out")),
      this.#timeoutMs,
    );
    deadline.unref();
    try {
      const res = await call.done;
      if (res.statusCode !== 200) {
        if (res.statusCode === 404 && t.endpoint.models !== undefined) {
          t.endpoint.models = undefined;
          this.#reportModels(t.endpoint);
        }
        return;
      }
      if (t.stopped) return;
      const models = parseModelList(res.text, performance.now());
      if (models === undefined) {
        this.#logger.debug({ endpoint: t.endpoint.key }, "ignoring a /v1/models answer that is not a model list");
        return;
      }
      t.endpoint.models = models;
      this.#reportModels(t.endpoint);
    } catch (err) {
      if (this.#logger.isLevelEnabled("debug"))
        this.#logger.debug({ endpoint: t.endpoint.key, err: String(err) }, "reading /v1/models failed");
    } finally {
      clearTimeout(deadline);
      if (t.modelsAbort === call) t.modelsAbort = undefined;
    }
  }

  #reportModels(endpoint: Endpoint): void {
    this.#endpointHook("onModels", endpoint);
  }

  #removed(endpoint: Endpoint): void {
    this.#endpointHook("onRemoved", endpoint);
  }

  /** Calls a hook that takes only the endpoint; a throwing hook is logged, never propagated. */
  #endpointHook(name: "onModels" | "onRemoved", endpoint: Endpoint): void {
    const hook = this.#hooks[name];
    if (hook === undefined) return;
    try {
      hook.call(this.#hooks, endpoint);
    } catch (err) {
      this.#logger.error({ err }, `${name} hook threw`);
    }
  }

  #report(endpoint: Endpoint, result: ScrapeResult): void {
    const hook = this.#hooks.onScrape;
    if (hook === undefined) return;
    try {
      hook(endpoint, result);
    } catch (err) {
      this.#logger.error({ err }, "onScrape hook threw");
    }
  }
}

/**
 * An OpenAI model list (`{"data":[{"id":…,"parent":…}]}`) as ServedModels, or undefined when the text is not one
 * (or lists more than MAX_MODEL_IDS ids). vLLM lists each served name and alias as its own entry with
 * `parent: null`, and each adapter with `parent` = its base model.
 */
export function parseModelList(text: string, updateTime: number): ServedModels | undefined {
  if (text.length > MAX_MODELS_BODY_BYTES) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  const data = (doc as { data?: unknown } | null)?.data;
  if (!Array.isArray(data) || data.length > MAX_MODEL_IDS) return undefined;
  const ids = new Set<string>();
  const adapters = new Map<string, string>();
  for (const entry of data) {
    const id = (entry as { id?: unknown } | null)?.id;
    if (typeof id !== "string" || id === "") return undefined;
    ids.add(id);
    const parent = (entry as { parent?: unknown }).parent;
    if (typeof parent === "string" && parent !== "" && parent !== id) adapters.set(id, parent);
  }
  return { ids, adapters, updateTime };
}
