/**
 * The scheduling framework (docs/design/scheduling.md §1): candidates → filters (in order) → weighted scorers → picker,
 * in the profile the single-profile handler selects (the first configured). Hot path: no logging, no I/O, no closures
 * per call; the only allocations are the result (which outlives the call) and rejection records when a filter removes
 * something.
 */
import { SwitchyardError } from "../common/errors.js";
import type { Endpoint } from "../datastore/types.js";
import { instantiatePlugins, type PickerConfig } from "./config.js";
import { createPluginHandle, type DefaultPluginHandle, isEndpointStateHolder, isPreRequest } from "./registry.js";
import { type CycleReporter, prefixMatchReporter } from "./telemetry.js";
import type {
  CycleState,
  DurationRecorder,
  EndpointScoreBreakdown,
  EndpointStateHolder,
  ExtensionPoint,
  PluginDurationHook,
  PluginSet,
  PreRequest,
  ResolvedProfile,
  Scheduler,
  SchedulingObserver,
  SchedulingRequest,
  SchedulingResult,
  ScoredEndpoint,
  TypedName,
} from "./types.js";

/** GIE's scheduler error text (director.go@v1.5.0), kept byte-compatible. */
export const NO_ENDPOINTS_MESSAGE = "failed to find target endpoint: no endpoints available for the given request";

export interface SchedulerOptions {
  /**
   * Receives plugin durations and per-cycle results (types.ts `SchedulingObserver`). Without `pluginDuration` no
   * clock is read.
   */
  readonly observer?: SchedulingObserver;
  /**
   * Time plugins on one scheduling cycle in this many (default 1 = every cycle). Reading the clock and updating a
   * histogram per plugin costs more than most plugins themselves; sampling keeps the latency distribution while
   * cutting that cost. The histogram's _count then counts sampled invocations.
   */
  readonly pluginTimingEvery?: number;
}

/** Each plugin's duration recorder, in the order the cycle runs them. */
interface PluginTimers {
  readonly filters: readonly DurationRecorder[];
  readonly scorers: readonly DurationRecorder[];
  readonly picker: DurationRecorder;
  readonly preRequest: readonly DurationRecorder[];
}

function pluginTimers(p: ResolvedProfile, preRequest: readonly PreRequest[], hook: PluginDurationHook): PluginTimers {
  const of = (point: ExtensionPoint, { typedName }: { readonly typedName: TypedName }) =>
    hook(point, typedName.type, typedName.name);
  return {
    filters: p.filters.map((f) => of("Filter", f)),
    scorers: p.scorers.map((s) => of("Scorer", s.scorer)),
    picker: of("Picker", p.picker),
    preRequest: preRequest.map((r) => of("PreRequest", r)),
  };
}

type Rejection = { readonly endpoint: string; readonly by: string };
const NO_REJECTIONS: readonly Rejection[] = [];

/** Score clamped to [0,1]; NaN (a scorer bug or a missing entry) counts as 0. */
function clamp01(v: number): number {
  return v > 0 ? Math.min(v, 1) : 0;
}

/**
 * The cycle's outcome. Scores stay in the array the cycle filled; the per-endpoint breakdown (an object per
 * endpoint with a record per scorer) is assembled only when a decision log or /debug reads it.
 */
class Result implements SchedulingResult {
  readonly endpoints: readonly Endpoint[];
  readonly profile: string;
  readonly rejected: readonly Rejection[];
  readonly #scored: readonly Endpoint[];
  readonly #names: readonly string[];
  /** Row s = scorer s's clamped scores, last row = totals (see #run). */
  readonly #scores: number[];
  #breakdown: EndpointScoreBreakdown[] | undefined;

  constructor(
    endpoints: readonly Endpoint[],
    profile: string,
    rejected: readonly Rejection[],
    scored: readonly Endpoint[],
    names: readonly string[],
    scores: number[],
  ) {
    this.endpoints = endpoints;
    this.profile = profile;
    this.rejected = rejected;
    this.#scored = scored;
    this.#names = names;
    this.#scores = scores;
  }

