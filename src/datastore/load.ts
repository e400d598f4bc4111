/**
 * Own-load accounting and the per-endpoint latency learner (docs/design/scheduling.md §11).
 *
 * The scraped gauges say what a pod reported 50–550 ms ago: vLLM counts a request in num_requests_running only
 * after its first engine step, and the scrape adds its own period on top. Routing on them alone sends a burst to
 * whichever pod looked idle last. This module is the single owner of what this EPP replica itself did since:
 * per endpoint, requests in flight, prompt tokens dispatched but not yet prefilled (cleared at the first response
 * byte), and decode tokens outstanding (cleared at completion or cancel). Every update is a few field writes on the
 * request path: no I/O, no timers, one small ticket object per request.
 *
 * Fusion (`fusedRequests`): when a new scrape lands, the counters of own dispatches and completions are
 * snapshotted; from then on the pod's load is the gauge + own dispatches since − own completions since, never less
 * than what this replica has in flight. A stale gauge therefore never erases dispatches made after it was read,
 * and a dispatch the gauge already shows is not counted twice.
 *
 * The learner (`LatencyModel`) fits, per endpoint, TTFT ≈ overhead + (prefillMs/token + loadedPrefillMs/token ×
 * requests) × own uncached prompt + aheadMs/token × prefill queued ahead + interference × requests on the pod, by
 * exponentially decayed least squares pulled toward a prior (ridge), plus an EWMA of the inter-token time. Memory
 * is constant per endpoint; state lives on the Endpoint object and goes when the endpoint leaves the pool.
 */
import type { Endpoint, EndpointMetrics } from "./types.js";

/** What the learner starts from and how fast it forgets (docs/design/scheduling.md §11.3). */
export interface LatencyPrior {
  /** Fixed TTFT cost of an idle pod, ms. Default 20. */
  readonly overheadMs: number;
  /** Prefill time per uncached prompt token, ms. Default 0.15 (≈ 6.7k tokens/s; 10k tokens ≈ 1.5 s). */
  readonly prefillMsPerToken: number;
  /** TTFT added per request already on the pod (decode steps the prefill shares), ms. Default 5. */
  readonly interferenceMsPerRequest: number;
  /** Inter-token time of a pod of nominal speed, ms. Default 20. */
  readonly interTokenMs: number;
  /** Weight of the prior, in observations. Default 3. */
  readonly priorWeight: number;
  /** Per-observation decay of older observations, (0, 1). Default 0.05 (≈ the last 20 dominate). */
  readonly decay: number;
}

export const DEFAULT_LATENCY_PRIOR: LatencyPrior = {
  overheadMs: 20,
  prefillMsPerToken: 0.15,
  interferenceMsPerRequest: 5,
  interTokenMs: 20,
  priorWeight: 3,
  decay: 0.05,
};

/** Observations longer than this are dropped as outliers (a hung stream, a client that paused reading). */
const MAX_OBSERVED_MS = 600_000;
/** Features beyond these are corrupt input, not load: no pod queues ten million prompt tokens. */
const MAX_FEATURE_TOKENS = 10_000_000;
const MAX_FEATURE_REQUESTS = 100_000;
/** Own k-tokens × requests beyond this is corrupt input too (1M-token prompts on a pod running 1,000). */
const MAX_FEATURE_PRODUCT = 1_000_000;
/** The speed ratio read from inter-token times never scales the prior beyond this range. */
const MIN_SPEED_RATIO = 0.25;
const MAX_SPEED_RATIO = 8;
/** Features are scaled so the normal equations stay well conditioned: tokens in thousands. */
const TOKEN_SCALE = 1000;
/** Typical feature magnitudes the prior is expressed at (one pseudo-observation each). */
const TYPICAL_KTOKENS = 1;
const TYPICAL_REQUESTS = 4;
/** Prompt-size prior for turning a waiting-queue gauge into tokens, until own dispatches say otherwise. */
const DEFAULT_MEAN_PROMPT_TOKENS = 512;
/** Decode length assumed for requests of unknown length when pricing a wait for a batch slot. */
const DEFAULT_MEAN_DECODE_TOKENS = 256;

function finitePositive(v: number, max: number): boolean {
  return v > 0 && v < max;
}

