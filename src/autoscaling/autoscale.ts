/**
 * Autoscaling signals. The EPP sees every pod's KV-cache utilisation every scrape, so it can say how many replicas
 * the pool needs before an HPA on CPU ever notices:
 *
 *   recommended = clamp(ceil(ready × avgKV / target), min, max)
 *
 * — the HPA formula with KV-cache utilisation as the metric, `ready` = pods with FRESH metrics (stale pods are
 * neither counted nor averaged, as GIE's pool gauges), ratios within 1 ± tolerance (HPA's 10 %) keep `ready`. A
 * scale-down stabilisation window (default 300 s, HPA's default) reports the highest recommendation seen within the
 * window, so a short lull does not shed replicas that take minutes to load a model again; scale-ups are immediate.
 *
 * Targets, in order: the `autoscaling` config section, the InferencePool's `autoscaling.switchyard.io/*` annotations
 * (the seed article's `minReplicas`, `maxReplicas`, `targetLoad.gpuCacheUtilization`, moved off the spec so the
 * pool stays GIE's schema: docs/autoscaling.md), then defaults (min 1, no max, 75 %). Invalid annotations do not
 * stop routing: the pool's hints are all ignored, and this loop logs the error once per change and counts it.
 *
 * The value is exported as `switchyard_pool_recommended_replicas{inference_pool}` every second, off the request
 * path; KEDA or an HPA on an external metric can act on it (deploy/autoscaling/). With `--autoscale` the EPP patches
 * the `scale` subresource of the pool's Deployment or StatefulSet itself, only when the recommendation changes.
 */
import { AppsV1Api, type KubeConfig } from "@kubernetes/client-node";
import { ConfigError } from "../common/errors.js";
import { type Endpoint, isFresh, type PoolSpec } from "../datastore/types.js";
import type { Logger } from "../observability/logger.js";

/** The validated `autoscaling` section of the EndpointPickerConfig (read by src/admission/config.ts). */
export interface AutoscalingSettings {
  /** The section is present (the recommender also runs without it, from the pool's hints and defaults). */
  readonly configured: boolean;
  readonly minReplicas: number | undefined;
  readonly maxReplicas: number | undefined;
  /** Fraction in (0, 1]. */
  readonly targetGpuCacheUtilization: number | undefined;
  readonly scaleDownStabilizationMs: number;
  readonly intervalMs: number;
  /** HPA tolerance: ratios within 1 ± tolerance keep the current replica count. */
  readonly tolerance: number;
}

export const DEFAULT_SCALE_DOWN_STABILIZATION_MS = 300_000;
export const DEFAULT_AUTOSCALE_INTERVAL_MS = 1_000;
export const DEFAULT_AUTOSCALE_TOLERANCE = 0.1;
/** The seed article's pool sketch: `targetLoad.gpuCacheUtilization: 75`. */
export const DEFAULT_TARGET_GPU_CACHE_UTILIZATION = 0.75;

export interface Recommendation {
  /** Final value: clamped and stabilised. */
  readonly replicas: number;
  /** Before stabilisation (clamped). */
  readonly desired: number;
  /** Pods with fresh metrics. */
  readonly ready: number;
  /** Mean KV-cache utilisation (0..1) over fresh endpoints. */
  readonly averageKv: number;
  readonly target: number;
  readonly min: number;
  readonly max: number;
}

export class ReplicaRecommender {
  readonly #settings: AutoscalingSettings;
  readonly #stalenessMs: number;
  /** (time, desired) within the stabilisation window, oldest first. */
  readonly #history: { at: number; desired: number }[] = [];

  constructor(settings: AutoscalingSettings, stalenessMs: number) {
    this.#settings = settings;
    this.#stalenessMs = stalenessMs;
  }

  /**
   * The recommendation at `now` (performance.now() ms), or undefined when endpoints exist but none has fresh
   * metrics (no data is not a reason to scale; the previous value stands).
   */
  recommend(endpoints: readonly Endpoint[], pool: PoolSpec | undefined, now: number): Recommendation | undefined {
    const s = this.#settings;
    const min = s.minReplicas ?? pool?.minReplicas ?? 1;
    const max = Math.max(min, s.maxReplicas ?? pool?.maxReplicas ?? Number.MAX_SAFE_INTEGER);
    const target =
      s.targetGpuCacheUtilization ?? pool?.targetGpuCacheUtilization ?? DEFAULT_TARGET_GPU_CACHE_UTILIZATION;
    const pods = new Set<string>();
    let kvSum = 0;
    let fresh = 0;
    for (const e of endpoints) {
      if (!isFresh(e, now, this.#stalenessMs)) continue;
      fresh++;
      kvSum += e.metrics!.kvCacheUsagePercent;
      pods.add(e.podName);
    }
    if (fresh === 0 && endpoints.length > 0) return undefined;
    const ready = pods.size;
    const averageKv = fresh === 0 ? 0 : kvSum / fresh;
    let raw: number;
    if (ready === 0) raw = min;
    else {
      const ratio = averageKv / target;
      raw = Math.abs(ratio - 1) <= s.tolerance ? ready : Math.ceil(ready * ratio - 1e-9);
    }
    const desired = Math.min(max, Math.max(min, raw));
    const history = this.#history;
    history.push({ at: now, desired });
    while (history.length > 0 && history[0]!.at <= now - s.scaleDownStabilizationMs) history.shift();
    let replicas = desired;
    for (const h of history) if (h.desired > replicas) replicas = h.desired;
    return { replicas, desired, ready, averageKv, target, min, max };
  }
}

/** Writes a replica count somewhere (the Kubernetes scale subresource). */
export interface ReplicaScaler {
  /** `deployment/name` or `statefulset/name`, for logs. */
  readonly target: string;
  scale(replicas: number): Promise<void>;
}

export interface ScaleTarget {
  readonly kind: "deployment" | "statefulset";
  readonly name: string;
}

/** Parses `--autoscale-target` ("deployment/vllm", "statefulset/vllm", also "deploy/…", "sts/…"). */
export function parseScaleTarget(text: string): ScaleTarget {
  const m = /^([A-Za-z.]+)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(text.trim());
  const kinds: Readonly<Record<string, ScaleTarget["kind"]>> = {
    deployment: "deployment",
    deployments: "deployment",
    deploy: "deployment",
    "deployment.apps": "deployment",
    statefulset: "statefulset",
    statefulsets: "statefulset",
    sts: "statefulset",
    "statefulset.apps": "statefulset",
  };
  const kind = m ? kinds[m[1]!.toLowerCase()] : undefined;
  if (!m || !kind)
    throw new ConfigError(
      `must be deployment/<name> or statefulset/<name>, got ${JSON.stringify(text)}`,
      undefined,
      "--autoscale-target",
    );
  return { kind, name: m[2]! };
}

export interface KubernetesScalerOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly target: ScaleTarget;
}

/** Patches `spec.replicas` of the target's scale subresource (RBAC: deployments/scale or statefulsets/scale, patch). */
export class KubernetesScaler implements ReplicaScaler {
  readonly target: string;
  readonly #api: AppsV1Api;
  readonly #namespace: string;
  readonly #scaleTarget: ScaleTarget;

