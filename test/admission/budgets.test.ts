import { describe, expect, it } from "vitest";
import {
  BudgetLedger,
  type BudgetRequest,
  type BudgetResult,
  formatResetDuration,
} from "../../src/admission/budgets.js";
import type { BudgetRule } from "../../src/admission/config.js";
import { SwitchyardError } from "../../src/common/errors.js";

function rule(init: Partial<BudgetRule> & { name: string }): BudgetRule {
  return {
    model: undefined,
    tenant: undefined,
    tokensPerMinute: undefined,
    requestsPerMinute: undefined,
    path: "admission.budgets[0]",
    ...init,
  };
}

class Clock {
  t = 1_000;
  now = () => this.t;
}

function ledger(rules: BudgetRule[], clock = new Clock(), maxTrackedKeys = 1000) {
  return new BudgetLedger({ rules, defaultMaxTokens: 256, maxTrackedKeys, now: clock.now });
}

const req = (tenant: string, inputTokens: number, maxTokens: number | undefined, model = "m"): BudgetRequest => ({
  model,
  tenant,
  inputTokens,
  maxTokens,
});

function rejected(r: BudgetResult): SwitchyardError {
  if (r.ok) throw new Error("expected a rejection");
  expect(r.error).toBeInstanceOf(SwitchyardError);
  expect(r.error.code).toBe("SY_RATE_LIMITED");
  expect(r.error.status).toBe(429);
  return r.error;
}

function admitted(r: BudgetResult) {
  if (!r.ok) throw new Error(`expected admission, got ${r.error.message}`);
  return r.charge;
}