/** Features of the TTFT fit: [1, own ktokens, ahead ktokens, requests, own ktokens × requests]. */
const FEATURES = 5;
/** Upper triangle of the symmetric normal matrix, row by row. */
const TRI = (FEATURES * (FEATURES + 1)) / 2;
/** Scratch for an observation and the solve: one per process, used synchronously, so nothing is allocated. */
const X = new Float64Array(FEATURES);
const A = new Float64Array(FEATURES * FEATURES);
const C = new Float64Array(FEATURES);

/**
 * Per-endpoint TTFT and inter-token model. Fields are plain numbers; the coefficients are the current fit, re-solved
 * on every observation (a 5×5 Cholesky solve), so scoring reads them for free.
 *
 * Why five terms and not one prefill rate for "tokens ahead + own" (docs/design/scheduling.md §11.3): engines
 * differ in what a request waits for. vLLM's chunked prefill shares a per-step token budget, so prompts queued ahead
 * delay a new one; an engine that stretches every request by a factor growing with its running count (the
 * simulators' --time-factor-under-load) costs a busy pod's new request in proportion to its own prompt. One shared
 * rate with an additive running count could express only the first; separate rates plus the own × requests term let
 * each pod's learner weigh both from its own TTFTs.
 */
export class LatencyModel {
  /** Decayed normal equations: S = Σ w x xᵀ (upper triangle), b = Σ w x y. */
  readonly #s = new Float64Array(TRI);
  readonly #b = new Float64Array(FEATURES);
  /** Current fit. */
  overhead: number;
  /** ms per own uncached prompt token on an otherwise idle pod. */
  prefillPerToken: number;
  /** ms per prompt token queued ahead (prefill not yet done) on the pod. */
  aheadPerToken: number;
  /** ms per request on the pod, whatever the prompt. */
  interference: number;
  /** ms per own uncached prompt token per request on the pod: how much a busy pod stretches a prefill. */
  loadedPrefillPerToken: number;
  /** Learned inter-token time, ms (the prior's until the first streamed completion). */
  interTokenMs: number;
  ttftObservations = 0;
  itlObservations = 0;
  readonly #prior: LatencyPrior;

  constructor(prior: LatencyPrior = DEFAULT_LATENCY_PRIOR) {
    this.#prior = prior;
    this.overhead = prior.overheadMs;
    this.prefillPerToken = prior.prefillMsPerToken;
    this.aheadPerToken = prior.prefillMsPerToken;
    this.interference = prior.interferenceMsPerRequest;
    this.loadedPrefillPerToken = 0;
    this.interTokenMs = prior.interTokenMs;
  }

  /**
   * Predicted TTFT, ms, for `ownTokens` of own uncached prefill with `aheadTokens` of prefill queued ahead and
   * `requests` already on the pod.
   */
  predict(ownTokens: number, aheadTokens: number, requests: number): number {
    return (
      this.overhead +
      (this.prefillPerToken + this.loadedPrefillPerToken * requests) * ownTokens +
      this.aheadPerToken * aheadTokens +
      this.interference * requests
    );
  }

  /** How much slower than nominal this pod decodes, from the learned inter-token time (1 before any). */
  get speedRatio(): number {
    const r = this.interTokenMs / this.#prior.interTokenMs;
    return r < MIN_SPEED_RATIO ? MIN_SPEED_RATIO : Math.min(r, MAX_SPEED_RATIO);
  }

  /** One TTFT with the features as they were at dispatch. Non-finite or absurd samples are ignored. */
  observeTtft(ttftMs: number, ownTokens: number, aheadTokens: number, requests: number): void {
    if (!finitePositive(ttftMs, MAX_OBSERVED_MS)) return;
    if (
      !(ownTokens >= 0 && ownTokens < MAX_FEATURE_TOKENS) ||
      !(aheadTokens >= 0 && aheadTokens < MAX_FEATURE_TOKENS) ||
      !(requests >= 0 && requests < MAX_FEATURE_REQUESTS) ||
      // The product term squared would swamp the ridge and the other sums for hundreds of observations.
      !((ownTokens / TOKEN_SCALE) * requests <= MAX_FEATURE_PRODUCT)
    )
      return;
    const k = 1 - this.#prior.decay;
    const own = ownTokens / TOKEN_SCALE;
    X[0] = 1;
    X[1] = own;
    X[2] = aheadTokens / TOKEN_SCALE;
    X[3] = requests;
    X[4] = own * requests;
    const s = this.#s;
    const b = this.#b;
    // S row by row over its upper triangle, the order #solve reads it in.
    let n = 0;
    for (let r = 0; r < FEATURES; r++) {
      for (let c = r; c < FEATURES; c++, n++) s[n] = k * s[n]! + X[r]! * X[c]!;
      b[r] = k * b[r]! + X[r]! * ttftMs;
    }
    this.ttftObservations++;
    this.#solve();
  }

