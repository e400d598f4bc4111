/**
 * The EPP's Prometheus surface. Names, types and labels follow GIE v1.5.0 exactly (docs/design/api-resources.md §9) so
 * the GIE Grafana dashboard and alerts work unchanged; switchyard's own series use the `switchyard_` prefix.
 *
 * Rules: label sets are bounded (model, pool, pod, error code, criticality, tenant capped by the budget's own
 * expiry) — never request ids. Pool gauges are computed when Prometheus scrapes (`collect()`), not on timers.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { DebugEndpoint } from "./debug.js";
import { HotCounter, HotGauge, HotHistogram, isHotMetric } from "./hot-metrics.js";
import {
  type CapReason,
  DEFAULT_LABEL_MAX_LENGTH,
  DEFAULT_MODEL_LABEL_IDLE_MS,
  DEFAULT_MODEL_LABEL_LIMIT,
  LabelCapper,
} from "./label-cap.js";
import type { Logger } from "./logger.js";
import { LogThrottle } from "./throttle.js";

/** Label names that carry a model name from a request body (GIE's and switchyard's series). */
const MODEL_LABEL_NAMES: readonly string[] = ["model_name", "target_model_name", "target_model"];

/** GIE's request-duration buckets, 5 ms … 3600 s. */
const DURATION_BUCKETS = [
  0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60, 120, 180, 240,
  300, 360, 480, 600, 900, 1200, 1800, 2700, 3600,
];
const SIZE_BUCKETS = [
  64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304,
  8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824,
];
const TOKEN_BUCKETS = [
  1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131072, 262144, 524288, 1048576,
];
const NTPOT_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60];
/** Sub-millisecond resolution: scheduling takes microseconds, GIE's histogram spans 0.1 ms … 100 ms. */
const SCHEDULER_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
];
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160];
const SCRAPE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const QUEUE_WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Fractions 0 … 1 in tenths, as GIE's prefix-indexer hit-ratio histogram. */
const RATIO_BUCKETS = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];
/** Matched prefix length in characters (GIE counts bytes of the hashed prompt prefix), 1 … 1 Mi. */
const HIT_BYTES_BUCKETS = [
  1, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576,
];

/** What the pool gauges need, read at scrape time. */
/**
 * What the pool gauges read at Prometheus scrape time. The endpoints are the same projection /debug/endpoints
 * serves (src/epp/snapshot.ts builds both), so the two views of one pool cannot disagree.
 */
export interface PoolSnapshot {
  readonly poolName: string;
  readonly endpoints: readonly DebugEndpoint[];
  /** Freshness bound for the pool averages (`--metrics-staleness-threshold`, GIE default 2 s). */
  readonly stalenessMs: number;
  readonly saturation: number;
}

/** False when the latest scrape attempt failed; undefined before the first attempt. */
function scrapeOk(e: DebugEndpoint): boolean | undefined {
  return e.metrics !== null || e.lastScrapeError !== null ? e.lastScrapeError === null : undefined;
}

export interface MetricsOptions {
  /** Called on every Prometheus scrape. */
  readonly poolSnapshot?: () => PoolSnapshot | undefined;
  /** Entries in the prefix-cache index(es), read on every scrape; undefined when no prefix scorer is configured. */
  readonly prefixIndexSize?: () => number | undefined;
  readonly commit?: string;
  readonly buildRef?: string;
  /** Open ext_proc streams, read on every scrape; without it the gauge is whatever inc()/dec() made it. */
  readonly streamsInFlight?: () => number;
  /** Node process metrics (default true). */
  readonly processMetrics?: boolean;
  /** `--metrics-label-max-length`: longer label values from requests become "other". Default 256. */
  readonly labelMaxLength?: number;
  /** `--metrics-model-label-limit`: distinct unconfigured model names with their own series. Default 100. */
  readonly modelLabelLimit?: number;
  /** `--metrics-model-label-idle-expiry`: unconfigured model names unused this long lose their series. 30 min. */
  readonly modelLabelIdleMs?: number;
  /** Where capped label values are reported (one line per label and reason per 30 s). */
  readonly logger?: Logger;
}

export class EppMetrics {
  readonly registry = new Registry();

