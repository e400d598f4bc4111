/**
 * Admission with flow control, driven through the AdmissionController with fake endpoints whose metrics the tests
 * set, an injected clock, and explicit pump() calls — no assertion depends on timers.
 */
import { afterEach, describe, expect, it } from "vitest";
import { parseAdmissionConfig } from "../../src/admission/config.js";
import { AdmissionController } from "../../src/admission/controller.js";
import type { AdmissionRequest, AdmissionTicket } from "../../src/admission/types.js";
import type { SwitchyardError } from "../../src/common/errors.js";
import type { Endpoint } from "../../src/datastore/types.js";
import { EppMetrics } from "../../src/observability/metrics.js";
import { loadPickerConfig, UtilizationDetector } from "../../src/scheduling/index.js";
import { endpoint, metrics } from "../scheduling/helpers.js";

/** A standalone utilization-detector (no config), as the scheduler builds it by default. */
const createUtilizationDetector = () => new UtilizationDetector("utilization-detector", {});

const HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n";

class Fixture {
  t = 100_000;
  readonly now = () => this.t;
  readonly endpoints: Endpoint[];
  readonly metrics = new EppMetrics({ processMetrics: false });
  readonly controller: AdmissionController;
  readonly order: string[] = [];
  readonly errors = new Map<string, SwitchyardError>();
  readonly tickets = new Map<string, AdmissionTicket>();
  #seq = 0;

  constructor(yaml: string, pods = 1) {
    this.endpoints = Array.from({ length: pods }, (_, i) => endpoint(`10.1.0.${i + 1}`));
    this.setLoad(0, 0.1);
    this.controller = new AdmissionController({
      settings: parseAdmissionConfig(loadPickerConfig({ text: HEAD + yaml })),
      detector: createUtilizationDetector(),
      metrics: this.metrics,
      poolName: () => "pool",
      now: this.now,
    });
  }

  get fc() {
    return this.controller.flowControl!;
  }

  /** Every endpoint reports this queue depth and KV use, as a fresh scrape at the current time. */
  setLoad(queue: number, kv: number): void {
    this.t += 1;
    for (const e of this.endpoints) e.metrics = metrics({ waitingQueueSize: queue, kvCacheUsagePercent: kv }, this.t);
  }

  saturate(): void {
    this.setLoad(10, 0.95);
  }

  /** A fresh scrape showing capacity, then a dispatch round. */
  async capacity(): Promise<void> {
    this.setLoad(0, 0.1);
    this.fc.pump();
    await flush();
  }

  request(init: Partial<AdmissionRequest> = {}): AdmissionRequest {
    const id = init.requestId ?? `r${this.#seq++}`;
    return {
      requestId: id,
      model: "m",
      targetModel: "m",
      criticality: "Standard",
      priority: 0,
      tenant: "default-flow",
      inputTokens: 10,
      maxTokens: 10,
      bytes: 100,
      ...init,
    };
  }

