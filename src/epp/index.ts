/**
 * The assembly room of `switchyard epp`: builds a running endpoint picker from parsed flags in named steps, in the
 * order a request needs them, and takes it down in reverse (docs/architecture.md, Assembly and shutdown).
 *
 *   1. settings  — flags checked against each other, config and engine mappings validated (settings.ts)
 *   2. telemetry — logger, datastore, metrics whose pool gauges read the shared endpoint view (snapshot.ts)
 *   3. routing   — scheduler → admission → director (routing.ts), and the autoscaling signal (autoscaling.ts)
 *   4. sources   — files or Kubernetes into the datastore, scrapers into endpoint metrics (sources.ts)
 *   5. servers   — ext_proc, gRPC health, /metrics + /debug (servers.ts)
 *   6. leader    — Lease election when asked for (leader.ts)
 *   7. readiness — ready once resources are loaded and every endpoint had its first scrape
 *
 * src/cli/epp.ts parses the command line and calls assembleEpp(); tests and bench/extproc call startEpp() there.
 */
import { setFlagsFromString } from "node:v8";
import { allowedCpus, formatCpuList, pinThreads, planThreads, type ThreadPlan } from "../common/affinity.js";
import { Datastore } from "../datastore/datastore.js";
import type { DebugSnapshot } from "../observability/debug.js";
import { createLogger, type Logger } from "../observability/logger.js";
import { EppMetrics, type PoolSnapshot } from "../observability/metrics.js";
import type { ReviewApi } from "../observability/scrape-auth.js";
import type { LifecycleFactory } from "../request/lifecycle.js";
import { startAutoscaling } from "./autoscaling.js";
import type { EppFlagValues } from "./flags.js";
import { Leadership } from "./leader.js";
import { buildRouting } from "./routing.js";
import { createGrpcServers, startMetricsStep } from "./servers.js";
import { choosePool, loadEppConfig, logLevel } from "./settings.js";
import { poolViews } from "./snapshot.js";
import { createScraper, type RunningSource, startSource } from "./sources.js";

export { EPP_FLAGS, type EppFlagValues } from "./flags.js";

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
  /** Skip scraping (benchmarks that set endpoint metrics directly). */
  readonly scrape?: boolean;
  /** Use this datastore instead of creating one from --resources / Kubernetes (benchmarks). */
  readonly datastore?: Datastore;
  /** TokenReview / SubjectAccessReview client for --metrics-endpoint-auth (tests); default: the API server's. */
  readonly reviewApi?: ReviewApi;
}

/**
 * What the /metrics gauges read at Prometheus scrape time. The metrics exist before the steps that own these
 * readings (the scheduler records into them at start-up), so each later step plugs its reading in here.
 */
class ScrapeReadings {
  pool: () => PoolSnapshot | undefined = () => undefined;
  prefixIndexSize: () => number | undefined = () => undefined;
  /** Read from the server at scrape time: no per-stream bookkeeping on the request path. */
  streamsInFlight: () => number = () => 0;
}

