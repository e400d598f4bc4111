/**
 * The director: what happens to one request between the ext_proc state machine and the model server, in GIE's
 * order (docs/design/scheduling.md §1): parse → target model (rewrite header, InferenceModel split,
 * InferenceModelRewrite) → priority (objective header) → admission → candidates (subset hint) → schedule → forward;
 * then response accounting. It sees only the protocol-free seam `RequestLifecycle` in src/request/lifecycle.ts,
 * which the ext_proc stream state machine (src/extproc/stream.ts) drives.
 */
import { randomInt } from "node:crypto";
import type { Admission, AdmissionRequest, AdmissionTicket } from "../admission/types.js";
import type { Cancellation } from "../common/cancellation.js";
import {
  DEFAULT_FAIRNESS_ID,
  FAIRNESS_ID_HEADER,
  MODEL_NAME_REWRITE_HEADER,
  OBJECTIVE_HEADER,
} from "../common/constants.js";
import { SwitchyardError, toSwitchyardError } from "../common/errors.js";
import { pickWeighted } from "../datastore/datastore.js";
import { EndpointLoad, type LoadTicket } from "../datastore/load.js";
import type { Criticality, Endpoint } from "../datastore/types.js";
import { DECISION_DETAIL, type DecisionLog, type DecisionRecord } from "../observability/decisions.js";
import type { Logger } from "../observability/logger.js";
import type { EppMetrics } from "../observability/metrics.js";
import type { EndpointScoreBreakdown, Scheduler, SchedulingRequest, SchedulingResult } from "../scheduling/index.js";
import type {
  IncomingRequest,
  LifecycleFactory,
  RequestLifecycle,
  ResponseHeadersInfo,
  ResponseHeadersResult,
  RoutingDecision,
} from "./lifecycle.js";
import { type ParsedRequest, parseRequest, rewriteModel } from "./openai.js";
import type { PoolView } from "./pool-view.js";
import { ResponseAccountant } from "./usage.js";

export interface DirectorOptions {
  /** The pool as the director sees it; the Datastore satisfies it. */
  readonly pool: PoolView;
  /**
   * Picks endpoints, then runs the PreRequest plugins for the pick. Telemetry (plugin durations, prefix matches) is
   * the scheduler's own observer's business (docs/architecture.md, "Telemetry"), not the director's.
   */
  readonly scheduler: Pick<Scheduler, "schedule" | "preRequest">;
  readonly admission: Admission;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  readonly decisions?: DecisionLog;
  /** GIE v1 serves unknown models as Standard; with this set they get 404. Default false. */
  readonly rejectUnknownModels?: boolean;
  /** `--disable-endpoint-subset-filter`. Default false. */
  readonly disableSubsetFilter?: boolean;
  /** Header naming the tenant for budgets and fairness. Default x-gateway-inference-fairness-id. */
  readonly tenantHeader?: string;
  /** [0,1) random source; injectable for tests. */
  readonly random?: () => number;
  /** Own-load accounting and latency learning (docs/design/scheduling.md §11). Default: a fresh EndpointLoad. */
  readonly load?: EndpointLoad;
  /**
   * Monotonic ms clock for own-load accounting and latency learning (TTFT, completion). Default performance.now;
   * the virtual-time fleet simulation hands its own (docs/design/benchmarks.md §5).
   */
  readonly now?: () => number;
}

const PRIORITY_OF: Readonly<Record<Criticality, number>> = { Critical: 1, Standard: 0, Sheddable: -1 };
const EMPTY = Buffer.alloc(0);

type CounterChild = ReturnType<EppMetrics["requestTotal"]["labels"]>;
type HistogramChild = ReturnType<EppMetrics["requestDuration"]["labels"]>;
type GaugeChild = ReturnType<EppMetrics["runningRequests"]["labels"]>;

/**
 * Each (model, target) pair's metric children are resolved once, so a per-request update is a property read and an
 * add (observability/hot-metrics.ts). Cardinality is bounded by the configured models; the cache is
 * reset if a flood of unknown model names ever grows it past a cap.
 */
interface ModelLabels {
  readonly requestSizes: HistogramChild;
  readonly responseSizes: HistogramChild;
  readonly duration: HistogramChild;
  readonly inputTokens: HistogramChild;
  readonly outputTokens: HistogramChild;
  readonly cachedTokens: HistogramChild;
  readonly ntpot: HistogramChild;
  readonly ttft: HistogramChild;
  readonly running: GaugeChild;
  requestTotal(priority: number): CounterChild;
}

