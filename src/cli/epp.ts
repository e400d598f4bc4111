/**
 * `switchyard epp`: the endpoint picker. Wires a resource source (files or Kubernetes) into the datastore, the
 * scrapers into endpoint metrics, the EndpointPickerConfig into a scheduler and admission, and serves ext_proc,
 * gRPC health and metrics on GIE's ports. Flags mirror GIE v1.5's EPP (docs/design/api-resources.md §7).
 */
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import type { LevelWithSilent } from "pino";
import { KubernetesScaler, parseScaleTarget } from "../admission/autoscale.js";
import { configuredTenantHeader } from "../admission/config.js";
import { createAdmissionController } from "../admission/controller.js";
import type { Admission } from "../admission/types.js";
import {
  DEFAULT_GRPC_HEALTH_PORT,
  DEFAULT_GRPC_PORT,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_METRICS_PORT,
  DEFAULT_METRICS_STALENESS_THRESHOLD_MS,
  DEFAULT_REFRESH_METRICS_INTERVAL_MS,
  DEFAULT_SCRAPE_TIMEOUT_MS,
  FAIRNESS_ID_HEADER,
  POOL_GROUP,
} from "../common/constants.js";
import { ConfigError } from "../common/errors.js";
import { DEFAULT_MAX_SERIES_PER_SIGNAL, EngineRegistry, validateEngineConfig } from "../datalayer/engines.js";
import {
  DEFAULT_IDLE_SCRAPE_INTERVAL_MS,
  DEFAULT_MODELS_INTERVAL_MS,
  DEFAULT_SCRAPE_WORKERS,
  MAX_SCRAPE_WORKERS,
  MetricsScraper,
} from "../datalayer/scraper.js";
import { Datastore } from "../datastore/datastore.js";
import { isFresh } from "../datastore/types.js";
import { createHealthServer } from "../extproc/health.js";
import {
  createExtProcServer,
  DEFAULT_MAX_STREAMS_PER_CONNECTION,
  DEFAULT_STREAM_IDLE_TIMEOUT_MS,
  DEFAULT_STREAM_RESETS_PER_SECOND,
} from "../extproc/server.js";
import type { DebugSnapshot } from "../observability/debug.js";
import { DecisionLog } from "../observability/decisions.js";
import { startMetricsServer } from "../observability/http.js";
import {
  DEFAULT_LABEL_MAX_LENGTH,
  DEFAULT_MODEL_LABEL_IDLE_MS,
  DEFAULT_MODEL_LABEL_LIMIT,
} from "../observability/label-cap.js";
import { createLogger, DEFAULT_LOG_FLUSH_INTERVAL_MS, type Logger } from "../observability/logger.js";
import { EppMetrics } from "../observability/metrics.js";
import { createScrapeAuthorizer, kubernetesReviewApi, type ReviewApi } from "../observability/scrape-auth.js";
import { Director } from "../request/director.js";
import type { LifecycleFactory } from "../request/lifecycle.js";
import { createPluginHandle, createScheduler, loadPickerConfig, type PickerConfig } from "../scheduling/index.js";
import { DEFAULT_RESOURCES_MAX_BYTES, FileSource } from "../sources/file.js";
import { KubernetesSource, loadKubeConfig } from "../sources/kubernetes.js";
import { LeaderElector, leaseNameFor } from "../sources/leader.js";
import { instrumentScheduler, pluginDurationRecorder, prefixIndexSize, timedPreRequest } from "./epp-telemetry.js";
import { checks, type FlagValues, formatHelp, parseFlags } from "./flags.js";

