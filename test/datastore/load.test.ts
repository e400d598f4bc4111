/**
 * Own-load accounting, gauge fusion and the latency learner (src/datastore/load.ts, docs/design/scheduling.md §11).
 * Plain objects and a test clock: nothing here depends on the machine's speed.
 */
import { describe, expect, it } from "vitest";
import {
  batchWaitMs,
  DEFAULT_LATENCY_PRIOR,
  EndpointLoad,
  fusedRequests,
  LatencyModel,
  prefillTokensAhead,
} from "../../src/datastore/load.js";
import { endpoint, metrics } from "../scheduling/helpers.js";

describe("own-load accounting", () => {
  it("counts requests, prompt tokens until the first byte and decode tokens until release", () => {
    const load = new EndpointLoad({ now: () => 0 });
    const e = endpoint("10.0.0.1");
    const a = load.acquire(e, 1000, 50, 0);
    const b = load.acquire(e, 200, 10, 0);
    expect(e.load!.inflight).toBe(2);
    expect(e.load!.prefillTokens).toBe(1200);
    expect(e.load!.decodeTokens).toBe(60);
    expect(e.inflightRequests).toBe(2);
    expect(e.inflightTokens).toBe(1260);
    a.firstByte(10, true);
    a.firstByte(11, true); // idempotent
    expect(e.load!.prefillTokens).toBe(200);
    a.release(20, "completed", 50, true);
    a.release(21, "completed", 50, true); // idempotent
    expect(e.load!.inflight).toBe(1);
    expect(e.load!.decodeTokens).toBe(10);
    // Cancelled before its first byte: both its prompt and decode tokens go.
    b.release(30, "cancelled");
    expect(e.load!).toMatchObject({ inflight: 0, prefillTokens: 0, decodeTokens: 0 });
    expect(e.inflightRequests).toBe(0);
    expect(e.inflightTokens).toBe(0);
    expect(e.routedRequests).toBe(2);
  });

  it("treats bad token counts as 0 instead of corrupting the totals", () => {
    const load = new EndpointLoad({ now: () => 0 });
    const e = endpoint("10.0.0.2");
    const t = load.acquire(e, Number.NaN, -5, 0);
    expect(e.load!.prefillTokens).toBe(0);
    expect(e.load!.decodeTokens).toBe(0);
    t.release(1, "error");
    expect(e.inflightTokens).toBe(0);
  });
});

describe("fusion of scraped gauges with own dispatches", () => {
  it("adds dispatches made since a stale gauge was read, without double counting those it already shows", () => {
    const load = new EndpointLoad({ now: () => 0 });
    // A gauge read before anything was dispatched: 2 requests from elsewhere.
    const e = endpoint("10.0.0.3", metrics({ runningRequestsSize: 2 }, 0));
    expect(fusedRequests(e)).toBe(2);
    const tickets = [load.acquire(e, 10, 10, 1), load.acquire(e, 10, 10, 2), load.acquire(e, 10, 10, 3)];
    // The gauge is unchanged (stale): the 3 dispatches since are added to it.
    expect(fusedRequests(e)).toBe(5);
    // A new scrape that shows them: 5, not 8.
    e.metrics = metrics({ runningRequestsSize: 5 }, 100);
    expect(fusedRequests(e)).toBe(5);
    // One of ours finishes before the next scrape: the gauge still counts it, the fusion does not.
    tickets[0]!.release(110, "completed");
    expect(fusedRequests(e)).toBe(4);
  });

  it("never shows fewer requests than this replica has in flight (a gauge that lags its dispatches)", () => {
    const load = new EndpointLoad({ now: () => 0 });
    const e = endpoint("10.0.0.4", metrics({}, 0));
    for (let i = 0; i < 8; i++) load.acquire(e, 10, 10, i);
    // Scraped after the dispatches, but the server has not counted them yet (vLLM counts after a step).
    e.metrics = metrics({ runningRequestsSize: 0 }, 50);
    expect(fusedRequests(e)).toBe(8);
    // Other replicas' requests on top of ours show once the gauge exceeds our own count.
    e.metrics = metrics({ runningRequestsSize: 8, waitingQueueSize: 3 }, 100);
    expect(fusedRequests(e)).toBe(11);
  });

  it("prices a waiting queue the gauge shows when it is larger than own unprefilled prompts", () => {
    const load = new EndpointLoad({ now: () => 0 });
    const e = endpoint("10.0.0.5", metrics({}, 0));
    load.acquire(e, 400, 10, 0);
    expect(prefillTokensAhead(e)).toBe(400);
    e.metrics = metrics({ waitingQueueSize: 4 }, 10);
    expect(prefillTokensAhead(e)).toBeGreaterThan(400);
    expect(prefillTokensAhead(endpoint("10.0.0.6"))).toBe(0);
  });
});