  /** One inter-token time, ms (a streamed completion's decode time over its tokens after the first). */
  observeInterToken(ms: number): void {
    if (!finitePositive(ms, MAX_OBSERVED_MS)) return;
    // Starts as a running mean that counts the prior as `priorWeight` samples, settles into an EWMA.
    const n = ++this.itlObservations;
    const rate = Math.max(this.#prior.decay, 1 / (n + this.#prior.priorWeight));
    this.interTokenMs += rate * (ms - this.interTokenMs);
    // The prior of the TTFT fit scales with this pod's speed: re-solve so a slow decoder is also a slow prefiller
    // until its own TTFTs say otherwise.
    this.#solve();
  }

  /**
   * (S + Λ) θ = b + Λ θ₀, with θ₀ the prior scaled by the pod's speed ratio (own and ahead tokens at the prior's
   * prefill rate, no load interaction) and Λ = priorWeight at typical x, by Cholesky (S + Λ is symmetric positive
   * definite: Λ > 0).
   */
  #solve(): void {
    const p = this.#prior;
    const r = this.speedRatio;
    const w = p.priorWeight;
    const kt2 = TYPICAL_KTOKENS * TYPICAL_KTOKENS;
    const rq2 = TYPICAL_REQUESTS * TYPICAL_REQUESTS;
    const lambda0 = w;
    const lambda1 = w * kt2;
    const lambda3 = w * rq2;
    const lambda4 = w * kt2 * rq2;
    const prefill = p.prefillMsPerToken * TOKEN_SCALE * r;
    const s = this.#s;
    const b = this.#b;
    let n = 0;
    for (let i = 0; i < FEATURES; i++) for (let j = i; j < FEATURES; j++, n++) A[i * FEATURES + j] = s[n]!;
    A[0] = A[0]! + lambda0;
    A[6] = A[6]! + lambda1;
    A[12] = A[12]! + lambda1;
    A[18] = A[18]! + lambda3;
    A[24] = A[24]! + lambda4;
    C[0] = b[0]! + lambda0 * p.overheadMs * r;
    C[1] = b[1]! + lambda1 * prefill;
    C[2] = b[2]! + lambda1 * prefill;
    C[3] = b[3]! + lambda3 * p.interferenceMsPerRequest * r;
    C[4] = b[4]!;
    // In-place Cholesky A = L Lᵀ on the upper triangle (stored as Lᵀ), then two triangular solves into C.
    for (let i = 0; i < FEATURES; i++) {
      const diagonal = A[i * FEATURES + i]!;
      let d = diagonal;
      for (let k = 0; k < i; k++) d -= A[k * FEATURES + i]! * A[k * FEATURES + i]!;
      // Relative: a pivot lost in the rounding of a large diagonal means the system is numerically singular.
      if (!(d > 1e-12 * diagonal) || !Number.isFinite(d)) return;
      const l = Math.sqrt(d);
      A[i * FEATURES + i] = l;
      for (let j = i + 1; j < FEATURES; j++) {
        let v = A[i * FEATURES + j]!;
        for (let k = 0; k < i; k++) v -= A[k * FEATURES + i]! * A[k * FEATURES + j]!;
        A[i * FEATURES + j] = v / l;
      }
    }
    for (let i = 0; i < FEATURES; i++) {
      let v = C[i]!;
      for (let k = 0; k < i; k++) v -= A[k * FEATURES + i]! * C[k]!;
      C[i] = v / A[i * FEATURES + i]!;
    }
    for (let i = FEATURES - 1; i >= 0; i--) {
      let v = C[i]!;
      for (let k = i + 1; k < FEATURES; k++) v -= A[i * FEATURES + k]! * C[k]!;
      C[i] = v / A[i * FEATURES + i]!;
    }
    for (let i = 0; i < FEATURES; i++) if (!Number.isFinite(C[i]!)) return;
    // A cost cannot be negative; an own prefill rate of 0 would make every prompt free.
    this.overhead = Math.max(0, C[0]!);
    this.prefillPerToken = Math.max(p.prefillMsPerToken * 0.01, C[1]! / TOKEN_SCALE);
    this.aheadPerToken = Math.max(0, C[2]! / TOKEN_SCALE);
    this.interference = Math.max(0, C[3]!);
    this.loadedPrefillPerToken = Math.max(0, C[4]! / TOKEN_SCALE);
  }
}

