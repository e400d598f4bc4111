/**
 * Assembly step 3: what decides a request, in request-path order — the scheduler built from the EndpointPickerConfig
 * (docs/design/scheduling.md §1–§4), the admission layer that shares its saturation detector (§6–§8), and the
 * director that drives both for every ext_proc stream (docs/architecture.md, The request path).
 */
import { configuredTenantHeader } from "../admission/config.js";
import { createAdmissionController } from "../admission/controller.js";
import type { Admission } from "../admission/types.js";
// Until the telemetry seam moves into src/scheduling (issue 17), its helpers stay where the CLI room kept them.
import { instrumentScheduler, pluginDurationRecorder, prefixIndexSize, timedPreRequest } from "../cli/epp-telemetry.js";
import type { Datastore } from "../datastore/datastore.js";
import { DecisionLog } from "../observability/decisions.js";
import type { Logger } from "../observability/logger.js";
import type { EppMetrics } from "../observability/metrics.js";
import { Director } from "../request/director.js";
import {
  type ConfiguredScheduler,
  createPluginHandle,
  createScheduler,
  type PickerConfig,
} from "../scheduling/index.js";
import type { EppFlagValues } from "./flags.js";
import { configOrigin, logConfigRejected } from "./settings.js";

export interface Routing {
  readonly scheduler: ConfiguredScheduler;
  readonly admission: Admission;
  readonly director: Director;
  readonly decisions: DecisionLog;
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
  return { scheduler, admission, director, decisions, prefixIndexSize: prefixIndexSize(scheduler) };
}

function buildScheduler(o: RoutingOptions): ConfiguredScheduler {
  const { f, config, datastore, logger } = o;
  const handle = createPluginHandle({ endpoints: () => datastore.endpoints() });
  let scheduler: ConfiguredScheduler;
  try {
    scheduler = createScheduler(config, handle, {
      onPluginDuration: pluginDurationRecorder(o.metrics),
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
