/**
 * Assembly step 3b: the autoscaling signal (docs/autoscaling.md). Like GIE's pool gauges it is computed from the
 * datastore off the request path and exported for an HPA or KEDA to act on; with `--autoscale` the EPP also patches
 * the workload's scale subresource itself.
 */
import { parseAdmissionConfig } from "../admission/config.js";
import { AutoscaleLoop, KubernetesScaler, parseScaleTarget, ReplicaRecommender } from "../autoscaling/autoscale.js";
import { ConfigError } from "../common/errors.js";
import type { Datastore } from "../datastore/datastore.js";
import type { Logger } from "../observability/logger.js";
import type { EppMetrics } from "../observability/metrics.js";
import type { PickerConfig } from "../scheduling/index.js";
import { loadKubeConfig } from "../sources/kubernetes.js";
import type { EppFlagValues } from "./flags.js";
import type { PoolChoice } from "./settings.js";

export interface AutoscalingOptions {
  readonly f: EppFlagValues;
  readonly pool: PoolChoice;
  readonly config: PickerConfig;
  readonly datastore: Datastore;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  /** With leader election only the leader patches the scale subresource (read from the loop's timer). */
  readonly isLeader?: () => boolean;
}

/** Starts the recommendation loop (every `autoscaling.interval`, default 1 s); the caller stops it at shutdown. */
export function startAutoscaling(o: AutoscalingOptions): AutoscaleLoop {
  const { f, datastore, metrics, logger } = o;
  const scaler = f.autoscale ? createScaler(f, o.pool.namespace) : undefined;
  const settings = parseAdmissionConfig(o.config).autoscaling;
  const loop = new AutoscaleLoop({
    recommender: new ReplicaRecommender(settings, f["metrics-staleness-threshold"]),
    endpoints: () => datastore.endpoints(),
    pool: () => datastore.pool(),
    intervalMs: settings.intervalMs,
    publish: (pool, n) => metrics.recommendedReplicas.set({ inference_pool: pool }, n),
    onHintError: (pool) => metrics.autoscalingHintErrors.inc({ inference_pool: pool }),
    ...(scaler ? { scaler } : {}),
    ...(o.isLeader ? { isLeader: o.isLeader } : {}),
    logger,
  });
  loop.start();
  logger.info({ autoscale: scaler ? scaler.target : "recommend-only" }, "autoscaling configured");
  return loop;
}

/** `--autoscale`: the workload whose scale subresource gets the recommendation. */
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
