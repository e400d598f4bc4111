/**
 * Assembly step 3: what decides a request, in request-path order — the scheduler built from the EndpointPickerConfig
 * (docs/design/scheduling.md §1–§4), the admission layer that shares its saturation detector (§6–§8), and the
 * director that drives both for every ext_proc stream (docs/architecture.md, The request path).
 */
import { configuredTenantHeader } from "../admission/config.js";
import { createAdmissionController } from "../admission/controller.js";
import type { Admission } from "../admission/types.js";
import { ConfigError } from "../common/errors.js";
import { EngineRegistry } from "../datalayer/engines.js";
import { isMetricsDataSource, isMetricsExtractor, type MetricsDataSource } from "../datalayer/extractor.js";
import type { Datastore } from "../datastore/datastore.js";
import { DecisionLog } from "../observability/decisions.js";
import type { Logger } from "../observability/logger.js";
import type { EppMetrics } from "../observability/metrics.js";
import { Director } from "../request/director.js";
import {
  createPluginHandle,
  createScheduler,
  type PickerConfig,
  prefixIndexSize,
  type Scheduler,
  type SchedulingObserver,
} from "../scheduling/index.js";
import type { EppFlagValues } from "./flags.js";
import { configOrigin, logConfigRejected } from "./settings.js";

export interface Routing {
  readonly scheduler: Scheduler;
  readonly admission: Admission;
  readonly director: Director;
  readonly decisions: DecisionLog;
  /** The configured core-metrics-extractor's mappings (validated with the other plugins), else the built-in ones. */
  readonly engines: EngineRegistry;
  /** The configured metrics-data-source (scheme, path, TLS, port), if the config has one. */
  readonly dataSource: MetricsDataSource | undefined;
  /** `inference_extension_prefix_indexer_size`, read at scrape time. */
  readonly prefixIndexSize: () => number | undefined;
}

export interface RoutingOptions {
  readonly f: EppFlagValues;
  readonly config: PickerConfig;
  readonly datastore: Datastore;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
}

/** Scheduler → admission → director; throws ConfigError (logged as "configuration rejected") on a bad config. */
export function buildRouting(o: RoutingOptions): Routing {
  const { f, config, datastore, metrics, logger } = o;
  const scheduler = buildScheduler(o);
  const detector = scheduler.pluginSet.saturationDetector;
  const admission = createAdmissionController({
    config,
    datastore,
    metrics,
    logger,
    detector,
    refreshIntervalMs: f["refresh-metrics-interval"],
  });
  const sources = scheduler.pluginSet.plugins.filter(isMetricsDataSource);
  if (sources.length > 1)
    throw new ConfigError(
      `one metrics-data-source is supported, the config has ${sources.length} (${sources.map((p) => p.typedName.name).join(", ")})`,
      config.file,
      "plugins",
    );
  const decisions = new DecisionLog(50);
  const director = new Director({
    pool: datastore,
    scheduler,
    admission,
    metrics,
    logger,
    // Only /debug/endpoints reads the ring: without it, recording each decision is work nobody sees.
    ...(f["enable-debug-endpoints"] ? { decisions } : {}),
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
    if (removed.length === 0) return;
    // As for the scrape series (sources.ts): a series stays if the same pod is back under its key.
    director.endpointsRemoved(removed.filter((e) => !datastore.holdsPodOf(e)));
  });
  const engines = scheduler.pluginSet.plugins.find(isMetricsExtractor)?.engines ?? new EngineRegistry();
  return {
    scheduler,
    admission,
    director,
    decisions,
    engines,
    dataSource: sources[0],
    prefixIndexSize: prefixIndexSize(scheduler),
  };
}

function buildScheduler(o: RoutingOptions): Scheduler {
  const { f, config, datastore, logger } = o;
  const handle = createPluginHandle({ endpoints: () => datastore.endpoints() });
  let scheduler: Scheduler;
  try {
    scheduler = createScheduler(config, handle, {
      observer: schedulingObserver(o.metrics),
      pluginTimingEvery: f["plugin-timing-sample"],
    });
  } catch (err) {
    logConfigRejected(logger, err);
    throw err;
  }
  logger.info(
    {
      config: configOrigin(f, config),
      profile: scheduler.profile,
      plugins: scheduler.pluginSet.plugins.map((p) => `${p.typedName.name}:${p.typedName.type}`),
    },
    "configuration accepted",
  );
  return scheduler;
}

/**
 * Scheduling telemetry into GIE's series: the scheduler resolves each plugin's histogram child once, at start-up,
 * and reports prefix matches itself (docs/architecture.md, "Telemetry").
 */
function schedulingObserver(metrics: EppMetrics): SchedulingObserver {
  return {
    pluginDuration: (point, type, name) => {
      const child = metrics.pluginDuration.labels({ extension_point: point, plugin_type: type, plugin_name: name });
      return (seconds) => child.observe(seconds);
    },
    prefixMatch: (hitRatio, hitBytes) => {
      metrics.prefixHitRatio.observe(hitRatio);
      metrics.prefixHitBytes.observe(hitBytes);
    },
  };
}
