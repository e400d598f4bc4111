/**
 * The flags of `switchyard epp`: every bound of the EPP is one of these, with its default and help text. They mirror
 * GIE v1.5's EPP flags (docs/design/api-resources.md §7); src/cli/epp.ts parses them, src/epp assembles from them.
 */
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
import { checks, type FlagValues } from "../common/flags.js";
import { DEFAULT_MAX_SERIES_PER_SIGNAL } from "../datalayer/engines.js";
import {
  DEFAULT_IDLE_SCRAPE_INTERVAL_MS,
  DEFAULT_MODELS_INTERVAL_MS,
  DEFAULT_SCRAPE_WORKERS,
  MAX_SCRAPE_WORKERS,
} from "../datalayer/scraper.js";
import {
  DEFAULT_MAX_STREAMS_PER_CONNECTION,
  DEFAULT_STREAM_IDLE_TIMEOUT_MS,
  DEFAULT_STREAM_RESETS_PER_SECOND,
} from "../extproc/server.js";
import {
  DEFAULT_LABEL_MAX_LENGTH,
  DEFAULT_MODEL_LABEL_IDLE_MS,
  DEFAULT_MODEL_LABEL_LIMIT,
} from "../observability/label-cap.js";
import { DEFAULT_LOG_FLUSH_INTERVAL_MS } from "../observability/logger.js";
import { BUILTIN_PROFILE_NAMES, DEFAULT_BUILTIN_PROFILE } from "../scheduling/index.js";
import { DEFAULT_RESOURCES_MAX_BYTES } from "../sources/file.js";

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
  "pin-threads": {
    kind: "bool",
    default: false,
    help: "Linux: run the request path's thread alone on the first CPU the process may use and every other thread (scrape workers, V8's GC and compiler threads, libuv's pool) on the rest, via util-linux's taskset at start-up, so scraping never takes the request thread's core; for an EPP with whole CPUs of its own (Kubernetes: Guaranteed QoS, integer CPU requests, the static CPU manager). Needs 2+ CPUs; otherwise it logs why and changes nothing (docs/design/model-servers.md §9)",
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
  "scheduling-profile": {
    kind: "string",
    default: "",
    help: `built-in scheduling profile when no config gives one: ${BUILTIN_PROFILE_NAMES.join(" | ")} (default ${DEFAULT_BUILTIN_PROFILE}; docs/design/scheduling.md §11.6)`,
  },
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

export type EppFlagValues = FlagValues<typeof EPP_FLAGS>;