describe("waiting for a batch slot", () => {
  it("learns the batch size from a gauge showing a queue, and prices requests past it", () => {
    const load = new EndpointLoad({ now: () => 0 });
    const e = endpoint("10.0.0.9", metrics({ runningRequestsSize: 3 }, 0));
    for (let i = 0; i < 4; i++) load.acquire(e, 100, 200, 0);
    // Never seen full: no slot wait, however many requests.
    expect(e.load!.batchSlots).toBe(0);
    expect(batchWaitMs(e, 50)).toBe(0);
    // Full: 4 running, 2 waiting.
    e.metrics = metrics({ runningRequestsSize: 4, waitingQueueSize: 2 }, 10);
    load.acquire(e, 100, 200, 0);
    expect(e.load!.batchSlots).toBe(4);
    expect(batchWaitMs(e, 2)).toBe(0);
    // 6 on the pod, 4 slots: the new request is 3rd in line for a slot; 200 decode tokens × 20 ms prior ITL / 5.
    expect(batchWaitMs(e, 6)).toBeCloseTo((3 * 200 * 20) / 5, 6);
    expect(batchWaitMs(e, 7)).toBeGreaterThan(batchWaitMs(e, 6));
  });
});

/** A pod whose true TTFT is `speed × (10 + 0.1·tokens + 4·requests)` ms and ITL `speed × 15` ms. */
function trueTtft(speed: number, tokens: number, requests: number): number {
  return speed * (10 + 0.1 * tokens + 4 * requests);
}

function train(model: LatencyModel, speed: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const tokens = 100 + ((i * 997) % 6000);
    const requests = i % 7;
    model.observeTtft(trueTtft(speed, tokens, requests), tokens, 0, requests);
    model.observeInterToken(speed * 15);
  }
}

function coefficients(m: LatencyModel): number[] {
  return [m.overhead, m.prefillPerToken, m.aheadPerToken, m.interference, m.loadedPrefillPerToken, m.interTokenMs];
}

/** Deterministic features: own and ahead tokens, requests on the pod. */
function features(i: number): [number, number, number] {
  return [100 + ((i * 997) % 3000), (i * 389) % 4000, i % 8];
}

