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
/** One filter that removed endpoints: its input and output lists. */
type Drop = { readonly by: string; readonly before: readonly Endpoint[]; readonly after: readonly Endpoint[] };
const NO_DROPS: readonly Drop[] = [];

/** Score clamped to [0,1]; NaN (a scorer bug or a missing entry) counts as 0. */
function clamp01(v: number): number {
  return v > 0 ? Math.min(v, 1) : 0;
}

/**
 * The cycle's outcome. Scores stay in the scheduler's scratch array, which the next cycle overwrites: a fresh
 * (scorers + 1) × n array per cycle was 48 KB of garbage per request at 1,000 endpoints and the largest cause of
 * request-latency p99 there (bench/README.md, "Scraping at scale"). So the scores can be read until the next
 * cycle starts, and reading them later fails loudly instead of returning another request's numbers; what must
 * outlive the cycle (a decision record) copies `best(k)` or `breakdown` first. Endpoints, profile and rejections
 * stay valid for good.
 */
class Result implements SchedulingResult {
  readonly endpoints: readonly Endpoint[];
  readonly profile: string;
  readonly #drops: readonly Drop[];
  #rejected: readonly Rejection[] | undefined;
  readonly #scored: readonly Endpoint[];
  readonly #names: readonly string[];
  /** Row s = scorer s's clamped scores, last row = totals (see #run). */
  readonly #scores: number[];
  #breakdown: EndpointScoreBreakdown[] | undefined;
  readonly #owner: ProfileScheduler;
  readonly #cycle: number;

  constructor(
    owner: ProfileScheduler,
    endpoints: readonly Endpoint[],
    profile: string,
    drops: readonly Drop[],
    scored: readonly Endpoint[],
    names: readonly string[],
    scores: number[],
  ) {
    this.#owner = owner;
    this.#cycle = owner.cycles;
    this.endpoints = endpoints;
    this.profile = profile;
    this.#drops = drops;
    this.#scored = scored;
    this.#names = names;
    this.#scores = scores;
  }

  get rejected(): readonly Rejection[] {
    if (this.#rejected === undefined) {
      if (this.#drops.length === 0) this.#rejected = NO_REJECTIONS;
      else {
        const out: Rejection[] = [];
        for (const { by, before, after } of this.#drops) {
          const kept = new Set(after);
          for (const e of before) if (!kept.has(e)) out.push({ endpoint: e.key, by });
        }
        this.#rejected = out;
      }
    }
    return this.#rejected;
  }

  /** The scratch scores are this cycle's only until the next one starts. */
  #live(): void {
    if (this.#owner.cycles !== this.#cycle)
      throw new SwitchyardError(
        "SY_INTERNAL",
        "a scheduling result's scores were read after the next cycle ran; read breakdown or best(k) before scheduling again",
      );
  }

  get breakdown(): readonly EndpointScoreBreakdown[] {
    if (this.#breakdown === undefined) {
      this.#live();
      const n = this.#scored.length;
      const out = new Array<EndpointScoreBreakdown>(n);
      for (let i = 0; i < n; i++) out[i] = this.#row(i);
      this.#breakdown = out;
    }
    return this.#breakdown;
  }

  get scoredCount(): number {
    return this.#scored.length;
  }

  best(k: number): readonly EndpointScoreBreakdown[] {
    const n = this.#scored.length;
    if (n <= k) return this.breakdown;
    this.#live();
    const totals = this.#names.length * n;
    const rows: number[] = [];
    for (const e of this.endpoints) {
      const i = this.#scored.indexOf(e);
      if (i >= 0 && rows.length < k) rows.push(i);
    }
    const fixed = rows.length;
    // The best others by total, kept sorted in a buffer of at most k - fixed: one pass, no sort of the pool.
    const top: number[] = [];
    const room = k - fixed;
    for (let i = 0; i < n && room > 0; i++) {
      if (rows.includes(i)) continue;
      const t = this.#scores[totals + i]!;
      if (top.length === room && t <= this.#scores[totals + top[room - 1]!]!) continue;
      let j = top.length < room ? top.length : room - 1;
      while (j > 0 && this.#scores[totals + top[j - 1]!]! < t) {
        top[j] = top[j - 1]!;
        j--;
      }
      top[j] = i;
    }
    return [...rows, ...top].map((i) => this.#row(i));
  }

  #row(i: number): EndpointScoreBreakdown {
    const n = this.#scored.length;
    const scores: Record<string, number> = {};
    for (let s = 0; s < this.#names.length; s++) scores[this.#names[s]!] = this.#scores[s * n + i]!;
    return { endpoint: this.#scored[i]!.key, total: this.#scores[this.#names.length * n + i]!, scores };
  }

  bestScoreOf(scorerName: string): number | undefined {
    const s = this.#names.indexOf(scorerName);
    if (s === -1) return undefined;
    this.#live();
    const n = this.#scored.length;
    let best = Number.NEGATIVE_INFINITY;
    for (let i = s * n; i < (s + 1) * n; i++) if (this.#scores[i]! > best) best = this.#scores[i]!;
    return best;
  }

  scoresOf(scorerName: string): ArrayLike<number> | undefined {
    const s = this.#names.indexOf(scorerName);
    if (s === -1) return undefined;
    this.#live();
    const n = this.#scored.length;
    return this.#scores.slice(s * n, (s + 1) * n);
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
  /** The cycle's scores, reused (see Result). */
  readonly #scores: number[] = [];
  #cycles = 0;
  #running = false;
  #cycle = 0;

  /** Cycles scored so far; a Result's scores are valid while this still equals the count at its creation. */
  get cycles(): number {
    return this.#cycles;
  }
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
    let drops = NO_DROPS as Drop[];

    for (let f = 0; f < filters.length; f++) {
      const filter = filters[f]!;
      const t0 = timers ? performance.now() : 0;
      const next = filter.filter(state, request, current);
      if (timers) timers.filters[f]!((performance.now() - t0) / 1000);
      // Who was dropped is worked out only if somebody reads it (decision logs, /debug): at 1,000 endpoints the
      // eager Set and one record per dropped endpoint were a large share of a cycle's garbage.
      if (next.length !== current.length) {
        if (drops === NO_DROPS) drops = [];
        drops.push({ by: filter.typedName.name, before: current, after: next });
      }
      if (next.length === 0) throw new SwitchyardError("SY_SCHEDULING_FAILED", NO_ENDPOINTS_MESSAGE);
      current = next;
    }

    // One array for every number the cycle produces, reused from cycle to cycle (see Result): row s (of n) holds
    // scorer s's clamped scores, the last row the weighted totals. A plain array, not a Float64Array: when it was
    // allocated per cycle, a typed array's off-heap backing store was the costliest line of a cycle in
    // bench/extproc's CPU profile (≈ 1.7 µs per request). It keeps the size of the largest pool seen.
    const n = current.length;
    const S = scorers.length;
    this.#cycles++;
    const scores = this.#scores;
    const size = (S + 1) * n;
    // Grown with doubles only, so the array stays PACKED_DOUBLE_ELEMENTS (unboxed numbers, no per-write HeapNumber).
    while (scores.length < size) scores.push(0.5);
    scores.fill(0, 0, size);
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
    return new Result(this, picked, this.profile, drops, current, this.#scorerNames, scores);
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
