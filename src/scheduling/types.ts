/**
 * Scheduling framework interfaces, after GIE's plugin model (framework/interface/scheduling/plugins.go@v1.5.0):
 * candidates → filters → weighted scorers (each score clamped to [0,1]) → picker. Plugins see endpoints and
 * their metrics only, never protocol types.
 */

import type { Plugin, TypedName } from "../common/registry.js";
import type { Criticality, Endpoint } from "../datastore/types.js";

export type { Plugin, TypedName };

/** What scheduling knows about one request. Built once per request by the director. */
export interface SchedulingRequest {
  readonly requestId: string;
  /** Model named in the body (what the client asked for). */
  readonly model: string;
  /** Model after rewrite; the LoRA adapter name for affinity. */
  readonly targetModel: string;
  readonly criticality: Criticality;
  readonly priority: number;
  /** Text used for prefix hashing (GIE's per-API rule); may be empty. */
  readonly prefixText: string;
  /** Estimated prompt tokens (chars / 4). */
  readonly inputTokens: number;
  /** `max_tokens` / `max_completion_tokens` when the client sent one. */
  readonly maxTokens: number | undefined;
  /** Lower-cased request headers. */
  readonly headers: ReadonlyMap<string, string>;
}

/** Per-cycle scratch space shared by the plugins of one scheduling run. */
export type CycleState = Map<string, unknown>;

export type ScorerCategory = "Affinity" | "Distribution" | "Balance";

export interface Filter extends Plugin {
  /** Returns the surviving subset. An empty result fails the profile (GIE: 429). */
  filter(state: CycleState, request: SchedulingRequest, endpoints: readonly Endpoint[]): readonly Endpoint[];
}

export interface Scorer extends Plugin {
  readonly category: ScorerCategory;
  /** One score per endpoint, same order as the input; the framework clamps each to [0,1]. */
  score(state: CycleState, request: SchedulingRequest, endpoints: readonly Endpoint[]): ArrayLike<number>;
}

export interface ScoredEndpoint {
  readonly endpoint: Endpoint;
  /** Σ weight × clamp(score); not normalised by the weight sum, as GIE. */
  readonly score: number;
}

export interface Picker extends Plugin {
  /** At most `maxNumOfEndpoints`, best first. */
  pick(state: CycleState, scored: readonly ScoredEndpoint[]): readonly Endpoint[];
}

/** Runs after a successful pick, before the request is forwarded (e.g. prefix-index insert). */
export interface PreRequest extends Plugin {
  preRequest(request: SchedulingRequest, chosen: readonly Endpoint[]): void;
}

/** Per-endpoint breakdown kept for decision logs and /debug. */
export interface EndpointScoreBreakdown {
  readonly endpoint: string;
  readonly total: number;
  readonly scores: Readonly<Record<string, number>>;
}

export interface SchedulingResult {
  /** Primary first, then fallbacks. Never empty. */
  readonly endpoints: readonly Endpoint[];
  readonly profile: string;
  /** Built on first read (decision logs, /debug): most requests never need it. */
  readonly breakdown: readonly EndpointScoreBreakdown[];
  /** How many endpoints were scored (the breakdown's length). */
  readonly scoredCount: number;
  /**
   * At most `k` rows of the breakdown: the chosen endpoints first, then the highest totals. What a record that
   * outlives the request keeps, so its size does not grow with the pool.
   */
  best(k: number): readonly EndpointScoreBreakdown[];
  /** The clamped scores one scorer (by plugin name) gave the scored endpoints; undefined if it did not run. */
  scoresOf(scorerName: string): ArrayLike<number> | undefined;
  /** The highest clamped score one scorer gave this cycle, without copying its row; undefined if it did not run. */
  bestScoreOf(scorerName: string): number | undefined;
  /** Endpoints removed by filters, with the filter that removed them (worked out on first read). */
  readonly rejected: readonly { readonly endpoint: string; readonly by: string }[];
}

/**
 * Decides whether the pool is saturated (GIE's SaturationDetector). Lives with the plugins so one configured
 * `utilization-detector` can serve both as a scheduling filter and as admission's detector.
 */