  // GIE: inference_objective_*
  readonly requestTotal: HotCounter<"model_name" | "target_model_name" | "priority">;
  readonly requestErrorTotal: HotCounter<"model_name" | "target_model_name" | "error_code">;
  readonly requestDuration: HotHistogram<"model_name" | "target_model_name">;
  readonly requestSizes: HotHistogram<"model_name" | "target_model_name">;
  readonly responseSizes: HotHistogram<"model_name" | "target_model_name">;
  readonly inputTokens: HotHistogram<"model_name" | "target_model_name">;
  readonly outputTokens: HotHistogram<"model_name" | "target_model_name">;
  readonly promptCachedTokens: HotHistogram<"model_name" | "target_model_name">;
  readonly ntpot: HotHistogram<"model_name" | "target_model_name">;
  readonly runningRequests: HotGauge<"model_name">;

  // GIE: inference_extension_*
  readonly schedulerE2e: HotHistogram;
  readonly schedulerAttempts: HotCounter<"status" | "target_model_name" | "pod_name" | "namespace" | "port">;
  readonly pluginDuration: HotHistogram<"extension_point" | "plugin_type" | "plugin_name">;
  readonly modelRewriteDecisions: HotCounter<"model_rewrite_name" | "model_name" | "target_model">;
  readonly prefixHitRatio: HotHistogram;
  readonly prefixHitBytes: HotHistogram;
  readonly flowDispatchCycle: Histogram;
  readonly flowEnqueueDuration: Histogram<"fairness_id" | "priority" | "outcome">;
  readonly flowQueueDuration: Histogram<
    "fairness_id" | "priority" | "outcome" | "inference_pool" | "model_name" | "target_model_name"
  >;
  readonly flowQueueSize: Gauge<"fairness_id" | "priority" | "inference_pool" | "model_name" | "target_model_name">;
  readonly flowQueueBytes: Gauge<"fairness_id" | "priority" | "inference_pool" | "model_name" | "target_model_name">;
  readonly poolSaturation: Gauge<"inference_pool">;

  // switchyard's own
  readonly shedTotal: Counter<"criticality" | "reason">;
  readonly scrapeErrors: Counter<"pod" | "endpoint" | "reason">;
  /** A HotHistogram: observed once per scrape per endpoint on the main thread (20,000 a second at 1,000 pods). */
  readonly scrapeDuration: HotHistogram<"pod" | "endpoint">;
  readonly scrapeWorkerRestarts: Counter;
  readonly metricsAge: Gauge<"pod" | "endpoint">;
  readonly streamsInFlight: Gauge;
  readonly ttft: HotHistogram<"model_name" | "target_model_name">;
  readonly rateLimited: Counter<"tenant" | "model_name" | "limit">;
  readonly tokensCharged: HotCounter<"model_name" | "kind">;
  readonly queueWait: Histogram<"priority" | "outcome">;
  readonly recommendedReplicas: Gauge<"inference_pool">;
  readonly autoscalingHintErrors: Counter<"inference_pool">;
  readonly labelsCapped: Counter<"label" | "reason">;
  readonly resourceReloads: Counter<"outcome">;
  readonly streamsLimited: Counter<"reason">;
  readonly scrapesRefused: Counter<"status">;

  readonly #options: MetricsOptions;
  readonly #models: LabelCapper;
  readonly #capLog = new LogThrottle();
  #knownModel: (name: string) => boolean = () => false;
  readonly #expiryListeners: ((names: readonly string[]) => void)[] = [];
  readonly #sweepTimer: NodeJS.Timeout | undefined;

