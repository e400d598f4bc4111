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
 * The learner (`LatencyModel`) fits, per endpoint, TTFT ≈ overhead + prefillMs/token × (prefill queued ahead + own
 * uncached prompt) + interference × requests on the pod, by exponentially decayed least squares pulled toward a
 * prior (ridge), plus an EWMA of the inter-token time. Memory is constant per endpoint; state lives on the Endpoint
 * object and goes when the endpoint leaves the pool.
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

/**
 * Per-endpoint TTFT and inter-token model. Fields are plain numbers; `overhead`, `prefillPerToken` and
 * `interference` are the current fit, re-solved on every observation (a 3×3 system), so scoring reads them for free.
 */
export class LatencyModel {
  /** Decayed normal equations: S = Σ w x xᵀ (upper triangle), b = Σ w x y, over x = [1, ktokens, requests]. */
  #s00 = 0;
  #s01 = 0;
  #s02 = 0;
  #s11 = 0;
  #s12 = 0;
  #s22 = 0;
  #b0 = 0;
  #b1 = 0;
  #b2 = 0;
  /** Current fit. */
  overhead: number;
  prefillPerToken: number;
  interference: number;
  /** Learned inter-token time, ms (the prior's until the first streamed completion). */
  interTokenMs: number;
  ttftObservations = 0;
  itlObservations = 0;
  readonly #prior: LatencyPrior;

  constructor(prior: LatencyPrior = DEFAULT_LATENCY_PRIOR) {
    this.#prior = prior;
    this.overhead = prior.overheadMs;
    this.prefillPerToken = prior.prefillMsPerToken;
    this.interference = prior.interferenceMsPerRequest;
    this.interTokenMs = prior.interTokenMs;
  }

  /** Predicted TTFT, ms, for `tokens` of prefill (queued ahead + own uncached) with `requests` already on the pod. */
  predict(tokens: number, requests: number): number {
    return this.overhead + this.prefillPerToken * tokens + this.interference * requests;
  }

  /** How much slower than nominal this pod decodes, from the learned inter-token time (1 before any). */
  get speedRatio(): number {
    const r = this.interTokenMs / this.#prior.interTokenMs;
    return r < MIN_SPEED_RATIO ? MIN_SPEED_RATIO : Math.min(r, MAX_SPEED_RATIO);
  }

  /** One TTFT: `tokens` and `requests` as they were at dispatch. Non-finite or absurd samples are ignored. */
  observeTtft(ttftMs: number, tokens: number, requests: number): void {
    if (!finitePositive(ttftMs, MAX_OBSERVED_MS)) return;
    if (!(tokens >= 0 && tokens < MAX_FEATURE_TOKENS) || !(requests >= 0 && requests < MAX_FEATURE_REQUESTS)) return;
    const k = 1 - this.#prior.decay;
    const x1 = tokens / TOKEN_SCALE;
    const x2 = requests;
    this.#s00 = k * this.#s00 + 1;
    this.#s01 = k * this.#s01 + x1;
    this.#s02 = k * this.#s02 + x2;
    this.#s11 = k * this.#s11 + x1 * x1;
    this.#s12 = k * this.#s12 + x1 * x2;
    this.#s22 = k * this.#s22 + x2 * x2;
    this.#b0 = k * this.#b0 + ttftMs;
    this.#b1 = k * this.#b1 + x1 * ttftMs;
    this.#b2 = k * this.#b2 + x2 * ttftMs;
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

  /** (S + Λ) θ = b + Λ θ₀, with θ₀ the prior scaled by the pod's speed ratio; Λ = priorWeight at typical x. */
  #solve(): void {
    const p = this.#prior;
    const r = this.speedRatio;
    const t0 = p.overheadMs * r;
    const t1 = p.prefillMsPerToken * TOKEN_SCALE * r;
    const t2 = p.interferenceMsPerRequest * r;
    const l0 = p.priorWeight;
    const l1 = p.priorWeight * TYPICAL_KTOKENS * TYPICAL_KTOKENS;
    const l2 = p.priorWeight * TYPICAL_REQUESTS * TYPICAL_REQUESTS;
    const a00 = this.#s00 + l0;
    const a11 = this.#s11 + l1;
    const a22 = this.#s22 + l2;
    const a01 = this.#s01;
    const a02 = this.#s02;
    const a12 = this.#s12;
    const c0 = this.#b0 + l0 * t0;
    const c1 = this.#b1 + l1 * t1;
    const c2 = this.#b2 + l2 * t2;
    // Cramer's rule on the symmetric positive-definite 3×3 system (Λ > 0 keeps it invertible).
    const m00 = a11 * a22 - a12 * a12;
    const m01 = a01 * a22 - a12 * a02;
    const m02 = a01 * a12 - a11 * a02;
    const det = a00 * m00 - a01 * m01 + a02 * m02;
    if (!(Math.abs(det) > 1e-12) || !Number.isFinite(det)) return;
    const th0 = (c0 * m00 - a01 * (c1 * a22 - a12 * c2) + a02 * (c1 * a12 - a11 * c2)) / det;
    const th1 = (a00 * (c1 * a22 - a12 * c2) - c0 * m01 + a02 * (a01 * c2 - c1 * a02)) / det;
    const th2 = (a00 * (a11 * c2 - a12 * c1) - a01 * (a01 * c2 - c1 * a02) + c0 * m02) / det;
    if (!Number.isFinite(th0) || !Number.isFinite(th1) || !Number.isFinite(th2)) return;
    // A cost cannot be negative; a prefill rate of 0 would make every prompt free.
    this.overhead = Math.max(0, th0);
    this.prefillPerToken = Math.max(p.prefillMsPerToken * 0.01, th1 / TOKEN_SCALE);
    this.interference = Math.max(0, th2);
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
  return model.predict(prefillTokensAhead(endpoint) + uncachedTokens, requests) + batchWaitMs(endpoint, requests);
}

export type ReleaseOutcome = "completed" | "cancelled" | "error";

/** One dispatched request's share of an endpoint's load. Every method is idempotent. */
export class LoadTicket {
  readonly endpoint: Endpoint;
  readonly #state: EndpointLoadState;
  readonly #promptTokens: number;
  readonly #decodeTokens: number;
  readonly #dispatchedAt: number;
  /** Features at dispatch, for the learner. */
  readonly #work: number;
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
    work: number,
    requests: number,
    slotWait: number,
  ) {
    this.endpoint = endpoint;
    this.#state = state;
    this.#promptTokens = promptTokens;
    this.#decodeTokens = decodeTokens;
    this.#dispatchedAt = now;
    this.#work = work;
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
    if (streamed) s.model.observeTtft(this.#regressionTtft(now - this.#dispatchedAt), this.#work, this.#requests);
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
    const ttft = model.predict(this.#work, this.#requests) + this.#slotWait;
    const predicted = ttft + (tokens - 1) * model.interTokenMs;
    if (!(predicted > 0) || !(total > 0)) return;
    const f = total / predicted;
    model.observeTtft(this.#regressionTtft(ttft * f), this.#work, this.#requests);
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
    const work = prefillTokensAhead(endpoint) + prompt * (1 - cached);
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
    return new LoadTicket(endpoint, s, prompt, decode, now, work, requests, slotWait);
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
    interferenceMsPerRequest: m.interference,
    interTokenMs: m.interTokenMs,
    ttftObservations: m.ttftObservations,
  };
}