/**
 * What this replica did to one endpoint, plus its learner. Plain fields, read by scorers; written only through
 * EndpointLoad and its tickets.
 */
export class EndpointLoadState {
  /** Own requests routed here and not finished. */
  inflight = 0;
  /** Prompt tokens of own requests that have not produced a first byte yet. */
  prefillTokens = 0;
  /** Expected decode tokens of own requests that have not finished. */
  decodeTokens = 0;
  /** Cumulative own dispatches and finishes, for fusion with the gauges. */
  dispatched = 0;
  finished = 0;
  /** Mean prompt tokens of own dispatches (EWMA), to price a waiting queue the gauge shows. */
  meanPromptTokens = DEFAULT_MEAN_PROMPT_TOKENS;
  /**
   * Fraction of the next dispatch's prompt the scheduler expects cached here (set by the latency scorer's
   * PreRequest, consumed by the next acquire on the same tick); -1 when nobody said.
   */
  cachedHint = -1;
  /**
   * Batch slots: the largest running gauge seen while requests were waiting (the batch was full then); 0 until the
   * pod has been seen full. Past it a new request waits for a slot, not for a share of a step.
   */
  batchSlots = 0;
  readonly model: LatencyModel;
  /** The gauge the fusion baseline below belongs to. */
  #gauge: EndpointMetrics | undefined;
  #baseDispatched = 0;
  #baseFinished = 0;

  constructor(prior: LatencyPrior) {
    this.model = new LatencyModel(prior);
  }

  /**
   * Own dispatches / finishes since the endpoint's current gauge landed. The baseline is taken at the first look
   * after a new metrics object appears; every counter change looks first, so no change can slip in between.
   */
  sync(metrics: EndpointMetrics | undefined): void {
    if (metrics === this.#gauge) return;
    this.#gauge = metrics;
    if (metrics !== undefined && metrics.waitingQueueSize > 0 && metrics.runningRequestsSize > this.batchSlots)
      this.batchSlots = Math.min(metrics.runningRequestsSize, MAX_FEATURE_REQUESTS);
    this.#baseDispatched = this.dispatched;
    this.#baseFinished = this.finished;
  }

  /** Own dispatches since the current gauge was read, minus own finishes since. */
  get sinceGauge(): number {
    return this.dispatched - this.#baseDispatched - (this.finished - this.#baseFinished);
  }
}

/** The endpoint's load state, created on first use (a pool can have endpoints no request has touched yet). */
export function loadStateOf(endpoint: Endpoint, prior: LatencyPrior = DEFAULT_LATENCY_PRIOR): EndpointLoadState {
  let s = endpoint.load;
  if (s === undefined) {
    s = new EndpointLoadState(prior);
    endpoint.load = s;
  }
  return s;
}

/**
 * Requests on the pod: the last gauge (running + waiting) fused with own dispatches and finishes since it landed,
 * never less than own requests in flight. No gauge → own in flight.
 */
export function fusedRequests(endpoint: Endpoint): number {
  const s = endpoint.load;
  const m = endpoint.metrics;
  const own = s === undefined ? 0 : s.inflight;
  if (m === undefined) return own;
  const gauge = m.runningRequestsSize + m.waitingQueueSize;
  if (s === undefined) return gauge;
  s.sync(m);
  const fused = gauge + s.sinceGauge;
  return Math.max(fused, own);
}

/**
 * Prompt tokens queued for prefill ahead of a new request: own unprefilled prompts, or the gauge's waiting queue
 * priced at the mean own prompt when that is larger (other replicas' requests the gauge shows).
 */
export function prefillTokensAhead(endpoint: Endpoint): number {
  const s = endpoint.load;
  const own = s === undefined ? 0 : s.prefillTokens;
  const m = endpoint.metrics;
  if (m === undefined || m.waitingQueueSize <= 0) return own;
  const fromGauge = m.waitingQueueSize * (s === undefined ? DEFAULT_MEAN_PROMPT_TOKENS : s.meanPromptTokens);
  return Math.max(fromGauge, own);
}

/**
 * Time a new request waits for a batch slot when `requests` are on a pod whose batch holds `batchSlots`: the k-th
 * slot to free among S sequences with uniformly spread remaining decode comes after ≈ k / (S + 1) of a full decode,
 * so wait ≈ (requests − S + 1) × mean decode tokens × inter-token time / (S + 1). 0 until the pod was seen full.
 */
export function batchWaitMs(endpoint: Endpoint, requests: number): number {
  const s = endpoint.load;
  if (s === undefined || s.batchSlots <= 0) return 0;
  const ahead = requests - s.batchSlots + 1;
  if (ahead <= 0) return 0;
  const meanDecode = s.inflight > 0 ? s.decodeTokens / s.inflight : DEFAULT_MEAN_DECODE_TOKENS;
  return (ahead * meanDecode * s.model.interTokenMs) / (s.batchSlots + 1);
}

/**
 * Predicted TTFT on `endpoint` for a request with `uncachedTokens` to prefill, ms: the learned model on the prefill
 * queued ahead plus its own, with the fused requests on the pod, plus the wait for a batch slot (§11.3).
 */
export function predictTtftMs(endpoint: Endpoint, uncachedTokens: number, model: LatencyModel): number {
  const requests = fusedRequests(endpoint);
  return model.predict(uncachedTokens, prefillTokensAhead(endpoint), requests) + batchWaitMs(endpoint, requests);
}

export type ReleaseOutcome = "completed" | "cancelled" | "error";

/** One dispatched request's share of an endpoint's load. Every method is idempotent. */
export class LoadTicket {
  readonly endpoint: Endpoint;
  readonly #state: EndpointLoadState;
  readonly #promptTokens: number;
  readonly #decodeTokens: number;
  readonly #dispatchedAt: number;
  /** Features at dispatch, for the learner: own uncached prompt tokens, prefill tokens ahead, requests on the pod. */
  readonly #own: number;
  readonly #ahead: number;
  readonly #requests: number;
  /** Predicted wait for a batch slot at dispatch: not part of what the regression explains. */
  readonly #slotWait: number;
  #firstByteAt = -1;
  #released = false;

