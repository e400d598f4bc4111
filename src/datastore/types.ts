/**
 * Resource and endpoint shapes shared by sources (files, Kubernetes), the datastore, scrapers and scheduling.
 * Sources normalise CRDs into these plain specs; nothing below this line knows about YAML or the API server.
 */
import { hostPort } from "../common/address.js";
import type { EndpointLoadState } from "./load.js";

export type Criticality = "Critical" | "Standard" | "Sheddable";

export interface ObjectMeta {
  readonly name: string;
  readonly namespace: string;
  /** ms since epoch; orders "oldest wins" conflicts. 0 when unknown. */
  readonly creationTimestamp: number;
  /** Where the object came from, for log lines: a file path with a document index, or `k8s`. */
  readonly origin?: string;
}

export interface PoolSpec extends ObjectMeta {
  readonly selector: Readonly<Record<string, string>>;
  /** 1..8 unique ports; each is a distinct endpoint per pod. */
  readonly targetPorts: readonly number[];
  readonly appProtocol: "http" | "kubernetes.io/h2c";
  readonly failureMode: "FailOpen" | "FailClose";
  /** Autoscaling hints: the seed article's pool sketch, read from annotations (docs/autoscaling.md). */
  readonly minReplicas?: number;
  readonly maxReplicas?: number;
  /** Fraction in (0, 1]. */
  readonly targetGpuCacheUtilization?: number;
  /** Set when the hints were invalid and are all ignored; `message` names the origin, object and field. */
  readonly autoscalingError?: { readonly field: string; readonly message: string };
}

export interface TargetModel {
  readonly name: string;
  readonly weight: number;
}

export interface ModelSpec extends ObjectMeta {
  readonly modelName: string;
  readonly criticality: Criticality;
  readonly targetModels: readonly TargetModel[];
  readonly poolRef: string;
}

export interface ObjectiveSpec extends ObjectMeta {
  /** Higher is more important; negative is sheddable. Unset = 0. */
  readonly priority: number;
  readonly poolRef: string;
}

export interface RewriteRule {
  /** Exact model names; empty = match every model. */
  readonly matches: readonly string[];
  readonly targets: readonly { readonly modelRewrite: string; readonly weight: number }[];
}

export interface RewriteSpec extends ObjectMeta {
  readonly poolRef: string;
  readonly rules: readonly RewriteRule[];
}

export interface PodSpec extends ObjectMeta {
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly podIP: string;
  readonly ready: boolean;
  /** deletionTimestamp is set: terminating pods are never endpoints. */
  readonly deleting: boolean;
}

/** A complete snapshot of everything a source knows. The datastore reconciles against it. */
export interface ResourceSet {
  readonly pools: readonly PoolSpec[];
  readonly models: readonly ModelSpec[];
  readonly objectives: readonly ObjectiveSpec[];
  readonly rewrites: readonly RewriteSpec[];
  readonly pods: readonly PodSpec[];
}

/** The model-server signals scheduling reads (GIE's endpoint metrics struct). */
export interface EndpointMetrics {
  readonly waitingQueueSize: number;
  readonly runningRequestsSize: number;
  /** 0..1 */
  readonly kvCacheUsagePercent: number;
  /** LoRA adapters running / waiting, from `vllm:lora_requests_info`. */
  readonly activeModels: ReadonlySet<string>;
  readonly waitingModels: ReadonlySet<string>;
  /** `max_lora`; 0 when the server reports no LoRA info. */
  readonly maxActiveModels: number;
  /**
   * What the server said about LoRA: `reported` (a `lora_requests_info` sample: the adapter lists and `max_lora` are
   * real), `pending` (the family is declared but has no sample yet, as on a LoRA-enabled vLLM before its first
   * engine step, docs/design/model-servers.md §3.3: its free slots are unknown, not zero), or undefined (no LoRA).
   */
  readonly lora?: "reported" | "pending" | undefined;
  /**
   * Load families the scrape did not carry (comma-separated selectors), undefined when complete. Their signals read
   * 0: the server reported no load yet, which is not a failed scrape.
   */
  readonly unreported?: string | undefined;
  /**
   * Base models the server reports serving (the `model_name` label of its queue/running series, vLLM and SGLang).
   * Undefined or empty when unknown. Lets LoRA affinity tell a base-model request from an adapter request.
   */
  readonly servedModels?: ReadonlySet<string>;
  /** From cache_config_info; 0 when unknown. */
  readonly cacheBlockSize: number;
  readonly cacheNumBlocks: number;
  /** `performance.now()` when the scrape response completed. */
  readonly updateTime: number;
}