const LABEL_CACHE_CAP = 2048;

interface Shared extends DirectorOptions {
  readonly load: EndpointLoad;
  readonly now: () => number;
  /** A model name as it may appear in a metric label (see the cap in the constructor). */
  metricName(name: string): string;
  /** The pool's endpoints, as one shared function (no closure per request without a subset hint). */
  allEndpoints(): readonly Endpoint[];
  labels(model: string, target: string): ModelLabels;
  attempts(target: string, endpoint: Endpoint): CounterChild;
}

interface Prepared {
  readonly parsed: ParsedRequest;
  readonly target: string;
  readonly priority: number;
  readonly objectiveName: string | undefined;
  readonly candidates: () => readonly Endpoint[];
  readonly admission: AdmissionRequest;
}

/** Path source order, GIE openai parser: `:path` → x-original-path → x-forwarded-path → /v1/completions. */
function requestPath(request: IncomingRequest): string {
  // The stream already decoded `:path`. "" means absent or empty, and only an absent one may fall back.
  if (request.path !== "") return request.path;
  const headers = request.headers;
  return headers.get(":path") ?? headers.get("x-original-path") ?? headers.get("x-forwarded-path") ?? "/v1/completions";
}

/**
 * IP part of `ip:port` / `[v6]:port` / bare ip; the subset hint matches by IP only
 * (docs/design/ext-proc-protocol.md §5.8).
 */
function hostOf(value: string): string {
  const v = value.trim();
  if (v.startsWith("[")) return v.slice(1, v.indexOf("]"));
  const colon = v.lastIndexOf(":");
  return colon > 0 && v.indexOf(":") === colon ? v.slice(0, colon) : v;
}

/**
 * A two-key cache for per-request metric children. Nested maps, not joined keys: a joined key is a fresh string to
 * build, flatten and hash on every request. Past `cap` entries it starts over (the children live on in the metric).
 */
class PairCache<A, B, V> {
  readonly #byFirst = new Map<A, Map<B, V>>();
  readonly #cap: number;
  #entries = 0;

  constructor(cap: number) {
    this.#cap = cap;
  }

  get(a: A, b: B): V | undefined {
    return this.#byFirst.get(a)?.get(b);
  }

  clear(): void {
    this.#byFirst.clear();
    this.#entries = 0;
  }

  set(a: A, b: B, value: V): void {
    if (this.#entries >= this.#cap) {
      this.#byFirst.clear();
      this.#entries = 0;
    }
    let inner = this.#byFirst.get(a);
    if (inner === undefined) {
      inner = new Map();
      this.#byFirst.set(a, inner);
    }
    inner.set(b, value);
    this.#entries++;
  }
}

export class Director implements LifecycleFactory {
  readonly #shared: Shared;
  readonly #random: () => number;
  readonly #tenantHeader: string;
  readonly #dropAttempts: (gone: readonly Endpoint[]) => void;