export const EPP_FLAGS = {
  "grpc-port": { kind: "int", default: DEFAULT_GRPC_PORT, help: "ext_proc gRPC port", check: checks.port },
  "grpc-health-port": {
    kind: "int",
    default: DEFAULT_GRPC_HEALTH_PORT,
    help: "gRPC health port (grpc.health.v1: '', liveness, readiness, envoy.service.ext_proc.v3.ExternalProcessor)",
    check: checks.port,
  },
  "metrics-port": {
    kind: "int",
    default: DEFAULT_METRICS_PORT,
    help: "HTTP port for /metrics and /debug/endpoints",
    check: checks.port,
  },
  "metrics-bind-address": {
    kind: "string",
    default: "",
    help: 'where /metrics and /debug/* listen, host:port; "" = --host and --metrics-port, "0" = no metrics server at all',
  },
  "metrics-endpoint-auth": {
    kind: "bool",
    default: true,
    help: "Kubernetes mode: /metrics and /debug/* require a bearer token allowed to get the path (TokenReview + SubjectAccessReview), as GIE; ignored with --resources",
  },
  "enable-debug-endpoints": {
    kind: "bool",
    default: false,
    help: "serve /debug/endpoints (pod IPs, models, recent decisions; what `switchyard top` reads) on the metrics server",
  },
  host: {
    kind: "string",
    default: "0.0.0.0",
    help: "address the ext_proc, gRPC health and metrics servers bind to; the default 0.0.0.0 is every interface (as GIE), use 127.0.0.1 to keep them on this machine",
  },
  "pool-name": { kind: "string", default: "", help: "InferencePool this EPP serves" },
  "pool-namespace": {
    kind: "string",
    default: "",
    help: 'namespace of the pool; "" means $NAMESPACE, else "default"',
  },
  "pool-group": { kind: "string", default: POOL_GROUP, help: "API group of the pool resource" },
  resources: {
    kind: "string",
    default: "",
    help: "file or directory of Kubernetes-style YAML (pools, models, objectives, rewrites, pods); reloaded on change. Without it the EPP watches the Kubernetes API",
  },
  "resources-max-bytes": {
    kind: "int",
    default: DEFAULT_RESOURCES_MAX_BYTES,
    help: "largest --resources file read; a larger one is refused and its last good objects stay",
    check: checks.positive,
  },
  kubeconfig: { kind: "string", default: "", help: "kubeconfig path; default in-cluster config, then $KUBECONFIG" },
  "endpoint-selector": {
    kind: "string",
    default: "",
    help: "standalone mode without an InferencePool: pod label selector k=v,k2=v2 (exclusive with --pool-name)",
  },
  "endpoint-target-ports": { kind: "list", default: [], help: "standalone mode: 1-8 target ports, comma-separated" },
  "disable-endpoint-subset-filter": {
    kind: "bool",
    default: false,
    help: "ignore the proxy's envoy.lb.subset_hint",
  },
  "refresh-metrics-interval": {
    kind: "duration",
    default: DEFAULT_REFRESH_METRICS_INTERVAL_MS,
    help: "how often each endpoint's /metrics is scraped",
    check: checks.positive,
  },
  "refresh-metrics-idle-interval": {
    kind: "duration",
    default: DEFAULT_IDLE_SCRAPE_INTERVAL_MS,
    help:
      "how often an idle endpoint (nothing running or waiting, nothing in flight from this EPP) is scraped; " +
      "0 = every endpoint at --refresh-metrics-interval",
    check: checks.nonNegative,
  },
  "refresh-prometheus-metrics-interval": {
    kind: "duration",
    default: 5000,
    help: "accepted for GIE compatibility; pool gauges are computed when Prometheus scrapes, so this has no effect",
  },
  "metrics-staleness-threshold": {
    kind: "duration",
    default: DEFAULT_METRICS_STALENESS_THRESHOLD_MS,
    help: "endpoints whose metrics are older than this are left out of the pool gauges",
  },
  "metrics-label-max-length": {
    kind: "int",
    default: DEFAULT_LABEL_MAX_LENGTH,
    help: 'longest model name or tenant from a request kept as a metric label value; longer ones are labelled "other" (counted in switchyard_metric_labels_capped_total)',
    check: checks.positive,
  },
  "metrics-model-label-limit": {
    kind: "int",
    default: DEFAULT_MODEL_LABEL_LIMIT,
    help: 'distinct unconfigured model names given their own metric series; later ones are labelled "other"',
    check: checks.nonNegative,
  },
  "metrics-model-label-idle-expiry": {
    kind: "duration",
    default: DEFAULT_MODEL_LABEL_IDLE_MS,
    help: "series of an unconfigured model name are dropped after it has been unused this long, freeing its slot",
    check: checks.positive,
  },
  "scrape-max-series": {
    kind: "int",
    default: DEFAULT_MAX_SERIES_PER_SIGNAL,
    help: "series of one signal (queue, running, KV) accepted in one /metrics body; more, a negative value or a repeated series refuses the scrape (reason implausible)",
    check: checks.positive,
  },
  "scrape-workers": {
    kind: "int",
    default: DEFAULT_SCRAPE_WORKERS,
    help: `worker threads that scrape, parse and extract /metrics off the request path's event loop (docs/design/model-servers.md §9); 0 = on the main event loop; at most ${MAX_SCRAPE_WORKERS}`,
    check: (v: number) => (v >= 0 && v <= MAX_SCRAPE_WORKERS ? undefined : `must be 0..${MAX_SCRAPE_WORKERS}`),
  },
  "scrape-timeout": {
    kind: "duration",
    default: DEFAULT_SCRAPE_TIMEOUT_MS,
    help: "deadline for one /metrics scrape (connect included)",
    check: checks.positive,
  },
  "grpc-stream-resets-per-second": {
    kind: "int",
    default: DEFAULT_STREAM_RESETS_PER_SECOND,
    help:
      "RST_STREAMs one ext_proc connection may send per second (burst twice that) before Node closes it; Envoy resets " +
      "every finished stream unless its graceful-close flag is on. Node >= 22.10 only (Node 20: fixed at 33/s)",
    check: checks.positive,
  },
  "served-models-refresh-interval": {
    kind: "duration",
    default: DEFAULT_MODELS_INTERVAL_MS,
    help: "how often each endpoint's /v1/models (base models, aliases, adapters it serves) is read; 0 = never",
    check: checks.nonNegative,
  },
  "ha-enable-leader-election": {
    kind: "bool",
    default: false,
    help: "take a coordination.k8s.io Lease; only the leader reports ready (active-passive, as GIE)",
  },
  "secure-serving": {
    kind: "bool",
    default: true,
    help: "serve ext_proc over TLS (self-signed unless --cert-path)",
  },
  "cert-path": { kind: "string", default: "", help: "directory holding tls.crt and tls.key" },
  "health-checking": {
    kind: "bool",
    default: false,
    help: "also register the gRPC health service on the ext_proc port",
  },
  "config-file": { kind: "string", default: "", help: "EndpointPickerConfig YAML file (exclusive with --config-text)" },
  "config-text": { kind: "string", default: "", help: "EndpointPickerConfig YAML text (exclusive with --config-file)" },
  "grpc-max-streams-per-connection": {
    kind: "int",
    default: DEFAULT_MAX_STREAMS_PER_CONNECTION,
    help: "open ext_proc streams allowed on one client connection (advertised as HTTP/2 MAX_CONCURRENT_STREAMS); more get RESOURCE_EXHAUSTED",
    check: checks.positive,
  },
  "grpc-stream-idle-timeout": {
    kind: "duration",
    default: DEFAULT_STREAM_IDLE_TIMEOUT_MS,
    help: "an ext_proc stream that receives no message for this long is ended with DEADLINE_EXCEEDED (0 = never); keep it above the longest time to first token",
    check: checks.nonNegative,
  },
  "max-body-bytes": {
    kind: "int",
    default: DEFAULT_MAX_BODY_BYTES,
    help: "largest request body accepted; larger bodies get 413",
    check: checks.positive,
  },
  "request-body-mode": {
    kind: "string",
    default: "full-duplex",
    help: "body mode assumed when Envoy sends no protocol_config: full-duplex | buffered",
    check: (v: string) => (v === "full-duplex" || v === "buffered" ? undefined : "must be full-duplex or buffered"),
  },
  "echo-request-headers": {
    kind: "bool",
    default: false,
    help: "echo every received request header back like GIE (default: send only what changed)",
  },
  "reject-unknown-models": {
    kind: "bool",
    default: false,
    help: "answer 404 for models no InferenceModel or rewrite names (GIE v1 serves them as Standard)",
  },
  "tenant-header": {
    kind: "string",
    default: FAIRNESS_ID_HEADER,
    help: "request header naming the tenant for budgets and fair queueing",
  },
  autoscale: {
    kind: "bool",
    default: false,
    help: "patch the scale subresource of --autoscale-target with switchyard_pool_recommended_replicas when it changes",
  },
  "autoscale-target": {
    kind: "string",
    default: "",
    help: "workload --autoscale scales, deployment/<name> or statefulset/<name>, in the pool's namespace",
  },
  "drain-timeout": {
    kind: "duration",
    default: 30_000,
    help: "on SIGTERM, how long in-flight streams may finish before the process exits",
  },
  "log-level": {
    kind: "string",
    default: "info",
    help: "trace | debug | info | warn | error | silent (debug logs every routing decision)",
  },
  v: {
    kind: "int",
    default: 0,
    help: "GIE verbosity; when set, 1-2 = info, 3 = debug (VERBOSE), 4+ = trace; overrides --log-level",
  },
  "plugin-timing-sample": {
    kind: "int",
    default: 8,
    help: "record inference_extension_plugin_duration_seconds on one scheduling cycle in N (1 = every cycle, as GIE)",
    check: checks.positive,
  },
  "log-flush-interval": {
    kind: "duration",
    default: DEFAULT_LOG_FLUSH_INTERVAL_MS,
    help: "longest a log line waits in the output buffer (lines are batched up to 4 KiB); 0 = write every line at once",
    check: checks.nonNegative,
  },
  "log-format": { kind: "string", default: "auto", help: "json | pretty | auto (pretty when stdout is a TTY)" },
  "v8-allocation-site-pretenuring": {
    kind: "bool",
    default: false,
    help: "leave V8's allocation-site pretenuring on (off by default: it can move per-request objects to old space)",
  },
  // Deprecated GIE flags: rejected when set, exactly as GIE v1.5 does, with the replacement named.
  ...Object.fromEntries(
    [
      "total-queued-requests-metric",
      "total-running-requests-metric",
      "kv-cache-usage-percentage-metric",
      "lora-info-metric",
      "cache-info-metric",
      "model-server-metrics-scheme",
      "model-server-metrics-path",
      "model-server-metrics-port",
      "model-server-metrics-https-insecure-skip-verify",
    ].map((name) => [
      name,
      {
        kind: "string",
        default: "",
        help: "deprecated in GIE v1.5 and rejected; configure engineConfigs of core-metrics-extractor instead",
        check: () =>
          "deprecated and rejected (as in GIE v1.5): use core-metrics-extractor engineConfigs in the config file",
      },
    ]),
  ),
} as const satisfies Record<string, unknown>;