/** What a server says it serves at `/v1/models` (docs/design/model-servers.md §3.5). */
export interface ServedModels {
  /** Every model id the server accepts: base models, their aliases and its adapters. */
  readonly ids: ReadonlySet<string>;
  /** Adapter id → its base model (`parent`). */
  readonly adapters: ReadonlyMap<string, string>;
  /** `performance.now()` when the list was read. */
  readonly updateTime: number;
}

/**
 * One routable target: a (ready pod, target port) pair, named `<pod>-rank-<idx>` as GIE does.
 * The object is stable for as long as the pod keeps its IP and port, so scrape state and in-flight counters
 * survive resource reloads; `metrics` is replaced wholesale by the scraper (never mutated in place).
 */
export interface Endpoint {
  /** `ip:port` (IPv6 in brackets), the value written into the destination header. */
  readonly key: string;
  readonly name: string;
  readonly podName: string;
  readonly namespace: string;
  readonly address: string;
  readonly port: number;
  readonly rank: number;
  readonly labels: Readonly<Record<string, string>>;
  /** Metric mapping chosen from the engine-type label (`vllm` by default). */
  readonly engine: string;
  metrics: EndpointMetrics | undefined;
  /**
   * The server's own list of the models it serves, refreshed by the scraper; undefined until read or when the
   * server has no `/v1/models`. When present it decides what the endpoint can serve: an alias is never taken for an
   * adapter, and an adapter the server lacks is never routed there.
   */
  models?: ServedModels | undefined;
  /** Requests this EPP replica routed here that have not finished. */
  inflightRequests: number;
  /** Estimated tokens of those requests. */
  inflightTokens: number;
  /** Requests this EPP replica has routed here since the endpoint appeared (for /debug and `switchyard top`). */
  routedRequests: number;
  /**
   * Own-load accounting and the learned latency model (src/datastore/load.ts, docs/design/scheduling.md §11);
   * undefined until the first request is routed here. Written only by EndpointLoad and its tickets.
   */
  load?: EndpointLoadState | undefined;
  /** Last scrape error, for /debug and logs. */
  lastScrapeError: string | undefined;
  /**
   * Set by the scraper after a successful scrape: until then (performance.now() ms) the metrics count as fresh
   * whatever their age, because the next answer is not late yet (next tick + scrape timeout). Cleared by a failed
   * scrape. See isFresh().
   */
  metricsValidUntil?: number | undefined;
}

export function endpointKey(address: string, port: number): string {
  return hostPort(address, port);
}

/**
 * True when the endpoint's metrics are no older than `maxAgeMs` at `now` (performance.now()), or older only because
 * the scraper's next answer is still coming: a slow /metrics response, or a scrape timer the busy event loop ran
 * late, is not evidence that the pod is gone or saturated. A failed scrape ends that grace (docs/security.md,
 * "Staleness").
 */
export function isFresh(endpoint: Endpoint, now: number, maxAgeMs: number): boolean {
  const m = endpoint.metrics;
  if (m === undefined) return false;
  if (now - m.updateTime <= maxAgeMs) return true;
  const until = endpoint.metricsValidUntil;
  return until !== undefined && now <= until;
}