  constructor(options: DirectorOptions) {
    this.#random = options.random ?? Math.random;
    this.#tenantHeader = (options.tenantHeader ?? FAIRNESS_ID_HEADER).toLowerCase();
    const m = options.metrics;
    const byModel = new PairCache<string, string, ModelLabels>(LABEL_CACHE_CAP);
    const byAttempt = new PairCache<string, Endpoint, CounterChild>(LABEL_CACHE_CAP);
    // Model names reach metric labels straight from request bodies (unknown models are served by default, as GIE
    // does): EppMetrics bounds their length and number and expires idle ones (docs/security.md).
    m.setKnownModels((name) => options.pool.model(name) !== undefined);
    // Children cached here for an expired name would keep counting into series no longer exported.
    m.onModelLabelsExpired(() => {
      byModel.clear();
      byAttempt.clear();
    });
    // A departed pod's per-pod attempt series would otherwise stay exported for the life of the process, one per
    // pod a rollout or an autoscaler ever created; one pass over the series per change, not per pod.
    this.#dropAttempts = (gone) => {
      const keys = new Set<string>();
      for (const e of gone) keys.add(`${e.podName}\u0000${e.namespace}\u0000${e.port}`);
      m.schedulerAttempts.removeWhere((l) => keys.has(`${l["pod_name"]}\u0000${l["namespace"]}\u0000${l["port"]}`));
      // Cached children of removed series no longer count; drop them, and the endpoint objects they hold.
      byAttempt.clear();
    };
    const metricName = (name: string): string => m.modelLabel(name);
    this.#shared = {
      ...options,
      load: options.load ?? new EndpointLoad(),
      now: options.now ?? performance.now.bind(performance),
      allEndpoints: () => options.pool.endpoints(),
      metricName,
      labels(model, target) {
        const hit = byModel.get(model, target);
        if (hit) return hit;
        const lt = { model_name: metricName(model), target_model_name: metricName(target) };
        const totals = new Map<number, CounterChild>();
        const l: ModelLabels = {
          requestSizes: m.requestSizes.labels(lt),
          responseSizes: m.responseSizes.labels(lt),
          duration: m.requestDuration.labels(lt),
          inputTokens: m.inputTokens.labels(lt),
          outputTokens: m.outputTokens.labels(lt),
          cachedTokens: m.promptCachedTokens.labels(lt),
          ntpot: m.ntpot.labels(lt),
          ttft: m.ttft.labels(lt),
          running: m.runningRequests.labels({ model_name: lt.model_name }),
          requestTotal(priority) {
            let c = totals.get(priority);
            if (!c) {
              c = m.requestTotal.labels({ ...lt, priority: String(priority) });
              totals.set(priority, c);
            }
            return c;
          },
        };
        byModel.set(model, target, l);
        return l;
      },
      attempts(target, endpoint) {
        const hit = byAttempt.get(target, endpoint);
        if (hit) return hit;
        const c = m.schedulerAttempts.labels({
          status: "success",
          target_model_name: metricName(target),
          pod_name: endpoint.podName,
          namespace: endpoint.namespace,
          port: String(endpoint.port),
        });
        byAttempt.set(target, endpoint, c);
        return c;
      },
    };
  }

  /**
   * Endpoints that left the pool for good (not the same pod back under its key): their
   * `inference_extension_scheduler_attempts_total` series leave /metrics.
   */
  endpointsRemoved(gone: readonly Endpoint[]): void {
    if (gone.length > 0) this.#dropAttempts(gone);
  }

  begin(): RequestLifecycle {
    return new RequestContext(this.#shared, this.#random, this.#tenantHeader);
  }
}

/**
 * What the scheduler sees. A class, not an object literal with a getter (which V8 builds on a slow path): the
 * prompt text is produced only when a prefix-cache scorer reads it.
 */
class ScheduledRequest implements SchedulingRequest {
  readonly model: string;
  readonly inputTokens: number;
  readonly maxTokens: number | undefined;
  readonly #parsed: ParsedRequest;

  constructor(
    readonly requestId: string,
    readonly targetModel: string,
    readonly criticality: Criticality,
    readonly priority: number,
    parsed: ParsedRequest,
    readonly headers: ReadonlyMap<string, string>,
  ) {
    this.model = parsed.model;
    this.inputTokens = parsed.inputTokens;
    this.maxTokens = parsed.maxTokens;
    this.#parsed = parsed;
  }

  get prefixText(): string {
    return this.#parsed.prefixText;
  }
}

/**
 * A routed decision for the /debug ring. It outlives the cycle, whose scores the next cycle overwrites, so it
 * copies them now: the chosen endpoints and the best others, at most DECISION_DETAIL rows, so that what fifty
 * records hold does not grow with the pool (docs/design/scheduling.md §12). Only built with /debug enabled.
 */
class RoutedRecord implements DecisionRecord {
  readonly time = Date.now();
  readonly outcome = "routed" as const;
  readonly filtered: DecisionRecord["filtered"];
  readonly filteredCount: number;
  readonly candidates: number;
  readonly schedulingMicros: number;
  readonly scores: readonly EndpointScoreBreakdown[];

  constructor(
    readonly requestId: string,
    readonly model: string,
    readonly targetModel: string,
    readonly criticality: Criticality,
    readonly priority: number,
    readonly endpoints: readonly string[],
    result: SchedulingResult,
    elapsedMs: number,
  ) {
    const rejected = result.rejected;
    this.filtered = rejected.length <= DECISION_DETAIL ? rejected : rejected.slice(0, DECISION_DETAIL);
    this.filteredCount = rejected.length;
    this.candidates = result.scoredCount;
    this.schedulingMicros = Math.round(elapsedMs * 1000);
    this.scores = result.best(DECISION_DETAIL);
  }
}