type EppFlagValues = FlagValues<typeof EPP_FLAGS>;

const SUMMARY =
  "Endpoint picker for Envoy ext_proc (GIE v1 protocol). Resources come from --resources files or the Kubernetes API.\n" +
  "By default every port (ext_proc, gRPC health, metrics) binds 0.0.0.0, all interfaces; see --host and docs/security.md.";

export interface RunningEpp {
  readonly grpcPort: number;
  readonly healthPort: number;
  readonly metricsPort: number;
  readonly datastore: Datastore;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  /** What the ext_proc server drives per stream; bench/extproc drives it directly to isolate switchyard's own cost. */
  readonly lifecycles: LifecycleFactory;
  snapshot(): DebugSnapshot;
  /** Stops accepting streams, drains in-flight ones for up to `graceMs`, then closes everything. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartEppOverrides {
  readonly logger?: Logger;
  /** Replaces the admission layer built from the config (tests, benchmarks). */
  readonly admission?: (ctx: AdmissionContext) => Admission;
  /** Skip scraping (benchmarks that set endpoint metrics directly). */
  readonly scrape?: boolean;
  /** Use this datastore instead of creating one from --resources / Kubernetes (benchmarks). */
  readonly datastore?: Datastore;
  /** TokenReview / SubjectAccessReview client for --metrics-endpoint-auth (tests); default: the API server's. */
  readonly reviewApi?: ReviewApi;
}