  /** Admits; records dispatch order, tickets and errors by request id. */
  admit(init: Partial<AdmissionRequest> = {}, signal = new AbortController().signal): AdmissionTicket | Promise<void> {
    const r = this.request(init);
    const result = this.controller.admit(r, () => this.endpoints, { signal });
    if (!(result instanceof Promise)) {
      this.tickets.set(r.requestId, result);
      return result;
    }
    return result.then(
      (ticket) => {
        this.order.push(r.requestId);
        this.tickets.set(r.requestId, ticket);
      },
      (err: unknown) => {
        this.errors.set(r.requestId, err as SwitchyardError);
      },
    );
  }
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

async function gaugeTotal(m: EppMetrics, name: "flowQueueSize" | "flowQueueBytes"): Promise<number> {
  return (await m[name].get()).values.reduce((a, v) => a + v.value, 0);
}

let fixtures: Fixture[] = [];
function fixture(yaml: string, pods = 1): Fixture {
  const f = new Fixture(yaml, pods);
  fixtures.push(f);
  return f;
}
afterEach(() => {
  for (const f of fixtures) f.controller.close();
  fixtures = [];
});

describe("admission without flow control (legacy)", () => {
  it("sheds Sheddable with SY_SHED while saturated and admits Standard and Critical synchronously", async () => {
    const f = fixture("");
    f.saturate();
    expect(() => f.admit({ criticality: "Sheddable", priority: -1 })).toThrow(
      expect.objectContaining({ code: "SY_SHED", status: 429 }),
    );
    expect(f.admit({ criticality: "Standard" })).not.toBeInstanceOf(Promise);
    expect(f.admit({ criticality: "Critical", priority: 1 })).not.toBeInstanceOf(Promise);
    const shed = (await f.metrics.shedTotal.get()).values.filter((v) => v.value > 0);
    expect(shed).toEqual([
      expect.objectContaining({ value: 1, labels: { criticality: "Sheddable", reason: "saturated" } }),
    ]);
    f.setLoad(0, 0.1);
    expect(f.admit({ criticality: "Sheddable", priority: -1 })).not.toBeInstanceOf(Promise);
  });
});

describe("flow control", () => {
  const FC = "flowControl: {defaultRequestTTL: 10s}\n";

  it("admits at once while the pool has capacity", () => {
    const f = fixture(FC);
    expect(f.admit()).not.toBeInstanceOf(Promise);
    expect(f.fc.length).toBe(0);
  });

  it("queues Standard while saturated and dispatches it when an endpoint has capacity", async () => {
    const f = fixture(FC);
    f.saturate();
    const pending = f.admit({ requestId: "a" });
    expect(pending).toBeInstanceOf(Promise);
    expect(f.fc.length).toBe(1);
    expect(await gaugeTotal(f.metrics, "flowQueueSize")).toBe(1);
    expect(await gaugeTotal(f.metrics, "flowQueueBytes")).toBe(100);
    f.fc.pump();
    await flush();
    expect(f.order).toEqual([]); // still saturated
    await f.capacity();
    await pending;
    expect(f.order).toEqual(["a"]);
    expect(f.fc.length).toBe(0);
    expect(await gaugeTotal(f.metrics, "flowQueueSize")).toBe(0);
    const waits = (await f.metrics.queueWait.get()).values.filter((v) => v.metricName?.endsWith("_count"));
    expect(waits).toEqual([expect.objectContaining({ value: 1, labels: { priority: "0", outcome: "dispatched" } })]);
  });

  it("lets Critical bypass the queue and sheds Sheddable while saturated", () => {
    const f = fixture(FC);
    f.saturate();
    void f.admit({ requestId: "queued" });
    expect(f.admit({ criticality: "Critical", priority: 1 })).not.toBeInstanceOf(Promise);
    expect(() => f.admit({ criticality: "Sheddable", priority: -1 })).toThrow(
      expect.objectContaining({ code: "SY_SHED" }),
    );
    // An objective with a negative priority is sheddable too.
    expect(() => f.admit({ criticality: "Standard", priority: -5 })).toThrow(
      expect.objectContaining({ code: "SY_SHED" }),
    );
    expect(f.fc.length).toBe(1);
  });

  it("dispatches higher priority bands first (strict)", async () => {
    const f = fixture(FC);
    f.saturate();
    const all = [
      f.admit({ requestId: "p0-a", priority: 0 }),
      f.admit({ requestId: "p5-a", priority: 5 }),
      f.admit({ requestId: "p0-b", priority: 0 }),
      f.admit({ requestId: "p9-a", priority: 9 }),
      f.admit({ requestId: "p5-b", priority: 5 }),
    ];
    expect(f.fc.bandLength(5)).toBe(2);
    // One endpoint: one dispatch per fresh scrape.
    for (let i = 0; i < 5; i++) await f.capacity();
    await Promise.all(all);
    expect(f.order).toEqual(["p9-a", "p5-a", "p5-b", "p0-a", "p0-b"]);
  });

  it("round-robins across tenants within a band, FIFO within each tenant", async () => {
    const f = fixture(FC);
    f.saturate();
    const all = [
      ...["a1", "a2", "a3", "a4"].map((id) => f.admit({ requestId: id, tenant: "a" })),
      ...["b1", "b2"].map((id) => f.admit({ requestId: id, tenant: "b" })),
      f.admit({ requestId: "c1", tenant: "c" }),
    ];
    expect(f.fc.bandFlows(0)).toBe(3);
    for (let i = 0; i < 7; i++) await f.capacity();
    await Promise.all(all);
    expect(f.order).toEqual(["a1", "b1", "c1", "a2", "b2", "a3", "a4"]);
    expect(f.fc.bandFlows(0)).toBe(0);
  });

  it("serves a band in arrival order with global-strict-fairness-policy", async () => {
    const f = fixture("flowControl: {defaultPriorityBand: {fairnessPolicyRef: global-strict-fairness-policy}}\n");
    f.saturate();
    const ids = ["a1", "a2", "b1", "a3", "b2"];
    const all = ids.map((id) => f.admit({ requestId: id, tenant: id[0]! }));
    for (let i = 0; i < ids.length; i++) await f.capacity();
    await Promise.all(all);
    expect(f.order).toEqual(ids);
  });

  it("releases at most one request per endpoint per scrape, plus one per finished request", async () => {
    const f = fixture(FC, 2);
    f.saturate();
    const all = ["q1", "q2", "q3", "q4", "q5"].map((id) => f.admit({ requestId: id }));
    await f.capacity();
    expect(f.order).toEqual(["q1", "q2"]);
    expect(f.fc.length).toBe(3);
    // A finished request frees a slot before the next scrape shows it.
    f.tickets.get("q1")!.release(100);
    await flush();
    expect(f.order).toEqual(["q1", "q2", "q3"]);
    await f.capacity();
    await Promise.all(all);
    expect(f.order).toEqual(["q1", "q2", "q3", "q4", "q5"]);
  });

  it("queues a new arrival behind waiting requests of equal priority even when capacity appears", async () => {
    const f = fixture(FC);
    f.saturate();
    const a = f.admit({ requestId: "a" });
    f.setLoad(0, 0.1); // capacity, but not yet pumped
    const b = f.admit({ requestId: "b" });
    expect(b).toBeInstanceOf(Promise); // b did not overtake a
    await a;
    expect(f.order).toEqual(["a"]);
    f.tickets.get("a")!.release(undefined);
    await b;
    expect(f.order).toEqual(["a", "b"]);
  });

  it("evicts a request whose TTL expired with SY_QUEUE_TIMEOUT 503", async () => {
    const f = fixture("flowControl: {defaultRequestTTL: 2s}\n");
    f.saturate();
    const a = f.admit({ requestId: "a" });
    f.t += 1_000;
    const b = f.admit({ requestId: "b" });
    f.t += 1_001; // a is 2.001 s old, b 1.001 s
    f.fc.pump();
    await a;
    expect(f.errors.get("a")).toMatchObject({ code: "SY_QUEUE_TIMEOUT", status: 503 });
    expect(f.errors.get("a")?.message).toMatch(/^request timed out in queue/);
    expect(f.fc.length).toBe(1);
    f.t += 1_000;
    f.fc.pump();
    await b;
    expect(f.errors.get("b")?.code).toBe("SY_QUEUE_TIMEOUT");
    expect(f.fc.length).toBe(0);
    expect(await gaugeTotal(f.metrics, "flowQueueSize")).toBe(0);
    const shed = (await f.metrics.shedTotal.get()).values.filter((v) => v.value > 0);
    expect(shed).toEqual([
      expect.objectContaining({ value: 2, labels: { criticality: "Standard", reason: "queue_timeout" } }),
    ]);
  });

  it("removes a request at once when the client disconnects", async () => {
    const f = fixture(FC);
    f.saturate();
    const abort = new AbortController();
    const a = f.admit({ requestId: "a", tenant: "t1" }, abort.signal);
    const b = f.admit({ requestId: "b", tenant: "t2" });
    expect(f.fc.length).toBe(2);
    abort.abort();
    expect(f.fc.length).toBe(1);
    expect(f.fc.bandFlows(0)).toBe(1); // the disconnected tenant's flow is gone too
    await a;
    expect(f.errors.get("a")).toMatchObject({ code: "SY_CLIENT_DISCONNECTED", status: 503 });
    expect(await gaugeTotal(f.metrics, "flowQueueSize")).toBe(1);
    expect(await gaugeTotal(f.metrics, "flowQueueBytes")).toBe(100);
    await f.capacity();
    await b;
    expect(f.order).toEqual(["b"]);
    expect(f.fc.length).toBe(0);
    expect(await gaugeTotal(f.metrics, "flowQueueSize")).toBe(0);
    // An already-aborted signal never enters the queue.
    f.saturate();
    const gone = new AbortController();
    gone.abort();
    await f.admit({ requestId: "c" }, gone.signal);
    expect(f.errors.get("c")?.code).toBe("SY_CLIENT_DISCONNECTED");
    expect(f.fc.length).toBe(0);
  });

  it("answers SY_QUEUE_FULL 429 at the global and per-band count and byte limits", async () => {
    const f = fixture(
      "flowControl: {maxRequests: 3, maxBytes: 1000, priorityBands: [{priority: 7, maxRequests: 1}]}\n",
    );
    f.saturate();
    void f.admit({ requestId: "p7-a", priority: 7 });
    await f.admit({ requestId: "p7-b", priority: 7 });
    expect(f.errors.get("p7-b")).toMatchObject({ code: "SY_QUEUE_FULL", status: 429 });
    expect(f.errors.get("p7-b")?.message).toContain("priority 7");
    await f.admit({ requestId: "huge", bytes: 950 });
    expect(f.errors.get("huge")?.message).toContain("bytes");
    void f.admit({ requestId: "p0-a" });
    void f.admit({ requestId: "p0-b" });
    await f.admit({ requestId: "p0-c" });
    expect(f.errors.get("p0-c")?.message).toContain("too many queued requests (limit 3)");
    expect(f.fc.length).toBe(3);
    const waits = (await f.metrics.queueWait.get()).values.filter(
      (v) => v.metricName?.endsWith("_count") && v.labels.outcome === "queue_full",
    );
    expect(waits.reduce((a, v) => a + v.value, 0)).toBe(3);
  });

  it("refunds the budget when the queue rejects the request", async () => {
    const f = fixture(`${FC}admission: {budgets: [{name: t, tenant: "*", tokensPerMinute: 100}]}\n`);
    f.saturate();
    const abort = new AbortController();
    const a = f.admit({ requestId: "a", tenant: "x", inputTokens: 50, maxTokens: 50 }, abort.signal);
    // The whole minute's budget is charged while a waits.
    expect(() => f.admit({ requestId: "b", tenant: "x", inputTokens: 1, maxTokens: 1 })).toThrow(
      expect.objectContaining({ code: "SY_RATE_LIMITED" }),
    );
    abort.abort();
    await a;
    f.setLoad(0, 0.1);
    expect(f.admit({ requestId: "c", tenant: "x", inputTokens: 50, maxTokens: 50 })).not.toBeInstanceOf(Promise);
  });

  it("rejects everything still queued on close()", async () => {
    const f = fixture(FC);
    f.saturate();
    const a = f.admit({ requestId: "a" });
    f.controller.close();
    await a;
    expect(f.errors.get("a")).toMatchObject({ code: "SY_QUEUE_TIMEOUT", status: 503 });
    await f.admit({ requestId: "b" });
    expect(f.errors.get("b")?.code).toBe("SY_QUEUE_TIMEOUT");
  });
});

describe("admission metrics", () => {
  it("counts rate-limited requests by tenant, model and limit with capped tenant labels", async () => {
    const f = fixture(`admission:
  tenantLabelLimit: 1
  budgets: [{name: r, tenant: "*", requestsPerMinute: 1}]
`);
    for (const tenant of ["t1", "t2", "t3"]) {
      f.admit({ tenant });
      expect(() => f.admit({ tenant })).toThrow(expect.objectContaining({ code: "SY_RATE_LIMITED" }));
    }
    const values = (await f.metrics.rateLimited.get()).values.map((v) => [v.labels.tenant, v.labels.limit, v.value]);
    expect(values).toEqual([
      ["t1", "rpm", 1],
      ["other", "rpm", 2],
    ]);
  });

  it("counts estimated and reconciled tokens", async () => {
    const f = fixture(`admission: {budgets: [{name: t, tokensPerMinute: 100000}]}\n`);
    const ticket = f.admit({ inputTokens: 40, maxTokens: 60 }) as AdmissionTicket;
    ticket.release(70);
    ticket.release(5000); // idempotent
    const failed = f.admit({ inputTokens: 10, maxTokens: 10 }) as AdmissionTicket;
    failed.release(undefined, false); // never served: refunded, nothing reconciled
    const byKind = Object.fromEntries(
      (await f.metrics.tokensCharged.get()).values.map((v) => [v.labels.kind, v.value]),
    );
    expect(byKind).toEqual({ estimated: 120, reconciled: 70 });
  });
});