class RequestContext implements RequestLifecycle {
  readonly #o: Shared;
  readonly #random: () => number;
  readonly #tenantHeader: string;
  readonly #received: number;
  #requestId = "";
  #model = "";
  #targetModel = "";
  #criticality: Criticality = "Standard";
  #parsed: ParsedRequest | undefined;
  #load: LoadTicket | undefined;
  /** performance.now() at the end of the response body, and the completion tokens then known. */
  #completedAt = 0;
  #completionTokens: number | undefined;
  #streamed = false;
  #ticket: AdmissionTicket | undefined;
  #decidedAt = 0;
  #accountant: ResponseAccountant | undefined;
  #status = 0;
  #errorCounted = false;
  #routed = false;
  #finished = false;

  #labels: ModelLabels | undefined;

  constructor(options: Shared, random: () => number, tenantHeader: string) {
    this.#o = options;
    this.#received = options.now();
    this.#random = random;
    this.#tenantHeader = tenantHeader;
  }

  /**
   * Synchronous unless admission queues the request: a Promise (and its microtasks) is paid for only when a
   * request actually waits, which keeps the common path cheap (bench/extproc).
   */
  route(request: IncomingRequest, cancel: Cancellation): RoutingDecision | Promise<RoutingDecision> {
    this.#requestId = request.requestId;
    try {
      if (request.headerOnly) return this.#routeHeaderOnly();
      const prepared = this.#prepare(request);
      const ticket = this.#o.admission.admit(prepared.admission, prepared.candidates, cancel);
      if (ticket instanceof Promise)
        return ticket.then(
          (t) => this.#schedule(request, prepared, t),
          (err: unknown) => {
            throw this.#reject(err);
          },
        );
      return this.#schedule(request, prepared, ticket);
    } catch (err) {
      throw this.#reject(err);
    }
  }