  constructor(options: KubernetesScalerOptions) {
    this.#api = options.kubeConfig.makeApiClient(AppsV1Api);
    this.#namespace = options.namespace;
    this.#scaleTarget = options.target;
    this.target = `${options.target.kind}/${options.target.name}`;
  }

  async scale(replicas: number): Promise<void> {
    // JSON patch (client-node's default patch type): "add" sets spec.replicas whether or not the server omitted it
    // (omitempty drops 0).
    const request = {
      name: this.#scaleTarget.name,
      namespace: this.#namespace,
      body: [{ op: "add", path: "/spec/replicas", value: replicas }],
      fieldManager: "switchyard",
    };
    if (this.#scaleTarget.kind === "deployment") await this.#api.patchNamespacedDeploymentScale(request);
    else await this.#api.patchNamespacedStatefulSetScale(request);
  }
}

export interface AutoscaleLoopOptions {
  readonly recommender: ReplicaRecommender;
  readonly endpoints: () => readonly Endpoint[];
  readonly pool: () => PoolSpec | undefined;
  /** Publishes the value (the recommended-replicas gauge). */
  readonly publish?: (poolName: string, replicas: number) => void;
  /** With --autoscale: where to write the value. */
  readonly scaler?: ReplicaScaler;
  /** Called once each time the pool's autoscaling annotations become invalid (or change while invalid). */
  readonly onHintError?: (poolName: string) => void;
  /** Only the leader patches when leader election is on. Default: always. */
  readonly isLeader?: () => boolean;
  readonly logger?: Logger;
  readonly intervalMs: number;
  readonly now?: () => number;
}

/** Computes the recommendation periodically (unref'd timer) and applies it. */
export class AutoscaleLoop {
  readonly #o: AutoscaleLoopOptions;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #last: Recommendation | undefined;
  #patched: number | undefined;
  #patching = false;
  #stopped = false;
  /** The hint error last reported, so a pool that stays invalid is reported once, not every tick. */
  #hintError: string | undefined;

  constructor(options: AutoscaleLoopOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
  }

  /** The latest recommendation. */
  get last(): Recommendation | undefined {
    return this.#last;
  }

  /** The replica count last written by the scaler. */
  get patched(): number | undefined {
    return this.#patched;
  }

  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => void this.tick(), this.#o.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #reportHints(pool: PoolSpec): void {
    const error = pool.autoscalingError;
    if (error?.message === this.#hintError) return;
    this.#hintError = error?.message;
    if (error === undefined) {
      this.#o.logger?.info({ pool: pool.name }, "autoscaling annotations valid again");
      return;
    }
    this.#o.logger?.warn({ pool: pool.name, field: error.field, error: error.message }, "invalid autoscaling hints");
    this.#o.onHintError?.(pool.name);
  }

  /** One round: recommend, publish, and patch when the value changed. Never throws. */
  async tick(): Promise<Recommendation | undefined> {
    const pool = this.#o.pool();
    if (!pool || this.#stopped) return undefined;
    this.#reportHints(pool);
    const rec = this.#o.recommender.recommend(this.#o.endpoints(), pool, this.#now());
    if (!rec) return this.#last;
    this.#last = rec;
    this.#o.publish?.(pool.name, rec.replicas);
    const scaler = this.#o.scaler;
    if (!scaler || this.#patching || rec.replicas === this.#patched) return rec;
    if (this.#o.isLeader && !this.#o.isLeader()) return rec;
    this.#patching = true;
    try {
      await scaler.scale(rec.replicas);
      this.#o.logger?.info(
        { target: scaler.target, replicas: rec.replicas, previous: this.#patched, ready: rec.ready, kv: rec.averageKv },
        "scaled the pool",
      );
      this.#patched = rec.replicas;
    } catch (err) {
      // Left unpatched on purpose: the next tick retries.
      this.#o.logger?.warn({ target: scaler.target, replicas: rec.replicas, err }, "scale patch failed");
    } finally {
      this.#patching = false;
    }
    return rec;
  }
}
