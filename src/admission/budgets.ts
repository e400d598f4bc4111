/**
 * Token-aware rate limits: tokens-per-minute and requests-per-minute budgets per model and per tenant.
 *
 * Algorithm: one token bucket per budget key (the GCRA family — GCRA is the same limiter stored as a
 * "theoretical arrival time"). Capacity = the per-minute limit, refilled continuously at limit/60 s. Why a bucket:
 * - O(1) state per key (level + timestamp): a sliding log keeps one entry per request, unbounded with big budgets;
 * - cost-weighted for free: a 10,000-token request takes 10,000 from the level, a 100-token one takes 100, so the
 *   heavy request consumes exactly 100× the budget (what plain request counting gets wrong);
 * - exact retry-after: the time until the level covers the cost is (cost − level) / rate, no window-edge bursts
 *   like a fixed or two-bucket sliding window;
 * - reconciliation is a level adjustment: admission charges an ESTIMATE (prompt tokens + max_tokens, or the
 *   configured default), release() credits back (estimate − used) or debits the overshoot. The level may go
 *   negative (debt, floored at −capacity) so a tenant that under-declares pays it back before its next request,
 *   instead of the AI-Gateway-style overshoot where an admitted stream is never charged in time.
 *
 * A request whose estimate exceeds a budget's whole capacity can never be admitted; it is rejected at once with a
 * message saying so (no retry-after: retrying cannot help).
 *
 * Memory stays bounded with many tenants: keys live in an LRU map (Map order = recency). Each access sweeps the
 * two least-recently-used keys and drops those whose buckets have refilled to full (they hold no information), and
 * beyond `maxTrackedKeys` the least-recently-used key is evicted outright.
 *
 * Budgets are per EPP replica (no shared store): docs/admission.md explains sizing for N replicas.
 */
import { SwitchyardError } from "../common/errors.js";
import type { BudgetRule } from "./config.js";

export interface BudgetRequest {
  readonly model: string;
  readonly tenant: string;
  readonly inputTokens: number;
  readonly maxTokens: number | undefined;
}

export type LimitKind = "tpm" | "rpm";

export interface BudgetLedgerOptions {
  readonly rules: readonly BudgetRule[];
  readonly defaultMaxTokens: number;
  readonly maxTrackedKeys: number;
  /** Monotonic milliseconds (performance.now()); injectable for tests. */
  readonly now?: () => number;
}

const MINUTE_MS = 60_000;
/** LRU keys inspected per access for idle expiry. */
const SWEEP_PER_ACCESS = 2;

class Bucket {
  level: number;
  updatedAt: number;
  readonly capacity: number;
  readonly ratePerMs: number;

  constructor(perMinute: number, now: number) {
    this.capacity = perMinute;
    this.ratePerMs = perMinute / MINUTE_MS;
    this.level = perMinute;
    this.updatedAt = now;
  }

  refill(now: number): void {
    const elapsed = now - this.updatedAt;
    if (elapsed > 0) {
      this.level = Math.min(this.capacity, this.level + elapsed * this.ratePerMs);
      this.updatedAt = now;
    }
  }

  /** Adds (or with a negative amount, removes) budget; debt is floored at one full window. */
  adjust(amount: number, now: number): void {
    this.refill(now);
    this.level = Math.max(-this.capacity, Math.min(this.capacity, this.level + amount));
  }

  /** ms until the level covers `cost` (0 when it already does). */
  waitFor(cost: number): number {
    return this.level >= cost ? 0 : (cost - this.level) / this.ratePerMs;
  }

  /** ms until the bucket is full again (OpenAI's x-ratelimit-reset-*). */
  resetMs(): number {
    return this.level >= this.capacity ? 0 : (this.capacity - this.level) / this.ratePerMs;
  }

  get full(): boolean {
    return this.level >= this.capacity;
  }
}

interface Entry {
  readonly rule: BudgetRule;
  readonly tokens: Bucket | undefined;
  readonly requests: Bucket | undefined;
}

/** Formats a duration the way OpenAI's x-ratelimit-reset-* headers do: "250ms", "6s", "1.5s", "6m0s". */
export function formatResetDuration(ms: number): string {
  if (!(ms > 0)) return "0s";
  if (ms < 1000) return `${Math.ceil(ms)}ms`;
  const trim = (s: number) => String(Math.round(s * 1000) / 1000);
  const seconds = ms / 1000;
  if (seconds < 60) return `${trim(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes}m${trim(seconds - minutes * 60)}s`;
}