  constructor(options: MetricsOptions = {}) {
    this.#options = options;
    const r = this.registry;
    this.labelsCapped = new Counter({
      name: "switchyard_metric_labels_capped_total",
      help: 'Label values from requests replaced by "other": reason too_long (--metrics-label-max-length) or too_many (--metrics-model-label-limit, admission.tenantLabelLimit).',
      labelNames: ["label", "reason"],
      registers: [r],
    });
    this.resourceReloads = new Counter({
      name: "switchyard_resource_reloads_total",
      help: "Reloads of --resources files by outcome: applied, or kept (the last good view stays) because the file was kept_empty, kept_changing (rewritten while read), kept_invalid, too_large or path_missing.",
      labelNames: ["outcome"],
      registers: [r],
    });
    this.streamsLimited = new Counter({
      name: "switchyard_extproc_streams_limited_total",
      help: "ext_proc streams refused (per_connection_limit, --grpc-max-streams-per-connection) or ended (idle_timeout, --grpc-stream-idle-timeout).",
      labelNames: ["reason"],
      registers: [r],
    });
    this.scrapesRefused = new Counter({
      name: "switchyard_metrics_requests_refused_total",
      help: "Requests to /metrics or /debug/* refused by --metrics-endpoint-auth: 401 no valid token, 403 not allowed, 503 API server unavailable.",
      labelNames: ["status"],
      registers: [r],
    });
    this.#models = new LabelCapper({
      limit: options.modelLabelLimit ?? DEFAULT_MODEL_LABEL_LIMIT,
      maxLength: this.labelMaxLength,
      idleMs: options.modelLabelIdleMs ?? DEFAULT_MODEL_LABEL_IDLE_MS,
      onCapped: this.labelCapped("model_name"),
    });
    const idle = options.modelLabelIdleMs ?? DEFAULT_MODEL_LABEL_IDLE_MS;
    if (Number.isFinite(idle) && idle > 0) {
      // A quarter of the idle bound: a name expires between 0.75x and 1x its idle time after its last use.
      this.#sweepTimer = setInterval(() => void this.sweepModelLabels(), Math.max(1000, idle / 4));
      this.#sweepTimer.unref();
    }
    const mt = ["model_name", "target_model_name"] as const;
    this.requestTotal = new HotCounter({
      name: "inference_objective_request_total",
      help: "Counter of inference objective requests broken out for each model and target model.",
      labelNames: ["model_name", "target_model_name", "priority"],
      registers: [r],
    });
    this.requestErrorTotal = new HotCounter({
      name: "inference_objective_request_error_total",
      help: "Counter of inference objective requests errors broken out for each model and target model.",
      labelNames: ["model_name", "target_model_name", "error_code"],
      registers: [r],
    });
    this.requestDuration = new HotHistogram({
      name: "inference_objective_request_duration_seconds",
      help: "Inference objective response latency distribution in seconds for each model and target model.",
      labelNames: mt,
      buckets: DURATION_BUCKETS,
      registers: [r],
    });
    this.requestSizes = new HotHistogram({
      name: "inference_objective_request_sizes",
      help: "Inference objective requests size distribution in bytes for each model and target model.",
      labelNames: mt,
      buckets: SIZE_BUCKETS,
      registers: [r],
    });
    this.responseSizes = new HotHistogram({
      name: "inference_objective_response_sizes",
      help: "Inference objective responses size distribution in bytes for each model and target model.",
      labelNames: mt,
      buckets: SIZE_BUCKETS,
      registers: [r],
    });
    this.inputTokens = new HotHistogram({
      name: "inference_objective_input_tokens",
      help: "Inference objective input token count distribution for requests in each model.",
      labelNames: mt,
      buckets: TOKEN_BUCKETS,
      registers: [r],
    });
    this.outputTokens = new HotHistogram({
      name: "inference_objective_output_tokens",
      help: "Inference objective output token count distribution for requests in each model.",
      labelNames: mt,
      buckets: TOKEN_BUCKETS,
      registers: [r],
    });
    this.promptCachedTokens = new HotHistogram({
      name: "inference_objective_prompt_cached_tokens",
      help: "Inference objective prompt cached token count distribution for requests in each model.",
      labelNames: mt,
      buckets: TOKEN_BUCKETS,
      registers: [r],
    });
    this.ntpot = new HotHistogram({
      name: "inference_objective_normalized_time_per_output_token_seconds",
      help: "Inference objective latency divided by number of output tokens in seconds for each model and target model.",
      labelNames: mt,
      buckets: NTPOT_BUCKETS,
      registers: [r],
    });
    this.runningRequests = new HotGauge({
      name: "inference_objective_running_requests",
      help: "Inference objective number of running requests in each model.",
      labelNames: ["model_name"],
      registers: [r],
    });
    this.schedulerE2e = new HotHistogram({
      name: "inference_extension_scheduler_e2e_duration_seconds",
      help: "End-to-end scheduling latency distribution in seconds.",
      buckets: SCHEDULER_BUCKETS,
      registers: [r],
    });
    this.schedulerAttempts = new HotCounter({
      name: "inference_extension_scheduler_attempts_total",
      help: "Total number of scheduling attempts.",
      labelNames: ["status", "target_model_name", "pod_name", "namespace", "port"],
      registers: [r],
    });
    this.pluginDuration = new HotHistogram({
      name: "inference_extension_plugin_duration_seconds",
      help: "Plugin processing latency distribution in seconds for each extension point, plugin type and plugin name.",
      labelNames: ["extension_point", "plugin_type", "plugin_name"],
      buckets: SCHEDULER_BUCKETS,
      registers: [r],
    });
    this.modelRewriteDecisions = new HotCounter({
      name: "inference_extension_model_rewrite_decisions_total",
      help: "Total number of model rewrite decisions.",
      labelNames: ["model_rewrite_name", "model_name", "target_model"],
      registers: [r],
    });
    this.prefixHitRatio = new HotHistogram({
      name: "inference_extension_prefix_indexer_hit_ratio",
      help: "Ratio of the request's prefix found in the prefix-cache index (best endpoint), per scheduled request.",
      buckets: RATIO_BUCKETS,
      registers: [r],
    });
    this.prefixHitBytes = new HotHistogram({
      name: "inference_extension_prefix_indexer_hit_bytes",
      help: "Length of the request prefix found in the prefix-cache index (best endpoint), per scheduled request.",
      buckets: HIT_BYTES_BUCKETS,
      registers: [r],
    });
    new Gauge({
      name: "inference_extension_prefix_indexer_size",
      help: "Number of block entries in the prefix-cache index.",
      registers: [r],
      collect() {
        this.reset();
        const size = options.prefixIndexSize?.();
        if (size !== undefined) this.set(size);
      },
    });
    this.flowDispatchCycle = new Histogram({
      name: "inference_extension_flow_control_dispatch_cycle_duration_seconds",
      help: "Distribution of the time taken for each flow-control dispatch cycle.",
      buckets: SCHEDULER_BUCKETS,
      registers: [r],
    });
    this.flowEnqueueDuration = new Histogram({
      name: "inference_extension_flow_control_request_enqueue_duration_seconds",
      help: "Distribution of the time taken to enqueue requests into the flow control layer.",
      labelNames: ["fairness_id", "priority", "outcome"],
      buckets: SCHEDULER_BUCKETS,
      registers: [r],
    });
    const flowLabels = ["fairness_id", "priority", "inference_pool", "model_name", "target_model_name"] as const;
    this.flowQueueDuration = new Histogram({
      name: "inference_extension_flow_control_request_queue_duration_seconds",
      help: "Distribution of the total time requests spend in the flow control layer.",
      labelNames: ["fairness_id", "priority", "outcome", "inference_pool", "model_name", "target_model_name"],
      buckets: QUEUE_WAIT_BUCKETS,
      registers: [r],
    });
    this.flowQueueSize = new Gauge({
      name: "inference_extension_flow_control_queue_size",
      help: "Current number of requests being actively managed by the flow control layer.",
      labelNames: flowLabels,
      registers: [r],
    });
    this.flowQueueBytes = new Gauge({
      name: "inference_extension_flow_control_queue_bytes",
      help: "Current size in bytes of requests being actively managed by the flow control layer.",
      labelNames: flowLabels,
      registers: [r],
    });
    const self = this;
    this.poolSaturation = new Gauge({
      name: "inference_extension_flow_control_pool_saturation",
      help: "Current saturation of the inference pool (mean over endpoints of max(queue/Q, kv/KV); >= 1 is saturated).",
      labelNames: ["inference_pool"],
      registers: [r],
      collect() {
        const s = self.#options.poolSnapshot?.();
        this.reset();
        if (s) this.set({ inference_pool: s.poolName }, s.saturation);
      },
    });
    new Gauge({
      name: "inference_extension_info",
      help: "General information of the current build of Inference Extension.",
      labelNames: ["commit", "build_ref"],
      registers: [r],
      collect() {
        this.set({ commit: options.commit ?? "unknown", build_ref: options.buildRef ?? "switchyard" }, 1);
      },
    });
    this.#registerPoolGauges();

    this.shedTotal = new Counter({
      name: "switchyard_requests_shed_total",
      help: "Requests rejected by admission control, by criticality and reason (saturated, rate_limited, queue_full, queue_timeout, client_disconnected).",
      labelNames: ["criticality", "reason"],
      registers: [r],
    });
    // Zero-initialised so rate() and the shed-rate alert have a series before the first shed, not "no data".
    this.shedTotal.inc({ criticality: "Sheddable", reason: "saturated" }, 0);
    this.scrapeErrors = new Counter({
      name: "switchyard_scrape_errors_total",
      help: "Failed /metrics scrapes of model-server endpoints.",
      labelNames: ["pod", "endpoint", "reason"],
      registers: [r],
    });
    this.scrapeDuration = new HotHistogram({
      name: "switchyard_scrape_duration_seconds",
      help: "Latency of /metrics scrapes of model-server endpoints.",
      labelNames: ["pod", "endpoint"],
      buckets: SCRAPE_BUCKETS,
      registers: [r],
    });
    this.scrapeWorkerRestarts = new Counter({
      name: "switchyard_scrape_worker_restarts_total",
      help: "Scrape worker threads that died (an uncaught error or an exit) and were restarted (--scrape-workers).",
      registers: [r],
    });
    this.metricsAge = new Gauge({
      name: "switchyard_endpoint_metrics_age_seconds",
      help: "Age of each endpoint's latest successful scrape at Prometheus scrape time (+Inf when never scraped).",
      labelNames: ["pod", "endpoint"],
      registers: [r],
      collect() {
        const s = self.#options.poolSnapshot?.();
        this.reset();
        if (!s) return;
        for (const e of s.endpoints)
          this.set({ pod: e.name, endpoint: e.key }, e.ageMs === null ? Number.POSITIVE_INFINITY : e.ageMs / 1000);
      },
    });
    new Gauge({
      name: "switchyard_endpoint_scrape_up",
      help: "1 when the endpoint's latest /metrics scrape succeeded, 0 when it failed (absent before the first attempt).",
      labelNames: ["pod", "endpoint"],
      registers: [r],
      collect() {
        const s = self.#options.poolSnapshot?.();
        this.reset();
        if (!s) return;
        for (const e of s.endpoints) {
          const ok = scrapeOk(e);
          if (ok !== undefined) this.set({ pod: e.name, endpoint: e.key }, ok ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: "switchyard_pool_endpoints",
      help: "Endpoints in the pool, fresh or not (inference_pool_ready_pods counts only those with fresh metrics).",
      labelNames: ["name"],
      registers: [r],
      collect() {
        const s = self.#options.poolSnapshot?.();
        this.reset();
        if (s) this.set({ name: s.poolName }, s.endpoints.length);
      },
    });
    this.streamsInFlight = new Gauge({
      name: "switchyard_extproc_streams_in_flight",
      help: "ext_proc streams currently open.",
      registers: [r],
      collect() {
        const open = options.streamsInFlight?.();
        if (open !== undefined) this.set(open);
      },
    });
    this.ttft = new HotHistogram({
      name: "switchyard_request_ttft_seconds",
      help: "Time to first token as seen at the EPP: from the routing decision to the first response body byte.",
      labelNames: mt,
      buckets: TTFT_BUCKETS,
      registers: [r],
    });
    this.rateLimited = new Counter({
      name: "switchyard_rate_limited_total",
      help: "Requests rejected by token or request budgets, by tenant, model and limit (tpm, rpm).",
      labelNames: ["tenant", "model_name", "limit"],
      registers: [r],
    });
    this.tokensCharged = new HotCounter({
      name: "switchyard_budget_tokens_total",
      help: "Tokens charged to budgets: kind=estimated at admission, kind=reconciled after the response.",
      labelNames: ["model_name", "kind"],
      registers: [r],
    });
    this.queueWait = new Histogram({
      name: "switchyard_queue_wait_seconds",
      help: "Time requests waited in the flow-control queue, by priority band and outcome.",
      labelNames: ["priority", "outcome"],
      buckets: QUEUE_WAIT_BUCKETS,
      registers: [r],
    });
    this.recommendedReplicas = new Gauge({
      name: "switchyard_pool_recommended_replicas",
      help: "Replica count recommended by the HPA formula ceil(ready x avg KV / target), clamped to [min, max].",
      labelNames: ["inference_pool"],
      registers: [r],
    });
    this.autoscalingHintErrors = new Counter({
      name: "switchyard_autoscaling_hint_errors_total",
      help: "Times the pool's autoscaling.switchyard.io annotations became invalid (its hints are then ignored).",
      labelNames: ["inference_pool"],
      registers: [r],
    });
    if (options.processMetrics !== false) collectDefaultMetrics({ register: r });
  }

  /** Pool gauges count only endpoints fresher than the staleness bound, as GIE does. */
  #registerPoolGauges(): void {
    const self = this;
    const fresh = (s: PoolSnapshot) => s.endpoints.filter((e) => e.ageMs !== null && e.ageMs <= s.stalenessMs);
    const average = (name: string, help: string, pick: (m: NonNullable<DebugEndpoint["metrics"]>) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["name"],
        registers: [this.registry],
        collect() {
          this.reset();
          const s = self.#options.poolSnapshot?.();
          if (!s) return;
          const values = fresh(s).flatMap((e) => (e.metrics === null ? [] : [pick(e.metrics)]));
          this.set({ name: s.poolName }, values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length);
        },
      });
    average(
      "inference_pool_average_kv_cache_utilization",
      "The average kv cache utilization for an inference server pool.",
      (m) => m.kvCacheUsage,
    );
    average(
      "inference_pool_average_queue_size",
      "The average number of requests pending in the model server queue.",
      (m) => m.queue,
    );
    average(
      "inference_pool_average_running_requests",
      "The average number of requests currently being processed by model servers.",
      (m) => m.running,
    );
    new Gauge({
      name: "inference_pool_ready_pods",
      help: "The number of ready pods in the inference server pool.",
      labelNames: ["name"],
      registers: [this.registry],
      collect() {
        this.reset();
        const s = self.#options.poolSnapshot?.();
        if (s) this.set({ name: s.poolName }, fresh(s).length);
      },
    });
    new Gauge({
      name: "inference_pool_per_pod_queue_size",
      help: "The total number of requests pending in the model server queue for each underlying pod.",
      labelNames: ["name", "model_server_pod"],
      registers: [this.registry],
      collect() {
        this.reset();
        const s = self.#options.poolSnapshot?.();
        if (!s) return;
        for (const e of fresh(s)) this.set({ name: s.poolName, model_server_pod: e.name }, e.metrics?.queue ?? 0);
      },
    });
  }

  /** `--metrics-label-max-length`. */
  get labelMaxLength(): number {
    return this.#options.labelMaxLength ?? DEFAULT_LABEL_MAX_LENGTH;
  }

  /** A reporter for capped values of one label: counted always, logged at most once per reason per 30 s. */
  labelCapped(label: string): (reason: CapReason, value: string) => void {
    return (reason, value) => {
      this.labelsCapped.inc({ label, reason });
      const suppressed = this.#capLog.take(`${label}/${reason}`);
      if (suppressed === undefined) return;
      this.#options.logger?.warn(
        {
          label,
          reason,
          length: value.length,
          // A prefix is enough to recognise the client; the full value is what must not be copied around.
          valuePrefix: value.slice(0, 64),
          suppressed,
          bound:
            reason === "too_long" ? `--metrics-label-max-length=${this.labelMaxLength}` : "--metrics-model-label-limit",
        },
        'metric label value replaced by "other"',
      );
    };
  }

  /**
   * The label value for a model name from a request: configured models keep their name (within the length bound),
   * unconfigured ones count against the limit and expire when idle.
   */
  modelLabel(name: string): string {
    if (this.#knownModel(name)) return name.length <= this.labelMaxLength ? name : this.#models.value(name);
    return this.#models.value(name);
  }

  /** Which model names are configured (never capped in number, never expired). */
  setKnownModels(known: (name: string) => boolean): void {
    this.#knownModel = known;
  }

  /** Called with the model names whose series were dropped, so callers drop cached children. */
  onModelLabelsExpired(listener: (names: readonly string[]) => void): void {
    this.#expiryListeners.push(listener);
  }

  /** Drops every series of model names unused for the idle bound; returns how many names expired. */
  async sweepModelLabels(): Promise<number> {
    const expired = this.#models.sweep().filter((n) => !this.#knownModel(n));
    if (expired.length === 0) return 0;
    const gone = new Set(expired);
    const matches = (labels: Readonly<Record<string, string | number>>) =>
      MODEL_LABEL_NAMES.some((n) => {
        const v = labels[n];
        return typeof v === "string" && gone.has(v);
      });
    for (const l of this.#expiryListeners) l(expired);
    for (const metric of this.registry.getMetricsAsArray()) {
      if (isHotMetric(metric)) {
        metric.removeWhere(matches);
        continue;
      }
      const m = metric as unknown as {
        labelNames?: readonly string[];
        get(): Promise<{ values: { labels: Record<string, string | number> }[] }>;
        remove(labels: Record<string, string | number>): void;
      };
      if (!m.labelNames?.some((n) => MODEL_LABEL_NAMES.includes(n))) continue;
      const seen = new Set<string>();
      for (const { labels } of (await m.get()).values) {
        if (!matches(labels)) continue;
        const { le: _le, ...series } = labels;
        const key = JSON.stringify(series);
        if (seen.has(key)) continue;
        seen.add(key);
        m.remove(series);
      }
    }
    return expired.length;
  }

  close(): void {
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
  }

  contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