export interface AdmissionContext {
  readonly config: PickerConfig;
  readonly datastore: Datastore;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  readonly detector: ReturnType<typeof createScheduler>["pluginSet"]["saturationDetector"];
  readonly refreshIntervalMs: number;
  /** `--metrics-staleness-threshold`: freshness bound of the autoscaling averages. */
  readonly poolMetricsStalenessMs?: number;
  /** `--autoscale`: writes the recommended replica count to the pool's workload. */
  readonly scaler?: KubernetesScaler;
  /** With leader election only the leader patches the scale subresource. */
  readonly isLeader?: () => boolean;
}

/** Admission factory used when the caller does not override it: budgets, shedding / flow control, autoscaling. */
let defaultAdmissionFactory = (ctx: AdmissionContext): Admission => createAdmissionController(ctx);

export function setDefaultAdmissionFactory(factory: (ctx: AdmissionContext) => Admission): void {
  defaultAdmissionFactory = factory;
}

function logLevel(f: EppFlagValues): LevelWithSilent {
  if (f.$set.has("v")) return f.v >= 4 ? "trace" : f.v >= 3 ? "debug" : "info";
  const level = f["log-level"];
  if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(level))
    throw new ConfigError(`unknown level "${level}"`, undefined, "--log-level");
  return level as LevelWithSilent;
}

/**
 * Metric mappings from GIE's `core-metrics-extractor` plugin parameters (engineLabelKey, defaultEngine,
 * engineConfigs[]), validated with the plugin's path in every message; the built-in vllm / sglang / trtllm-serve /
 * triton-tensorrt-llm mappings otherwise.
 */
