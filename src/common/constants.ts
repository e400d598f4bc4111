/**
 * Every protocol key, header name, default and limit switchyard shares with Envoy, GIE and model servers.
 * Values marked "exact" must match GIE v1.5.0 (docs/design/ext-proc-protocol.md §5.2, docs/design/api-resources.md §7)
 * so that existing gateways, manifests and dashboards keep working.
 */

/** gRPC method Envoy calls, one bidirectional stream per HTTP request (exact). */
export const EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor";
export const EXT_PROC_METHOD_PATH = `/${EXT_PROC_SERVICE}/Process`;

/** Destination header and the `envoy.lb` metadata key carrying the same `ip:port[,ip:port…]` value (exact). */
export const DESTINATION_ENDPOINT_HEADER = "x-gateway-destination-endpoint";
/** Dynamic-metadata namespace Envoy's ORIGINAL_DST / Istio's override_host read the destination from (exact). */
export const DESTINATION_METADATA_NAMESPACE = "envoy.lb";
/** Namespace and key of the proxy's subset hint (exact). */
export const SUBSET_HINT_NAMESPACE = "envoy.lb.subset_hint";
export const SUBSET_HINT_KEY = "x-gateway-destination-endpoint-subset";
/** Served endpoint reported back by the proxy on the response path (protocol v1.0, exact). */
export const DESTINATION_ENDPOINT_SERVED_KEY = "x-gateway-destination-endpoint-served";

/** Client control headers (exact). */
export const OBJECTIVE_HEADER = "x-gateway-inference-objective";
export const FAIRNESS_ID_HEADER = "x-gateway-inference-fairness-id";
export const MODEL_NAME_REWRITE_HEADER = "x-gateway-model-name-rewrite";
export const REQUEST_ID_HEADER = "x-request-id";
/** Default flow id when the fairness header is absent (exact). */
export const DEFAULT_FAIRNESS_ID = "default-flow";

/** Conformance-only headers (exact). */
export const CONFORMANCE_ENDPOINT_SELECTION_HEADER = "test-epp-endpoint-selection";
export const CONFORMANCE_SERVED_ENDPOINT_HEADER = "x-conformance-test-served-endpoint";

/** Headers owned by the protocol: never echoed back by switchyard (GIE headers.go@v1.5.0). */
export const SYSTEM_OWNED_HEADERS: ReadonlySet<string> = new Set([
  OBJECTIVE_HEADER,
  FAIRNESS_ID_HEADER,
  MODEL_NAME_REWRITE_HEADER,
  SUBSET_HINT_KEY,
  DESTINATION_ENDPOINT_HEADER,
  DESTINATION_ENDPOINT_SERVED_KEY,
  "content-length",
]);

/**
 * Largest body chunk in one streamed_response. GIE: "certain envoy implementations set a max limit of 64Kb per
 * streamed chunk" (chunking.go@v1.5.0), exact.
 */
export const BODY_CHUNK_BYTES = 62_000;
/** Default cap on a buffered request body (`--max-body-bytes`). */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

/** GIE's default ports (exact). */
export const DEFAULT_GRPC_PORT = 9002;
export const DEFAULT_GRPC_HEALTH_PORT = 9003;
export const DEFAULT_METRICS_PORT = 9090;

/** Health service names GIE answers (docs/design/api-resources.md §8). */
export const HEALTH_SERVICE_LIVENESS = "liveness";
export const HEALTH_SERVICE_READINESS = "readiness";

/** Scrape defaults (docs/design/model-servers.md §4). */
export const DEFAULT_REFRESH_METRICS_INTERVAL_MS = 50;
export const DEFAULT_METRICS_STALENESS_THRESHOLD_MS = 2_000;
export const DEFAULT_SCRAPE_TIMEOUT_MS = 1_000;

/** Saturation defaults of GIE's utilization-detector (docs/design/scheduling.md §6). */
export const DEFAULT_QUEUE_DEPTH_THRESHOLD = 5;
export const DEFAULT_KV_CACHE_UTIL_THRESHOLD = 0.8;
export const DEFAULT_SATURATION_STALENESS_MS = 200;

/** Pod label choosing the metric mapping, and the annotation restricting active target ports (exact). */
export const ENGINE_TYPE_LABEL = "inference.networking.k8s.io/engine-type";
export const ACTIVE_PORTS_ANNOTATION = "inference.networking.k8s.io/active-ports";

/** API groups and versions (exact). */
export const POOL_GROUP = "inference.networking.k8s.io";
export const POOL_VERSION = "v1";
export const X_GROUP = "inference.networking.x-k8s.io";
export const X_VERSION = "v1alpha2";
export const EPP_CONFIG_API_VERSION = "inference.networking.x-k8s.io/v1alpha1";

/** Characters per token when no tokenizer is available (GIE and llm-d). */
export const CHARS_PER_TOKEN = 4;