describe("token budgets", () => {
  it("charges prompt tokens plus max_tokens, or the default when max_tokens is absent", () => {
    const l = ledger([rule({ name: "t", tokensPerMinute: 100_000 })]);
    expect(l.estimate(req("a", 100, 50))).toBe(150);
    expect(l.estimate(req("a", 100, undefined))).toBe(356);
  });

  it("a single 10,000-token request consumes the budget 100x more than a 100-token one", () => {
    const clock = new Clock();
    // Budget of 20,000 tokens/min: the big request leaves 10,000, the small ones only 100 each.
    const l = ledger([rule({ name: "t", tenant: "*", tokensPerMinute: 20_000 })], clock);
    for (let i = 0; i < 100; i++) admitted(l.charge(req("small", 50, 50)));
    admitted(l.charge(req("big", 5_000, 5_000)));
    // "small" spent 100 × 100 = 10,000 and "big" spent 10,000 in ONE request: same remaining.
    const small = rejected(l.charge(req("small", 5_000, 5_001)));
    const big = rejected(l.charge(req("big", 5_000, 5_001)));
    expect(small.headers?.["x-ratelimit-remaining-tokens"]).toBe("10000");
    expect(big.headers?.["x-ratelimit-remaining-tokens"]).toBe("10000");
  });

  it("answers 429 with retry-after and OpenAI-style x-ratelimit headers", () => {
    const clock = new Clock();
    const l = ledger([rule({ name: "t", tenant: "*", tokensPerMinute: 600, requestsPerMinute: 100 })], clock);
    admitted(l.charge(req("a", 300, 200))); // 500 of 600
    const err = rejected(l.charge(req("a", 100, 100))); // needs 200, 100 left: 100 tokens at 10/s = 10 s
    expect(err.message).toContain('token budget "t" exhausted');
    expect(err.message).toContain('tenant "a"');
    expect(err.headers).toEqual({
      "retry-after": "10",
      "x-ratelimit-limit-tokens": "600",
      "x-ratelimit-remaining-tokens": "100",
      "x-ratelimit-reset-tokens": "50s",
      "x-ratelimit-limit-requests": "100",
      "x-ratelimit-remaining-requests": "99",
      "x-ratelimit-reset-requests": "600ms",
    });
    expect(err.bodyText).toMatch(/^inference error: ResourceExhausted - token budget/);
    // The bucket refills continuously: after the advertised retry-after the same request passes.
    clock.t += 10_000;
    admitted(l.charge(req("a", 100, 100)));
  });

  it("limits requests per minute independently of tokens", () => {
    const clock = new Clock();
    const l = ledger([rule({ name: "r", tenant: "*", requestsPerMinute: 2 })], clock);
    admitted(l.charge(req("a", 1, 1)));
    admitted(l.charge(req("a", 1, 1)));
    const err = rejected(l.charge(req("a", 1, 1)));
    expect(err.message).toContain('request budget "r" exhausted');
    expect(err.headers?.["retry-after"]).toBe("30");
    expect(err.headers?.["x-ratelimit-remaining-requests"]).toBe("0");
    expect(err.headers?.["x-ratelimit-limit-tokens"]).toBeUndefined();
    // Another tenant has its own bucket ("*" = one budget per tenant).
    admitted(l.charge(req("b", 1, 1)));
    const r = l.charge(req("a", 1, 1));
    expect(r.ok ? undefined : r.limit).toBe("rpm");
  });

  it("rejects at once a request larger than the whole budget, without retry-after", () => {
    const l = ledger([rule({ name: "t", tokensPerMinute: 1000 })]);
    const err = rejected(l.charge(req("a", 900, 200)));
    expect(err.message).toContain("can never be admitted");
    expect(err.headers?.["retry-after"]).toBeUndefined();
    expect(err.headers?.["x-ratelimit-limit-tokens"]).toBe("1000");
  });

  it("reconciles the estimate with the real usage", () => {
    const clock = new Clock();
    const l = ledger([rule({ name: "t", tokensPerMinute: 1000 })], clock);
    const c = admitted(l.charge(req("a", 100, 500))); // estimate 600, 400 left
    expect(c.reconcile(200)).toBe(200); // used 200: 400 refunded → 800 left
    const err = rejected(l.charge(req("a", 400, 500))); // 900 > 800
    expect(err.headers?.["x-ratelimit-remaining-tokens"]).toBe("800");
    expect(c.reconcile(0)).toBe(0); // settles once
    admitted(l.charge(req("a", 300, 500)));
  });

  it("debits an overshoot beyond the estimate (debt paid back before the next request)", () => {
    const clock = new Clock();
    const l = ledger([rule({ name: "t", tokensPerMinute: 6000 })], clock);
    const c = admitted(l.charge(req("a", 10, 90))); // estimate 100
    c.reconcile(5100); // 5000 more than estimated: 6000 − 5100 = 900 left
    const err = rejected(l.charge(req("a", 500, 500)));
    expect(err.headers?.["x-ratelimit-remaining-tokens"]).toBe("900");
    expect(err.headers?.["retry-after"]).toBe("1"); // 100 tokens at 100/s
  });

  it("keeps the estimate when no usage is reported and refunds when the request was never served", () => {
    const l = ledger([rule({ name: "t", tokensPerMinute: 1000, requestsPerMinute: 1 })]);
    const kept = admitted(l.charge(req("a", 100, 100)));
    expect(kept.reconcile(undefined)).toBe(200);
    expect(rejected(l.charge(req("a", 1, 1))).headers?.["x-ratelimit-remaining-tokens"]).toBe("800");
    const l2 = ledger([rule({ name: "t", tokensPerMinute: 1000, requestsPerMinute: 1 })]);
    admitted(l2.charge(req("a", 100, 100))).refund();
    admitted(l2.charge(req("a", 400, 600))); // the whole budget and the one request are back
  });

  it("shares one budget when the selector is absent and matches a named model only", () => {
    const l = ledger([rule({ name: "llama", model: "llama", tokensPerMinute: 1000 })]);
    admitted(l.charge(req("a", 400, 100, "llama")));
    admitted(l.charge(req("b", 400, 100, "llama")));
    rejected(l.charge(req("c", 1, 1, "llama"))); // all tenants share llama's budget
    admitted(l.charge(req("c", 900, 99, "other-model"))); // no rule for other models
  });

  it("charges every matching budget or none of them", () => {
    const l = ledger([
      rule({ name: "tenant", tenant: "*", tokensPerMinute: 1000 }),
      rule({ name: "model", model: "m", tokensPerMinute: 1500 }),
    ]);
    admitted(l.charge(req("a", 400, 400))); // tenant a 200 left, model 700 left
    const err = rejected(l.charge(req("a", 200, 200))); // tenant budget binds
    expect(err.message).toContain('"tenant"');
    // The rejected request charged nothing to the model budget: b can still use 700.
    admitted(l.charge(req("b", 300, 400)));
  });

  it("bounds memory: full buckets expire on access and the LRU cap evicts beyond maxTrackedKeys", () => {
    const clock = new Clock();
    const l = ledger([rule({ name: "t", tenant: "*", tokensPerMinute: 600 })], clock, 50);
    for (let i = 0; i < 200; i++) admitted(l.charge(req(`tenant-${i}`, 1, 1)));
    expect(l.trackedKeys).toBeLessThanOrEqual(50);
    expect(l.evictedKeys).toBeGreaterThan(0);
    // A minute later every bucket is full again; steady traffic from one tenant sweeps the idle ones away.
    clock.t += 60_000;
    for (let i = 0; i < 60; i++) admitted(l.charge(req("steady", 1, 1)));
    expect(l.trackedKeys).toBe(1);
  });

  it("formats reset durations like OpenAI", () => {
    expect(formatResetDuration(0)).toBe("0s");
    expect(formatResetDuration(250)).toBe("250ms");
    expect(formatResetDuration(6000)).toBe("6s");
    expect(formatResetDuration(1500)).toBe("1.5s");
    expect(formatResetDuration(360_000)).toBe("6m0s");
    expect(formatResetDuration(90_500)).toBe("1m30.5s");
  });
});