function engineRegistry(config: PickerConfig): EngineRegistry {
  const spec = config.plugins.find((p) => p.type === "core-metrics-extractor");
  const params = spec?.parameters;
  if (params === undefined || params === null) return new EngineRegistry();
  const at = (field: string) => `${spec!.path}.parameters.${field}`;
  if (typeof params !== "object" || Array.isArray(params))
    throw new ConfigError("must be a mapping", config.file, `${spec!.path}.parameters`);
  const p = params as Record<string, unknown>;
  for (const key of Object.keys(p))
    if (!["engineLabelKey", "defaultEngine", "engineConfigs"].includes(key))
      throw new ConfigError("unknown parameter (engineLabelKey, defaultEngine, engineConfigs)", config.file, at(key));
  for (const key of ["engineLabelKey", "defaultEngine"] as const)
    if (p[key] !== undefined && typeof p[key] !== "string")
      throw new ConfigError("must be a string", config.file, at(key));
  const raw = p.engineConfigs ?? [];
  if (!Array.isArray(raw)) throw new ConfigError("must be a list", config.file, at("engineConfigs"));
  const engineConfigs = raw.map((c, i) => validateEngineConfig(c, at(`engineConfigs[${i}]`), config.file));
  try {
    return new EngineRegistry({
      engineConfigs,
      ...(typeof p.defaultEngine === "string" ? { defaultEngine: p.defaultEngine } : {}),
      ...(typeof p.engineLabelKey === "string" ? { engineLabelKey: p.engineLabelKey } : {}),
    });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError((err as Error).message, config.file, `${spec!.path}.parameters`);
  }
}

/**
 * Top-level EndpointPickerConfig sections owned outside scheduling. Anything else is rejected: a misspelt
 * `flowControl:` would otherwise switch flow control off without a word.
 */
const KNOWN_SECTIONS: ReadonlySet<string> = new Set(["admission", "flowControl", "autoscaling", "dataLayer", "parser"]);

function loadConfig(f: EppFlagValues): PickerConfig {
  const config = readConfig(f);
  for (const key of Object.keys(config.sections))
    if (!KNOWN_SECTIONS.has(key))
      throw new ConfigError(
        `unknown top-level section (known: apiVersion, kind, plugins, schedulingProfiles, saturationDetector, featureGates, ${[...KNOWN_SECTIONS].join(", ")})`,
        config.file ?? (f["config-text"] ? "--config-text" : undefined),
        key,
      );
  return config;
}

function readConfig(f: EppFlagValues): PickerConfig {
  if (f["config-file"] && f["config-text"])
    throw new ConfigError("--config-file and --config-text are mutually exclusive", undefined, "--config-file");
  if (f["config-text"]) return loadPickerConfig({ text: f["config-text"] });
  if (f["config-file"]) {
    let text: string;
    try {
      text = readFileSync(f["config-file"], "utf8");
    } catch (err) {
      throw new ConfigError(`cannot read: ${(err as Error).message}`, f["config-file"]);
    }
    return loadPickerConfig({ text, file: f["config-file"] });
  }
  return loadPickerConfig({});
}