  #reject(err: unknown): SwitchyardError {
    const e = toSwitchyardError(err);
    this.#countError(e.gieCode);
    this.#o.decisions?.push({
      time: Date.now(),
      requestId: this.#requestId,
      model: this.#model,
      targetModel: this.#targetModel,
      criticality: this.#criticality,
      priority: PRIORITY_OF[this.#criticality],
      outcome: "rejected",
      error: { code: e.code, status: e.status, message: e.message },
    });
    const log = this.#o.logger;
    if (log.isLevelEnabled("debug"))
      log.debug(
        {
          requestId: this.#requestId,
          model: this.#model,
          targetModel: this.#targetModel,
          code: e.code,
          status: e.status,
        },
        `request rejected: ${e.message}`,
      );
    return e;
  }

  /**
   * GIE's rule (docs/design/ext-proc-protocol.md §5.7): header-only requests (GET) go to a random endpoint without
   * scheduling.
   */
  #routeHeaderOnly(): RoutingDecision {
    const endpoints = this.#o.pool.endpoints();
    if (endpoints.length === 0) throw new SwitchyardError("SY_NO_PODS", "no pods available in datastore");
    const chosen = endpoints[randomInt(endpoints.length)]!;
    this.#routed = true;
    chosen.routedRequests++;
    return { endpoints: [chosen.key], body: EMPTY };
  }

  /** Parse, resolve the target model and priority, and check there is anything to route to. */
  #prepare(request: IncomingRequest): Prepared {
    const o = this.#o;
    const headers = request.headers;
    const parsed = parseRequest(request.body, requestPath(request));
    this.#parsed = parsed;
    this.#model = parsed.model;

    // Target model: rewrite header first, then the InferenceModel's weighted split, then InferenceModelRewrite.
    let target = headers.get(MODEL_NAME_REWRITE_HEADER) || parsed.model;
    const model = o.pool.model(parsed.model);
    if (model) {
      this.#criticality = model.criticality;
      target = pickWeighted(model.targetModels, this.#random)?.name ?? target;
    }
    const rewrite = o.pool.resolveRewrite(target);
    if (rewrite) {
      const picked = pickWeighted(rewrite.targets, this.#random)?.modelRewrite ?? target;
      o.metrics.modelRewriteDecisions.inc({
        model_rewrite_name: rewrite.rewriteName,
        model_name: o.metricName(parsed.model),
        target_model: picked,
      });
      target = picked;
    }
    if (!model && !rewrite && o.rejectUnknownModels && target === parsed.model)
      throw new SwitchyardError(
        "SY_UNKNOWN_MODEL",
        `model "${parsed.model.length > 256 ? `${parsed.model.slice(0, 256)}…` : parsed.model}" is not served by this pool`,
      );
    this.#targetModel = target;
    this.#labels = o.labels(parsed.model, target);
    this.#labels.requestSizes.observe(request.body.length);

    // Priority: the InferenceObjective named by the header wins; otherwise the model's criticality.
    let priority = PRIORITY_OF[this.#criticality];
    const objectiveName = headers.get(OBJECTIVE_HEADER);
    if (objectiveName) {
      const objective = o.pool.objective(objectiveName);
      if (objective) {
        priority = objective.priority;
        if (priority < 0) this.#criticality = "Sheddable";
      }
    }

    const hint = o.disableSubsetFilter ? undefined : request.subsetHint;
    const candidates = hint === undefined ? o.allEndpoints : () => this.#candidates(hint);
    if (candidates().length === 0)
      throw new SwitchyardError("SY_NO_CANDIDATES", "failed to find endpoint candidates for serving the request");
    return {
      parsed,
      target,
      priority,
      objectiveName,
      candidates,
      admission: {
        requestId: this.#requestId,
        model: parsed.model,
        targetModel: target,
        criticality: this.#criticality,
        priority,
        tenant: headers.get(this.#tenantHeader) || DEFAULT_FAIRNESS_ID,
        inputTokens: parsed.inputTokens,
        maxTokens: parsed.maxTokens,
        bytes: request.body.length,
      },
    };
  }

  #schedule(request: IncomingRequest, p: Prepared, ticket: AdmissionTicket): RoutingDecision {
    const o = this.#o;
    this.#ticket = ticket;
    const { parsed, target, priority } = p;
    // The rewritten body first: if it could fail, it must fail before the request is counted as routed.
    const body = target === parsed.model ? request.body : rewriteModel(request.body, target, parsed.modelRange);
    // Late binding: candidates are re-read after admission, which may have queued the request.
    const now = p.candidates();
    if (now.length === 0)
      throw new SwitchyardError("SY_NO_CANDIDATES", "failed to find endpoint candidates for serving the request");

    const schedulingRequest = new ScheduledRequest(
      this.#requestId,
      target,
      this.#criticality,
      priority,
      parsed,
      request.headers,
    );
    const t0 = performance.now();
    let result: ReturnType<Scheduler["schedule"]>;
    try {
      result = o.scheduler.schedule(schedulingRequest, now);
    } catch (err) {
      o.metrics.schedulerAttempts.inc({
        status: "failure",
        target_model_name: o.metricName(target),
        pod_name: "",
        namespace: "",
        port: "",
      });
      throw err;
    }
    const t1 = performance.now();
    const elapsed = t1 - t0;
    o.metrics.schedulerE2e.observe(elapsed / 1000);
    o.scheduler.preRequest(schedulingRequest, result.endpoints);

    const primary = result.endpoints[0]!;
    const labels = this.#labels!;
    o.attempts(target, primary).inc();
    labels.requestTotal(priority).inc();
    labels.running.inc();
    // The one place a dispatch is counted: own in-flight load, fused with the gauges for scoring (§11).
    const decidedAt = o.now();
    this.#load = o.load.acquire(
      primary,
      parsed.inputTokens,
      parsed.maxTokens ?? Math.ceil(parsed.inputTokens * 1.5),
      decidedAt,
    );
    this.#routed = true;
    this.#decidedAt = decidedAt;

    const keys = result.endpoints.length === 1 ? [primary.key] : result.endpoints.map((e) => e.key);
    o.decisions?.push(
      new RoutedRecord(this.#requestId, parsed.model, target, this.#criticality, priority, keys, result, elapsed),
    );
    const log = o.logger;
    if (log.isLevelEnabled("debug"))
      log.debug(
        {
          requestId: this.#requestId,
          model: parsed.model,
          targetModel: target,
          criticality: this.#criticality,
          priority,
          objective: p.objectiveName,
          candidates: result.breakdown,
          filtered: result.rejected,
          chosen: keys,
        },
        "request routed",
      );

    return ticket.headers ? { endpoints: keys, body, setHeaders: ticket.headers } : { endpoints: keys, body };
  }

  #candidates(hint: readonly string[] | undefined): readonly Endpoint[] {
    const all = this.#o.pool.endpoints();
    if (hint === undefined) return all;
    if (hint.length === 0) return [];
    const hosts = new Set(hint.map(hostOf));
    return all.filter((e) => hosts.has(e.address));
  }

  responseHeaders(info: ResponseHeadersInfo): ResponseHeadersResult {
    this.#status = info.status;
    const parsed = this.#parsed;
    const contentType = info.headers.get("content-type") ?? "";
    if (parsed) {
      this.#streamed = contentType.includes("text/event-stream") || parsed.stream;
      this.#accountant = new ResponseAccountant({
        streaming: this.#streamed,
        api: parsed.api,
        clientModel: parsed.model,
        targetModel: this.#targetModel,
        now: this.#o.now,
      });
    }
    if (info.status !== 0 && info.status !== 200) this.#countError("ModelServerError");
    return {};
  }

  responseBody(chunk: Buffer, endOfStream: boolean): Buffer {
    const accountant = this.#accountant;
    if (!accountant) return chunk;
    const wasStarted = accountant.firstContentAt !== undefined;
    const out = accountant.feed(chunk, endOfStream);
    if (!wasStarted && accountant.firstContentAt !== undefined && this.#decidedAt > 0) {
      this.#labels?.ttft.observe((accountant.firstContentAt - this.#decidedAt) / 1000);
      // Only a 200's first token is a prefill the learner may time; any first byte ends the prefill accounting.
      this.#load?.firstByte(accountant.firstContentAt, this.#streamed && this.#status === 200);
    }
    if (endOfStream) this.#recordCompletion(accountant);
    return out;
  }

  #recordCompletion(accountant: ResponseAccountant): void {
    const l = this.#labels ?? this.#o.labels(this.#model, this.#targetModel);
    const end = this.#o.now();
    this.#completedAt = end;
    const seconds = (end - this.#received) / 1000;
    l.duration.observe(seconds);
    l.responseSizes.observe(accountant.bytes);
    const usage = accountant.usage();
    if (usage) {
      l.inputTokens.observe(usage.promptTokens);
      l.outputTokens.observe(usage.completionTokens);
      l.cachedTokens.observe(usage.cachedTokens);
      // NTPOT as GIE: (response complete − request received) / output tokens, only when output tokens > 0.
      if (usage.completionTokens > 0) l.ntpot.observe(seconds / usage.completionTokens);
    }
    if (this.#status === 200)
      this.#completionTokens = usage?.completionTokens ?? (accountant.outputTokensSeen || undefined);
    this.#ticket?.release(usage?.totalTokens);
    this.#ticket = undefined;
  }

  #countError(code: string): void {
    if (this.#errorCounted) return;
    this.#errorCounted = true;
    const o = this.#o;
    o.metrics.requestErrorTotal.inc({
      model_name: o.metricName(this.#model),
      target_model_name: o.metricName(this.#targetModel || this.#model),
      error_code: code,
    });
  }

  done(outcome: "completed" | "cancelled" | "error"): void {
    if (this.#finished) return;
    this.#finished = true;
    // A response without a body (headers with end_of_stream) never reaches responseBody(): complete it here.
    const accountant = this.#accountant;
    if (outcome === "completed" && accountant !== undefined && !accountant.ended) this.#recordCompletion(accountant);
    const ticket = this.#load;
    if (ticket) {
      this.#load = undefined;
      const completed = outcome === "completed" && this.#completionTokens !== undefined;
      ticket.release(
        completed ? this.#completedAt : this.#o.now(),
        outcome,
        completed ? this.#completionTokens : undefined,
        this.#streamed,
      );
      this.#labels?.running.dec();
    }
    if (this.#ticket) {
      // Not routed = rejected after admission (no candidates, scheduling failed): budgets refund the estimate.
      this.#ticket.release(undefined, this.#routed);
      this.#ticket = undefined;
    }
    if (this.#routed && outcome !== "completed" && this.#status === 0) this.#countError("Cancelled");
  }
}