  constructor(
    endpoint: Endpoint,
    state: EndpointLoadState,
    promptTokens: number,
    decodeTokens: number,
    now: number,
    own: number,
    ahead: number,
    requests: number,
    slotWait: number,
  ) {
    this.endpoint = endpoint;
    this.#state = state;
    this.#promptTokens = promptTokens;
    this.#decodeTokens = decodeTokens;
    this.#dispatchedAt = now;
    this.#own = own;
    this.#ahead = ahead;
    this.#requests = requests;
    this.#slotWait = slotWait;
  }

  /** The observed TTFT less the predicted slot wait, never below a tenth of it (an over-predicted wait). */
  #regressionTtft(ttft: number): number {
    const rest = ttft - this.#slotWait;
    return Math.max(rest, ttft * 0.1);
  }

  /** Prefill tokens outstanding on this ticket (0 after the first byte or release). */
  get prefillPending(): boolean {
    return this.#firstByteAt < 0 && !this.#released;
  }

  /**
   * The first response byte: the prompt is prefilled. `streamed` says the byte is the first token (SSE); a
   * non-streamed body's first byte comes at completion and is no TTFT.
   */
  firstByte(now: number, streamed: boolean): void {
    if (this.#firstByteAt >= 0 || this.#released) return;
    this.#firstByteAt = now;
    const s = this.#state;
    s.sync(this.endpoint.metrics);
    s.prefillTokens -= this.#promptTokens;
    if (streamed)
      s.model.observeTtft(this.#regressionTtft(now - this.#dispatchedAt), this.#own, this.#ahead, this.#requests);
  }

  /**
   * The request finished. With `completionTokens` on a successful response the learner gets its decode time
   * (streamed: from the first token on) or, unstreamed, the whole duration split by the current model.
   */
  release(now: number, outcome: ReleaseOutcome, completionTokens?: number, streamed = false): void {
    if (this.#released) return;
    const s = this.#state;
    s.sync(this.endpoint.metrics);
    if (this.#firstByteAt < 0) s.prefillTokens -= this.#promptTokens;
    this.#released = true;
    s.inflight--;
    s.decodeTokens -= this.#decodeTokens;
    s.finished++;
    const e = this.endpoint as { inflightRequests: number; inflightTokens: number };
    e.inflightRequests--;
    e.inflightTokens -= this.#promptTokens + this.#decodeTokens;
    if (outcome === "completed" && completionTokens !== undefined && completionTokens > 0)
      this.#learn(now, completionTokens, streamed);
  }

  #learn(now: number, tokens: number, streamed: boolean): void {
    const model = this.#state.model;
    if (streamed) {
      if (this.#firstByteAt >= 0 && tokens >= 2) model.observeInterToken((now - this.#firstByteAt) / (tokens - 1));
      return;
    }
    // One number for two unknowns: attribute it in the proportion the current model predicts, so a pod that is
    // uniformly slower (the common heterogeneous case) moves both estimates by the same factor.
    const total = now - this.#dispatchedAt;
    const ttft = model.predict(this.#own, this.#ahead, this.#requests) + this.#slotWait;
    const predicted = ttft + (tokens - 1) * model.interTokenMs;
    if (!(predicted > 0) || !(total > 0)) return;
    const f = total / predicted;
    model.observeTtft(this.#regressionTtft(ttft * f), this.#own, this.#ahead, this.#requests);
    if (tokens >= 2) model.observeInterToken(model.interTokenMs * f);
  }
}

export interface EndpointLoadOptions {
  readonly prior?: Partial<LatencyPrior>;
  /** Monotonic ms; default performance.now. */
  readonly now?: () => number;
}

/** Acquires tickets: the only way the request path changes an endpoint's load. */
export class EndpointLoad {
  readonly prior: LatencyPrior;
  readonly now: () => number;

  constructor(options: EndpointLoadOptions = {}) {
    this.prior = { ...DEFAULT_LATENCY_PRIOR, ...options.prior };
    const p = this.prior;
    if (!(p.decay > 0 && p.decay < 1)) throw new RangeError(`decay must be in (0, 1), got ${p.decay}`);
    if (!(p.priorWeight > 0)) throw new RangeError(`priorWeight must be > 0, got ${p.priorWeight}`);
    for (const k of ["overheadMs", "prefillMsPerToken", "interferenceMsPerRequest", "interTokenMs"] as const)
      if (!(p[k] >= 0) || !Number.isFinite(p[k])) throw new RangeError(`${k} must be a finite number >= 0`);
    if (!(p.interTokenMs > 0) || !(p.prefillMsPerToken > 0))
      throw new RangeError("interTokenMs and prefillMsPerToken must be > 0");
    this.now = options.now ?? performance.now.bind(performance);
  }

  /** Counts a request dispatched to `endpoint` now. Bad token counts count as 0. */
  acquire(endpoint: Endpoint, promptTokens: number, expectedDecodeTokens: number, now = this.now()): LoadTicket {
    const prompt = promptTokens > 0 && Number.isFinite(promptTokens) ? promptTokens : 0;
    const decode = expectedDecodeTokens > 0 && Number.isFinite(expectedDecodeTokens) ? expectedDecodeTokens : 0;
    const s = loadStateOf(endpoint, this.prior);
    s.sync(endpoint.metrics);
    const cached = s.cachedHint >= 0 && s.cachedHint <= 1 ? s.cachedHint : 0;
    s.cachedHint = -1;
    const own = prompt * (1 - cached);
    const ahead = prefillTokensAhead(endpoint);
    const requests = fusedRequests(endpoint);
    const slotWait = batchWaitMs(endpoint, requests);
    s.inflight++;
    s.prefillTokens += prompt;
    s.decodeTokens += decode;
    s.dispatched++;
    s.meanPromptTokens += 0.05 * (prompt - s.meanPromptTokens);
    const e = endpoint as { inflightRequests: number; inflightTokens: number; routedRequests: number };
    e.inflightRequests++;
    e.inflightTokens += prompt + decode;
    e.routedRequests++;
    return new LoadTicket(endpoint, s, prompt, decode, now, own, ahead, requests, slotWait);
  }
}

/** The endpoint's load and learned model for /debug/endpoints; null before its first request. */
export function loadDebugView(endpoint: Endpoint) {
  const s = endpoint.load;
  if (s === undefined) return null;
  const m = s.model;
  return {
    fusedRequests: fusedRequests(endpoint),
    prefillTokens: s.prefillTokens,
    decodeTokens: s.decodeTokens,
    overheadMs: m.overhead,
    prefillMsPerToken: m.prefillPerToken,
    aheadMsPerToken: m.aheadPerToken,
    interferenceMsPerRequest: m.interference,
    loadedPrefillMsPerTokenPerRequest: m.loadedPrefillPerToken,
    interTokenMs: m.interTokenMs,
    ttftObservations: m.ttftObservations,
  };
}