export async function startEpp(argv: readonly string[], overrides: StartEppOverrides = {}): Promise<RunningEpp> {
  const f = parseFlags(EPP_FLAGS, argv);
  if (f.$args.length > 0) throw new ConfigError(`unexpected argument "${f.$args[0]}"`);
  // V8 may decide early, from a burst of requests still in flight, that an allocation site's objects live long and
  // allocate them straight in old space ("pretenuring"). For an EPP almost every per-request object dies within
  // the request, so that decision turns cheap scavenges into old-space GC: bench/extproc saw a third of runs settle
  // at ~2x the per-request CPU for the life of the process. Set before the request path allocates anything.
  if (!f["v8-allocation-site-pretenuring"]) setFlagsFromString("--no-allocation-site-pretenuring");
  const format = f["log-format"];
  const logger =
    overrides.logger ??
    createLogger({
      level: logLevel(f),
      pretty: format === "auto" ? undefined : format === "pretty",
      name: "epp",
      flushIntervalMs: f["log-flush-interval"],
    });
  const namespace = f["pool-namespace"] || process.env.NAMESPACE || "default";
  const standalone = f["endpoint-selector"] !== "";
  if (standalone && f["pool-name"])
    throw new ConfigError(
      "--endpoint-selector and --pool-name are mutually exclusive",
      undefined,
      "--endpoint-selector",
    );
  if (!standalone && !f["pool-name"] && !overrides.datastore)
    throw new ConfigError("required (or use --endpoint-selector for standalone mode)", undefined, "--pool-name");
  if (standalone && f.resources)
    throw new ConfigError(
      "standalone mode watches pods through the Kubernetes API; use --pool-name with --resources",
      undefined,
      "--endpoint-selector",
    );
  const targetPorts = f["endpoint-target-ports"].map((p) => Number(p));
  const poolName = standalone ? "standalone" : f["pool-name"];

  let config: PickerConfig;
  let engines: EngineRegistry;
  try {
    config = loadConfig(f);
    engines = engineRegistry(config);
  } catch (err) {
    logConfigRejected(logger, err);
    throw err;
  }
  for (const w of config.warnings) logger.warn({ config: config.file ?? "(inline)" }, w);

  const datastore = overrides.datastore ?? new Datastore({ poolName, poolNamespace: namespace, logger });
  const handle = createPluginHandle({ endpoints: () => datastore.endpoints() });
  const metrics = new EppMetrics({
    commit: process.env.SWITCHYARD_COMMIT,
    buildRef: process.env.SWITCHYARD_VERSION ?? "switchyard",
    poolSnapshot: () => {
      const pool = datastore.pool();
      if (!pool) return undefined;
      const now = performance.now();
      return {
        poolName: pool.name,
        stalenessMs: f["metrics-staleness-threshold"],
        saturation: detector.saturation(datastore.endpoints(), now),
        endpoints: datastore.endpoints().map((e) => ({
          name: e.name,
          key: e.key,
          ageMs: e.metrics ? now - e.metrics.updateTime : undefined,
          queue: e.metrics?.waitingQueueSize,
          running: e.metrics?.runningRequestsSize,
          kv: e.metrics?.kvCacheUsagePercent,
          scrapeOk: e.metrics || e.lastScrapeError ? e.lastScrapeError === undefined : undefined,
        })),
      };
    },
    prefixIndexSize: () => indexSize?.(),
    // Read from the server at scrape time: no per-stream bookkeeping on the request path.
    streamsInFlight: () => server.activeStreams(),
    labelMaxLength: f["metrics-label-max-length"],
    modelLabelLimit: f["metrics-model-label-limit"],
    modelLabelIdleMs: f["metrics-model-label-idle-expiry"],
    logger,
  });
  let scheduler: ReturnType<typeof createScheduler>;
  try {
    scheduler = createScheduler(config, handle, {
      onPluginDuration: pluginDurationRecorder(metrics),
      pluginTimingEvery: f["plugin-timing-sample"],
    });
  } catch (err) {
    logConfigRejected(logger, err);
    throw err;
  }
  const indexSize = prefixIndexSize(scheduler);
  logger.info(
    {
      config: config.file ?? (f["config-text"] ? "(--config-text)" : "(default)"),
      profile: scheduler.profile,
      plugins: scheduler.pluginSet.plugins.map((p) => `${p.typedName.name}:${p.typedName.type}`),
    },
    "configuration accepted",
  );
  const detector = scheduler.pluginSet.saturationDetector;
  const admissionCtx: AdmissionContext = {
    config,
    datastore,
    metrics,
    logger,
    detector,
    refreshIntervalMs: f["refresh-metrics-interval"],
    poolMetricsStalenessMs: f["metrics-staleness-threshold"],
    ...(f.autoscale ? { scaler: createScaler(f, namespace) } : {}),
    // Called from the autoscale timer, which first fires after `elector` below is initialised.
    ...(f["ha-enable-leader-election"] ? { isLeader: () => elector?.isLeader === true } : {}),
  };
  const admission = (overrides.admission ?? defaultAdmissionFactory)(admissionCtx);
  const decisions = new DecisionLog(50);
  const director = new Director({
    datastore,
    scheduler: instrumentScheduler(scheduler, metrics),
    preRequest: timedPreRequest(scheduler),
    admission,
    metrics,
    logger,
    decisions,
    rejectUnknownModels: f["reject-unknown-models"],
    disableSubsetFilter: f["disable-endpoint-subset-filter"],
    // An explicit --tenant-header wins over admission.tenantHeader in the config.
    tenantHeader: f.$set.has("tenant-header")
      ? f["tenant-header"]
      : (configuredTenantHeader(config) ?? f["tenant-header"]),
  });

  datastore.onEndpointsChanged((added, removed) => {
    // One line per endpoint for the first few; a reload that adds 20k pods is summarised by the datastore's
    // "endpoints changed" line instead of 20k lines written on the request path's thread.
    for (const e of added.slice(0, 10)) logger.info({ endpoint: e.key, pod: e.podName }, "endpoint joined the pool");
    for (const e of removed.slice(0, 10)) logger.info({ endpoint: e.key, pod: e.podName }, "endpoint left the pool");
    for (const e of removed) scheduler.endpointRemoved(e.key);
  });

  // Sources: files, or the Kubernetes API (informers).
  const leaderElection = f["ha-enable-leader-election"];
  let elector: LeaderElector | undefined;
  let kubeSource: KubernetesSource | undefined;
  let stopSource: () => Promise<void> = async () => {};
  if (!overrides.datastore) {
    if (f.resources) {
      const source = new FileSource({
        path: f.resources,
        datastore,
        logger,
        maxBytes: f["resources-max-bytes"],
        onOutcome: (outcome) => metrics.resourceReloads.inc({ outcome }),
      });
      const report = await source.start();
      logger.info(
        { resources: f.resources, accepted: report.accepted, rejected: report.rejected.length },
        "resources loaded",
      );
      stopSource = () => source.stop();
    } else {
      const source = new KubernetesSource({
        ...(f.kubeconfig ? { kubeconfig: f.kubeconfig } : {}),
        namespace,
        poolName,
        poolGroup: f["pool-group"],
        datastore,
        logger,
        ...(standalone ? { standalone: { selector: f["endpoint-selector"], targetPorts, poolName } } : {}),
        // Only the leader writes InferenceModel status, so replicas never fight over conditions.
        writeStatus: leaderElection ? () => elector?.isLeader === true : true,
      });
      kubeSource = source;
      await source.start();
      logger.info({ pool: poolName, namespace }, "kubernetes source synced");
      stopSource = async () => source.stop();
    }
  }

  const scraper =
    overrides.scrape === false
      ? undefined
      : new MetricsScraper({
          source: datastore,
          engines,
          intervalMs: f["refresh-metrics-interval"],
          timeoutMs: f["scrape-timeout"],
          modelsIntervalMs: f["served-models-refresh-interval"],
          idleIntervalMs: f["refresh-metrics-idle-interval"],
          maxSeries: f["scrape-max-series"],
          workers: f["scrape-workers"],
          logger,
          hooks: {
            onScrape: (endpoint, result) => {
              const labels = { pod: endpoint.name, endpoint: endpoint.key };
              metrics.scrapeDuration.observe(labels, result.durationMs / 1000);
              if (!result.ok) metrics.scrapeErrors.inc({ ...labels, reason: result.error?.reason ?? "unknown" });
            },
            onWorkerExit: () => metrics.scrapeWorkerRestarts.inc(),
          },
        });
  scraper?.start();

  const health = createHealthServer({ host: f.host, port: f["grpc-health-port"], leaderElection });
  const server = createExtProcServer({
    host: f.host,
    port: f["grpc-port"],
    factory: director,
    logger,
    maxBodyBytes: f["max-body-bytes"],
    defaultRequestBodyMode: f["request-body-mode"] as "full-duplex" | "buffered",
    echoRequestHeaders: f["echo-request-headers"],
    streamResetsPerSecond: f["grpc-stream-resets-per-second"],
    tls: f["secure-serving"] ? (f["cert-path"] ? { certPath: f["cert-path"] } : {}) : false,
    maxStreamsPerConnection: f["grpc-max-streams-per-connection"],
    streamIdleTimeoutMs: f["grpc-stream-idle-timeout"],
    onStreamLimited: (reason) => metrics.streamsLimited.inc({ reason }),
    ...(f["health-checking"] ? { healthOnSamePort: health.state } : {}),
  });

  const snapshot = (): DebugSnapshot => {
    const now = performance.now();
    const pool = datastore.pool();
    const endpoints = datastore.endpoints();
    return {
      version: 1,
      time: new Date().toISOString(),
      pool: pool
        ? { name: pool.name, namespace: pool.namespace, selector: pool.selector, targetPorts: pool.targetPorts }
        : null,
      synced: datastore.synced(),
      saturation: detector.saturation(endpoints, now),
      saturated: detector.isSaturated(endpoints, now),
      endpoints: endpoints.map((e) => {
        const m = e.metrics;
        return {
          name: e.name,
          key: e.key,
          pod: e.podName,
          engine: e.engine,
          fresh: isFresh(e, now, detector.metricsStalenessMs),
          ageMs: m ? Math.round(now - m.updateTime) : null,
          metrics: m
            ? {
                queue: m.waitingQueueSize,
                running: m.runningRequestsSize,
                kvCacheUsage: m.kvCacheUsagePercent,
                activeAdapters: [...m.activeModels],
                waitingAdapters: [...m.waitingModels],
                maxLoras: m.maxActiveModels,
                blockSize: m.cacheBlockSize,
                numBlocks: m.cacheNumBlocks,
              }
            : null,
          inflight: e.inflightRequests,
          inflightTokens: e.inflightTokens,
          routed: e.routedRequests,
          lastScrapeError: e.lastScrapeError ?? null,
        };
      }),
      decisions: decisions.recent(20),
    };
  };

  const bind = metricsBindAddress(f);
  // Scrapers are authenticated against the API server this EPP already talks to; file mode has none.
  const kubernetesMode = !overrides.datastore && !f.resources;
  const authorizer =
    kubernetesMode && f["metrics-endpoint-auth"] && bind !== undefined
      ? createScrapeAuthorizer(overrides.reviewApi ?? kubernetesReviewApi(loadKubeConfig(f.kubeconfig || undefined)))
      : undefined;
  const metricsServer =
    bind === undefined
      ? { port: 0, close: async () => {} }
      : await startMetricsServer({
          host: bind.host,
          port: bind.port,
          metrics,
          ...(f["enable-debug-endpoints"] ? { debugSnapshot: snapshot } : {}),
          logger,
          ...(authorizer
            ? { authorizer, onRefused: (status: number) => metrics.scrapesRefused.inc({ status: String(status) }) }
            : {}),
        });
  const { port: grpcPort } = await server.start();
  const healthPort = (await health.start()).port;

  if (leaderElection) {
    elector = new LeaderElector({
      ...(f.kubeconfig ? { kubeconfig: f.kubeconfig } : {}),
      namespace,
      leaseName: leaseNameFor(namespace, poolName),
      logger,
      onStartedLeading: () => {
        logger.info("became leader");
        health.setLeader(true);
        kubeSource?.resync();
      },
      onStoppedLeading: () => {
        logger.warn("lost leadership");
        health.setLeader(false);
      },
    });
    elector.start();
  }

  // Ready once resources are loaded and every endpoint has had its first scrape attempt (GIE: pool synced).
  let firstRoundDone = false;
  void (scraper ? scraper.firstRound() : Promise.resolve()).then(() => {
    firstRoundDone = true;
    health.setSynced(datastore.synced() || overrides.datastore !== undefined);
    logger.info({ synced: datastore.synced(), endpoints: datastore.endpoints().length }, "first scrape round done");
  });
  // A pool deleted later makes the EPP unready again, and one that appears later ready, with or without pods, as
  // GIE's readiness follows its pool (docs/kubernetes.md).
  datastore.onSyncedChanged((synced) => {
    if (firstRoundDone && overrides.datastore === undefined) health.setSynced(synced);
  });

  logger.info(
    {
      grpcPort,
      healthPort,
      metricsPort: metricsServer.port,
      pool: poolName,
      namespace,
      tls: f["secure-serving"],
      profile: scheduler.profile,
      source: overrides.datastore ? "provided" : f.resources ? `file:${f.resources}` : "kubernetes",
    },
    "switchyard epp started",
  );
  // The async destination holds lines until 4 KiB accumulate; the start-up lines (ports, pool) must be visible
  // at once to whoever tails the log, as `switchyard sim` and `gateway` do.
  logger.flush?.();

  let stopped = false;
  return {
    grpcPort,
    healthPort,
    metricsPort: metricsServer.port,
    datastore,
    metrics,
    logger,
    lifecycles: director,
    snapshot,
    async stop(graceMs = f["drain-timeout"]) {
      if (stopped) return;
      stopped = true;
      health.setSynced(false);
      await server.stop(graceMs);
      await elector?.stop();
      await scraper?.stop();
      await stopSource();
      await health.stop();
      await metricsServer.close();
      (admission as { close?: () => void }).close?.();
      metrics.close();
      logger.flush?.();
    },
  };
}

