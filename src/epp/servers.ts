/**
 * Assembly step 5: the three listeners on GIE's ports — ext_proc (9002, TLS by default), gRPC health (9003) and
 * /metrics + /debug/* (9090) — built from the flags (docs/design/api-resources.md §7, docs/security.md).
 */
import { createHealthServer, type HealthServer } from "../extproc/health.js";
import { createExtProcServer, type ExtProcServer } from "../extproc/server.js";
import type { DebugSnapshot } from "../observability/debug.js";
import { type MetricsServer, startMetricsServer } from "../observability/http.js";
import type { Logger } from "../observability/logger.js";
import type { EppMetrics } from "../observability/metrics.js";
import { createScrapeAuthorizer, kubernetesReviewApi, type ReviewApi } from "../observability/scrape-auth.js";
import type { LifecycleFactory } from "../request/lifecycle.js";
import { loadKubeConfig } from "../sources/kubernetes.js";
import type { EppFlagValues } from "./flags.js";
import { metricsBindAddress } from "./settings.js";

export interface GrpcServers {
  readonly health: HealthServer;
  readonly extproc: ExtProcServer;
}

/** The ext_proc server driving `factory` per stream, and the health server whose state it may share. */
export function createGrpcServers(
  f: EppFlagValues,
  factory: LifecycleFactory,
  metrics: EppMetrics,
  logger: Logger,
): GrpcServers {
  const health = createHealthServer({
    host: f.host,
    port: f["grpc-health-port"],
    leaderElection: f["ha-enable-leader-election"],
  });
  const extproc = createExtProcServer({
    host: f.host,
    port: f["grpc-port"],
    factory,
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
  return { health, extproc };
}

export interface MetricsServerStepOptions {
  readonly f: EppFlagValues;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  readonly debugSnapshot: () => DebugSnapshot;
  /** Scrapers are authenticated against the API server this EPP already talks to; file mode has none. */
  readonly kubernetesMode: boolean;
  /** TokenReview / SubjectAccessReview client (tests); default: the API server's. */
  readonly reviewApi?: ReviewApi;
}

/** `/metrics` and, with --enable-debug-endpoints, `/debug/endpoints`; `--metrics-bind-address 0` serves nothing. */
export async function startMetricsStep(o: MetricsServerStepOptions): Promise<MetricsServer> {
  const { f, metrics } = o;
  const bind = metricsBindAddress(f);
  if (bind === undefined) return { port: 0, close: async () => {} };
  const authorizer =
    o.kubernetesMode && f["metrics-endpoint-auth"]
      ? createScrapeAuthorizer(o.reviewApi ?? kubernetesReviewApi(loadKubeConfig(f.kubeconfig || undefined)))
      : undefined;
  return startMetricsServer({
    host: bind.host,
    port: bind.port,
    metrics,
    ...(f["enable-debug-endpoints"] ? { debugSnapshot: o.debugSnapshot } : {}),
    logger: o.logger,
    ...(authorizer
      ? { authorizer, onRefused: (status: number) => metrics.scrapesRefused.inc({ status: String(status) }) }
      : {}),
  });
}