/** A successful charge, held by the admission ticket until the request ends. */
export class BudgetCharge {
  readonly estimate: number;
  readonly #buckets: readonly Entry[];
  readonly #now: () => number;
  #settled = false;

  constructor(estimate: number, entries: readonly Entry[], now: () => number) {
    this.estimate = estimate;
    this.#buckets = entries;
    this.#now = now;
  }

  /** True when some matched budget limits tokens (so the estimate was charged). */
  get chargedTokens(): boolean {
    return this.#buckets.some((e) => e.tokens !== undefined);
  }

  /**
   * Settles the token charge with the real usage. `usedTokens` undefined keeps the estimate (the request reached a
   * model server but reported no usage, e.g. cancelled mid-stream). Returns the tokens finally charged.
   */
  reconcile(usedTokens: number | undefined): number {
    if (this.#settled) return 0;
    this.#settled = true;
    if (usedTokens === undefined || !Number.isFinite(usedTokens) || usedTokens < 0) return this.estimate;
    const delta = this.estimate - usedTokens;
    if (delta !== 0) {
      const now = this.#now();
      for (const e of this.#buckets) e.tokens?.adjust(delta, now);
    }
    return usedTokens;
  }

  /** Gives back the whole charge (tokens and the request): the request never reached a model server. */
  refund(): void {
    if (this.#settled) return;
    this.#settled = true;
    const now = this.#now();
    for (const e of this.#buckets) {
      e.tokens?.adjust(this.estimate, now);
      e.requests?.adjust(1, now);
    }
  }
}

export interface BudgetRejection {
  readonly error: SwitchyardError;
  /** The binding limit, for metrics. */
  readonly limit: LimitKind;
  readonly rule: string;
}

export type BudgetResult =
  | { readonly ok: true; readonly charge: BudgetCharge }
  | ({ readonly ok: false } & BudgetRejection);

interface Binding {
  entry: Entry;
  bucket: Bucket;
  wait: number;
}

export class BudgetLedger {
  readonly #rules: readonly BudgetRule[];
  readonly #defaultMaxTokens: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  #evicted = 0;

  constructor(options: BudgetLedgerOptions) {
    this.#rules = options.rules;
    this.#defaultMaxTokens = options.defaultMaxTokens;
    this.#maxKeys = options.maxTrackedKeys;
    this.#now = options.now ?? (() => performance.now());
  }

  get enabled(): boolean {
    return this.#rules.length > 0;
  }

  /** Budget keys currently tracked. */
  get trackedKeys(): number {
    return this.#entries.size;
  }

  /** Keys evicted by the LRU cap while still holding state (a sign maxTrackedKeys is too small). */
  get evictedKeys(): number {
    return this.#evicted;
  }

  /** Tokens charged at admission: prompt tokens (chars / 4) plus max_tokens or the configured default. */
  estimate(request: BudgetRequest): number {
    return Math.max(0, Math.ceil(request.inputTokens)) + (request.maxTokens ?? this.#defaultMaxTokens);
  }

  /**
   * Checks every matching budget and, when all allow it, charges them all (all or nothing). Returns the charge to
   * reconcile later, or the rejection to answer with.
   */
  charge(request: BudgetRequest): BudgetResult {
    const now = this.#now();
    const estimate = this.estimate(request);
    // Sweep first: an entry matched below must not be dropped before it is charged.
    this.#sweep(now);
    const matched: Entry[] = [];
    for (const rule of this.#rules) {
      if (rule.model !== undefined && rule.model !== "*" && rule.model !== request.model) continue;
      if (rule.tenant !== undefined && rule.tenant !== "*" && rule.tenant !== request.tenant) continue;
      matched.push(this.#entry(rule, request, now));
    }

    let tokensBinding: Binding | undefined;
    let requestsBinding: Binding | undefined;
    for (const e of matched) {
      if (e.tokens) {
        if (estimate > e.tokens.capacity) return this.#tooLarge(e, e.tokens, estimate);
        const wait = e.tokens.waitFor(estimate);
        if (
          !tokensBinding ||
          wait > tokensBinding.wait ||
          (wait === tokensBinding.wait && e.tokens.level < tokensBinding.bucket.level)
        )
          tokensBinding = { entry: e, bucket: e.tokens, wait };
      }
      if (e.requests) {
        const wait = e.requests.waitFor(1);
        if (
          !requestsBinding ||
          wait > requestsBinding.wait ||
          (wait === requestsBinding.wait && e.requests.level < requestsBinding.bucket.level)
        )
          requestsBinding = { entry: e, bucket: e.requests, wait };
      }
    }
    const tokenWait = tokensBinding?.wait ?? 0;
    const requestWait = requestsBinding?.wait ?? 0;
    if (tokenWait > 0 || requestWait > 0) {
      const limit: LimitKind = tokenWait >= requestWait ? "tpm" : "rpm";
      const binding = (limit === "tpm" ? tokensBinding : requestsBinding)!;
      const headers: Record<string, string> = {
        "retry-after": String(Math.max(1, Math.ceil(Math.max(tokenWait, requestWait) / 1000))),
      };
      if (tokensBinding) addHeaders(headers, "tokens", tokensBinding.bucket);
      if (requestsBinding) addHeaders(headers, "requests", requestsBinding.bucket);
      const what =
        limit === "tpm"
          ? `token budget "${binding.entry.rule.name}" exhausted: request needs ${estimate} tokens, ${Math.max(0, Math.floor(binding.bucket.level))} of ${binding.bucket.capacity} per minute remain`
          : `request budget "${binding.entry.rule.name}" exhausted: ${binding.bucket.capacity} requests per minute`;
      return {
        ok: false,
        limit,
        rule: binding.entry.rule.name,
        error: new SwitchyardError("SY_RATE_LIMITED", `${what}${scope(binding.entry.rule, request)}`, { headers }),
      };
    }
    for (const e of matched) {
      if (e.tokens) e.tokens.level -= estimate;
      if (e.requests) e.requests.level -= 1;
    }
    return { ok: true, charge: new BudgetCharge(estimate, matched, this.#now) };
  }

  #tooLarge(e: Entry, bucket: Bucket, estimate: number): BudgetResult {
    const headers: Record<string, string> = {};
    addHeaders(headers, "tokens", bucket);
    return {
      ok: false,
      limit: "tpm",
      rule: e.rule.name,
      error: new SwitchyardError(
        "SY_RATE_LIMITED",
        `request needs ${estimate} tokens but token budget "${e.rule.name}" allows only ${bucket.capacity} per minute; it can never be admitted (lower max_tokens or shorten the prompt)`,
        { headers },
      ),
    };
  }

  #entry(rule: BudgetRule, request: BudgetRequest, now: number): Entry {
    // "*" gives each value its own bucket; an absent selector shares one bucket among all values.
    const key = `${rule.name}\u0000${rule.model === undefined ? "" : request.model}\u0000${rule.tenant === undefined ? "" : request.tenant}`;
    let e = this.#entries.get(key);
    if (e) {
      this.#entries.delete(key);
      e.tokens?.refill(now);
      e.requests?.refill(now);
    } else {
      e = {
        rule,
        tokens: rule.tokensPerMinute === undefined ? undefined : new Bucket(rule.tokensPerMinute, now),
        requests: rule.requestsPerMinute === undefined ? undefined : new Bucket(rule.requestsPerMinute, now),
      };
      while (this.#entries.size >= this.#maxKeys) {
        const oldest = this.#entries.keys().next().value as string;
        this.#entries.delete(oldest);
        this.#evicted++;
      }
    }
    this.#entries.set(key, e);
    return e;
  }

  /** Drops least-recently-used keys that have refilled to full: forgetting them loses nothing. */
  #sweep(now: number): void {
    let n = 0;
    for (const [key, e] of this.#entries) {
      if (n++ >= SWEEP_PER_ACCESS) break;
      e.tokens?.refill(now);
      e.requests?.refill(now);
      if ((e.tokens === undefined || e.tokens.full) && (e.requests === undefined || e.requests.full))
        this.#entries.delete(key);
    }
  }
}

function addHeaders(headers: Record<string, string>, kind: "tokens" | "requests", bucket: Bucket): void {
  headers[`x-ratelimit-limit-${kind}`] = String(bucket.capacity);
  headers[`x-ratelimit-remaining-${kind}`] = String(Math.max(0, Math.floor(bucket.level)));
  headers[`x-ratelimit-reset-${kind}`] = formatResetDuration(bucket.resetMs());
}

function scope(rule: BudgetRule, request: BudgetRequest): string {
  const parts: string[] = [];
  if (rule.tenant !== undefined) parts.push(`tenant "${request.tenant}"`);
  if (rule.model !== undefined) parts.push(`model "${request.model}"`);
  return parts.length === 0 ? "" : ` (${parts.join(", ")})`;
}