export async function assembleEpp(f: EppFlagValues, overrides: StartEppOverrides = {}): Promise<RunningEpp> {
  // V8 may decide early, from a burst of requests still in flight, that an allocation site's objects live long and
  // allocate them straight in old space ("pretenuring"). For an EPP almost every per-request object dies within
  // the request, so that decision turns cheap scavenges into old-space GC: bench/extproc saw a third of runs settle
  // at ~2x the per-request CPU for the life of the process. Set before the request path allocates anything.
  if (!f["v8-allocation-site-pretenuring"]) setFlagsFromString("--no-allocation-site-pretenuring");

  // 1. settings
  const format = f["log-format"];
  const logger =
    overrides.logger ??
    createLogger({
      level: logLevel(f),
      pretty: format === "auto" ? undefined : format === "pretty",
      name: "epp",
      flushIntervalMs: f["log-flush-interval"],
    });
  const provided = overrides.datastore !== undefined;
  const pool = choosePool(f, provided);
  const { config } = loadEppConfig(f, logger);

  // 2. telemetry
  const datastore =
    overrides.datastore ?? new Datastore({ poolName: pool.poolName, poolNamespace: pool.namespace, logger });
  const readings = new ScrapeReadings();
  const metrics = new EppMetrics({
    commit: process.env.SWITCHYARD_COMMIT,
    buildRef: process.env.SWITCHYARD_VERSION ?? "switchyard",
    poolSnapshot: () => readings.pool(),
    prefixIndexSize: () => readings.prefixIndexSize(),
    streamsInFlight: () => readings.streamsInFlight(),
    labelMaxLength: f["metrics-label-max-length"],
    modelLabelLimit: f["metrics-model-label-limit"],
    modelLabelIdleMs: f["metrics-model-label-idle-expiry"],
    logger,
  });

  // 3. routing
  const leadership = new Leadership();
  const leaderElection = f["ha-enable-leader-election"];
  const isLeader = leaderElection ? leadership.isLeader : undefined;
  const routing = buildRouting({ f, config, datastore, metrics, logger });
  const autoscaling = startAutoscaling({
    f,
    pool,
    config,
    datastore,
    metrics,
    logger,
    ...(isLeader ? { isLeader } : {}),
  });
  const views = poolViews({
    datastore,
    detector: routing.scheduler.pluginSet.saturationDetector,
    decisions: routing.decisions,
    stalenessMs: f["metrics-staleness-threshold"],
  });
  readings.pool = views.pool;
  readings.prefixIndexSize = routing.prefixIndexSize;

  // 4. sources and scrapers
  const source: RunningSource | undefined = provided
    ? undefined
    : await startSource({ f, pool, datastore, metrics, logger, ...(isLeader ? { isLeader } : {}) });
  const plan = f["pin-threads"] ? planThreads(allowedCpus()) : undefined;
  const scraper =
    overrides.scrape === false
      ? undefined
      : createScraper(
          f,
          datastore,
          routing.engines,
          metrics,
          logger,
          routing.dataSource,
          typeof plan === "object" ? plan.otherCpus : undefined,
        );
  scraper?.start();
  if (plan !== undefined) await pinEppThreads(plan, logger);

  // 5. servers
  const { health, extproc } = createGrpcServers(f, routing.director, metrics, logger);
  readings.streamsInFlight = () => extproc.activeStreams();
  const metricsServer = await startMetricsStep({
    f,
    metrics,
    logger,
    debugSnapshot: views.debug,
    kubernetesMode: source?.kubernetes !== undefined,
    ...(overrides.reviewApi ? { reviewApi: overrides.reviewApi } : {}),
  });
  const { port: grpcPort } = await extproc.start();
  const healthPort = (await health.start()).port;

  // 6. leader election
  if (leaderElection) leadership.start({ f, pool, health, kubernetes: source?.kubernetes, logger });

  // 7. readiness: once resources are loaded and every endpoint has had its first scrape attempt (GIE: pool synced).
  let firstRoundDone = false;
  void (scraper ? scraper.firstRound() : Promise.resolve()).then(() => {
    firstRoundDone = true;
    health.setSynced(datastore.synced() || provided);
    logger.info({ synced: datastore.synced(), endpoints: datastore.endpoints().length }, "first scrape round done");
  });
  // A pool deleted later makes the EPP unready again, and one that appears later ready, with or without pods, as
  // GIE's readiness follows its pool (docs/kubernetes.md).
  datastore.onSyncedChanged((synced) => {
    if (firstRoundDone && !provided) health.setSynced(synced);
  });

  logger.info(
    {
      grpcPort,
      healthPort,
      metricsPort: metricsServer.port,
      pool: pool.poolName,
      namespace: pool.namespace,
      tls: f["secure-serving"],
      profile: routing.scheduler.profile,
      source: source?.kind ?? "provided",
    },
    "switchyard epp started",
  );
  // The async destination holds lines until 4 KiB accumulate; the start-up lines (ports, pool) must be visible
  // at once to whoever tails the log, as `switchyard sim` and `gateway` do.
  logger.flush?.();

  // Shutdown, in reverse: unready first so the proxy stops sending, then drain, then everything behind the streams.
  let stopped = false;
  return {
    grpcPort,
    healthPort,
    metricsPort: metricsServer.port,
    datastore,
    metrics,
    logger,
    lifecycles: routing.director,
    snapshot: views.debug,
    async stop(graceMs = f["drain-timeout"]) {
      if (stopped) return;
      stopped = true;
      health.setSynced(false);
      await extproc.stop(graceMs);
      await leadership.stop();
      await scraper?.stop();
      await source?.stop();
      await health.stop();
      await metricsServer.close();
      routing.admission.close();
      autoscaling.stop();
      metrics.close();
      logger.flush?.();
    },
  };
}

/**
 * `--pin-threads`: the request thread alone on one CPU, every other thread on the rest (src/common/affinity.ts;
 * docs/design/model-servers.md §9). Best effort: whatever cannot be done is logged once and the EPP runs unpinned.
 */
async function pinEppThreads(plan: ThreadPlan | string, logger: Logger): Promise<void> {
  if (typeof plan === "string") {
    logger.warn({ reason: plan }, "--pin-threads: not pinning");
    return;
  }
  try {
    const report = await pinThreads(plan);
    logger.info(
      { requestCpu: plan.requestCpu, otherCpus: formatCpuList(plan.otherCpus), otherThreads: report.others },
      "--pin-threads: the request thread runs alone on its CPU",
    );
    if (report.failures.length > 0)
      logger.warn({ failures: report.failures }, "--pin-threads: some threads could not be pinned");
  } catch (err) {
    logger.warn({ err: (err as Error).message }, "--pin-threads: not pinning");
  }
}