function createScaler(f: EppFlagValues, namespace: string): KubernetesScaler {
  if (!f["autoscale-target"])
    throw new ConfigError(
      "required with --autoscale (deployment/<name> or statefulset/<name>)",
      undefined,
      "--autoscale-target",
    );
  return new KubernetesScaler({
    kubeConfig: loadKubeConfig(f.kubeconfig || undefined),
    namespace,
    target: parseScaleTarget(f["autoscale-target"]),
  });
}

/** `--metrics-bind-address`: undefined = no metrics server. */
function metricsBindAddress(f: EppFlagValues): { host: string; port: number } | undefined {
  const raw = f["metrics-bind-address"].trim();
  if (raw === "") return { host: f.host, port: f["metrics-port"] };
  if (raw === "0") return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(raw);
  const port = m ? Number(m[3]) : Number.NaN;
  if (m === null || port > 65535)
    throw new ConfigError(`expected host:port, :port or 0, got "${raw}"`, undefined, "--metrics-bind-address");
  return { host: m[1] ?? (m[2] || f.host), port };
}

/** One structured line naming the file and field of a rejected configuration (the CLI also prints it). */
function logConfigRejected(logger: Logger, err: unknown): void {
  if (err instanceof ConfigError)
    logger.error({ config: err.file ?? "(inline)", field: err.field, err: err.message }, "configuration rejected");
}

export async function run(argv: readonly string[]): Promise<number | undefined> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(formatHelp("epp", SUMMARY, EPP_FLAGS));
    return 0;
  }
  const epp = await startEpp(argv);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    epp.logger.info({ signal }, "draining in-flight streams");
    epp.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        epp.logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  return undefined;
}