describe("latency learner", () => {
  it("predicts from the prior before the first observation", () => {
    const m = new LatencyModel();
    const p = DEFAULT_LATENCY_PRIOR;
    expect(m.predict(0, 0, 0)).toBeCloseTo(p.overheadMs, 9);
    expect(m.predict(4000, 0, 2)).toBeCloseTo(
      p.overheadMs + 4000 * p.prefillMsPerToken + 2 * p.interferenceMsPerRequest,
      9,
    );
    // Own and queued-ahead tokens share the prior's rate, and the load interaction starts at 0.
    expect(m.predict(4000, 1000, 2)).toBeCloseTo(
      p.overheadMs + 5000 * p.prefillMsPerToken + 2 * p.interferenceMsPerRequest,
      9,
    );
    expect(m.interTokenMs).toBe(p.interTokenMs);
  });

  it("learns a pod twice as slow as another from observations alone", () => {
    const fast = new LatencyModel();
    const slow = new LatencyModel();
    train(fast, 1, 300);
    train(slow, 2, 300);
    for (const [tokens, requests] of [
      [500, 0],
      [5000, 3],
    ] as const) {
      expect(fast.predict(tokens, 0, requests) / trueTtft(1, tokens, requests)).toBeGreaterThan(0.9);
      expect(fast.predict(tokens, 0, requests) / trueTtft(1, tokens, requests)).toBeLessThan(1.1);
      expect(slow.predict(tokens, 0, requests) / trueTtft(2, tokens, requests)).toBeGreaterThan(0.9);
      expect(slow.predict(tokens, 0, requests) / trueTtft(2, tokens, requests)).toBeLessThan(1.1);
    }
    expect(slow.interTokenMs / fast.interTokenMs).toBeCloseTo(2, 1);
    expect(slow.prefillPerToken / fast.prefillPerToken).toBeGreaterThan(1.8);
  });

  it("learns an engine where prompts ahead cost nothing and a busy pod stretches a request's own prefill", () => {
    // llm-d-inference-sim and switchyard sim: each request prefills on its own, × (1 + 0.25 × running).
    const truth = (own: number, _ahead: number, requests: number) => (10 + 0.1 * own) * (1 + 0.25 * requests);
    const m = new LatencyModel();
    for (let i = 0; i < 400; i++) {
      const [own, ahead, requests] = features(i);
      m.observeTtft(truth(own, ahead, requests), own, ahead, requests);
    }
    expect(m.aheadPerToken).toBeLessThan(0.02); // the prior says 0.15
    expect(m.loadedPrefillPerToken).toBeGreaterThan(0.01); // truth 0.025, the prior 0
    // A short prompt on an idle pod with a long prompt in prefill beats the same prompt on a pod running 7.
    expect(m.predict(200, 3000, 1)).toBeLessThan(m.predict(200, 0, 7));
    // The ridge pull toward the prior (3 observations' worth against a memory of ≈ 20) biases single points, so the
    // check is on the mean error over the traffic's range.
    let error = 0;
    for (let i = 0; i < 50; i++) {
      const [own, ahead, requests] = features(i * 7 + 3);
      error += Math.abs(m.predict(own, ahead, requests) / truth(own, ahead, requests) - 1) / 50;
    }
    expect(error).toBeLessThan(0.15);
  });

  it("learns an engine where prompts queued ahead delay a new one (chunked prefill)", () => {
    const truth = (own: number, ahead: number, requests: number) => 15 + 0.12 * (own + ahead) + 3 * requests;
    const m = new LatencyModel();
    for (let i = 0; i < 400; i++) {
      const [own, ahead, requests] = features(i);
      m.observeTtft(truth(own, ahead, requests), own, ahead, requests);
    }
    expect(m.aheadPerToken).toBeGreaterThan(0.1);
    expect(m.aheadPerToken).toBeLessThan(0.14);
    expect(m.predict(200, 3000, 1)).toBeGreaterThan(m.predict(200, 0, 7));
  });

  it("keeps constant state however many observations arrive, and ignores garbage", () => {
    const m = new LatencyModel();
    train(m, 1.5, 2000);
    const settled = coefficients(m);
    // The same traffic again leaves a fixed point, not a growing history.
    train(m, 1.5, 2000);
    const again = coefficients(m);
    for (let i = 0; i < settled.length; i++) expect(again[i]).toBeCloseTo(settled[i]!, 6);
    for (const bad of [Number.NaN, -1, Number.POSITIVE_INFINITY, 1e12]) {
      m.observeTtft(bad, 100, 0, 1);
      m.observeTtft(100, bad, 0, 1);
      m.observeTtft(100, 100, 0, bad);
      m.observeTtft(100, 100, bad, 1);
      m.observeTtft(100, 5_000_000, 0, 50_000); // each factor plausible, their product not
      m.observeInterToken(bad);
    }
    m.observeTtft(0, 100, 0, 1);
    m.observeInterToken(0);
    const after = coefficients(m);
    expect(after).toEqual(again);
  });

  it("learns from the tickets the response path settles: TTFT at the first byte, decode at completion", () => {
    const load = new EndpointLoad({ now: () => 0 });
    const e = endpoint("10.0.0.7");
    let t = 0;
    for (let i = 0; i < 100; i++) {
      const tk = load.acquire(e, 2000, 20, t);
      // An idle pod three times slower than the prior: 3 × (20 + 0.15 × 2000) ms to the first token.
      tk.firstByte(t + 3 * (20 + 0.15 * 2000), true);
      tk.release(t + 3 * (20 + 0.15 * 2000) + 19 * 60, "completed", 20, true);
      t += 10_000;
    }
    const m = e.load!.model;
    expect(m.interTokenMs).toBeCloseTo(60, 0);
    expect(m.predict(2000, 0, 0) / (3 * (20 + 0.15 * 2000))).toBeGreaterThan(0.9);
    expect(m.predict(2000, 0, 0) / (3 * (20 + 0.15 * 2000))).toBeLessThan(1.1);
  });

  it("does not learn from failed or cancelled requests", () => {
    const load = new EndpointLoad({ now: () => 0 });
    const e = endpoint("10.0.0.8");
    const tk = load.acquire(e, 100, 10, 0);
    tk.release(100_000, "error", 10, false);
    const c = load.acquire(e, 100, 10, 0);
    c.release(100_000, "cancelled", 10, false);
    expect(e.load!.model.ttftObservations).toBe(0);
    expect(e.load!.model.itlObservations).toBe(0);
  });
});