  get breakdown(): readonly EndpointScoreBreakdown[] {
    if (this.#breakdown === undefined) {
      const n = this.#scored.length;
      const totals = this.#names.length * n;
      const out = new Array<EndpointScoreBreakdown>(n);
      for (let i = 0; i < n; i++) {
        const scores: Record<string, number> = {};
        for (let s = 0; s < this.#names.length; s++) scores[this.#names[s]!] = this.#scores[s * n + i]!;
        out[i] = { endpoint: this.#scored[i]!.key, total: this.#scores[totals + i]!, scores };
      }
      this.#breakdown = out;
    }
    return this.#breakdown;
  }

  scoresOf(scorerName: string): ArrayLike<number> | undefined {
    const s = this.#names.indexOf(scorerName);
    const n = this.#scored.length;
    return s === -1 ? undefined : this.#scores.slice(s * n, (s + 1) * n);
  }
}

class ProfileScheduler implements Scheduler {
  readonly profile: string;
  readonly preRequestPlugins: readonly PreRequest[];
  readonly pluginSet: PluginSet;
  readonly #p: ResolvedProfile;
  readonly #stateHolders: readonly EndpointStateHolder[];
  readonly #timers: PluginTimers | undefined;
  readonly #timingEvery: number;
  readonly #afterCycle: CycleReporter | undefined;
  readonly #scorerNames: readonly string[];
  readonly #handle: DefaultPluginHandle;
  readonly #scored: ScoredEndpoint[] = [];
  #running = false;
  #cycle = 0;
  /** Reused: schedule() is synchronous, so one cycle state can never be shared by two runs. */
  readonly #state: CycleState = new Map();

  constructor(set: PluginSet, handle: DefaultPluginHandle, options: SchedulerOptions) {
    this.#handle = handle;
    this.pluginSet = set;
    this.#p = set.profiles[0]!;
    this.profile = this.#p.name;
    this.preRequestPlugins = set.plugins.filter(isPreRequest);
    this.#stateHolders = set.plugins.filter(isEndpointStateHolder);
    this.#scorerNames = this.#p.scorers.map((s) => s.scorer.typedName.name);
    const hook = options.observer?.pluginDuration;
    this.#timers = hook && pluginTimers(this.#p, this.preRequestPlugins, hook);
    this.#afterCycle = options.observer && prefixMatchReporter(set, options.observer);
    this.#timingEvery = Math.max(1, Math.floor(options.pluginTimingEvery ?? 1));
  }

  /** The recorders when this cycle is timed, else undefined. */
  #sampledTimers(): PluginTimers | undefined {
    if (this.#timers === undefined) return undefined;
    return ++this.#cycle % this.#timingEvery === 0 ? this.#timers : undefined;
  }

  schedule(request: SchedulingRequest, candidates: readonly Endpoint[]): SchedulingResult {
    if (candidates.length === 0) throw new SwitchyardError("SY_SCHEDULING_FAILED", NO_ENDPOINTS_MESSAGE);
    // The cycle state and picker records are reused, so a plugin that called back into schedule() would corrupt
    // the running cycle: refuse it loudly instead.
    if (this.#running) throw new SwitchyardError("SY_INTERNAL", "scheduler re-entered from inside a scheduling cycle");
    this.#running = true;
    const state = this.#state;
    state.clear();
    try {
      const result = this.#handle.atOneInstant(() => this.#run(state, request, candidates));
      this.#afterCycle?.(request, candidates, result);
      return result;
    } finally {
      state.clear();
      this.#running = false;
    }
  }

  #run(state: CycleState, request: SchedulingRequest, candidates: readonly Endpoint[]): SchedulingResult {
    const timers = this.#sampledTimers();
    const { filters, scorers, picker } = this.#p;
    let current = candidates;
    let rejected = NO_REJECTIONS as Rejection[];

    for (let f = 0; f < filters.length; f++) {
      const filter = filters[f]!;
      const t0 = timers ? performance.now() : 0;
      const next = filter.filter(state, request, current);
      if (timers) timers.filters[f]!((performance.now() - t0) / 1000);
      if (next.length !== current.length) {
        if (rejected === NO_REJECTIONS) rejected = [];
        const kept = new Set(next);
        const by = filter.typedName.name;
        for (let i = 0; i < current.length; i++)
          if (!kept.has(current[i]!)) rejected.push({ endpoint: current[i]!.key, by });
      }
      if (next.length === 0) throw new SwitchyardError("SY_SCHEDULING_FAILED", NO_ENDPOINTS_MESSAGE);
      current = next;
    }

    // One allocation for every number the cycle produces: row s (of n) holds scorer s's clamped scores, the last
    // row the weighted totals. The Result keeps it for the lazily built breakdown. A plain array, not a
    // Float64Array: past 64 bytes a typed array gets an off-heap backing store, and allocating it was the costliest
    // line of a cycle in bench/extproc's CPU profile (≈ 1.7 µs per request).
    const n = current.length;
    const S = scorers.length;
    const scores = new Array<number>((S + 1) * n).fill(0);
    const totals = S * n;
    for (let s = 0; s < S; s++) {
      const { scorer, weight } = scorers[s]!;
      const t0 = timers ? performance.now() : 0;
      const raw = scorer.score(state, request, current);
      if (timers) timers.scorers[s]!((performance.now() - t0) / 1000);
      const row = s * n;
      for (let i = 0; i < n; i++) {
        const v = clamp01(raw[i] as number);
        scores[totals + i]! += weight * v;
        scores[row + i] = v;
      }
    }

    // Reused entries: pickers return endpoints, never these records, and schedule() is synchronous.
    const scored = this.#scored;
    for (let i = scored.length; i < n; i++) scored.push({ endpoint: current[i]!, score: 0 });
    if (scored.length !== n) scored.length = n;
    for (let i = 0; i < n; i++) {
      const entry = scored[i] as { endpoint: Endpoint; score: number };
      entry.endpoint = current[i]!;
      entry.score = scores[totals + i]!;
    }

    const t0 = timers ? performance.now() : 0;
    let picked: readonly Endpoint[];
    try {
      picked = picker.pick(state, scored);
    } finally {
      // Do not keep endpoints alive between cycles through the scratch records.
      for (let i = 0; i < n; i++) (scored[i] as { endpoint: Endpoint | undefined }).endpoint = undefined;
    }
    if (timers) timers.picker((performance.now() - t0) / 1000);
    if (picked.length === 0) throw new SwitchyardError("SY_SCHEDULING_FAILED", NO_ENDPOINTS_MESSAGE);
    return new Result(picked, this.profile, rejected, current, this.#scorerNames, scores);
  }

  preRequest(request: SchedulingRequest, chosen: readonly Endpoint[]): void {
    // Timed with the cycle that chose `chosen` (the last one run).
    const timers = this.#cycle % this.#timingEvery === 0 ? this.#timers : undefined;
    const plugins = this.preRequestPlugins;
    for (let i = 0; i < plugins.length; i++) {
      const t0 = timers ? performance.now() : 0;
      plugins[i]!.preRequest(request, chosen);
      if (timers) timers.preRequest[i]!((performance.now() - t0) / 1000);
    }
  }

  endpointRemoved(endpointKey: string): void {
    for (const p of this.#stateHolders) p.endpointRemoved(endpointKey);
  }
}

/**
 * Builds the scheduler for `config` on `handle` (instantiating its plugins there if not done yet, so admission's
 * saturation detector is the same instance). Only the first profile runs (single-profile handler).
 */
export function createScheduler(
  config: PickerConfig,
  handle: DefaultPluginHandle = createPluginHandle(),
  options: SchedulerOptions = {},
): Scheduler {
  return new ProfileScheduler(instantiatePlugins(config, handle), handle, options);
}
