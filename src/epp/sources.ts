/**
 * Assembly step 4: where the pool's resources come from — `--resources` files, or the Kubernetes API (informers,
 * docs/kubernetes.md) — and the scrapers that keep every endpoint's metrics current
 * (docs/design/model-servers.md §4–§6). Both feed the datastore and nothing else.
 */

import type { EngineRegistry } from "../datalayer/engines.js";
import { MetricsScraper } from "../datalayer/scraper.js";
import type { Datastore } from "../datastore/datastore.js";
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

/** One scrape loop per endpoint, reporting each scrape into the scrape metrics. Started by the caller. */
export function createScraper(
  f: EppFlagValues,
  datastore: Datastore,
  engines: EngineRegistry,
  metrics: EppMetrics,
  logger: Logger,
): MetricsScraper {
  return new MetricsScraper({
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
}
