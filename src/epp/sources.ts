/**
 * Assembly step 4: where the pool's resources come from — `--resources` files, or the Kubernetes API (informers,
 * docs/kubernetes.md) — and the scrapers that keep every endpoint's metrics current
 * (docs/design/model-servers.md §4–§6). Both feed the datastore and nothing else.
 */

import type { EngineRegistry } from "../datalayer/engines.js";
import type { MetricsDataSource } from "../datalayer/extractor.js";
import { MetricsScraper, SCRAPE_FAILURE_REASONS } from "../datalayer/scraper.js";
import type { Datastore } from "../datastore/datastore.js";
import type { Endpoint } from "../datastore/types.js";
import type { HotHistogramChild } from "../observability/hot-metrics.js";
import type { Logger } from "../observability/logger.js";
import type { EppMetrics } from "../observability/metrics.js";
import { FileSource } from "../sources/file.js";
import { KubernetesSource } from "../sources/kubernetes.js";
import type { EppFlagValues } from "./flags.js";
import type { PoolChoice } from "./settings.js";

export interface RunningSource {
  /** For the start-up log line: `file:<path>` or `kubernetes`. */
  readonly kind: string;
  /** Set for the Kubernetes source: a new leader re-reads everything (it writes InferenceModel status). */
  readonly kubernetes?: KubernetesSource;
  stop(): Promise<void>;
}

export interface SourceOptions {
  readonly f: EppFlagValues;
  readonly pool: PoolChoice;
  readonly datastore: Datastore;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  /** With leader election, only the leader writes InferenceModel status, so replicas never fight over conditions. */
  readonly isLeader?: () => boolean;
}

/** Starts the source the flags choose and waits for its first complete snapshot. */
export async function startSource(o: SourceOptions): Promise<RunningSource> {
  const { f, pool, datastore, logger } = o;
  if (f.resources) {
    const source = new FileSource({
      path: f.resources,
      datastore,
      logger,
      maxBytes: f["resources-max-bytes"],
      onOutcome: (outcome) => o.metrics.resourceReloads.inc({ outcome }),
    });
    const report = await source.start();
    logger.info(
      { resources: f.resources, accepted: report.accepted, rejected: report.rejected.length },
      "resources loaded",
    );
    return { kind: `file:${f.resources}`, stop: () => source.stop() };
  }
  const isLeader = o.isLeader;
  const source = new KubernetesSource({
    ...(f.kubeconfig ? { kubeconfig: f.kubeconfig } : {}),
    namespace: pool.namespace,
    poolName: pool.poolName,
    poolGroup: f["pool-group"],
    datastore,
    logger,
    ...(pool.standalone
      ? {
          standalone: { selector: f["endpoint-selector"], targetPorts: [...pool.targetPorts], poolName: pool.poolName },
        }
      : {}),
    writeStatus: isLeader ?? true,
  });
  await source.start();
  logger.info({ pool: pool.poolName, namespace: pool.namespace }, "kubernetes source synced");
  return { kind: "kubernetes", kubernetes: source, stop: async () => source.stop() };
}

/** The error series' reason when a failed scrape carries none. */
const UNKNOWN_REASON = "unknown";

/** One scrape loop per endpoint, reporting each scrape into the scrape metrics. Started by the caller. */
export function createScraper(
  f: EppFlagValues,
  datastore: Datastore,
  engines: EngineRegistry,
  metrics: EppMetrics,
  logger: Logger,
  dataSource: MetricsDataSource | undefined,
  workerCpus?: readonly number[],
): MetricsScraper {
  const durationSeries = new WeakMap<Endpoint, HotHistogramChild>();
  /** Keys with error series to drop when they leave (most never fail, so a 20k-pod reload stays cheap). */
  const failed = new Set<string>();
  return new MetricsScraper({
    source: datastore,
    engines,
    intervalMs: f["refresh-metrics-interval"],
    timeoutMs: f["scrape-timeout"],
    modelsIntervalMs: f["served-models-refresh-interval"],
    idleIntervalMs: f["refresh-metrics-idle-interval"],
    maxSeries: f["scrape-max-series"],
    workers: f["scrape-workers"],
    // GIE's metrics-data-source parameters; without one, http and each engine's own path (docs/design/model-servers.md §4).
    ...(dataSource === undefined
      ? {}
      : {
          scheme: dataSource.scheme,
          insecureSkipVerify: dataSource.insecureSkipVerify,
          ...(dataSource.path === undefined ? {} : { path: dataSource.path }),
          ...(dataSource.port === undefined ? {} : { metricsPort: dataSource.port }),
        }),
    ...(workerCpus === undefined ? {} : { workerCpus }),
    logger,
    hooks: {
      onScrape: (endpoint, result) => {
        // One series per endpoint object, found without building and hashing a label object per scrape: at 1,000
        // pods this runs 20,000 times a second on the request path's thread (bench/README.md, "Scraping at scale").
        let duration = durationSeries.get(endpoint);
        if (duration === undefined) {
          duration = metrics.scrapeDuration.labels({ pod: endpoint.name, endpoint: endpoint.key });
          durationSeries.set(endpoint, duration);
        }
        duration.observe(result.durationMs / 1000);
        if (!result.ok) {
          failed.add(endpoint.key);
          metrics.scrapeErrors.inc({
            pod: endpoint.name,
            endpoint: endpoint.key,
            reason: result.error?.reason ?? UNKNOWN_REASON,
          });
        }
      },
      // A departed endpoint's per-pod scrape series leave /metrics with it; otherwise every pod a rollout or an
      // autoscaler ever created would stay exported for the life of the process. The scraper calls this once the
      // endpoint is no longer scraped, so no later scrape re-creates them. If the same pod is back under its key by
      // then (an endpoint object replaced), its series continue; a new pod that reuses the address gets its own.
      onRemoved: (endpoint) => {
        // The cached child leaves with its series: the same object added again later gets a live one.
        durationSeries.delete(endpoint);
        if (datastore.holdsPodOf(endpoint)) return;
        metrics.scrapeDuration.remove({ pod: endpoint.name, endpoint: endpoint.key });
        if (!failed.delete(endpoint.key)) return;
        for (const reason of [...SCRAPE_FAILURE_REASONS, UNKNOWN_REASON])
          metrics.scrapeErrors.remove({ pod: endpoint.name, endpoint: endpoint.key, reason });
      },
      onWorkerExit: () => metrics.scrapeWorkerRestarts.inc(),
    },
  });
}