export interface SaturationDetector extends Plugin {
  /**
   * GIE v1.5 utilization score: mean over `endpoints` of max(q/Q, kv/KV); stale or missing metrics count 1.0; no
   * endpoints → 1.0. Not capped, so one badly overloaded endpoint can lift the mean past 1. For gauges and flow control.
   */
  saturation(endpoints: readonly Endpoint[], now: number): number;
  /** True when no endpoint has fresh metrics with queue < Q and KV < KV threshold (zero endpoints = saturated). */
  isSaturated(endpoints: readonly Endpoint[], now: number): boolean;
  /** Metrics older than this many ms are stale; scorers read the same threshold. */
  readonly metricsStalenessMs: number;
}

/** Plugins that keep per-endpoint state (e.g. the prefix index) forget an endpoint that left the pool. */
export interface EndpointStateHolder extends Plugin {
  endpointRemoved(endpointKey: string): void;
}

/** Label values of `inference_extension_plugin_duration_seconds{extension_point}` (GIE names). */
export type ExtensionPoint = "Filter" | "Scorer" | "Picker" | "PreRequest";

/** Records one invocation's duration in seconds. */
export type DurationRecorder = (seconds: number) => void;

/**
 * Resolves the duration recorder of one plugin at one extension point. Called once per plugin when the scheduler
 * is built, never per cycle, so a timed cycle pays for clock reads and observations only.
 */
export type PluginDurationHook = (
  extensionPoint: ExtensionPoint,
  pluginType: string,
  pluginName: string,
) => DurationRecorder;

export interface WeightedScorer {
  readonly scorer: Scorer;
  readonly weight: number;
}

export interface ResolvedProfile {
  readonly name: string;
  readonly filters: readonly Filter[];
  readonly scorers: readonly WeightedScorer[];
  readonly picker: Picker;
}

/** Every configured plugin instantiated on one handle, slotted into profiles. */
export interface PluginSet {
  readonly plugins: readonly Plugin[];
  readonly profiles: readonly ResolvedProfile[];
  readonly saturationDetector: SaturationDetector;
}

/**
 * What the scheduling framework reports while it runs, passed to createScheduler once (docs/architecture.md,
 * "Telemetry"). Every member is optional; the scheduler resolves them at construction, so a cycle without an
 * observer pays nothing, and the hot path stays free of I/O: implementations only update in-memory metrics.
 */
export interface SchedulingObserver {
  /**
   * Resolves, once per plugin at construction, the recorder of each timed invocation's duration in seconds
   * (`inference_extension_plugin_duration_seconds{extension_point, plugin_type, plugin_name}`).
   */
  readonly pluginDuration?: PluginDurationHook;
  /**
   * GIE's prefix-indexer match after each successful cycle whose first prefix-cache scorer hashed the prompt: the
   * best endpoint's match ratio in [0,1] and the matched length in bytes (`inference_extension_prefix_indexer_hit_*`).
   */
  readonly prefixMatch?: (hitRatio: number, hitBytes: number) => void;
}

/**
 * The one scheduler type (GIE's `Scheduler`, framework/scheduling): what createScheduler returns and what the
 * director calls. Consumers that need less take a `Pick<Scheduler, …>` of it.
 */
export interface Scheduler {
  /** Name of the profile that runs (single-profile handler: the first configured). */
  readonly profile: string;
  /** The instances behind the scheduler (shared with admission through the same handle). */
  readonly pluginSet: PluginSet;
  /** Throws SwitchyardError SY_SCHEDULING_FAILED when every candidate is filtered out. */
  schedule(request: SchedulingRequest, candidates: readonly Endpoint[]): SchedulingResult;
  /**
   * Runs every configured PreRequest plugin (config order, e.g. the prefix-index insert) for the endpoints the last
   * cycle chose, timing each through the observer.
   */
  preRequest(request: SchedulingRequest, chosen: readonly Endpoint[]): void;
  /** Drops per-endpoint plugin state of an endpoint that left the pool. */
  endpointRemoved(endpointKey: string): void;
}
